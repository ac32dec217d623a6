//! `strangler route list | set | rollback | history`
//!
//! These talk to the state store directly (not to a proxy), so they work
//! with no proxy running; every proxy sharing the store obeys within
//! `state.poll_interval_ms`.

use serde_json::json;
use strangler_config::{Config, Stage};
use strangler_state::route_state::{check_target, effective, Origin};
use strangler_state::store::{AuditEntry, StateStore};

use crate::cli::{Common, RouteArgs, RouteCommand};
use crate::output::{percent, table};
use crate::Exit;

pub fn run(args: RouteArgs) -> anyhow::Result<Exit> {
    let config = match Config::load(&args.common.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(Exit::Usage);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = StateStore::connect(&config.state.url).await?;
        let exit = match args.command {
            RouteCommand::List => list(&config, &store, &args.common).await?,
            RouteCommand::Set {
                name,
                stage,
                percent,
                reason,
            } => {
                let stage = match stage.parse::<Stage>() {
                    Ok(s) => s,
                    Err(msg) => {
                        eprintln!("error: --stage: {msg}");
                        return Ok(Exit::Usage);
                    }
                };
                set(
                    &config,
                    &store,
                    &args.common,
                    &name,
                    stage,
                    percent,
                    &reason,
                )
                .await?
            }
            RouteCommand::Rollback { name, reason } => {
                set(
                    &config,
                    &store,
                    &args.common,
                    &name,
                    Stage::Legacy,
                    None,
                    &reason,
                )
                .await?
            }
            RouteCommand::History { name } => history(&config, &store, &args.common, &name).await?,
            RouteCommand::Promote {
                name,
                to,
                force,
                reason,
            } => {
                promote(
                    &config,
                    &store,
                    &args.common,
                    &name,
                    to,
                    force,
                    reason.as_deref(),
                )
                .await?
            }
        };
        store.close().await;
        Ok(exit)
    })
}

fn match_text(methods: &[String], path: &str) -> String {
    if methods.is_empty() {
        format!("* {path}")
    } else {
        format!("{} {path}", methods.join(","))
    }
}

async fn list(config: &Config, store: &StateStore, args: &Common) -> anyhow::Result<Exit> {
    let overrides = store.overrides().await?;
    let stats = store.shadow_stats().await?;
    let stage_of = |r: &strangler_config::Route| {
        effective(r, overrides.iter().find(|o| o.route == r.name)).stage
    };
    let verdicts = strangler_shadow::report::summaries(config, stage_of, &stats, None);
    let verdict_of = |name: &str| verdicts.iter().find(|v| v.route == name).map(|v| v.verdict);
    let rows: Vec<_> = config
        .routes
        .iter()
        .map(|r| {
            (
                r,
                effective(r, overrides.iter().find(|o| o.route == r.name)),
            )
        })
        .collect();
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(r, e)| {
                json!({
                    "name": r.name, "methods": r.methods, "path": r.path.as_str(), "service": r.service,
                    "stage": e.stage, "percent": e.percent, "origin": e.origin, "shadow_verdict": verdict_of(&r.name),
                })
            })
            .collect();
        println!("{}", json!({ "routes": list }));
    } else {
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(r, e)| {
                vec![
                    r.name.clone(),
                    match_text(&r.methods, r.path.as_str()),
                    format!(
                        "{}{}",
                        e.stage,
                        if e.origin == Origin::Override {
                            "*"
                        } else {
                            ""
                        }
                    ),
                    if e.stage == Stage::Canary {
                        percent(e.percent)
                    } else {
                        "-".into()
                    },
                    r.service.clone().unwrap_or_else(|| "-".into()),
                    verdict_of(&r.name).filter(|v| v.samples > 0).map_or_else(
                        || "-".into(),
                        |v| format!("{} ({} samples)", v.status.label(), v.samples),
                    ),
                ]
            })
            .collect();
        table(
            &["NAME", "MATCH", "STAGE", "PERCENT", "SERVICE", "SHADOW"],
            &table_rows,
        );
        if rows.iter().any(|(_, e)| e.origin == Origin::Override) {
            println!("\n* set at run time (strangler route set / admin API); wins over the file until the file changes the route");
        }
    }
    Ok(Exit::Ok)
}

