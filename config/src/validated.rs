//! What the code runs on: produced only by validation.
//!
//! (Over 400 lines: every section's validated type in one place, so the
//! config's whole shape reads top to bottom; the logic is in `validate/`.)

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::PathTemplate;

/// The name every config must give the monolith's upstream.
pub const LEGACY: &str = "legacy";

/// A validated `strangler.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The first 12 hex digits of the SHA-256 of the file's text: what a
    /// proxy reports it runs, and what the audit log records.
    pub revision: String,
    pub state: StateConfig,
    pub proxy: ProxyConfig,
    /// Every upstream by name, `legacy` included.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes in file order.
    pub routes: Vec<Route>,
    pub cdc: Option<CdcConfig>,
    pub telemetry: Option<TelemetryConfig>,
}

impl Config {
    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }
}

impl StateConfig {
    /// The store's URL, or why there is none: `state.url_env` names a
    /// variable that is not set.
    pub fn store_url(&self) -> Result<&str, String> {
        match &self.missing_env {
            Some(var) => Err(format!(
                "state.url_env names {var}, which is not set (or empty): set it to the state store's URL (every proxy and the CLI of a fleet must share one store)"
            )),
            None => Ok(&self.url),
        }
    }
}

/// `[state]`, validated.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// A sqlx URL (`sqlite://…` with an absolute path, or `postgres://…`).
    pub url: String,
    /// How often a proxy polls the store for changes made elsewhere.
    pub poll_interval: Duration,
    /// The environment variable the URL came from, if any.
    pub url_env: Option<String>,
    /// `url_env` names a variable that is not set (or empty): `url` is not
    /// to be used ([`StateConfig::store_url`] says so).
    pub missing_env: Option<String>,
    /// The proxy's cache of the last route state it read.
    pub cache_file: PathBuf,
}

/// `[proxy]`, validated.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub admin_token_env: Option<String>,
    /// Named credentials with roles (absolute path).
    pub admin_tokens_file: Option<PathBuf>,
    /// JWT bearer tokens from an OIDC identity provider.
    pub oidc: Option<OidcConfig>,
    /// An admin listener beyond loopback may run without credentials.
    pub admin_insecure: bool,
    /// `/metrics` needs no token.
    pub metrics_public: bool,
    /// Lower-cased header name.
    pub override_header: Option<String>,
    pub max_shadow_body_bytes: u64,
    pub max_shadow_inflight: u64,
    pub shadow_shedding: bool,
    /// Count requests into the endpoint inventory.
    pub inventory: bool,
    /// 0.1 = 10 %.
    pub shadow_headroom: f64,
    pub threads: usize,
    pub access_log: bool,
    pub drain_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed: the client is the last
    /// address there that is not one of these.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// HTTP/2 by prior knowledge on `listen`.
    pub h2c: bool,
    pub tls: Option<TlsListener>,
}

/// `[telemetry]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The traces URL (`…/v1/traces`).
    pub otlp_endpoint: String,
    /// 0.0-1.0.
    pub sample_ratio: f64,
    pub service_name: String,
}

/// `[proxy.tls]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsListener {
    /// A listener of its own; `None`: `proxy.listen` speaks TLS.
    pub listen: Option<SocketAddr>,
    /// Absolute paths.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// ALPN offers `h2`.
    pub http2: bool,
}

/// `proxy.oidc_*`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    pub jwks_url: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub roles_claim: String,
    pub name_claim: String,
}

/// `[upstreams.NAME]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    /// The URL as written.
    pub url: String,
    /// `host:port` (the port defaulted to 80, or 443 with TLS). Names are resolved when the
    /// router builds its routing table, not when the file is checked: a
    /// config names hosts (Kubernetes services) the checking machine may not
    /// know.
    pub authority: String,
    pub health: Option<HealthCheck>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Set for an `https://` URL.
    pub tls: Option<UpstreamTls>,
}

/// TLS to an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// The name its certificate must carry (the URL's host).
    pub server_name: String,
    /// Roots to trust instead of the public ones (absolute path).
    pub ca_file: Option<PathBuf>,
}

impl Upstream {
    /// `http://authority` or `https://authority`: where a request line's
    /// path is appended.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// Resolves the authority to an address (blocking DNS).
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        self.authority.to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.authority),
            )
        })
    }
}

/// Active health check settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

/// Migration stage of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// The monolith answers everything.
    Legacy,
    /// The monolith answers; the service gets a copy.
    Shadow,
    /// `percent` of sticky users are answered by the service.
    Canary,
    /// The service answers everything.
    Migrated,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Legacy, Stage::Shadow, Stage::Canary, Stage::Migrated];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Legacy => "legacy",
            Stage::Shadow => "shadow",
            Stage::Canary => "canary",
            Stage::Migrated => "migrated",
        }
    }
}

impl serde::Serialize for Stage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Stage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown stage {s:?} (expected legacy, shadow, canary or migrated)")
            })
    }
}

