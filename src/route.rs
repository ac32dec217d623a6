//! `strangler route list | set | promote | rollback | resume | history`
//!
//! These talk to the state store directly (not to a proxy), so they work
//! with no proxy running; every proxy sharing the store obeys within
//! `state.poll_interval_ms`. (About 450 lines: six commands' arguments and
//! printing; the decisions are in `strangler_router::gates`.) They act on the fleet's state of a route (the
//! store's row), never on this copy of the file, and say so when the file
//! differs from what the fleet runs.

use serde_json::json;
use strangler_config::{Config, Stage};
use strangler_router::gates::{self, PromoteError, Promotion, ResumeError, SetOutcome};
use strangler_state::audit::{verify, AuditEntry};
use strangler_state::route_state::{effective, Target};
use strangler_state::route_store::{RouteStore, Who, FLEET_WINDOW_MS};
use strangler_state::store::{now_ms, StateStore};

use crate::cli::{Common, RouteArgs, RouteCommand};
use crate::output::{percent, table};
use crate::Exit;

pub fn run(args: RouteArgs) -> anyhow::Result<Exit> {
    if let Some(admin) = &args.admin {
        return crate::route_admin::run(admin, &args);
    }
    let Some(config) = crate::load_config(&args.common.config) else {
        return Ok(Exit::Usage);
    };
    crate::block_on(async {
        let store = crate::open_store(&config).await?;
        let common = &args.common;
        let exit = match args.command {
            RouteCommand::List => list(&config, &store, common).await?,
            RouteCommand::Set {
                name,
                stage,
                percent,
                reason,
                force,
            } => {
                let stage = match stage.parse::<Stage>() {
                    Ok(s) => s,
                    Err(msg) => {
                        eprintln!("error: --stage: {msg}");
                        return Ok(Exit::Usage);
                    }
                };
                if force && reason.trim().is_empty() {
                    eprintln!("error: --force needs --reason (it is written to the audit log)");
                    return Ok(Exit::Usage);
                }
                set(
                    &config, &store, common, &name, stage, percent, force, &reason,
                )
                .await?
            }
            RouteCommand::Rollback {
                name,
                reason,
                force,
            } => {
                set(
                    &config,
                    &store,
                    common,
                    &name,
                    Stage::Legacy,
                    None,
                    force,
                    &reason,
                )
                .await?
            }
            RouteCommand::Resume { name, reason } => {
                resume(&config, &store, common, &name, &reason).await?
            }
            RouteCommand::History { name, verify } => {
                history(&config, &store, common, &name, verify).await?
            }
            RouteCommand::Promote {
                name,
                to,
                force,
                reason,
            } => promote(&config, &store, common, &name, to, force, reason.as_deref()).await?,
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

/// Warns when this file is not what the fleet runs: the command acts on
/// the fleet's state regardless.
async fn compare_with_fleet(config: &Config, store: &StateStore) -> anyhow::Result<()> {
    let fleet = store.proxies(now_ms() - FLEET_WINDOW_MS).await?;
    let others: Vec<&str> = fleet
        .iter()
        .filter(|p| p.revision != config.revision)
        .map(|p| p.revision.as_str())
        .collect();
    if !others.is_empty() {
        let mut revs = others.clone();
        revs.sort_unstable();
        revs.dedup();
        eprintln!(
            "note: {} is revision {}, but the fleet runs {}; acting on the fleet's state of the route, not on this file",
            config.path.display(),
            config.revision,
            revs.join(", ")
        );
    }
    Ok(())
}

async fn list(config: &Config, store: &StateStore, args: &Common) -> anyhow::Result<Exit> {
    compare_with_fleet(config, store).await?;
    let rows = store.routes().await?;
    let row = |r: &strangler_config::Route| rows.iter().find(|o| o.route == r.name);
    let stats = store.shadow_stats().await?;
    let verdicts =
        strangler_shadow::report::summaries(config, |r| effective(r, row(r)).stage, &stats, None);
    let verdict_of = |name: &str| verdicts.iter().find(|v| v.route == name).map(|v| v.verdict);
    if args.json {
        let list: Vec<_> = config
            .routes
            .iter()
            .map(|r| {
                let e = effective(r, row(r));
                json!({
                    "name": r.name, "methods": r.methods, "path": r.path.as_str(), "service": r.service,
                    "declared": Target::declared(r),
                    "stage": e.stage, "percent": e.percent, "origin": e.origin,
                    "why": row(r).map(|l| l.explain()).unwrap_or_default(),
                    "shadow_verdict": verdict_of(&r.name),
                })
            })
            .collect();
        println!("{}", json!({ "revision": config.revision, "routes": list }));
        return Ok(Exit::Ok);
    }
    let table_rows: Vec<Vec<String>> = config
        .routes
        .iter()
        .map(|r| {
            let e = effective(r, row(r));
            vec![
                r.name.clone(),
                match_text(&r.methods, r.path.as_str()),
                state_text(&Target::declared(r)),
                state_text(&e.target()),
                e.origin.as_str().to_string(),
                r.service.clone().unwrap_or_else(|| "-".into()),
                verdict_of(&r.name).filter(|v| v.samples > 0).map_or_else(
                    || "-".into(),
                    |v| format!("{} ({} samples)", v.status.label(), v.samples),
                ),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "MATCH",
            "DECLARED",
            "EFFECTIVE",
            "ORIGIN",
            "SERVICE",
            "SHADOW",
        ],
        &table_rows,
    );
    for r in &config.routes {
        if let Some(why) = row(r).map(|l| l.explain()).filter(|w| !w.is_empty()) {
            println!("  {}: {why}", r.name);
        }
    }
    Ok(Exit::Ok)
}

/// Who is making a change: `STRANGLER_ACTOR`, else `cli:USER@HOST`.
pub(crate) fn actor() -> String {
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

pub(crate) fn who(config: &Config, reason: &str) -> Who {
    Who {
        actor: actor(),
        reason: reason.to_string(),
        revision: config.revision.clone(),
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

fn print_entry(args: &Common, name: &str, entry: &AuditEntry, held: bool) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string(entry)?);
    } else {
        println!(
            "{name}: {} → {}{} (audit #{})",
            state_text(&entry.before),
            state_text(&entry.after),
            if held {
                ", held until `route resume`"
            } else {
                ""
            },
            entry.id
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn set(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
    stage: Stage,
    pct: Option<f64>,
    force: bool,
    reason: &str,
) -> anyhow::Result<Exit> {
    if config.route(name).is_none() {
        return Ok(unknown_route(config, name));
    }
    compare_with_fleet(config, store).await?;
    match gates::set(config, store, name, stage, pct, force, who(config, reason)).await {
        Ok(SetOutcome::RolledBack(entry)) => print_entry(args, name, &entry, true)?,
        Ok(SetOutcome::Moved(p)) => return promoted(args, name, p),
        Err(e) => return promote_error(config, name, e),
    }
    Ok(Exit::Ok)
}

fn promote_error(config: &Config, name: &str, e: PromoteError) -> anyhow::Result<Exit> {
    match e {
        PromoteError::UnknownRoute(_) => Ok(unknown_route(config, name)),
        PromoteError::NoStep(msg) => {
            eprintln!("error: {msg}");
            Ok(Exit::Usage)
        }
        e @ (PromoteError::Held { .. }
        | PromoteError::Changed { .. }
        | PromoteError::RollbackGated { .. }) => {
            eprintln!("error: {e}");
            Ok(Exit::Failed)
        }
        e => Err(e.into()),
    }
}

pub(crate) fn state_text(s: &Target) -> String {
    if s.stage == Stage::Canary {
        format!("canary {}", percent(s.percent))
    } else {
        s.stage.to_string()
    }
}

async fn resume(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
    reason: &str,
) -> anyhow::Result<Exit> {
    compare_with_fleet(config, store).await?;
    match gates::resume(config, store, name, who(config, reason)).await {
        Ok(r) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "route": name, "released": r.released, "then": r.then, "audit": r.next })
                );
            } else {
                println!("{name}: hold lifted (audit #{})", r.released.id);
                match (&r.next, r.then.is_held()) {
                    (Some(e), false) => println!(
                        "{name}: {} → {} as declared; gates passed (audit #{})",
                        state_text(&e.before),
                        state_text(&e.after),
                        e.id
                    ),
                    (_, true) => println!("{name}: stays at legacy — {}", r.then.why()),
                    (None, false) => println!("{name}: the fleet declares legacy; stays there"),
                }
            }
            Ok(Exit::Ok)
        }
        Err(ResumeError::UnknownRoute(_)) => Ok(unknown_route(config, name)),
        Err(e @ ResumeError::NotHeld(_)) => {
            eprintln!("error: {e}");
            Ok(Exit::Failed)
        }
        Err(e) => Err(e.into()),
    }
}

async fn history(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
    check: bool,
) -> anyhow::Result<Exit> {
    if config.route(name).is_none() {
        return Ok(unknown_route(config, name));
    }
    let breaks = if check {
        verify(&store.audit_log(None).await?)
    } else {
        Vec::new()
    };
    let entries = store.audit_log(Some(name)).await?;
    if args.json {
        let mut body = json!({ "route": name, "history": entries });
        if check {
            body["chain"] = json!({ "intact": breaks.is_empty(), "breaks": breaks });
        }
        println!("{body}");
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
                    revision_text(e),
                    e.reason.clone(),
                ]
            })
            .collect();
        table(
            &["ID", "AT", "ACTOR", "BEFORE", "AFTER", "FILE", "REASON"],
            &rows,
        );
    }
    if check {
        if breaks.is_empty() {
            eprintln!("audit log verified: the hash chain is intact");
        } else {
            for b in &breaks {
                eprintln!("audit log: {}", b.problem);
            }
            return Ok(Exit::Failed);
        }
    }
    Ok(Exit::Ok)
}

/// The caller's file revision, and the fleet's when it differed.
fn revision_text(e: &AuditEntry) -> String {
    match (e.revision.as_str(), e.fleet_revision.as_str()) {
        ("", _) => "-".into(),
        (r, "") => r.to_string(),
        (r, f) if f.split(',').any(|x| x == r) => r.to_string(),
        (r, f) => format!("{r} (fleet {f})"),
    }
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
    compare_with_fleet(config, store).await?;
    match gates::promote(config, store, name, to, force, reason, &actor()).await {
        Ok(p) => promoted(args, name, p),
        Err(e) => promote_error(config, name, e),
    }
}

fn promoted(args: &Common, name: &str, p: Promotion) -> anyhow::Result<Exit> {
    match p {
        Promotion::Refused { to, gates } => {
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
        Promotion::Promoted { entry, gates, .. } => {
            if args.json {
                println!(
                    "{}",
                    json!({ "route": name, "promoted": true, "audit": entry, "gates": gates, "before": entry.before, "after": entry.after })
                );
            } else {
                print_entry(args, name, &entry, false)?;
            }
            Ok(Exit::Ok)
        }
    }
}
