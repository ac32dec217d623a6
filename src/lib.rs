//! The `strangler` command line: one file per command group.

pub mod cdc;
pub mod check;
pub mod cli;
pub mod demo;
pub mod init;
pub mod inventory;
pub mod migrate;
mod output;
pub mod plan;
pub mod proxy;
pub mod route;
mod route_admin;
pub mod shadow;
pub mod status;
pub mod teardown;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Exit codes: 0 success, 1 a failed check, 2 a usage or configuration error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A usage or configuration problem found while running (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs a command's work on a single-threaded runtime (every command but
/// `proxy` and `demo` is one sequence of awaits).
pub(crate) fn block_on<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

/// Connects to the config's state store; an unset `state.url_env`
/// variable is a [`UsageError`].
/// The configuration at `path`; its errors (file:line:col: key: message)
/// printed when it does not load (the command then exits 2).
pub(crate) fn load_config(path: &std::path::Path) -> Option<strangler_config::Config> {
    strangler_config::Config::load(path)
        .map_err(|e| eprintln!("{e}"))
        .ok()
}

pub(crate) async fn open_store(
    config: &strangler_config::Config,
) -> anyhow::Result<strangler_state::StateStore> {
    let url = config.state.store_url().map_err(UsageError)?;
    match strangler_state::StateStore::connect(url).await {
        Ok(s) => Ok(s),
        // Another schema version: the operator's move (`strangler migrate`
        // or another binary), not a failure to retry.
        Err(e @ strangler_state::store::StoreError::Schema(_)) => {
            Err(UsageError(e.to_string()).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let default_level = if matches!(cli.command, Command::Proxy(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRANGLER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Init(args) => init::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Proxy(args) => proxy::run(&args),
        Command::Route(args) => route::run(args),
        Command::Shadow(args) => shadow::run(args),
        Command::Cdc(args) => cdc::run(args),
        Command::Status(args) => status::run(args),
        Command::Inventory(args) => inventory::run(&args),
        Command::Demo(args) => demo::run(args),
        Command::Plan(args) => plan::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Doctor(args) => cdc::doctor(&args),
    }
}
