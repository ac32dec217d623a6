//! `traffic --base-url URL [--rate N] [--duration S] …`

use clap::Parser;

/// Drive a realistic request mix against the example shop.
#[derive(Debug, Parser)]
#[command(name = "traffic", version)]
struct Cli {
    #[command(flatten)]
    opts: traffic::Options,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = traffic::run(cli.opts).await?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if report.errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
