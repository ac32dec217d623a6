//! What the file says: serde types mirroring `strangler.toml` one to one.
//!
//! Every struct denies unknown keys; values that a semantic check may reject
//! are wrapped in [`Spanned`] so the error can point at them. The doc comment
//! of each field is the user documentation of that key.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where route stages, the audit log and shadow results live.
    #[serde(default)]
    pub state: RawState,
    /// The router's listeners and limits.
    #[serde(default)]
    pub proxy: RawProxy,
    /// Named HTTP upstreams; `legacy` (the monolith) is required.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    /// One entry per endpoint being migrated.
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    /// Change data capture from the monolith's database to the services'.
    #[serde(default)]
    pub cdc: Option<RawCdc>,
    /// Traces exported over OTLP. Off when absent.
    pub telemetry: Option<RawTelemetry>,
}

/// `[telemetry]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP/HTTP (protobuf) collector, e.g. `http://otel-collector:4318`:
    /// spans go to `/v1/traces` under it (a URL with a path is used as it
    /// is, like `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub otlp_endpoint: Spanned<String>,
    /// Share of new traces recorded, 0.0-1.0 (default 1.0). A request whose
    /// `traceparent` says sampled or not keeps that decision.
    pub sample_ratio: Option<Spanned<f64>>,
    /// `service.name` of the spans (default `strangler-router`).
    pub service_name: Option<Spanned<String>>,
}

/// `[state]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `sqlite://PATH` (relative to the config file; the default is
    /// `sqlite://.strangler/state.db`) or `postgres://…` for a fleet.
    pub url: Option<Spanned<String>>,
    /// Like `url`, but read from this environment variable (for URLs that
    /// carry a password). When named, the variable must be set: a proxy or
    /// command that needs the store refuses to run without it.
    pub url_env: Option<Spanned<String>>,
    /// How often a proxy looks for changes made by others, in milliseconds
    /// (default 200; a change reaches every proxy within this interval).
    pub poll_interval_ms: Option<Spanned<u64>>,
    /// Where a proxy keeps the last route state it read from the store, to
    /// start from while the store is down (default
    /// `.strangler/route-cache.json` beside this file).
    pub cache_file: Option<Spanned<String>>,
    /// PostgreSQL stores: the schema (namespace) strangler's tables live
    /// in, so that environments can share one database (default: the
    /// role's `search_path`, normally `public`). Created when missing.
    pub schema: Option<Spanned<String>>,
}

