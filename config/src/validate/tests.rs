use std::path::Path;

use crate::{
    BinaryHandling, Config, ConfigErrors, DecimalHandling, EventFormat, IntervalHandling, Stage,
    Sticky, TimePrecision,
};

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, Path::new("/etc/strangler/strangler.toml"))
}

fn first_error(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.first().map(|e| e.to_string()).unwrap_or_default(),
    }
}

const MINIMAL: &str = r#"
[upstreams.legacy]
url = "http://127.0.0.1:8000"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = load(MINIMAL).expect("valid");
    assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.proxy.admin.to_string(), "127.0.0.1:9090");
    assert_eq!(
        c.state.url,
        "sqlite:///etc/strangler/.strangler/state.db?mode=rwc"
    );
    assert!(c.routes.is_empty());
    assert!(c.proxy.override_header.is_none());
}

#[test]
fn full_route_is_validated() {
    let c = load(
        r#"
[proxy]
override_header = "X-Strangler-Target"
[upstreams.legacy]
url = "http://127.0.0.1:8000"
[upstreams.catalog]
url = "http://127.0.0.1:8001/"
health_path = "/healthz"
[[routes]]
name = "get-product"
methods = ["get", "HEAD"]
path = "/products/{id}"
service = "catalog"
stage = "canary"
percent = 12.5
sticky = "header:X-User-Id"
tables = ["public.products"]
[routes.compare]
ignore = ["/updated_at", "/items/*/etag"]
"#,
    )
    .expect("valid");
    let r = &c.routes[0];
    assert_eq!(r.methods, ["GET", "HEAD"]);
    assert_eq!(r.stage, Stage::Canary);
    assert_eq!(r.percent, 12.5);
    assert_eq!(r.sticky, Sticky::Header("x-user-id".into()));
    assert_eq!(r.compare.ignore.len(), 2);
    assert_eq!(
        c.proxy.override_header.as_deref(),
        Some("x-strangler-target")
    );
    assert_eq!(c.upstreams["catalog"].authority, "127.0.0.1:8001");
    assert_eq!(
        c.upstreams["catalog"]
            .resolve()
            .map(|a| a.to_string())
            .ok()
            .as_deref(),
        Some("127.0.0.1:8001")
    );
    assert!(c.upstreams["catalog"].health.is_some());
}

#[test]
fn unknown_key_names_line_col_and_key() {
    let e = first_error(
        r#"[upstreams.legacy]
url = "http://127.0.0.1:8000"

[[routes]]
name = "a"
path = "/a"
stag = "canary"
"#,
    );
    assert!(
        e.starts_with("/etc/strangler/strangler.toml:7:1: routes[0].stag: unknown field `stag`"),
        "{e}"
    );
}

#[test]
fn bad_stage_points_at_the_value() {
    let e = first_error(
        r#"[upstreams.legacy]
url = "http://127.0.0.1:8000"
[upstreams.svc]
url = "http://127.0.0.1:8001"
[[routes]]
name = "a"
path = "/a"
service = "svc"
[[routes]]
name = "b"
path = "/b"
service = "svc"
stage = "canry"
"#,
    );
    assert_eq!(
        e,
        "/etc/strangler/strangler.toml:13:9: routes[1].stage: unknown stage \"canry\" (expected legacy, shadow, canary or migrated)"
    );
}

#[test]
fn every_error_is_reported_in_file_order() {
    let errs = load(
        r#"[upstreams.legacy]
url = "http://127.0.0.1:8000"
[[routes]]
name = "a"
path = "a"
percent = 120.0
service = "nope"
"#,
    )
    .expect_err("invalid");
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["routes[0].path", "routes[0].percent", "routes[0].service"]
    );
}

#[test]
fn type_errors_name_the_key() {
    let e =
        first_error("[proxy]\nlisten = 8080\n[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n");
    assert!(
        e.starts_with("/etc/strangler/strangler.toml:2:10: proxy.listen: invalid type"),
        "{e}"
    );
}