/// `[routes.rate_limit]`, validated: `requests` per `per` for each key
/// (`Sticky::None`: one limit for the whole route), bursts up to
/// `requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub key: Sticky,
}

/// `[routes.retry_budget]`, validated: retries in flight allowed while
/// fewer than `max(min_concurrency, percent % of the requests in flight)`
/// (Envoy's retry budget).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Percent (20.0 for 20 %).
    pub percent: f64,
    pub min_concurrency: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            percent: 20.0,
            min_concurrency: 3,
        }
    }
}

/// Where the sticky key of a canary comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// A request header (lower-cased name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
    /// No stickiness: each request is placed at random.
    None,
}

impl FromStr for Sticky {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown sticky key {s:?} (expected header:NAME, cookie:NAME, client-ip or none)"
            )
        };
        match s {
            "client-ip" => Ok(Sticky::ClientIp),
            "none" => Ok(Sticky::None),
            _ => match s.split_once(':') {
                Some(("header", name)) if is_token(name) => {
                    Ok(Sticky::Header(name.to_ascii_lowercase()))
                }
                Some(("cookie", name)) if is_token(name) => Ok(Sticky::Cookie(name.to_string())),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for Sticky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sticky::Header(n) => write!(f, "header:{n}"),
            Sticky::Cookie(n) => write!(f, "cookie:{n}"),
            Sticky::ClientIp => f.write_str("client-ip"),
            Sticky::None => f.write_str("none"),
        }
    }
}

/// An HTTP token (header names, cookie names, methods).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A `[[routes]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// Upper-cased methods; empty means every method.
    pub methods: Vec<String>,
    pub path: PathTemplate,
    /// The upstream that takes over; `None` only in stage legacy.
    pub service: Option<String>,
    pub stage: Stage,
    pub percent: f64,
    pub sticky: Sticky,
    /// Requests allowed per client, answered 429 beyond.
    pub rate_limit: Option<RateLimit>,
    /// How many fallbacks after the service answered or broke off may be
    /// in flight at once.
    pub retry_budget: RetryBudget,
    /// How long an upstream connection of the route may stay without a
    /// byte read (`None`: the upstream's read timeout).
    pub idle_timeout: Option<Duration>,
    /// The upstream must start answering within this of the request's
    /// arrival (`None`: no deadline).
    pub timeout: Option<Duration>,
    /// Largest request body accepted (`None`: no limit).
    pub max_body_bytes: Option<u64>,
    pub fallback: bool,
    pub shadow_percent: f64,
    pub shadow_methods: Vec<String>,
    pub tables: Vec<String>,
    pub compare: CompareRules,
    pub promote: PromoteRules,
}

/// `[routes.promote]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PromoteRules {
    /// Ascending canary percents.
    pub canary_steps: Vec<f64>,
    /// Fraction (0.01 for 1 %).
    pub max_error_rate: f64,
    pub max_lag_bytes: u64,
    pub auto_rollback: bool,
    pub window: Duration,
    pub min_requests: u64,
    /// Fraction (0.001 for 0.1 %).
    pub max_mismatch: f64,
    pub min_samples: u64,
}

impl Default for PromoteRules {
    fn default() -> Self {
        PromoteRules {
            canary_steps: vec![1.0, 10.0, 50.0],
            max_error_rate: 0.01,
            max_lag_bytes: 16 << 20,
            auto_rollback: true,
            window: Duration::from_secs(120),
            min_requests: 20,
            max_mismatch: 0.001,
            min_samples: 500,
        }
    }
}

/// `[routes.compare]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRules {
    pub ignore: Vec<String>,
    /// Lower-cased header names (added to the comparator's defaults).
    pub ignore_headers: Vec<String>,
    pub unordered_arrays: Vec<String>,
    pub numeric_tolerance: f64,
    pub redact: Vec<String>,
    /// Lower-cased header names redacted besides the defaults.
    pub redact_headers: Vec<String>,
    /// Lower-cased field-name patterns redacted besides the defaults.
    pub secret_fields: Vec<String>,
    /// Percent of shadowed safe requests also sent twice to the primary (A/A).
    pub aa_percent: f64,
}

impl Default for CompareRules {
    fn default() -> Self {
        CompareRules {
            ignore: Vec::new(),
            ignore_headers: Vec::new(),
            unordered_arrays: Vec::new(),
            numeric_tolerance: 0.0,
            redact: Vec::new(),
            redact_headers: Vec::new(),
            secret_fields: Vec::new(),
            aa_percent: 10.0,
        }
    }
}

/// `[cdc]`, validated.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub source: CdcSource,
    pub transport: CdcTransport,
    /// How values are represented in change events (`[cdc.transport]`).
    pub format: EventFormat,
    pub sinks: Vec<CdcSink>,
    /// `[[cdc.outbox]]`: outbox tables routed as events.
    pub outbox: Vec<Outbox>,
}

/// An outbox table and its columns (Debezium's outbox event router).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    pub table: TableName,
    pub id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: String,
}