/// `[proxy]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Address the proxy serves clients on (default `127.0.0.1:8080`).
    pub listen: Option<Spanned<String>>,
    /// Address of the admin API and `/metrics` (default `127.0.0.1:9090`).
    pub admin: Option<Spanned<String>>,
    /// When this environment variable is set, the admin API requires
    /// `Authorization: Bearer <its value>`.
    pub admin_token_env: Option<Spanned<String>>,
    /// Named admin credentials with roles (viewer, operator, approver), a
    /// TOML file of `[[tokens]]` with `name`, `role` and `sha256` (the hex
    /// SHA-256 of the bearer token). Relative to this file; reloaded with it.
    pub admin_tokens_file: Option<Spanned<String>>,
    /// `true` allows an admin listener beyond loopback with no credential
    /// (anyone who reaches it can move traffic); default false: refused.
    pub admin_insecure: Option<bool>,
    /// `true` serves `/metrics` without a token (for a Prometheus scraper
    /// that has none); default false.
    pub metrics_public: Option<bool>,
    /// OIDC: the identity provider's JWKS URL. JWT bearer tokens signed by
    /// one of its keys are accepted; the identity is the `oidc_name_claim`
    /// (default `sub`) and the role the highest of viewer, operator,
    /// approver named in the `oidc_roles_claim` (default `roles`).
    pub oidc_jwks_url: Option<Spanned<String>>,
    /// Required `iss` of OIDC tokens (checked when set).
    pub oidc_issuer: Option<Spanned<String>>,
    /// Required `aud` of OIDC tokens (checked when set).
    pub oidc_audience: Option<Spanned<String>>,
    pub oidc_roles_claim: Option<Spanned<String>>,
    pub oidc_name_claim: Option<Spanned<String>>,
    /// A request header with which a tester forces `legacy` or `service`
    /// for a matched route. Off when unset. Stripped before forwarding.
    pub override_header: Option<Spanned<String>>,
    /// Bodies bigger than this are not shadowed (counted as skipped).
    pub max_shadow_body_bytes: Option<Spanned<u64>>,
    /// Shadow requests in flight at once; beyond it they are skipped.
    pub max_shadow_inflight: Option<Spanned<u64>>,
    /// Shed shadow copies while the proxy is short of headroom (default
    /// true): when, under sustained load, the primary's median latency
    /// rises more than
    /// `shadow_headroom_percent` above its floor, the share of requests
    /// copied is cut (and counted as `skipped_shed`), and grows back as
    /// latency recovers. `false`: only `max_shadow_inflight` bounds them.
    pub shadow_shedding: Option<bool>,
    /// Count every request by method and inferred path template for
    /// `strangler inventory` and the board (default true).
    pub inventory: Option<bool>,
    /// How far (percent) the primary's latency may rise above its floor
    /// before copies are shed (default 5; plus 0.05 ms of jitter). Only a
    /// busy proxy sheds: below 500 responses/s, or while its request
    /// threads use less than 60 % of their cores, every copy is made.
    pub shadow_headroom_percent: Option<Spanned<f64>>,
    /// Worker threads of the proxy (default: the number of CPUs).
    pub threads: Option<Spanned<u64>>,
    /// Write one JSON access-log line per request to stdout (default true).
    pub access_log: Option<bool>,
    /// Seconds SIGTERM waits for in-flight requests before exiting (default 10).
    pub drain_timeout_secs: Option<Spanned<u64>>,
    /// Load balancers and proxies in front (addresses or CIDRs) whose
    /// `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// `true` also speaks HTTP/2 without TLS (prior knowledge, "h2c") on
    /// `listen`; HTTP/1 clients are told apart by the connection preface
    /// (default false).
    pub h2c: Option<bool>,
    /// A second listener that speaks TLS. Off when absent.
    pub tls: Option<RawTls>,
}

/// `[proxy.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// A second listener for TLS clients (e.g. `0.0.0.0:8443`) beside the
    /// plain `proxy.listen`. Absent: `proxy.listen` itself speaks TLS.
    pub listen: Option<Spanned<String>>,
    /// PEM certificate chain, leaf first (relative to this file). Read
    /// again when it changes on disk and on SIGHUP; open connections keep
    /// theirs.
    #[serde(alias = "cert_file")]
    pub cert: Spanned<String>,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    #[serde(alias = "key_file")]
    pub key: Spanned<String>,
    /// Offer HTTP/2 through ALPN (`h2`, then `http/1.1`); default true.
    pub http2: Option<bool>,
}

/// `[upstreams.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `http://host:port`, or `https://host:port` for TLS to the upstream
    /// (the host is the name its certificate is checked against).
    pub url: Spanned<String>,
    /// PEM file of the certificate authorities an `https://` upstream's
    /// certificate must chain to (relative to this file); default: the
    /// public web PKI roots.
    pub ca_file: Option<Spanned<String>>,
    /// Path of an active health check (`GET`, 2xx = healthy). Off when unset.
    pub health_path: Option<Spanned<String>>,
    /// Interval between health checks in milliseconds (default 1000).
    pub health_interval_ms: Option<Spanned<u64>>,
    /// Time a health check may take in milliseconds (default 500).
    pub health_timeout_ms: Option<Spanned<u64>>,
    /// Consecutive failed checks that mark the upstream down (default 2).
    pub unhealthy_threshold: Option<Spanned<u32>>,
    /// Consecutive passed checks that mark it up again (default 1).
    pub healthy_threshold: Option<Spanned<u32>>,
    /// Time to establish a connection in milliseconds (default 1000).
    pub connect_timeout_ms: Option<Spanned<u64>>,
    /// Time to wait for each read from the upstream in milliseconds (default 30000).
    pub read_timeout_ms: Option<Spanned<u64>>,
}

