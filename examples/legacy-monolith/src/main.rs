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

fn is_mysql(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    match Cli::parse().command {
        Command::Serve(args) => {
            // A mysql:// URL: the MySQL/MariaDB flavour.
            let app = if is_mysql(&args.database_url) {
                legacy_monolith::mysql::app(
                    legacy_monolith::mysql::connect(&args.database_url).await?,
                )
            } else {
                app(connect(&args.database_url, &MIGRATOR).await?)
            };
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            tracing::info!(listen = %listener.local_addr()?, "legacy monolith serving");
            serve(listener, app, shutdown_signal()).await
        }
        Command::Seed(args) => {
            let s = if is_mysql(&args.database_url) {
                let pool = legacy_monolith::mysql::connect(&args.database_url).await?;
                legacy_monolith::mysql::seed::seed(&pool, &args).await?
            } else {
                seed(&connect(&args.database_url, &MIGRATOR).await?, &args).await?
            };
            println!(
                "seeded {} products, {} customers, {} orders ({} items)",
                s.products, s.customers, s.orders, s.order_items
            );
            Ok(())
        }
    }
}
