//! `strangler migrate`: brings the state store's schema to this binary's
//! version. Run once per upgrade (a Kubernetes Job, a deploy step) before
//! the new proxies start; proxies and commands never change a schema that
//! exists, and refuse one at another version.

use serde_json::json;
use strangler_state::store::{Found, StateStore};

use crate::cli::Common;
use crate::{Exit, UsageError};

pub fn run(args: &Common) -> anyhow::Result<Exit> {
    let Some(config) = crate::load_config(&args.config) else {
        return Ok(Exit::Usage);
    };
    crate::block_on(async {
        let url = config.state.store_url().map_err(UsageError)?;
        let store = StateStore::lazy(url)?;
        let by = format!("strangler {} on {}", env!("CARGO_PKG_VERSION"), hostname());
        let migrated = match store.migrate(&by).await {
            Ok(m) => m,
            Err(e @ strangler_state::store::StoreError::Schema(_)) => {
                eprintln!("error: {e}");
                return Ok(Exit::Usage);
            }
            Err(e) => return Err(e.into()),
        };
        store.close().await;
        let from = match migrated.from {
            Found::Empty => None,
            Found::At(v) => Some(v),
        };
        if args.json {
            println!("{}", json!({"from": from, "to": migrated.to}));
        } else {
            match from {
                None => println!("state store created at schema version {}", migrated.to),
                Some(v) if v == migrated.to => {
                    println!("state store already at schema version {v}: nothing to do")
                }
                Some(v) => println!(
                    "state store migrated from schema version {v} to {}",
                    migrated.to
                ),
            }
        }
        Ok(Exit::Ok)
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}
