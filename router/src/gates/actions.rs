//! What an operator does to a route (CLI and admin API alike): set it,
//! roll it back (a hold), resume it. Each acts on the fleet's row, never on
//! the caller's copy of the file.

use strangler_config::{Config, Stage};
use strangler_state::route_state::{check_target, LiveRoute, Origin, Target};
use strangler_state::route_store::{Change, Decision, RouteStore, Who};
use strangler_state::store::{AuditEntry, StateStore};
use strangler_state::StoreError;

use super::evaluate::{evaluate_with_lag, gates_to, move_forward, write_runtime, written};
use super::reconcile::{plan_route, Action};
use super::{PromoteError, Promotion};

/// Rolls `route` back to legacy and holds it there, on every proxy and
/// whatever any file says, until [`resume`].
pub async fn rollback(
    store: &dyn RouteStore,
    route: &strangler_config::Route,
    who: Who,
) -> Result<AuditEntry, StoreError> {
    let declared = Target::declared(route);
    let name = route.name.clone();
    let why = format!(
        "rolled back by {}{}",
        who.actor,
        if who.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", who.reason)
        }
    );
    let decide = move |row: Option<&LiveRoute>| {
        Decision::Write(Change {
            row: LiveRoute {
                route: name.clone(),
                declared: row.map_or(declared, |r| r.declared),
                stage: Stage::Legacy,
                percent: 0.0,
                origin: Origin::Hold,
                why: why.clone(),
                revision: row.map(|r| r.revision.clone()).unwrap_or_default(),
                updated_at_ms: 0,
            },
            who: who.clone(),
        })
    };
    written(store.update(&route.name, &decide).await?)
}

