//! Raw → validated, collecting every error with its location.
//!
//! (Over 400 lines: the checker, the key-at-offset search and the
//! `[state]`, `[proxy]` and `[upstreams]` sections; routes and CDC have
//! their own files.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, ConfigErrors};
use crate::raw::*;
use crate::validated::*;
use crate::PathTemplate;

const DEFAULT_STATE_URL: &str = "sqlite://.strangler/state.db";

/// Collects errors for one file.
struct Checker<'a> {
    file: String,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err_at(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::at(
            &self.file,
            self.text,
            offset,
            key,
            message.into(),
        ));
    }

    fn err<T>(&mut self, value: &Spanned<T>, key: &str, message: impl Into<String>) {
        self.err_at(value.span().start, key, message);
    }

    /// A positive duration in milliseconds, or the default.
    fn millis(&mut self, v: &Option<Spanned<u64>>, key: &str, default: u64) -> Duration {
        match v {
            Some(ms) if *ms.get_ref() == 0 => {
                self.err(ms, key, "must be greater than 0");
                Duration::from_millis(default)
            }
            Some(ms) => Duration::from_millis(*ms.get_ref()),
            None => Duration::from_millis(default),
        }
    }

    fn addr(&mut self, v: &Option<Spanned<String>>, key: &str, default: &str) -> SocketAddr {
        let text = v.as_ref().map_or(default, |s| s.get_ref().as_str());
        match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let msg =
                    format!("{text:?} is not an address of the form IP:PORT (e.g. 127.0.0.1:8080)");
                match v {
                    Some(s) => self.err(s, key, msg),
                    None => self.err_at(0, key, msg),
                }
                fallback_addr()
            }
        }
    }
}

fn fallback_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub(crate) fn validate(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let key = key_at(text, offset);
        ConfigErrors::single(ConfigError::at(
            &file,
            text,
            offset,
            &key,
            e.message().trim().to_string(),
        ))
    })?;
    let mut c = Checker {
        file,
        text,
        errors: Vec::new(),
    };
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let state = check_state(&mut c, &raw.state, &base_dir);
    let proxy = check_proxy(&mut c, &raw.proxy, &base_dir);
    let upstreams = check_upstreams(&mut c, &raw.upstreams, &base_dir);
    let routes = check_routes(&mut c, &raw.routes, &upstreams);
    let cdc = raw
        .cdc
        .as_ref()
        .map(|cdc| check_cdc(&mut c, cdc, &base_dir));
    let telemetry = raw.telemetry.as_ref().map(|t| check_telemetry(&mut c, t));

    if c.errors.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            revision: revision(text),
            state,
            proxy,
            upstreams,
            routes,
            cdc,
            telemetry,
        })
    } else {
        c.errors.sort_by_key(|e| (e.line, e.col));
        Err(ConfigErrors(c.errors))
    }
}

/// The dotted key at `offset`, from the nearest table header and the key on
/// that line: `routes[1].stage`, `proxy.listen`.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    let key_on_line = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.starts_with('['));
    // The innermost table header before the offset, with array indexes.
    let mut table = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in before.get(..line_start).unwrap_or("").lines() {
        let l = l.trim();
        if let Some(name) = l
            .strip_prefix("[[")
            .and_then(|r| r.split_once("]]"))
            .map(|(n, _)| n.trim())
        {
            let n = counts.entry(name.to_string()).or_insert(0);
            table = format!("{name}[{}]", *n);
            *n += 1;
            // Nested arrays restart the count of their children.
            counts.retain(|k, _| !k.starts_with(&format!("{name}.")));
        } else if let Some(name) = l
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(n, _)| n.trim())
        {
            table = name.to_string();
        }
    }
    // `[routes.compare]` inside the second route reads `routes[1].compare`.
    for (name, n) in &counts {
        if let Some(rest) = table.strip_prefix(&format!("{name}.")) {
            table = format!("{name}[{}].{rest}", n.saturating_sub(1));
            break;
        }
    }
    match (table.is_empty(), key_on_line) {
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{table}.{k}"),
        (_, None) => table,
    }
}

