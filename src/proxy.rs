//! `strangler proxy`

use strangler_router::server::{self, StartError};

use crate::cli::Common;
use crate::Exit;

pub fn run(args: &Common) -> anyhow::Result<Exit> {
    match server::run(&args.config) {
        Ok(()) => Ok(Exit::Ok),
        Err(
            e @ (StartError::Config(_)
            | StartError::MissingToken(_)
            | StartError::StateUrl(_)
            | StartError::Tokens(_)
            | StartError::InsecureAdmin(_)),
        ) => {
            eprintln!("{e}");
            Ok(Exit::Usage)
        }
        Err(e) => Err(e.into()),
    }
}