/// The audit identity of a rollback through its gates
/// ([`super::rollback_gates`]): refused while one fails, unless `force`
/// with a reason, which the audit log records as `FORCED past failed gates`.
fn gated_rollback(
    config: &Config,
    route: &strangler_config::Route,
    current: strangler_state::route_state::Effective,
    lag: &crate::shadow::LagView,
    force: bool,
    mut who: Who,
) -> Result<Who, PromoteError> {
    // The monolith tables reverse sinks write.
    let reverse: Vec<String> = config
        .cdc
        .iter()
        .flat_map(|c| c.sinks.iter().filter(|s| s.reverse))
        .flat_map(|s| s.tables.iter().map(|m| m.target.to_string()))
        .collect();
    let failed: Vec<super::Gate> = super::rollback_gates(route, current, lag, &reverse)
        .into_iter()
        .filter(|g| !g.ok)
        .collect();
    if failed.is_empty() {
        return Ok(who);
    }
    if !force {
        return Err(PromoteError::RollbackGated {
            route: route.name.clone(),
            failed,
        });
    }
    if who.reason.trim().is_empty() {
        return Err(PromoteError::NoStep(
            "forcing a rollback past its gates needs a reason (--reason)".into(),
        ));
    }
    who.reason = format!(
        "FORCED past failed gates (reverse_lag: {}): {}",
        failed
            .iter()
            .map(|g| g.detail.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        who.reason
    );
    Ok(who)
}

/// Rolls `name` back to legacy and holds it there, through the rollback
/// gates (`route rollback`, `POST /routes/{name}/rollback`).
pub async fn rollback_checked(
    config: &Config,
    store: &StateStore,
    name: &str,
    force: bool,
    who: Who,
) -> Result<AuditEntry, PromoteError> {
    let route = config
        .route(name)
        .ok_or_else(|| PromoteError::UnknownRoute(name.to_string()))?;
    let (reports, lag) = evaluate_with_lag(config, store).await?;
    let current = reports
        .iter()
        .find(|r| r.route == name)
        .map(|r| r.current)
        .ok_or_else(|| PromoteError::UnknownRoute(name.to_string()))?;
    let who = gated_rollback(config, route, current, &lag, force, who)?;
    Ok(rollback(store, route, who).await?)
}

/// What `route set` / `PUT /routes/{name}` did.
#[derive(Debug)]
pub enum SetOutcome {
    /// Moved (a step back, or forward through passing or forced gates).
    Moved(Promotion),
    /// To legacy: a rollback, with its hold.
    RolledBack(AuditEntry),
}

/// Moves `name` to `stage`/`percent`: to legacy is a rollback (held);
/// another step back applies; a step forward runs the same gates as
/// `route promote` (refused unless `force` with a reason).
#[allow(clippy::too_many_arguments)]
pub async fn set(
    config: &Config,
    store: &StateStore,
    name: &str,
    stage: Stage,
    percent: Option<f64>,
    force: bool,
    who: Who,
) -> Result<SetOutcome, PromoteError> {
    let route = config
        .route(name)
        .ok_or_else(|| PromoteError::UnknownRoute(name.to_string()))?;
    let (reports, lag) = evaluate_with_lag(config, store).await?;
    let report = reports
        .iter()
        .find(|r| r.route == name)
        .ok_or_else(|| PromoteError::UnknownRoute(name.to_string()))?;
    let target =
        check_target(route, stage, percent, report.current).map_err(PromoteError::NoStep)?;
    if target.stage == Stage::Legacy {
        let who = gated_rollback(config, route, report.current, &lag, force, who)?;
        return Ok(SetOutcome::RolledBack(rollback(store, route, who).await?));
    }
    if target.is_ahead_of(&report.current.target()) {
        let gates = gates_to(report, route, &lag, target);
        let reason = (!who.reason.is_empty()).then_some(who.reason.as_str());
        return Ok(SetOutcome::Moved(
            move_forward(
                store,
                route,
                report,
                gates,
                target,
                force,
                reason,
                (&who.actor, &config.revision),
            )
            .await?,
        ));
    }
    if let Some(live) = report.live.as_ref().filter(|l| l.origin == Origin::Hold) {
        return Err(PromoteError::Held {
            route: route.name.clone(),
            why: live.why.clone(),
        });
    }
    let entry = write_runtime(store, route, report.current.target(), target, who).await?;
    Ok(SetOutcome::Moved(Promotion::Promoted {
        entry: Box::new(entry),
        gates: Vec::new(),
        forced: false,
    }))
}

/// What `route resume` did.
#[derive(Debug)]
pub struct Resumed {
    /// The audited release of the hold.
    pub released: AuditEntry,
    /// Where the route went next: to what the file declares when its gates
    /// pass, else it stays at legacy, held by the gates.
    pub then: Action,
    pub next: Option<AuditEntry>,
}

/// Why a resume could not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    #[error("no route {0:?}")]
    UnknownRoute(String),
    #[error("route {0:?} is not on hold; nothing to resume")]
    NotHeld(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lifts the hold a rollback put on `name`; the route then follows the
/// fleet's declared state through its gates.
pub async fn resume(
    config: &Config,
    store: &StateStore,
    name: &str,
    who: Who,
) -> Result<Resumed, ResumeError> {
    let route = config
        .route(name)
        .ok_or_else(|| ResumeError::UnknownRoute(name.to_string()))?;
    let decide = move |row: Option<&LiveRoute>| match row {
        Some(r) if r.origin == Origin::Hold => Decision::Write(Change {
            row: LiveRoute {
                origin: Origin::File,
                why: String::new(),
                ..r.clone()
            },
            who: who.clone(),
        }),
        _ => Decision::Keep,
    };
    let released = match store.update(name, &decide).await? {
        strangler_state::route_store::Updated::Written { entry, .. } => *entry,
        _ => return Err(ResumeError::NotHeld(name.to_string())),
    };
    // Toward what the fleet declared (from its row, not from this file).
    let (reports, lag) = evaluate_with_lag(config, store).await?;
    let Some(report) = reports.iter().find(|r| r.route == name) else {
        return Err(ResumeError::UnknownRoute(name.to_string()));
    };
    let mut as_declared = route.clone();
    if let Some(live) = &report.live {
        as_declared.stage = live.declared.stage;
        as_declared.percent = live.declared.percent;
    }
    let planned = plan_route(&as_declared, report.live.as_ref(), |to| {
        gates_to(report, &as_declared, &lag, to)
    });
    let mut fleet = config.clone();
    if let Some(r) = fleet.routes.iter_mut().find(|r| r.name == name) {
        *r = as_declared;
    }
    if let Some(live) = &report.live {
        fleet.revision = live.revision.clone();
    }
    let next = super::reconcile::apply_plan(&fleet, store, std::slice::from_ref(&planned))
        .await?
        .into_iter()
        .find_map(|u| u.entry().cloned());
    Ok(Resumed {
        released,
        then: planned.action,
        next,
    })
}

/// Audits an action that changes a route's verdict without moving it (a
/// shadow reset, accepted noise rules).
pub async fn note(
    store: &dyn RouteStore,
    route: &strangler_config::Route,
    who: Who,
) -> Result<AuditEntry, StoreError> {
    let declared = Target::declared(route);
    let decide = move |row: Option<&LiveRoute>| Decision::Note {
        at: row.map_or(declared, LiveRoute::target),
        who: who.clone(),
    };
    written(store.update(&route.name, &decide).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strangler_state::memory::MemoryStore;

    fn route() -> strangler_config::Route {
        let text = "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n[upstreams.svc]\nurl = \"http://127.0.0.1:2\"\n\
                    [[routes]]\nname = \"p\"\npath = \"/p\"\nservice = \"svc\"\nstage = \"canary\"\npercent = 50\n";
        Config::from_toml(text, std::path::Path::new("/tmp/s.toml"))
            .expect("config")
            .routes
            .remove(0)
    }

    fn who(actor: &str) -> Who {
        Who {
            actor: actor.into(),
            reason: "test".into(),
            revision: String::new(),
        }
    }

    /// A proxy read canary 50 and decided to move it; meanwhile an operator
    /// rolled it back. The late write must not undo the rollback.
    #[tokio::test]
    async fn a_write_from_a_stale_read_never_clobbers_a_rollback() {
        let store = MemoryStore::default();
        let r = route();
        let seen = Target {
            stage: Stage::Canary,
            percent: 50.0,
        };
        rollback(&store, &r, who("ops")).await.expect("rollback");
        let late = write_runtime(
            &store,
            &r,
            seen,
            Target {
                stage: Stage::Canary,
                percent: 10.0,
            },
            who("proxy"),
        )
        .await;
        assert!(
            matches!(&late, Err(PromoteError::Changed { now, .. }) if now == "legacy (hold)"),
            "{late:?}"
        );
        let row = store.routes().await.expect("rows").remove(0);
        assert_eq!((row.stage, row.origin), (Stage::Legacy, Origin::Hold));
        assert_eq!(store.audit_log(None).await.expect("log").len(), 1);
        // From what it runs now, a step is written.
        let resumed = store
            .update("p", &|row: Option<&LiveRoute>| {
                Decision::Write(Change {
                    row: LiveRoute {
                        origin: Origin::Runtime,
                        ..row.cloned().expect("row")
                    },
                    who: who("ops"),
                })
            })
            .await
            .expect("release");
        assert!(resumed.entry().is_some());
        write_runtime(&store, &r, Target::LEGACY, seen, who("ops"))
            .await
            .expect("a fresh read writes");
    }
}
