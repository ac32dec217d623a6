//! `strangler init [--openapi FILE]`: a starting `strangler.toml`.

use std::fmt::Write;
use std::path::Path;

use strangler_config::edit::{slug, unique};
use strangler_config::Config;

use crate::cli::InitArgs;
use crate::Exit;

const TEMPLATE: &str = r#"# strangler.toml — one file describes the whole migration.
# Reference: the doc comment of every field in config/src/raw.rs.

[state]
# The fleet's route state (what each proxy runs, holds), the audit log and
# shadow results. A fleet shares PostgreSQL:
# url_env = "STRANGLER_STATE_URL"     # must be set wherever the store is needed
url = "sqlite://.strangler/state.db"
# cache_file = ".strangler/route-cache.json"   # a proxy starts from it while the store is down
# schema = "staging"                  # PostgreSQL: environments sharing one database
# After upgrading strangler, run `strangler migrate` once before new proxies start.

[proxy]
listen = "127.0.0.1:8080"
admin = "127.0.0.1:9090"              # admin API and /metrics
# Admin credentials (without any, the admin API is open on loopback):
# admin_tokens_file = "tokens.toml"   # [[tokens]] name, role (viewer | operator | approver), sha256
# admin_token_env = "STRANGLER_ADMIN_TOKEN"   # one token, role approver
# oidc_jwks_url = "https://idp.example/.well-known/jwks.json"   # JWTs; roles from the "roles" claim
# oidc_issuer = "https://idp.example"
# oidc_audience = "strangler"
# admin_insecure = false             # true: an admin listener beyond loopback may run without credentials
# metrics_public = false             # true: /metrics needs no token (a Prometheus scraper)
# override_header = "x-strangler-target"
# h2c = false                         # true: HTTP/2 without TLS (prior knowledge) on listen too
# [proxy.tls]                         # HTTPS (HTTP/2 and HTTP/1.1 through ALPN)
# listen = "0.0.0.0:8443"             # a listener of its own; absent: `listen` above speaks TLS
# cert = "tls/proxy.pem"              # chain, leaf first; read again on change and SIGHUP
# key = "tls/proxy.key"
# http2 = true

[upstreams.legacy]                    # the monolith: everything unmatched goes here
url = "http://127.0.0.1:8000"         # or https://host:port (then the certificate is checked)
# ca_file = "tls/internal-ca.pem"     # https: the roots to trust instead of the public ones
# health_path = "/healthz"

# [upstreams.catalog]                 # a new service
# url = "http://127.0.0.1:8001"
# health_path = "/healthz"

# Traces over OTLP/HTTP: a span per request, per upstream attempt, per shadow copy.
# [telemetry]
# otlp_endpoint = "http://otel-collector:4318"   # spans go to /v1/traces
# sample_ratio = 1.0                  # of new traces; a client's traceparent decides for its own

# CDC: the monolith's tables into each service's own database.
# [cdc.source]
# url_env = "MONOLITH_DATABASE_URL"
# tables = ["public.products"]
# snapshot = "initial"                # initial | never
# verify_after_snapshot = 1000        # rows per table compared with every sink after a snapshot; 0: off
# [cdc.transport]
# kind = "embedded"                   # embedded | kafka (then brokers = "host:9092")
# topic_prefix = "monolith"           # topics <prefix>.<schema>.<table>
# consumer_group = "strangler-{sink}" # kafka: each sink's workers' group ({sink}: its name)
# client_id = "strangler"
# Debezium's representation options (cdc-sync/TYPES.md), with Debezium's defaults:
# decimal_handling = "precise"        # precise | string | double
# time_precision = "adaptive"         # adaptive | connect
# interval_handling = "numeric"       # numeric | string
# binary_handling = "bytes"           # bytes | base64 | hex
# schemas_enable = false              # true: {schema, payload} as Kafka Connect's JSON converter
# [cdc.transport.properties]          # kafka: librdkafka properties as they are (TLS, SASL, …)
# "security.protocol" = "SASL_SSL"
# "sasl.mechanisms" = "SCRAM-SHA-512"
# "sasl.username" = "strangler"
# "sasl.password.env" = "KAFKA_PASSWORD"   # .env: from this variable; .file: from this file
# [[cdc.sinks]]
# name = "catalog"
# url_env = "CATALOG_DATABASE_URL"
# [[cdc.sinks.tables]]
# source = "public.products"
# target = "public.catalog_items"
# rename = { title = "name" }
"#;