/// The first 12 hex digits of the SHA-256 of `text`.
pub fn revision(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_state(c: &mut Checker<'_>, raw: &RawState, base_dir: &Path) -> StateConfig {
    let poll_interval = c.millis(&raw.poll_interval_ms, "state.poll_interval_ms", 200);
    // A variable that is named but unset must stop whatever needs the
    // store (never a silent local SQLite file: that would split the
    // fleet); the file itself stays valid, so `strangler check` passes
    // where the secret is not set.
    let mut missing_env = None;
    let from_env = raw
        .url_env
        .as_ref()
        .and_then(|v| match std::env::var(v.get_ref()) {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                missing_env = Some(v.get_ref().clone());
                None
            }
        });
    let url = match (&from_env, &raw.url) {
        (Some(url), _) => url.clone(),
        (None, Some(u)) => u.get_ref().clone(),
        (None, None) => DEFAULT_STATE_URL.to_string(),
    };
    let url = if let Some(file) = url.strip_prefix("sqlite://") {
        let (file, query) = file.split_once('?').unwrap_or((file, ""));
        let p = PathBuf::from(file);
        let abs = if p.is_absolute() { p } else { base_dir.join(p) };
        let query = if query.is_empty() {
            "mode=rwc".to_string()
        } else {
            query.to_string()
        };
        format!("sqlite://{}?{query}", abs.display())
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        url
    } else {
        let msg = "must be sqlite://PATH or postgres://… (the state store is SQLite or PostgreSQL)";
        match &raw.url {
            Some(u) if from_env.is_none() && missing_env.is_none() => c.err(u, "state.url", msg),
            _ => c.err_at(0, "state.url_env", format!("the variable's URL {msg}")),
        }
        url
    };
    // Every connection of a PostgreSQL store searches the schema first
    // (libpq's `options`): tables are created and read there.
    let url = match &raw.schema {
        None => url,
        // The variable is unset: the store is refused anyway, naming it.
        Some(_) if missing_env.is_some() => url,
        Some(s) if !is_identifier(s.get_ref()) => {
            c.err(s, "state.schema", "must be a lowercase SQL identifier (letters, digits, _; not starting with a digit)");
            url
        }
        Some(s) if url.starts_with("sqlite://") => {
            c.err(s, "state.schema", "applies to PostgreSQL stores only: give each environment's SQLite store its own file (state.url)");
            url
        }
        Some(s) if url.contains("options=") => {
            c.err(s, "state.schema", "the state store URL already sets libpq options: add `-c search_path=SCHEMA` to them instead");
            url
        }
        Some(s) => format!(
            "{url}{}options=-c%20search_path%3D{}",
            if url.contains('?') { '&' } else { '?' },
            s.get_ref()
        ),
    };
    let cache_file = raw.cache_file.as_ref().map_or_else(
        || base_dir.join(".strangler/route-cache.json"),
        |p| base_dir.join(p.get_ref()),
    );
    StateConfig {
        url,
        poll_interval,
        url_env: raw.url_env.as_ref().map(|v| v.get_ref().clone()),
        missing_env,
        cache_file,
    }
}

/// A plain lowercase SQL identifier (no quoting needed).
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

