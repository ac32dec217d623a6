//! `strangler`: parse arguments, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = strangler::cli::Cli::parse();
    match strangler::run(cli) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            strangler::Exit::Failed.into()
        }
    }
}