const ROUTE_HELP: &str = r#"
# One route per endpoint. To start migrating one: give it a service, then
#   strangler route promote NAME      (legacy → shadow → canary 1/10/50 % → migrated)
# [[routes]]
# name = "get-product"
# methods = ["GET"]
# path = "/products/{id}"
# service = "catalog"
# stage = "legacy"
# sticky = "header:x-user-id"
# tables = ["public.products"]        # monolith tables it reads: their CDC lag gates promotion
# [routes.compare]
# ignore = ["/generated_at"]
"#;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Routes for every path of an OpenAPI document (JSON or YAML).
pub fn routes_from_openapi(text: &str) -> Result<String, String> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not an OpenAPI document: {e}"))?;
    let paths = doc
        .get("paths")
        .and_then(|p| p.as_mapping())
        .ok_or("the document has no `paths`")?;
    let mut routes = toml_edit::ArrayOfTables::new();
    let mut names = std::collections::HashSet::new();
    for (path, item) in paths {
        let Some(path) = path.as_str() else { continue };
        let methods: Vec<String> = item
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str())
                    .filter(|k| METHODS.contains(k))
                    .map(|k| k.to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default();
        let name = unique(&slug(path), &names);
        names.insert(name.clone());
        // The operation's summary as a comment above the route, every line
        // of it commented.
        let summary: String = item
            .as_mapping()
            .and_then(|m| {
                m.values()
                    .find_map(|op| op.get("summary").and_then(|s| s.as_str()))
            })
            .map(|s| s.lines().map(|l| format!("# {l}\n")).collect())
            .unwrap_or_default();
        let mut route = toml_edit::Table::new();
        route.decor_mut().set_prefix(format!("\n{summary}"));
        route.insert("name", toml_edit::value(name));
        route.insert(
            "methods",
            toml_edit::value(methods.iter().collect::<toml_edit::Array>()),
        );
        route.insert("path", toml_edit::value(path));
        route.insert("stage", toml_edit::value("legacy"));
        routes.push(route);
    }
    if routes.is_empty() {
        return Err("the document's `paths` is empty".into());
    }
    let mut doc = toml_edit::DocumentMut::new();
    doc.insert("routes", toml_edit::Item::ArrayOfTables(routes));
    Ok(doc.to_string())
}

pub fn run(args: &InitArgs) -> anyhow::Result<Exit> {
    let target = &args.common.config;
    if target.exists() && !args.force {
        eprintln!(
            "error: {} exists; pass --force to replace it",
            target.display()
        );
        return Ok(Exit::Usage);
    }
    let mut text = TEMPLATE.to_string();
    match &args.openapi {
        Some(file) => {
            let doc = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            match routes_from_openapi(&doc) {
                Ok(routes) => {
                    let _ = write!(text, "\n# Every path of {} — all in stage legacy: nothing changes for clients.\n{routes}", file.display());
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return Ok(Exit::Usage);
                }
            }
        }
        None => text.push_str(ROUTE_HELP),
    }
    // Never write a file `strangler check` would reject.
    if let Err(e) = Config::from_toml(&text, Path::new(target)) {
        eprintln!("error: the generated file is invalid (a bug): {e}");
        return Ok(Exit::Failed);
    }
    std::fs::write(target, text)?;
    println!("wrote {}; next: strangler check -c {0}", target.display());
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_paths_become_legacy_routes() {
        let doc = r#"
openapi: 3.0.0
info: {title: Shop, version: "1"}
paths:
  /products:
    get: {summary: List products}
    post: {summary: Create a product}
  /products/{id}:
    get: {summary: One product}
    put: {}
    parameters: []
"#;
        let routes = routes_from_openapi(doc).expect("routes");
        assert!(
            routes.contains(
                "name = \"products\"\nmethods = [\"GET\", \"POST\"]\npath = \"/products\""
            ),
            "{routes}"
        );
        assert!(
            routes.contains(
                "name = \"products-id\"\nmethods = [\"GET\", \"PUT\"]\npath = \"/products/{id}\""
            ),
            "{routes}"
        );
        let text = format!("{TEMPLATE}{routes}");
        let c = Config::from_toml(&text, Path::new("s.toml")).expect("valid");
        assert_eq!(c.routes.len(), 2);
        assert!(routes_from_openapi("{\"paths\": {}}").is_err());
        // A multi-line summary and a path with a quote stay valid TOML.
        let tricky = "paths:\n  /a\"b:\n    get:\n      summary: |\n        first line\n        second = line\n";
        let routes = routes_from_openapi(tricky).expect("routes");
        assert!(
            routes.contains("# first line\n# second = line\n[[routes]]"),
            "{routes}"
        );
        let c =
            Config::from_toml(&format!("{TEMPLATE}{routes}"), Path::new("s.toml")).expect("valid");
        assert_eq!(c.routes[0].path.to_string(), "/a\"b");
        assert!(routes_from_openapi("nope: [").is_err());
        assert!(Config::from_toml(&format!("{TEMPLATE}{ROUTE_HELP}"), Path::new("s.toml")).is_ok());
    }
}
