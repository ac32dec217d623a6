//! Arguments of every command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Migrate a legacy monolith to services, one endpoint at a time.
#[derive(Debug, Parser)]
#[command(name = "strangler", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a starting strangler.toml (every OpenAPI path a route in stage legacy).
    Init(InitArgs),
    /// Validate the configuration; exit 2 printing file:line:col and the key on error.
    Check(Common),
    /// Run the router.
    Proxy(Common),
    /// List, change, roll back and audit routes.
    Route(RouteArgs),
    /// Shadow comparison: reports, the cut-over gate, noise suggestions.
    Shadow(ShadowArgs),
    /// Change data capture: the monolith's tables into each service's database.
    Cdc(CdcArgs),
    /// The migration board: every endpoint, its stage, shadow verdict, CDC lag, errors.
    Status(StatusArgs),
    /// The endpoints the proxies have seen, by method and inferred path
    /// template, with volume, latency, errors and the route that covers
    /// each; `--emit-routes` appends the uncovered ones to the config file
    /// as routes in stage legacy.
    Inventory(InventoryArgs),
    /// The whole example migration, locally, end to end.
    Demo(DemoArgs),
    /// What a config file would do to the fleet, route by route (a CI step
    /// for a config repository): exit 0 when every change would apply, 1
    /// when something would be held, 2 on a bad file.
    Plan(Common),
    /// What strangler made in the databases: slots with the WAL they hold
    /// back, publications, origins, bookkeeping; exit 1 when something is
    /// left over (not in this configuration).
    Doctor(Common),
    /// Bring the state store's schema to this version (once per upgrade,
    /// before new proxies start; they refuse a store at another version).
    Migrate(Common),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Do not pause between steps.
    #[arg(long)]
    pub non_interactive: bool,
    /// Use a Kafka broker instead of the embedded transport.
    #[arg(long)]
    pub kafka: Option<String>,
    /// The monolith on MySQL/MariaDB (Debian's mariadb-server) instead of
    /// PostgreSQL: CDC reads its binlog, reverse sync writes into it.
    #[arg(long)]
    pub mysql: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub common: Common,
    /// The monolith's OpenAPI document (JSON or YAML).
    #[arg(long)]
    pub openapi: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// Append every template no route covers to the config file as a
    /// route in stage legacy (comments and layout kept).
    #[arg(long)]
    pub emit_routes: bool,
    /// Leave out templates with fewer requests than this.
    #[arg(long, default_value_t = 1)]
    pub min_requests: u64,
    /// Show at most this many templates (the most requested).
    #[arg(long, default_value_t = 100)]
    pub top: usize,
    /// Forget what the inventory holds (it starts counting again).
    #[arg(long, conflicts_with = "emit_routes")]
    pub reset: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// Refresh in place every 2 seconds.
    #[arg(long)]
    pub watch: bool,
    /// Hours of migration progress shown under the board.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "STRANGLER_CONFIG",
        default_value = "strangler.toml"
    )]
    pub config: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(flatten)]
    pub common: Common,
    /// Act through this proxy's admin API (`http://HOST:PORT`) instead of
    /// the state store: no database credentials needed, and the audit log
    /// records the token's identity. The token comes from
    /// `STRANGLER_ADMIN_TOKEN`.
    #[arg(long, global = true, env = "STRANGLER_ADMIN")]
    pub admin: Option<String>,
    #[command(subcommand)]
    pub command: RouteCommand,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Every route: match, stage, percent, service.
    List,
    /// Move a route to a stage (and percent): legacy is a rollback (held);
    /// a step forward runs the promotion gates.
    Set {
        name: String,
        /// legacy | shadow | canary | migrated
        #[arg(long)]
        stage: String,
        /// Canary share, 0..=100.
        #[arg(long)]
        percent: Option<f64>,
        /// Why; written to the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Move forward even though gates fail (needs --reason; audited).
        #[arg(long)]
        force: bool,
    },
    /// Move a route to its next stage/percent, if its gates pass.
    Promote {
        name: String,
        /// Canary percent to move to (100: migrated).
        #[arg(long)]
        to: Option<f64>,
        /// Promote even though gates fail (needs --reason; audited).
        #[arg(long, requires = "reason")]
        force: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Send a route straight back to legacy and hold it there, on every
    /// proxy and whatever any file says, until `route resume`.
    Rollback {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Roll back although the monolith lacks some of the service's
        /// writes (reverse sync behind); needs --reason, recorded as FORCED.
        #[arg(long)]
        force: bool,
    },
    /// Lift the hold a rollback put on a route; it then follows the fleet's
    /// declared state through its gates.
    Resume {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// The audit log of a route.
    History {
        name: String,
        /// Check the whole log's hash chain; exit 1 naming any edited or
        /// deleted entry.
        #[arg(long)]
        verify: bool,
    },
}

#[derive(Debug, Args)]
pub struct ShadowArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: ShadowCommand,
}

#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Per endpoint: samples, match rate, verdict, fields ranked by mismatches.
    Report {
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// html | md | json (default: from -o's extension, else md).
        #[arg(long)]
        format: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Exit 0 when the route is READY, 1 NOT READY, 2 too few samples.
    Gate {
        name: String,
        /// Allowed real-mismatch rate, in percent (default: the route's
        /// `[routes.promote] max_mismatch`, 0.1 % unless set).
        #[arg(long)]
        max_mismatch: Option<f64>,
        /// Comparisons needed before any verdict (default: the route's
        /// `[routes.promote] min_samples`, 500 unless set).
        #[arg(long)]
        min_samples: Option<u64>,
    },
    /// Suggested ignore rules learned from A/A traffic and value shapes.
    Noise {
        name: String,
        /// Write the suggestions into the config file.
        #[arg(long)]
        accept: bool,
    },
    /// Forget a route's shadow statistics (after fixing the service).
    Reset { name: String },
}

#[derive(Debug, Args)]
pub struct CdcArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: CdcCommand,
}

#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Create the publication and slot and take the initial snapshot, then
    /// stop; with `--table`, ask the running `cdc run` to copy one table
    /// again in chunks while streaming continues.
    Snapshot {
        /// Copy this captured table (`schema.table` or `table`) in chunks
        /// through the running pipeline (watermarks in the stream: changes
        /// made meanwhile win over the copied rows).
        #[arg(long)]
        table: Option<String>,
    },
    /// Snapshot if needed, then stream changes until SIGTERM or Ctrl-C.
    Run {
        /// Kafka transport: only publish (the sinks run elsewhere).
        #[arg(long, conflicts_with = "sinks_only")]
        source_only: bool,
        /// Kafka transport: only run the sinks as consumer-group members.
        #[arg(long)]
        sinks_only: bool,
        /// Serve Prometheus metrics on this address (GET /metrics).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Slot lag (bytes), confirmed throughput, last applied position per sink.
    Status,
    /// Remove what strangler made in the databases (slots, publications,
    /// replication origins, bookkeeping tables) and its CDC positions in the
    /// state store, after showing the list. Stop every `cdc run` first.
    Teardown {
        /// Only this sink: its origins and bookkeeping rows (a reverse
        /// sink: also its slot and publication on the service database).
        #[arg(long)]
        sink: Option<String>,
        /// Remove without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Compare source and target after mapping; exit 1 on any difference.
    Verify {
        /// Only this table (source or target, `schema.table` or `table`).
        #[arg(long)]
        table: Option<String>,
    },
    /// Run the reverse sinks: service tables back into the monolith's.
    Reverse,
}