/// `[[routes]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name; used by the CLI, the admin API, metrics and the sticky hash.
    pub name: Spanned<String>,
    /// HTTP methods; empty or absent means every method.
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    /// Path template: `{param}` matches one segment, `{*rest}` the tail.
    pub path: Spanned<String>,
    /// The upstream that takes this endpoint over.
    pub service: Option<Spanned<String>>,
    /// `legacy` | `shadow` | `canary` | `migrated` (default `legacy`).
    pub stage: Option<Spanned<String>>,
    /// Canary share in percent, 0.0..=100.0.
    pub percent: Option<Spanned<f64>>,
    /// `header:NAME` | `cookie:NAME` | `client-ip` | `none` (default `client-ip`).
    pub sticky: Option<Spanned<String>>,
    /// Requests allowed per client (`[routes.rate_limit]`).
    pub rate_limit: Option<RawRateLimit>,
    /// How many requests the service already answered (5xx) or broke off
    /// may be tried again on the monolith at once (`[routes.retry_budget]`).
    pub retry_budget: Option<RawRetryBudget>,
    /// Seconds an upstream connection of this route may stay without a
    /// byte read (a WebSocket, a stream of server-sent events, a long
    /// poll); overrides the upstream's `read_timeout_ms`.
    pub idle_timeout_secs: Option<Spanned<u64>>,
    /// Milliseconds from the request's arrival within which the upstream
    /// must answer, retries and fallback included: each attempt's connect
    /// and every read get what is left of it. Beyond: 504, or the monolith
    /// for a safe method when the service was too slow and time is left.
    /// Not with `idle_timeout_secs` (streams outlive any deadline).
    /// Default: none (only the read timeouts).
    pub timeout_ms: Option<Spanned<u64>>,
    /// Largest request body accepted, in bytes; beyond, the client gets
    /// 413 and nothing of it reaches an upstream (default: no limit).
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Let the monolith answer when the service fails (default true).
    pub fallback: Option<bool>,
    /// Share of requests shadowed, in percent (default 100).
    pub shadow_percent: Option<Spanned<f64>>,
    /// Methods that may be shadowed (default GET, HEAD).
    pub shadow_methods: Option<Vec<Spanned<String>>>,
    /// Monolith tables this endpoint reads (`schema.table`).
    #[serde(default)]
    pub tables: Vec<Spanned<String>>,
    /// How responses are compared in shadow.
    #[serde(default)]
    pub compare: RawCompare,
    /// What `strangler route promote` requires, and when the router rolls back.
    #[serde(default)]
    pub promote: RawPromote,
}

/// `[routes.promote]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPromote {
    /// Canary percents `promote` steps through (default [1, 10, 50]).
    pub canary_steps: Option<Vec<Spanned<f64>>>,
    /// Highest service error rate (5xx and failed connections, percent of
    /// the requests meant for the service) for promotion and before an
    /// automatic rollback (default 1.0).
    pub max_error_rate: Option<Spanned<f64>>,
    /// Highest CDC lag of any listed table, in bytes of WAL (default 16 MiB).
    pub max_lag_bytes: Option<Spanned<u64>>,
    /// Roll a canary back to legacy when its error rate stays above the
    /// bound over `rollback_window_secs` (default true).
    pub auto_rollback: Option<bool>,
    /// The window for error rates, in seconds (default 120).
    pub window_secs: Option<Spanned<u64>>,
    /// Requests meant for the service within the window before any
    /// automatic rollback (default 20).
    pub min_requests: Option<Spanned<u64>>,
    /// Allowed real-mismatch rate of the shadow verdict, in percent (default 0.1).
    pub max_mismatch: Option<Spanned<f64>>,
    /// Comparisons needed before the shadow verdict can be READY (default 500).
    pub min_samples: Option<Spanned<u64>>,
}