#[test]
fn legacy_upstream_is_required() {
    let e = first_error("[proxy]\nlisten = \"127.0.0.1:1\"\n");
    assert!(e.contains("upstreams.legacy: is required"), "{e}");
}

#[test]
fn non_legacy_stage_needs_a_service() {
    let e = first_error(&format!(
        "{MINIMAL}[[routes]]\nname = \"a\"\npath = \"/a\"\nstage = \"shadow\"\n"
    ));
    assert!(
        e.contains("routes[0].service: stage shadow needs a service"),
        "{e}"
    );
}

#[test]
fn duplicate_names_and_ambiguous_routes_are_rejected() {
    let e = first_error(&format!(
        "{MINIMAL}[[routes]]\nname = \"a\"\npath = \"/a/{{x}}\"\n[[routes]]\nname = \"a\"\npath = \"/b\"\n"
    ));
    assert!(
        e.contains("routes[1].name: \"a\" is used by an earlier route"),
        "{e}"
    );
    let e = first_error(&format!(
        "{MINIMAL}[[routes]]\nname = \"a\"\nmethods=[\"GET\"]\npath = \"/a/{{x}}\"\n[[routes]]\nname = \"b\"\nmethods=[\"GET\",\"PUT\"]\npath = \"/a/{{y}}\"\n"
    ));
    assert!(
        e.contains("routes[1].path: matches the same requests as route \"a\""),
        "{e}"
    );
    // Same shape, disjoint methods: fine.
    load(&format!(
        "{MINIMAL}[[routes]]\nname = \"a\"\nmethods=[\"GET\"]\npath = \"/a/{{x}}\"\n[[routes]]\nname = \"b\"\nmethods=[\"PUT\"]\npath = \"/a/{{y}}\"\n"
    ))
    .expect("disjoint methods are not ambiguous");
}

#[test]
fn https_upstreams_check_the_url_host_and_default_to_port_443() {
    let c = load("[upstreams.legacy]\nurl = \"https://monolith.internal\"\n").expect("valid");
    let up = &c.upstreams["legacy"];
    assert_eq!(up.authority, "monolith.internal:443");
    assert_eq!(up.base_url(), "https://monolith.internal:443");
    assert_eq!(
        up.tls,
        Some(crate::UpstreamTls {
            server_name: "monolith.internal".into(),
            ca_file: None
        })
    );
    assert_eq!(
        c.upstreams["legacy"]
            .tls
            .as_ref()
            .map(|t| t.ca_file.is_none()),
        Some(true)
    );
    let e = first_error("[upstreams.legacy]\nurl = \"http://a:1\"\nca_file = \"ca.pem\"\n");
    assert!(e.contains("upstreams.legacy.ca_file"), "{e}");
    assert!(e.contains("is not a readable file"), "{e}");
}