fn check_proxy(c: &mut Checker<'_>, raw: &RawProxy, base_dir: &Path) -> ProxyConfig {
    let listen = c.addr(&raw.listen, "proxy.listen", "127.0.0.1:8080");
    let admin = c.addr(&raw.admin, "proxy.admin", "127.0.0.1:9090");
    if raw.admin.is_some() && raw.listen.is_some() && listen == admin {
        if let Some(a) = &raw.admin {
            c.err(a, "proxy.admin", "must differ from proxy.listen");
        }
    }
    let override_header = raw.override_header.as_ref().map(|h| {
        if !is_token(h.get_ref()) {
            c.err(
                h,
                "proxy.override_header",
                format!("{:?} is not a valid header name", h.get_ref()),
            );
        }
        h.get_ref().to_ascii_lowercase()
    });
    let admin_token_env = raw.admin_token_env.as_ref().map(|v| {
        if v.get_ref().is_empty() {
            c.err(
                v,
                "proxy.admin_token_env",
                "names an environment variable and cannot be empty",
            );
        }
        v.get_ref().clone()
    });
    let positive = |c: &mut Checker<'_>, v: &Option<Spanned<u64>>, key: &str, default: u64| match v
    {
        Some(n) if *n.get_ref() == 0 => {
            c.err(n, key, "must be greater than 0");
            default
        }
        Some(n) => *n.get_ref(),
        None => default,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let admin_tokens_file = raw
        .admin_tokens_file
        .as_ref()
        .map(|p| readable_file(c, p, "proxy.admin_tokens_file", base_dir));
    let oidc = raw.oidc_jwks_url.as_ref().map(|u| {
        match url::Url::parse(u.get_ref()) {
            Ok(p) if p.scheme() == "https" || p.scheme() == "http" => {}
            _ => c.err(
                u,
                "proxy.oidc_jwks_url",
                format!("{:?} is not an http(s) URL", u.get_ref()),
            ),
        }
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        OidcConfig {
            jwks_url: u.get_ref().clone(),
            issuer: text(&raw.oidc_issuer),
            audience: text(&raw.oidc_audience),
            roles_claim: text(&raw.oidc_roles_claim).unwrap_or_else(|| "roles".into()),
            name_claim: text(&raw.oidc_name_claim).unwrap_or_else(|| "sub".into()),
        }
    });
    for (key, v) in [
        ("proxy.oidc_issuer", &raw.oidc_issuer),
        ("proxy.oidc_audience", &raw.oidc_audience),
        ("proxy.oidc_roles_claim", &raw.oidc_roles_claim),
        ("proxy.oidc_name_claim", &raw.oidc_name_claim),
    ] {
        if let (Some(v), None) = (v, &raw.oidc_jwks_url) {
            c.err(v, key, "needs proxy.oidc_jwks_url");
        }
    }
    ProxyConfig {
        listen,
        admin,
        admin_token_env,
        admin_tokens_file,
        oidc,
        admin_insecure: raw.admin_insecure.unwrap_or(false),
        metrics_public: raw.metrics_public.unwrap_or(false),
        override_header,
        max_shadow_body_bytes: positive(
            c,
            &raw.max_shadow_body_bytes,
            "proxy.max_shadow_body_bytes",
            1 << 20,
        ),
        max_shadow_inflight: positive(
            c,
            &raw.max_shadow_inflight,
            "proxy.max_shadow_inflight",
            256,
        ),
        shadow_shedding: raw.shadow_shedding.unwrap_or(true),
        inventory: raw.inventory.unwrap_or(true),
        shadow_headroom: percent(
            c,
            &raw.shadow_headroom_percent,
            "proxy.shadow_headroom_percent",
            5.0,
        ) / 100.0,
        threads: positive(c, &raw.threads, "proxy.threads", cpus) as usize,
        access_log: raw.access_log.unwrap_or(true),
        drain_timeout: Duration::from_secs(
            raw.drain_timeout_secs.as_ref().map_or(10, |s| *s.get_ref()),
        ),
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .filter_map(|p| {
                let text = p.get_ref().trim();
                let net = text
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                match net {
                    Ok(n) => Some(n.trunc()),
                    Err(_) => {
                        c.err(
                            p,
                            "proxy.trusted_proxies",
                            format!("{text:?} is not an address or a CIDR (10.0.0.0/8, ::1)"),
                        );
                        None
                    }
                }
            })
            .collect(),
        h2c: raw.h2c.unwrap_or(false),
        tls: raw.tls.as_ref().map(|t| {
            let key = |field: &str| format!("proxy.tls.{field}");
            let tls_listen = t.listen.as_ref().map(|l| {
                let addr = c.addr(&Some(l.clone()), &key("listen"), "");
                for (other, what) in [(listen, "proxy.listen"), (admin, "proxy.admin")] {
                    if addr == other {
                        c.err(l, &key("listen"), format!("must differ from {what}"));
                    }
                }
                addr
            });
            TlsListener {
                listen: tls_listen,
                cert_file: readable_file(c, &t.cert, &key("cert"), base_dir),
                key_file: readable_file(c, &t.key, &key("key"), base_dir),
                http2: t.http2.unwrap_or(true),
            }
        }),
    }
}

/// `[telemetry]`: the collector's base URL becomes its traces URL.
fn check_telemetry(c: &mut Checker<'_>, t: &RawTelemetry) -> TelemetryConfig {
    let endpoint = t.otlp_endpoint.get_ref();
    let traces_url = match url::Url::parse(endpoint) {
        Ok(u) if u.scheme() == "grpc" => {
            c.err(
                &t.otlp_endpoint,
                "telemetry.otlp_endpoint",
                "OTLP over gRPC is not built in: use the collector's OTLP/HTTP port (http://collector:4318)",
            );
            String::new()
        }
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            if u.path() == "/" {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            } else {
                endpoint.clone()
            }
        }
        _ => {
            c.err(
                &t.otlp_endpoint,
                "telemetry.otlp_endpoint",
                format!("{endpoint:?} is not an http(s) URL (e.g. http://otel-collector:4318)"),
            );
            String::new()
        }
    };
    let sample_ratio = match &t.sample_ratio {
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => *r.get_ref(),
        Some(r) => {
            c.err(
                r,
                "telemetry.sample_ratio",
                format!("{} is outside 0.0..=1.0", r.get_ref()),
            );
            1.0
        }
        None => 1.0,
    };
    TelemetryConfig {
        otlp_endpoint: traces_url,
        sample_ratio,
        service_name: t
            .service_name
            .as_ref()
            .map_or_else(|| "strangler-router".to_string(), |s| s.get_ref().clone()),
    }
}

/// A file named relative to the config's directory, which must exist.
fn readable_file(c: &mut Checker<'_>, v: &Spanned<String>, key: &str, base_dir: &Path) -> PathBuf {
    let path = base_dir.join(v.get_ref());
    if !path.is_file() {
        c.err(v, key, format!("{} is not a readable file", path.display()));
    }
    path
}