/// `[routes.rate_limit]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Requests allowed per `per_seconds` (also the burst).
    pub requests: Spanned<u64>,
    /// The window, in seconds (default 1).
    pub per_seconds: Option<Spanned<u64>>,
    /// Who is limited: `client-ip` (default), `header:NAME`, `cookie:NAME`,
    /// or `none` (the whole route shares one limit).
    pub key: Option<Spanned<String>>,
}

/// `[routes.retry_budget]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBudget {
    /// Retries in flight allowed, in percent of the route's requests in
    /// flight to its service (default 20).
    pub percent: Option<Spanned<f64>>,
    /// Retries in flight always allowed, whatever the percent (default 3).
    pub min_concurrency: Option<Spanned<u32>>,
}

/// `[routes.compare]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    /// JSON Pointers to ignore; `*` matches one segment.
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
    /// Response headers not compared (added to the defaults).
    #[serde(default)]
    pub ignore_headers: Vec<Spanned<String>>,
    /// JSON Pointers of arrays compared as multisets.
    #[serde(default)]
    pub unordered_arrays: Vec<Spanned<String>>,
    /// Absolute tolerance for numbers.
    pub numeric_tolerance: Option<Spanned<f64>>,
    /// Extra JSON Pointers redacted from stored samples and reports.
    #[serde(default)]
    pub redact: Vec<Spanned<String>>,
    /// Extra header names whose values are never kept (besides
    /// authorization, proxy-authorization, cookie, set-cookie, x-api-key,
    /// x-auth-token).
    #[serde(default)]
    pub redact_headers: Vec<Spanned<String>>,
    /// Extra field-name patterns (case-insensitive substrings) whose values
    /// are never kept, in JSON and in `name=value` text (besides password,
    /// passwd, secret, token, api_key, apikey, credential, private_key).
    #[serde(default)]
    pub secret_fields: Vec<Spanned<String>>,
    /// Share of shadowed safe requests (GET, HEAD, OPTIONS) also sent a
    /// second time to the primary, to learn which fields are noise
    /// (percent, default 10).
    pub aa_percent: Option<Spanned<f64>>,
}

/// `[cdc]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCdc {
    /// The monolith's database.
    pub source: RawCdcSource,
    /// How change events travel.
    #[serde(default)]
    pub transport: RawCdcTransport,
    /// Databases the events are applied to.
    #[serde(default)]
    pub sinks: Vec<RawCdcSink>,
    /// Outbox tables whose inserts become events (Debezium's outbox event
    /// router; Kafka transport).
    #[serde(default)]
    pub outbox: Vec<RawOutbox>,
}

/// `[[cdc.outbox]]`: a captured table whose inserted rows are events on
/// `<topic_prefix>.outbox.<aggregate type>`, keyed by the aggregate id,
/// the payload as value, the event id and type as headers. Column names
/// default to Debezium's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// `schema.table`; it must be in `cdc.source.tables`.
    pub table: Spanned<String>,
    /// Column of the event id (default `id`).
    pub id: Option<Spanned<String>>,
    /// Column routing the event to its topic (default `aggregatetype`).
    pub aggregate_type: Option<Spanned<String>>,
    /// Column of the record key (default `aggregateid`).
    pub aggregate_id: Option<Spanned<String>>,
    /// Column of the event type (default `type`).
    pub event_type: Option<Spanned<String>>,
    /// Column of the value (default `payload`).
    pub payload: Option<Spanned<String>>,
}

