//! `strangler`: parse arguments, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

// Pingora's request path allocates a lot; glibc's malloc cost ~15 % of the
// proxy's CPU in bench/router (perf), mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = strangler::cli::Cli::parse();
    match strangler::run(cli) {
        Ok(code) => code.into(),
        Err(e) if e.downcast_ref::<strangler::UsageError>().is_some() => {
            eprintln!("error: {e:#}");
            strangler::Exit::Usage.into()
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            strangler::Exit::Failed.into()
        }
    }
}