#[test]
fn kafka_properties_pass_through_with_secrets_from_env_or_file() {
    let base = format!(
        "{MINIMAL}[cdc.source]\nurl_env = \"MONOLITH_DATABASE_URL\"\ntables = [\"public.products\"]\n[cdc.transport]\nkind = \"kafka\"\nbrokers = \"b:9092\"\n"
    );
    let sinks = "[[cdc.sinks]]\nname = \"catalog\"\nurl_env = \"CATALOG_DATABASE_URL\"\n[[cdc.sinks.tables]]\nsource = \"public.products\"\n";
    let c = load(&format!(
        "{base}consumer_group = \"prod-{{sink}}\"\nclient_id = \"strangler-prod\"\n[cdc.transport.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password.env\" = \"KAFKA_PASSWORD\"\n\"ssl.key.password.file\" = \"secrets/key-pass\"\n{sinks}"
    ))
    .expect("valid");
    let Some(crate::CdcTransport::Kafka {
        properties,
        consumer_group,
        client_id,
        ..
    }) = c.cdc.map(|c| c.transport)
    else {
        panic!("kafka transport");
    };
    assert_eq!(consumer_group, "prod-{sink}");
    assert_eq!(client_id.as_deref(), Some("strangler-prod"));
    let got: Vec<(String, crate::PropertySource)> =
        properties.into_iter().map(|p| (p.name, p.source)).collect();
    assert_eq!(
        got,
        [
            (
                "sasl.password".to_string(),
                crate::PropertySource::Env("KAFKA_PASSWORD".into())
            ),
            (
                "security.protocol".to_string(),
                crate::PropertySource::Value("SASL_SSL".into())
            ),
            (
                "ssl.key.password".to_string(),
                crate::PropertySource::File("/etc/strangler/secrets/key-pass".into())
            ),
        ]
    );
    for (extra, why) in [
        (
            "[cdc.transport.properties]\n\"enable.idempotence\" = \"false\"\n",
            "enable.idempotence cannot be set here",
        ),
        (
            "[cdc.transport.properties]\n\"group.id\" = \"x\"\n",
            "set cdc.transport.consumer_group",
        ),
        (
            "consumer_group = \"\"\n",
            "cdc.transport.consumer_group: cannot be empty",
        ),
    ] {
        let e = first_error(&format!("{base}{extra}{sinks}"));
        assert!(e.contains(why), "{extra}: {e}");
    }
    let two = format!("{sinks}[[cdc.sinks]]\nname = \"orders\"\nurl_env = \"ORDERS_DATABASE_URL\"\n[[cdc.sinks.tables]]\nsource = \"public.products\"\n");
    let e = first_error(&format!("{base}consumer_group = \"prod\"\n{two}"));
    assert!(e.contains("include {sink}"), "{e}");
}

#[test]
fn a_deadline_does_not_go_with_an_idle_timeout() {
    let e = first_error(&format!(
        "{MINIMAL}[[routes]]\nname = \"chat\"\npath = \"/chat\"\nidle_timeout_secs = 3600\ntimeout_ms = 5000\n"
    ));
    assert!(e.contains("routes[0].timeout_ms"), "{e}");
    assert!(e.contains("cannot go with idle_timeout_secs"), "{e}");
}

#[test]
fn telemetry_names_an_otlp_http_collector_and_a_ratio() {
    let c = load(&format!(
        "{MINIMAL}[telemetry]\notlp_endpoint = \"http://collector:4318\"\nsample_ratio = 0.05\n"
    ))
    .expect("valid");
    let t = c.telemetry.expect("telemetry");
    assert_eq!(t.otlp_endpoint, "http://collector:4318/v1/traces");
    assert_eq!(t.sample_ratio, 0.05);
    assert_eq!(t.service_name, "strangler-router");
    let c = load(&format!(
        "{MINIMAL}[telemetry]\notlp_endpoint = \"https://otel.example/custom/traces\"\n"
    ))
    .expect("valid");
    assert_eq!(
        c.telemetry.expect("telemetry").otlp_endpoint,
        "https://otel.example/custom/traces"
    );
    for (text, why) in [
        (
            "otlp_endpoint = \"collector:4318\"",
            "is not an http(s) URL",
        ),
        (
            "otlp_endpoint = \"grpc://collector:4317\"",
            "gRPC is not built in",
        ),
        (
            "otlp_endpoint = \"http://c:1\"\nsample_ratio = 1.5",
            "telemetry.sample_ratio",
        ),
    ] {
        let e = first_error(&format!("{MINIMAL}[telemetry]\n{text}\n"));
        assert!(e.contains(why), "{text}: {e}");
    }
}

