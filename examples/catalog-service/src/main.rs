//! `catalog-service serve --database-url URL --listen ADDR`

use catalog_service::{app, MIGRATOR};
use clap::{Parser, Subcommand};
use shop_common::{connect, init_tracing, serve, shutdown_signal, ServeArgs};

#[derive(Debug, Parser)]
#[command(name = "catalog-service", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (applies the schema first).
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    match Cli::parse().command {
        Command::Serve(args) => {
            let pool = connect(&args.database_url, &MIGRATOR).await?;
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            tracing::info!(listen = %listener.local_addr()?, "catalog-service serving");
            serve(listener, app(pool), shutdown_signal()).await
        }
    }
}
