//! `legacy-monolith serve | seed`

use clap::{Parser, Subcommand};
use legacy_monolith::seed::{seed, SeedArgs};
use legacy_monolith::{app, MIGRATOR};
use shop_common::{connect, init_tracing, serve, shutdown_signal, ServeArgs};

/// The example e-commerce monolith.
#[derive(Debug, Parser)]
#[command(name = "legacy-monolith", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the shop's HTTP API (applies the schema first).
    Serve(ServeArgs),
    /// Fill the database deterministically.
    Seed(SeedArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    match Cli::parse().command {
        Command::Serve(args) => {
            let pool = connect(&args.database_url, &MIGRATOR).await?;
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            tracing::info!(listen = %listener.local_addr()?, "legacy monolith serving");
            serve(listener, app(pool), shutdown_signal()).await
        }
        Command::Seed(args) => {
            let pool = connect(&args.database_url, &MIGRATOR).await?;
            let s = seed(&pool, &args).await?;
            println!(
                "seeded {} products, {} customers, {} orders ({} items)",
                s.products, s.customers, s.orders, s.order_items
            );
            Ok(())
        }
    }
}