#[test]
fn the_tls_listener_names_files_beside_the_config_and_its_own_port() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("proxy.pem"), "x").expect("cert");
    std::fs::write(dir.path().join("proxy.key"), "x").expect("key");
    let text = |listen: &str, key: &str| {
        format!(
            "[proxy]\nlisten = \"127.0.0.1:8080\"\nh2c = true\n[proxy.tls]\nlisten = \"{listen}\"\ncert_file = \"proxy.pem\"\nkey_file = \"{key}\"\n{MINIMAL}"
        )
    };
    let c = Config::from_toml(
        &text("0.0.0.0:8443", "proxy.key"),
        &dir.path().join("strangler.toml"),
    )
    .expect("valid");
    let tls = c.proxy.tls.expect("tls");
    assert_eq!(
        tls.listen.map(|l| l.to_string()).as_deref(),
        Some("0.0.0.0:8443")
    );
    assert_eq!(tls.cert_file, dir.path().join("proxy.pem"));
    assert!(tls.http2);
    assert!(c.proxy.h2c);
    let e = Config::from_toml(
        &text("127.0.0.1:8080", "nope.key"),
        &dir.path().join("strangler.toml"),
    )
    .expect_err("invalid")
    .to_string();
    assert!(
        e.contains("proxy.tls.listen") && e.contains("must differ from proxy.listen"),
        "{e}"
    );
    assert!(
        e.contains("proxy.tls.key") && e.contains("nope.key is not a readable file"),
        "{e}"
    );
    // Without a listen of its own, proxy.listen speaks TLS.
    let c = Config::from_toml(
        &format!("[proxy.tls]\ncert = \"proxy.pem\"\nkey = \"proxy.key\"\n{MINIMAL}"),
        &dir.path().join("strangler.toml"),
    )
    .expect("valid");
    assert_eq!(c.proxy.tls.expect("tls").listen, None);
}

#[test]
fn cdc_section_is_parsed_and_checked() {
    let c = load(&format!(
        r#"{MINIMAL}
[cdc.source]
url_env = "MONOLITH_DATABASE_URL"
tables = ["public.products"]
[cdc.transport]
kind = "kafka"
brokers = "127.0.0.1:9092"
topic_prefix = "monolith"
[[cdc.sinks]]
name = "catalog"
url_env = "CATALOG_DATABASE_URL"
[[cdc.sinks.tables]]
source = "public.products"
target = "public.catalog_items"
rename = {{ title = "name" }}
exclude = ["internal_notes"]
"#
    ))
    .expect("valid");
    let cdc = c.cdc.expect("cdc");
    assert_eq!(cdc.sinks[0].tables[0].target.table, "catalog_items");
    let e = first_error(&format!(
        "{MINIMAL}[cdc.source]\nurl_env = \"X\"\ntables = [\"public.products\"]\n[[cdc.sinks]]\nname = \"s\"\nurl_env = \"Y\"\n[[cdc.sinks.tables]]\nsource = \"public.orders\"\n"
    ));
    assert!(
        e.contains("cdc.sinks[0].tables[0].source: public.orders is not among cdc.source.tables"),
        "{e}"
    );
}