/// Who is making a change: `STRANGLER_ACTOR`, else `cli:USER@HOST`.
fn actor() -> String {
    if let Ok(a) = std::env::var("STRANGLER_ACTOR") {
        if !a.is_empty() {
            return a;
        }
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        format!("cli:{user}")
    } else {
        format!("cli:{user}@{host}")
    }
}

pub(crate) fn unknown_route(config: &Config, name: &str) -> Exit {
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    eprintln!(
        "error: no route {name:?} in {} (routes: {})",
        config.path.display(),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    Exit::Usage
}

async fn set(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
    stage: Stage,
    pct: Option<f64>,
    reason: &str,
) -> anyhow::Result<Exit> {
    let Some(route) = config.route(name) else {
        return Ok(unknown_route(config, name));
    };
    let overrides = store.overrides().await?;
    let current = effective(route, overrides.iter().find(|o| o.route == name));
    let target = match check_target(route, stage, pct, current) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(Exit::Usage);
        }
    };
    let entry = store.set_route(route, target, &actor(), reason).await?;
    if args.json {
        println!("{}", serde_json::to_string(&entry)?);
    } else {
        println!(
            "{name}: {} → {} (audit #{})",
            state_text(&entry.before),
            state_text(&entry.after),
            entry.id
        );
    }
    Ok(Exit::Ok)
}

fn state_text(s: &strangler_state::store::StageState) -> String {
    if s.stage == Stage::Canary {
        format!("canary {}", percent(s.percent))
    } else {
        s.stage.to_string()
    }
}

async fn history(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
) -> anyhow::Result<Exit> {
    if config.route(name).is_none() {
        return Ok(unknown_route(config, name));
    }
    let entries: Vec<AuditEntry> = store.history(name).await?;
    if args.json {
        println!("{}", json!({ "route": name, "history": entries }));
    } else if entries.is_empty() {
        println!("{name}: no changes recorded");
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    e.at.clone(),
                    e.actor.clone(),
                    state_text(&e.before),
                    state_text(&e.after),
                    e.reason.clone(),
                ]
            })
            .collect();
        table(&["ID", "AT", "ACTOR", "BEFORE", "AFTER", "REASON"], &rows);
    }
    Ok(Exit::Ok)
}

/// `strangler route promote`: the next step, if every gate passes (or `--force`).
async fn promote(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
    to: Option<f64>,
    force: bool,
    reason: Option<&str>,
) -> anyhow::Result<Exit> {
    use strangler_router::gates::{self, PromoteError, Promotion};
    match gates::promote(config, store, name, to, force, reason, &actor()).await {
        Err(PromoteError::UnknownRoute(_)) => Ok(unknown_route(config, name)),
        Err(PromoteError::NoStep(msg)) => {
            eprintln!("error: {msg}");
            Ok(Exit::Usage)
        }
        Err(e) => Err(e.into()),
        Ok(Promotion::Refused { to, gates }) => {
            let to_text = state_text(&to);
            if args.json {
                println!(
                    "{}",
                    json!({ "route": name, "promoted": false, "to": to_text, "gates": gates })
                );
            } else {
                eprintln!("{name}: refusing to promote to {to_text}:");
                for g in gates.iter().filter(|g| !g.ok) {
                    eprintln!("  gate {} failed: {}", g.name, g.detail);
                }
                eprintln!("(--force --reason \"…\" overrides; it is written to the audit log)");
            }
            Ok(Exit::Failed)
        }
        Ok(Promotion::Promoted { entry, gates, .. }) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "route": name, "promoted": true, "audit": entry, "gates": gates })
                );
            } else {
                println!(
                    "{name}: {} → {} (audit #{})",
                    state_text(&entry.before),
                    state_text(&entry.after),
                    entry.id
                );
            }
            Ok(Exit::Ok)
        }
    }
}