/// Debezium's representation options, with Debezium's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventFormat {
    pub decimal: DecimalHandling,
    pub time: TimePrecision,
    pub interval: IntervalHandling,
    pub binary: BinaryHandling,
    /// `{schema, payload}` like Kafka Connect's JSON converter with schemas.
    pub schemas: bool,
}

/// `decimal.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalHandling {
    /// `org.apache.kafka.connect.data.Decimal` (fixed scale) or
    /// `io.debezium.data.VariableScaleDecimal`: unscaled bytes.
    #[default]
    Precise,
    String,
    Double,
}

/// `time.precision.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimePrecision {
    /// Milliseconds for precision ≤ 3, microseconds above.
    #[default]
    Adaptive,
    /// Kafka Connect's `Date`, `Time`, `Timestamp`: milliseconds.
    Connect,
}

/// `interval.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntervalHandling {
    /// `io.debezium.time.MicroDuration` (a month counts 30.4375 days).
    #[default]
    Numeric,
    /// `io.debezium.time.Interval`: ISO 8601 `P1Y2M3DT4H5M6.78S`.
    String,
}

/// `binary.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BinaryHandling {
    /// Connect `BYTES` (base64 in JSON).
    #[default]
    Bytes,
    Base64,
    Hex,
}

#[derive(Debug, Clone)]
pub struct CdcSource {
    pub kind: SourceKind,
    pub url_env: String,
    pub slot: String,
    pub publication: String,
    pub tables: Vec<TableName>,
    pub snapshot: SnapshotMode,
    /// Rows per table checked against every sink right after a snapshot (0: off).
    pub verify_after_snapshot: u32,
    /// Bytes of one source transaction held in memory before the rest
    /// is spilled to a temporary file.
    pub transaction_memory: usize,
    /// Rows per chunk of a chunked snapshot (`cdc snapshot --table`).
    pub snapshot_chunk_rows: usize,
    /// Source connections copying the initial snapshot at once.
    pub snapshot_workers: usize,
}

/// What the monolith's database is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// PostgreSQL, read through logical replication (pgoutput).
    #[default]
    Postgres,
    /// MySQL or MariaDB, read through the row-based binlog as a replica
    /// registered with `server_id`.
    MySql { server_id: u32 },
}

impl SourceKind {
    pub fn is_mysql(self) -> bool {
        matches!(self, SourceKind::MySql { .. })
    }
}

/// The binlog reader's server id when none is configured: derived from
/// the slot name (FNV-1a), in 0x5354_0000..0x5354_FFFF ("ST"), so two
/// slots read with two ids and a restart reuses its own.
pub fn default_server_id(slot: &str) -> u32 {
    let h = slot.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    0x5354_0000 | (h & 0xffff)
}

/// Source connections copying the initial snapshot at once by default.
pub const DEFAULT_SNAPSHOT_WORKERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    Initial,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CdcTransport {
    Kafka {
        brokers: String,
        topic_prefix: String,
        /// `[cdc.transport.properties]`, secrets not yet read.
        properties: Vec<KafkaProperty>,
        /// `{sink}` is the sink's name.
        consumer_group: String,
        client_id: Option<String>,
    },
    Embedded {
        topic_prefix: String,
    },
}

/// The consumer group when none is configured.
pub const DEFAULT_CONSUMER_GROUP: &str = "strangler-{sink}";

/// librdkafka properties strangler sets itself and its guarantees rest on
/// (idempotent, acknowledged publishing; offsets committed with the rows):
/// `[cdc.transport.properties]` cannot change them.
pub const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "client.id",
    "enable.idempotence",
    "acks",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
];

/// One `[cdc.transport.properties]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    /// The librdkafka property (without `.env`/`.file`).
    pub name: String,
    pub source: PropertySource,
}

/// Where a property's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertySource {
    Value(String),
    /// An environment variable, read when `cdc run` starts.
    Env(String),
    /// A file (absolute path), read when `cdc run` starts.
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct CdcSink {
    pub name: String,
    pub url_env: String,
    pub reverse: bool,
    /// Connections the embedded sink applies through, rows partitioned by
    /// table and key (1: one connection, source transactions whole).
    pub connections: usize,
    pub tables: Vec<TableMapping>,
}

#[derive(Debug, Clone)]
pub struct TableMapping {
    pub source: TableName,
    pub target: TableName,
    pub rename: BTreeMap<String, String>,
    pub exclude: Vec<String>,
    /// A column dropped on the source is dropped in the target too
    /// (otherwise kept, nulls from then on).
    pub drop_columns: bool,
}

/// `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl FromStr for TableName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ident =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match s.split_once('.') {
            Some((schema, table)) if ident(schema) && ident(table) => Ok(TableName {
                schema: schema.to_string(),
                table: table.to_string(),
            }),
            _ => Err(format!(
                "table {s:?} must be written schema.table (letters, digits, '_')"
            )),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}