#[test]
fn debezium_representation_options_and_the_snapshot_check() {
    let base = format!("{MINIMAL}[cdc.source]\nurl_env = \"X\"\ntables = [\"public.t\"]\n");
    let c = load(&base).expect("valid");
    let cdc = c.cdc.expect("cdc");
    assert_eq!(cdc.format, EventFormat::default());
    assert_eq!(cdc.source.verify_after_snapshot, 1000);
    let c = load(&format!(
        "{base}verify_after_snapshot = 0\n[cdc.transport]\ndecimal_handling = \"string\"\ntime_precision = \"connect\"\ninterval_handling = \"string\"\nbinary_handling = \"hex\"\nschemas_enable = true\n"
    ))
    .expect("valid");
    let cdc = c.cdc.expect("cdc");
    assert_eq!(
        cdc.format,
        EventFormat {
            decimal: DecimalHandling::String,
            time: TimePrecision::Connect,
            interval: IntervalHandling::String,
            binary: BinaryHandling::Hex,
            schemas: true,
        }
    );
    assert_eq!(cdc.source.verify_after_snapshot, 0);
    let e = first_error(&format!(
        "{base}[cdc.transport]\ndecimal_handling = \"exact\"\n"
    ));
    assert!(
        e.contains(":8:20: cdc.transport.decimal_handling: unknown mode \"exact\" (expected precise | string | double)"),
        "{e}"
    );
    let e = first_error(&format!("{base}verify_after_snapshot = -1\n"));
    assert!(e.contains("cdc.source.verify_after_snapshot"), "{e}");
    assert_eq!(cdc.source.transaction_memory, 64 << 20);
    let c = load(&format!("{base}transaction_memory_mb = 8\n")).expect("valid");
    assert_eq!(c.cdc.expect("cdc").source.transaction_memory, 8 << 20);
    assert_eq!(cdc.source.snapshot_chunk_rows, 2_000);
    let c = load(&format!("{base}snapshot_chunk_rows = 100\n")).expect("valid");
    assert_eq!(c.cdc.expect("cdc").source.snapshot_chunk_rows, 100);
    assert_eq!(cdc.source.snapshot_workers, crate::DEFAULT_SNAPSHOT_WORKERS);
    let c = load(&format!("{base}snapshot_workers = 4\n")).expect("valid");
    assert_eq!(c.cdc.expect("cdc").source.snapshot_workers, 4);
    let e = first_error(&format!("{base}snapshot_workers = 0\n"));
    assert!(
        e.contains("cdc.source.snapshot_workers: connections from 1 to 32"),
        "{e}"
    );
    let e = first_error(&format!("{base}snapshot_chunk_rows = 0\n"));
    assert!(
        e.contains("cdc.source.snapshot_chunk_rows: rows from 1 to 1000000"),
        "{e}"
    );
    let e = first_error(&format!("{base}transaction_memory_mb = 0\n"));
    assert!(
        e.contains("cdc.source.transaction_memory_mb: MiB from 1 to 65536"),
        "{e}"
    );
}

#[test]
fn host_names_are_not_resolved_when_checking() {
    let c = load("[upstreams.legacy]\nurl = \"http://monolith.svc.cluster.local:8000\"\n[upstreams.b]\nurl = \"http://catalog\"\n").expect("valid");
    assert_eq!(
        c.upstreams["legacy"].authority,
        "monolith.svc.cluster.local:8000"
    );
    assert_eq!(c.upstreams["b"].authority, "catalog:80");
    let e = first_error("[upstreams.legacy]\nurl = \"http://host:port\"\n");
    assert!(e.contains("is not a port"), "{e}");
    let c = load("[upstreams.legacy]\nurl = \"http://[::1]:8080\"\n[upstreams.b]\nurl = \"http://127.0.0.1/\"\n").expect("valid");
    assert_eq!(c.upstreams["legacy"].authority, "[::1]:8080");
    assert_eq!(c.upstreams["b"].authority, "127.0.0.1:80");
    for (url, why) in [
        ("http://a/b", "no path"),
        ("http://u:p@a:1", "credentials"),
        ("ftp://a", "must be an http:// or https:// URL"),
        ("a:80", "must be an http:// or https:// URL"),
    ] {
        let e = first_error(&format!("[upstreams.legacy]\nurl = \"{url}\"\n"));
        assert!(e.contains(why), "{url}: {e}");
    }
}

#[test]
fn sink_connections_are_checked() {
    let sink = |transport: &str, n: &str| {
        format!(
            "{MINIMAL}[cdc.source]\nurl_env = \"X\"\ntables = [\"public.t\"]\n{transport}[[cdc.sinks]]\nname = \"s\"\nurl_env = \"Y\"\n{n}[[cdc.sinks.tables]]\nsource = \"public.t\"\n"
        )
    };
    let c = load(&sink("", "")).expect("valid");
    assert_eq!(c.cdc.expect("cdc").sinks[0].connections, 1);
    let c = load(&sink("", "connections = 4\n")).expect("valid");
    assert_eq!(c.cdc.expect("cdc").sinks[0].connections, 4);
    let e = first_error(&sink("", "connections = 0\n"));
    assert!(
        e.contains("cdc.sinks[0].connections: connections from 1 to 16"),
        "{e}"
    );
    let kafka = "[cdc.transport]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\n";
    let e = first_error(&sink(kafka, "connections = 2\n"));
    assert!(
        e.contains("cdc.sinks[0].connections: applies to the embedded transport"),
        "{e}"
    );
}