fn check_upstreams(
    c: &mut Checker<'_>,
    raw: &BTreeMap<String, Spanned<RawUpstream>>,
    base_dir: &Path,
) -> BTreeMap<String, Upstream> {
    let mut out = BTreeMap::new();
    if !raw.contains_key(LEGACY) {
        c.err_at(
            0,
            "upstreams.legacy",
            "is required: it is the monolith, where every unmatched request goes",
        );
    }
    for (name, up) in raw {
        let key = |field: &str| format!("upstreams.{name}.{field}");
        let up = up.get_ref();
        let (authority, server_name) = match parse_http_url(up.url.get_ref()) {
            Ok(v) => v,
            Err(msg) => {
                c.err(&up.url, &key("url"), msg);
                (String::new(), None)
            }
        };
        let ca_file = up
            .ca_file
            .as_ref()
            .map(|p| readable_file(c, p, &key("ca_file"), base_dir));
        if let (Some(p), None) = (&up.ca_file, &server_name) {
            c.err(p, &key("ca_file"), "needs an https:// url");
        }
        let tls = server_name.map(|server_name| UpstreamTls {
            server_name,
            ca_file,
        });
        let health = up.health_path.as_ref().map(|p| {
            if !p.get_ref().starts_with('/') {
                c.err(p, &key("health_path"), "must start with '/'");
            }
            let threshold =
                |c: &mut Checker<'_>, v: &Option<Spanned<u32>>, field: &str, d: u32| match v {
                    Some(n) if *n.get_ref() == 0 => {
                        c.err(n, &key(field), "must be at least 1");
                        d
                    }
                    Some(n) => *n.get_ref(),
                    None => d,
                };
            HealthCheck {
                path: p.get_ref().clone(),
                interval: c.millis(&up.health_interval_ms, &key("health_interval_ms"), 1000),
                timeout: c.millis(&up.health_timeout_ms, &key("health_timeout_ms"), 500),
                unhealthy_threshold: threshold(
                    c,
                    &up.unhealthy_threshold,
                    "unhealthy_threshold",
                    2,
                ),
                healthy_threshold: threshold(c, &up.healthy_threshold, "healthy_threshold", 1),
            }
        });
        out.insert(
            name.clone(),
            Upstream {
                name: name.clone(),
                url: up.url.get_ref().clone(),
                authority,
                health,
                connect_timeout: c.millis(&up.connect_timeout_ms, &key("connect_timeout_ms"), 1000),
                read_timeout: c.millis(&up.read_timeout_ms, &key("read_timeout_ms"), 30_000),
                tls,
            },
        );
    }
    out
}

/// `http://host:port[/]` → `host:port` (port 80 when absent, 443 for
/// `https://`; IPv6 addresses in brackets: `[::1]:8080`), and for
/// `https://` the name the certificate must carry.
fn parse_http_url(text: &str) -> Result<(String, Option<String>), String> {
    let url = url::Url::parse(text).map_err(|e| match e {
        url::ParseError::InvalidPort => {
            format!("{text:?}: the part after ':' is not a port (1-65535)")
        }
        url::ParseError::RelativeUrlWithoutBase => {
            format!("{text:?} must be an http:// or https:// URL (http://host:port)")
        }
        other => format!("{text:?}: {other}"),
    })?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        _ => {
            return Err(format!(
                "{text:?} must be an http:// or https:// URL (http://host:port)"
            ))
        }
    };
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must be http://host:port with no path"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{text:?}: credentials do not belong in an upstream URL"
        ));
    }
    let (host, name) = match url.host() {
        Some(url::Host::Ipv6(a)) => (format!("[{a}]"), a.to_string()),
        Some(h) => (h.to_string(), h.to_string()),
        None => return Err(format!("{text:?}: no host")),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    Ok((format!("{host}:{port}"), tls.then_some(name)))
}

fn methods(c: &mut Checker<'_>, raw: &[Spanned<String>], key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in raw {
        let up = m.get_ref().to_ascii_uppercase();
        if !is_token(&up) {
            c.err(m, key, format!("{:?} is not an HTTP method", m.get_ref()));
        } else if !out.contains(&up) {
            out.push(up);
        }
    }
    out
}

fn percent(c: &mut Checker<'_>, v: &Option<Spanned<f64>>, key: &str, default: f64) -> f64 {
    match v {
        Some(p) if !(0.0..=100.0).contains(p.get_ref()) => {
            c.err(p, key, format!("{} is outside 0.0..=100.0", p.get_ref()));
            default
        }
        Some(p) => *p.get_ref(),
        None => default,
    }
}

mod cdc;
mod routes;

use cdc::check_cdc;
use routes::check_routes;

#[cfg(test)]
mod tests;
