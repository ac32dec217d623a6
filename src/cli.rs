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
    /// Validate the configuration; exit 2 printing file:line:col and the key on error.
    Check(Common),
    /// Run the router.
    Proxy(Common),
    /// List, change, roll back and audit routes.
    Route(RouteArgs),
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
    #[command(subcommand)]
    pub command: RouteCommand,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Every route: match, stage, percent, service.
    List,
    /// Move a route to a stage (and percent).
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
    },
    /// Send a route straight back to legacy.
    Rollback {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The audit log of a route.
    History { name: String },
}