#[test]
fn trusted_proxies_are_addresses_or_cidrs() {
    let with = |list: &str| format!("[proxy]\ntrusted_proxies = {list}\n{MINIMAL}");
    let c = load(&with(r#"["10.0.0.0/8", "192.168.1.7", "fd00::/8"]"#)).expect("valid");
    let nets: Vec<String> = c
        .proxy
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]);
    let e = first_error(&with(r#"["10.0.0.0/8", "lb.internal"]"#));
    assert!(
        e.contains("proxy.trusted_proxies: \"lb.internal\" is not an address or a CIDR"),
        "{e}"
    );
}

#[test]
fn retry_budgets_are_checked() {
    let route = |extra: &str| {
        format!("{MINIMAL}[upstreams.svc]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nname = \"r\"\npath = \"/r\"\nservice = \"svc\"\nstage = \"migrated\"\n{extra}")
    };
    assert_eq!(
        load(&route("")).expect("valid").routes[0].retry_budget,
        crate::RetryBudget {
            percent: 20.0,
            min_concurrency: 3
        }
    );
    let c = load(&route(
        "[routes.retry_budget]\npercent = 0.0\nmin_concurrency = 1\n",
    ))
    .expect("valid");
    assert_eq!(
        c.routes[0].retry_budget,
        crate::RetryBudget {
            percent: 0.0,
            min_concurrency: 1
        }
    );
    let e = first_error(&route("[routes.retry_budget]\npercent = 150.0\n"));
    assert!(
        e.contains("routes[0].retry_budget.percent: a percent from 0 to 100"),
        "{e}"
    );
}

#[test]
fn idle_timeouts_and_body_limits_are_checked() {
    let route = |extra: &str| {
        format!("{MINIMAL}[upstreams.svc]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nname = \"r\"\npath = \"/r\"\nservice = \"svc\"\nstage = \"migrated\"\n{extra}")
    };
    let c = load(&route(
        "idle_timeout_secs = 3600\nmax_body_bytes = 1048576\n",
    ))
    .expect("valid");
    assert_eq!(
        (c.routes[0].idle_timeout, c.routes[0].max_body_bytes),
        (Some(std::time::Duration::from_secs(3600)), Some(1 << 20))
    );
    let c = load(&route("")).expect("valid");
    assert_eq!(
        (c.routes[0].idle_timeout, c.routes[0].max_body_bytes),
        (None, None)
    );
    let e = first_error(&route("idle_timeout_secs = 0\n"));
    assert!(
        e.contains("routes[0].idle_timeout_secs: seconds from 1 to 86400"),
        "{e}"
    );
    let e = first_error(&route("max_body_bytes = 0\n"));
    assert!(
        e.contains("routes[0].max_body_bytes: must be greater than 0"),
        "{e}"
    );
}

#[test]
fn rate_limits_are_checked() {
    let route = |limit: &str| {
        format!("{MINIMAL}[upstreams.svc]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nname = \"r\"\npath = \"/r\"\nservice = \"svc\"\nstage = \"migrated\"\n{limit}")
    };
    let c = load(&route("[routes.rate_limit]\nrequests = 10\n")).expect("valid");
    let l = c.routes[0].rate_limit.clone().expect("a limit");
    assert_eq!(
        (l.requests, l.per, l.key),
        (10, std::time::Duration::from_secs(1), Sticky::ClientIp)
    );
    let c = load(&route(
        "[routes.rate_limit]\nrequests = 100\nper_seconds = 60\nkey = \"header:x-api-client\"\n",
    ))
    .expect("valid");
    let l = c.routes[0].rate_limit.clone().expect("a limit");
    assert_eq!(l.key, Sticky::Header("x-api-client".into()));
    assert!(load(&route("")).expect("valid").routes[0]
        .rate_limit
        .is_none());
    let e = first_error(&route("[routes.rate_limit]\nrequests = 0\n"));
    assert!(
        e.contains("routes[0].rate_limit.requests: requests from 1"),
        "{e}"
    );
    let e = first_error(&route("[routes.rate_limit]\nrequests = 5\nkey = \"ip\"\n"));
    assert!(
        e.contains("rate_limit.key: unknown rate-limit key \"ip\""),
        "{e}"
    );
}

#[test]
fn outbox_tables_are_captured_and_travel_through_kafka() {
    let kafka = "[cdc.transport]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\ntopic_prefix = \"shop\"\n";
    let c = load(&format!(
        "{MINIMAL}[cdc.source]\nurl_env = \"X\"\ntables = [\"public.outbox\"]\n{kafka}[[cdc.outbox]]\ntable = \"public.outbox\"\npayload = \"body\"\n"
    ))
    .expect("valid");
    let o = &c.cdc.expect("cdc").outbox[0];
    assert_eq!(
        (
            o.table.to_string().as_str(),
            o.id.as_str(),
            o.aggregate_type.as_str(),
            o.aggregate_id.as_str(),
            o.event_type.as_str(),
            o.payload.as_str()
        ),
        (
            "public.outbox",
            "id",
            "aggregatetype",
            "aggregateid",
            "type",
            "body"
        )
    );
    let e = first_error(&format!(
        "{MINIMAL}[cdc.source]\nurl_env = \"X\"\ntables = [\"public.orders\"]\n{kafka}[[cdc.outbox]]\ntable = \"public.outbox\"\n"
    ));
    assert!(
        e.contains("cdc.outbox.table: public.outbox is not captured"),
        "{e}"
    );
    let e = first_error(&format!(
        "{MINIMAL}[cdc.source]\nurl_env = \"X\"\ntables = [\"public.outbox\"]\n[[cdc.outbox]]\ntable = \"public.outbox\"\n"
    ));
    assert!(
        e.contains("cdc.outbox: outbox events travel through Kafka"),
        "{e}"
    );
}

#[test]
fn a_mysql_source_takes_a_server_id_and_no_publication() {
    let base = |extra: &str| {
        format!("{MINIMAL}[cdc.source]\nkind = \"mysql\"\nurl_env = \"X\"\ntables = [\"shop.orders\"]\n{extra}")
    };
    let c = load(&base("server_id = 4242\n")).expect("valid");
    assert_eq!(
        c.cdc.expect("cdc").source.kind,
        crate::SourceKind::MySql { server_id: 4242 }
    );
    // Without one: derived from the slot, the same on every start.
    let c = load(&base("")).expect("valid");
    assert_eq!(
        c.cdc.expect("cdc").source.kind,
        crate::SourceKind::MySql {
            server_id: crate::default_server_id("strangler")
        }
    );
    assert_ne!(
        crate::default_server_id("strangler"),
        crate::default_server_id("other")
    );
    for (extra, want) in [
        (
            "server_id = 0\n",
            "cdc.source.server_id: a server id from 1 to 4294967295",
        ),
        (
            "publication = \"p\"\n",
            "cdc.source.publication: PostgreSQL only",
        ),
        (
            "[cdc.transport]\nschemas_enable = true\n",
            "cdc.transport.schemas_enable: not available with kind = \"mysql\"",
        ),
    ] {
        let e = first_error(&base(extra));
        assert!(e.contains(want), "{extra}: {e}");
    }
    let e = first_error(&format!(
        "{MINIMAL}[cdc.source]\nkind = \"oracle\"\nurl_env = \"X\"\ntables = [\"a.b\"]\n"
    ));
    assert!(
        e.contains("cdc.source.kind: unknown source \"oracle\""),
        "{e}"
    );
}