/// `[cdc.source]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCdcSource {
    /// `postgres` | `mysql` (MySQL or MariaDB; default `postgres`).
    pub kind: Option<Spanned<String>>,
    /// Environment variable holding the source database URL.
    pub url_env: Spanned<String>,
    /// kind = mysql: the server id the binlog reader registers with, unique
    /// among the server's replicas (default: derived from the slot name).
    pub server_id: Option<Spanned<i64>>,
    /// Replication slot name (default `strangler`).
    pub slot: Option<Spanned<String>>,
    /// Publication name (default `strangler`).
    pub publication: Option<Spanned<String>>,
    /// Tables captured (`schema.table`).
    pub tables: Vec<Spanned<String>>,
    /// `initial` | `never` (default `initial`).
    pub snapshot: Option<Spanned<String>>,
    /// Rows per table compared between source and every sink right after
    /// the snapshot (default 1000; 0 turns the check off).
    pub verify_after_snapshot: Option<Spanned<i64>>,
    /// MiB of one source transaction held in memory while it is read;
    /// beyond that it is spilled to a temporary file (default 64).
    pub transaction_memory_mb: Option<Spanned<i64>>,
    /// Rows per chunk of `cdc snapshot --table` (default 2000).
    pub snapshot_chunk_rows: Option<Spanned<i64>>,
    /// Source connections copying the initial snapshot at once, each
    /// joining the exported snapshot (default 2).
    pub snapshot_workers: Option<Spanned<i64>>,
}

/// `[cdc.transport]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCdcTransport {
    /// `kafka` | `embedded` (default `embedded`).
    pub kind: Option<Spanned<String>>,
    /// Kafka bootstrap servers (kind = kafka).
    pub brokers: Option<Spanned<String>>,
    /// Topics are `<topic_prefix>.<schema>.<table>` (default `strangler`).
    pub topic_prefix: Option<Spanned<String>>,
    /// Debezium's `decimal.handling.mode`: `precise` | `string` | `double`.
    pub decimal_handling: Option<Spanned<String>>,
    /// Debezium's `time.precision.mode`: `adaptive` | `connect`.
    pub time_precision: Option<Spanned<String>>,
    /// Debezium's `interval.handling.mode`: `numeric` | `string`.
    pub interval_handling: Option<Spanned<String>>,
    /// Debezium's `binary.handling.mode`: `bytes` | `base64` | `hex`.
    pub binary_handling: Option<Spanned<String>>,
    /// Kafka Connect's JSON converter `schemas.enable`: `{schema, payload}`.
    #[serde(default)]
    pub schemas_enable: bool,
    /// The consumer group of each sink's workers; `{sink}` is the sink's
    /// name (default `strangler-{sink}`). Environments sharing a Kafka
    /// cluster need groups of their own.
    pub consumer_group: Option<Spanned<String>>,
    /// `client.id` of strangler's Kafka clients (default librdkafka's).
    pub client_id: Option<Spanned<String>>,
    /// librdkafka properties passed as they are (TLS, SASL, timeouts). A key
    /// ending in `.env` names an environment variable holding the value,
    /// one ending in `.file` a file (relative to this file) holding it:
    /// `"sasl.password.env" = "KAFKA_PASSWORD"`.
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<String>>,
}

/// `[[cdc.sinks]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCdcSink {
    /// Unique sink name (also its consumer group).
    pub name: Spanned<String>,
    /// Environment variable holding the target database URL.
    pub url_env: Spanned<String>,
    /// Apply service tables back into the monolith (reverse sync).
    #[serde(default)]
    pub reverse: bool,
    /// Connections the embedded sink applies through (default 1).
    pub connections: Option<Spanned<u64>>,
    /// Table mappings.
    #[serde(default)]
    pub tables: Vec<RawCdcTable>,
}

/// `[[cdc.sinks.tables]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCdcTable {
    /// Source table (`schema.table`).
    pub source: Spanned<String>,
    /// Target table (`schema.table`); default: the source name.
    pub target: Option<Spanned<String>>,
    /// Source column → target column.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Source columns not written to the target.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A column dropped on the source is dropped in the target too
    /// (default `false`: kept, holding nulls from then on).
    #[serde(default)]
    pub drop_columns: bool,
}
