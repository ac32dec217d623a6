//! `strangler plan -c NEW.toml`: what a config change would do to the
//! fleet, route by route, before it is merged (like `terraform plan`).
//!
//! Exit 0 when every change would apply, 1 when something would be held
//! (a gate fails, or the route is on hold since a rollback), 2 when the
//! file is bad. The store is only read.

use serde_json::json;
use strangler_config::Stage;
use strangler_router::gates::reconcile::{self, Action};
use strangler_state::route_state::Target;

use crate::cli::Common;
use crate::output::{percent, table};
use crate::Exit;

pub fn run(args: &Common) -> anyhow::Result<Exit> {
    let Some(config) = crate::load_config(&args.config) else {
        return Ok(Exit::Usage);
    };
    crate::block_on(async {
        let store = crate::open_store(&config).await?;
        let planned = reconcile::plan(&config, &store).await?;
        store.close().await;
        let held = planned.iter().any(|p| p.action.is_held());
        if args.json {
            println!(
                "{}",
                json!({ "revision": config.revision, "held": held, "routes": planned })
            );
        } else {
            let rows: Vec<Vec<String>> = planned
                .iter()
                .map(|p| {
                    vec![
                        p.route.clone(),
                        text(&p.current),
                        text(&p.declared),
                        match &p.action {
                            Action::Same => "no change".into(),
                            Action::Adopt { .. } => "new: runs as declared".into(),
                            Action::Apply { to } => {
                                format!("→ {} (a step back: applies)", text(to))
                            }
                            Action::Promote { to, .. } => {
                                format!("→ {} (gates pass: applies)", text(to))
                            }
                            a @ (Action::HeldByGates { .. } | Action::HeldByRollback { .. }) => {
                                a.why()
                            }
                        },
                    ]
                })
                .collect();
            table(&["ROUTE", "FLEET NOW", "FILE", "WOULD"], &rows);
            for p in &planned {
                if let Action::HeldByGates { gates, .. } = &p.action {
                    for g in gates.iter().filter(|g| !g.ok) {
                        println!("  {}: gate {} failed: {}", p.route, g.name, g.detail);
                    }
                }
            }
            println!(
                "\n{}",
                if held {
                    "something would be held: merging this file would not move every route it changes"
                } else {
                    "every change would apply"
                }
            );
        }
        Ok(if held { Exit::Failed } else { Exit::Ok })
    })
}

fn text(t: &Target) -> String {
    if t.stage == Stage::Canary {
        format!("canary {}", percent(t.percent))
    } else {
        t.stage.to_string()
    }
}
