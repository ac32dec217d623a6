//! The one promotion engine: what every surface that shows or moves a
//! stage asks (`route promote`, `status`, the demo, the admin API).
//!
//! ```text
//!  store ─ route rows (the fleet's view), shadow stats, CDC lag view, usage
//!    │
//!    ▼ evaluate_all ─▶ RouteReport per route: stage, verdict, lag, usage, gates
//!                        │
//!  promote(name, to, force) ─ next_step ─ gates all ok? ─ store.update (audited)
//!                                  └ not ok, no force ─▶ Refused (nothing written)
//!                                  └ not ok, force + reason ─▶ "FORCED past failed gates (…)"
//! ```

use strangler_config::{Config, Route, Stage};
use strangler_shadow::verdict::Verdict;
use strangler_state::counts::Counts;
use strangler_state::route_state::{effective, Effective, LiveRoute, Origin, Target};
use strangler_state::route_store::{Change, Decision, RouteStore, Who};
use strangler_state::store::{AuditEntry, StageState, StateStore};
use strangler_state::StoreError;

use super::{check, next_step, Gate};
use crate::usage::minute;
use strangler_shadow::report::summaries;

/// Everything the board and a promotion know about one route.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteReport {
    pub route: String,
    pub stage: Stage,
    pub percent: f64,
    /// The shadow verdict under the route's own thresholds.
    pub verdict: Option<Verdict>,
    /// Highest CDC lag (bytes) over the route's tables, per direction.
    pub cdc_lag: CdcLag,
    /// Counts over the route's promotion window.
    pub usage: Counts,
    /// Gates of the next promotion (none for a route without a service or
    /// already migrated).
    pub gates: Vec<Gate>,
    /// What the fleet's row says (declared, origin, why); `None` before a
    /// proxy has adopted the route.
    pub live: Option<LiveRoute>,
    #[serde(skip)]
    pub current: Effective,
}

/// How far CDC is behind on a route's tables, each direction measured
/// inside its own stream: `None` where no stream of that direction carries
/// every table (or a source has not reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CdcLag {
    pub forward_bytes: Option<u64>,
    pub reverse_bytes: Option<u64>,
}

impl CdcLag {
    pub fn of(lag: &crate::shadow::LagView, tables: &[String]) -> CdcLag {
        use crate::shadow::lag::Direction;
        if tables.is_empty() {
            return CdcLag::default();
        }
        CdcLag {
            forward_bytes: lag.behind(tables, Direction::Forward),
            reverse_bytes: lag.behind(tables, Direction::Reverse),
        }
    }
}

/// Gates of moving `route` from `from` to `to`: none for a step back or
/// into shadow; for anything past shadow, the gates of leaving shadow (or
/// the current stage), whatever stages the move skips.
pub fn gates_to(
    report: &RouteReport,
    route: &Route,
    lag: &crate::shadow::LagView,
    to: Target,
) -> Vec<Gate> {
    let from = report.current;
    if !to.is_ahead_of(&from.target()) || to.stage <= Stage::Shadow {
        return Vec::new();
    }
    let leaving = Effective {
        stage: from.stage.max(Stage::Shadow),
        ..from
    };
    check(route, leaving, report.verdict.as_ref(), lag, &report.usage)
}

/// Evaluates every route of `config` against the store.
pub async fn evaluate_all(
    config: &Config,
    store: &StateStore,
) -> Result<Vec<RouteReport>, StoreError> {
    Ok(evaluate_with_lag(config, store).await?.0)
}

/// [`evaluate_all`] and the CDC lag view it used.
pub async fn evaluate_with_lag(
    config: &Config,
    store: &StateStore,
) -> Result<(Vec<RouteReport>, crate::shadow::LagView), StoreError> {
    let rows = store.routes().await?;
    let row = |r: &Route| rows.iter().find(|o| o.route == r.name);
    let eff = |r: &Route| effective(r, row(r));
    let stats = store.shadow_stats().await?;
    let verdicts = summaries(config, |r| eff(r).stage, &stats, None);
    let lag = store.lag_view().await?;
    let now = strangler_state::store::now_ms();
    let mut out = Vec::with_capacity(config.routes.len());
    for r in &config.routes {
        let current = eff(r);
        let since = minute(now - r.promote.window.as_millis() as i64);
        let usage = store
            .usage_since(since)
            .await?
            .get(&r.name)
            .copied()
            .unwrap_or_default();
        let verdict = verdicts
            .iter()
            .find(|v| v.route == r.name)
            .map(|v| v.verdict);
        let cdc_lag = CdcLag::of(&lag, &r.tables);
        let gates = if r.service.is_some() && current.stage != Stage::Migrated {
            check(r, current, verdict.as_ref(), &lag, &usage)
        } else {
            Vec::new()
        };
        out.push(RouteReport {
            route: r.name.clone(),
            stage: current.stage,
            percent: current.percent,
            verdict,
            cdc_lag,
            usage,
            gates,
            live: row(r).cloned(),
            current,
        });
    }
    Ok((out, lag))
}

/// What a promotion did.
#[derive(Debug, Clone)]
pub enum Promotion {
    /// Moved (and audited); `forced` when gates had failed.
    Promoted {
        entry: Box<AuditEntry>,
        gates: Vec<Gate>,
        forced: bool,
    },
    /// Not moved: gates failed and it was not forced.
    Refused { to: StageState, gates: Vec<Gate> },
}

/// Why a promotion could not even be tried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    #[error("no route {0:?}")]
    UnknownRoute(String),
    /// No next step (already migrated, a bad `to`).
    #[error("{0}")]
    NoStep(String),
    /// The route changed between reading and writing (another proxy or
    /// operator); nothing was written.
    #[error(
        "route {route:?} changed meanwhile (now {now}); nothing was written — look again and retry"
    )]
    Changed { route: String, now: String },
    /// A rollback holds the route at legacy.
    #[error("route {route:?} is on hold since a rollback ({why}); `strangler route resume {route} --reason …` lifts it")]
    Held { route: String, why: String },
    /// A rollback to legacy would serve from a monolith that lacks the
    /// service's writes ([`super::rollback_gates`]); nothing was written.
    #[error("route {route:?} is not rolled back: {}; wait for `strangler cdc reverse` to catch up, or force it with a reason (`--force --reason …`)", failed.iter().map(|g| g.detail.as_str()).collect::<Vec<_>>().join("; "))]
    RollbackGated {
        route: String,
        failed: Vec<super::Gate>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Promotes `name` one step (or to canary `to` percent), only if every gate
/// passes — or past failed gates when `force`, which the audit log records
/// as `FORCED past failed gates (…)` with `reason`.
pub async fn promote(
    config: &Config,
    store: &StateStore,
    name: &str,
    to: Option<f64>,
    force: bool,
    reason: Option<&str>,
    actor: &str,
) -> Result<Promotion, PromoteError> {
    let route = config
        .route(name)
        .ok_or_else(|| PromoteError::UnknownRoute(name.to_string()))?;
    let report = evaluate_all(config, store)
        .await?
        .into_iter()
        .find(|r| r.route == name)
        .ok_or_else(|| PromoteError::UnknownRoute(name.to_string()))?;
    let target = next_step(route, report.current, to).map_err(PromoteError::NoStep)?;
    move_forward(
        store,
        route,
        &report,
        report.gates.clone(),
        target,
        force,
        reason,
        (actor, &config.revision),
    )
    .await
}

/// Moves `route` forward to `target` through `gates` (refused when one
/// failed, unless `force`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn move_forward(
    store: &StateStore,
    route: &Route,
    report: &RouteReport,
    gates: Vec<Gate>,
    target: Target,
    force: bool,
    reason: Option<&str>,
    (actor, revision): (&str, &str),
) -> Result<Promotion, PromoteError> {
    if let Some(live) = report.live.as_ref().filter(|l| l.origin == Origin::Hold) {
        return Err(PromoteError::Held {
            route: route.name.clone(),
            why: live.why.clone(),
        });
    }
    let failed: Vec<&str> = report
        .gates
        .iter()
        .filter(|g| !g.ok)
        .map(|g| g.name)
        .collect();
    if !failed.is_empty() && !force {
        return Ok(Promotion::Refused {
            to: StageState {
                stage: target.stage,
                percent: target.percent,
            },
            gates,
        });
    }
    let forced = !failed.is_empty();
    let reason = if forced {
        format!(
            "FORCED past failed gates ({}): {}",
            failed.join(", "),
            reason.unwrap_or("")
        )
    } else {
        reason.unwrap_or("promoted; gates passed").to_string()
    };
    let entry = write_runtime(
        store,
        route,
        report.current.target(),
        target,
        Who {
            actor: actor.to_string(),
            reason,
            revision: revision.to_string(),
        },
    )
    .await?;
    Ok(Promotion::Promoted {
        entry: Box::new(entry),
        gates,
        forced,
    })
}

/// Stores a run-time change of `route` from `seen` to `target` (audited);
/// the declared state stays what the fleet last reconciled. A
/// compare-and-set: when the route no longer runs `seen` (or a rollback
/// holds it), nothing is written and [`PromoteError::Changed`] says what it
/// runs now, so a proxy and an operator never clobber each other.
pub async fn write_runtime(
    store: &dyn RouteStore,
    route: &Route,
    seen: Target,
    target: Target,
    who: Who,
) -> Result<AuditEntry, PromoteError> {
    let declared = Target::declared(route);
    let name = route.name.clone();
    let decide = move |row: Option<&LiveRoute>| {
        let now = row.map_or(declared, LiveRoute::target);
        if now != seen || row.is_some_and(|r| r.origin == Origin::Hold) {
            return Decision::Keep;
        }
        Decision::Write(Change {
            row: LiveRoute {
                route: name.clone(),
                declared: row.map_or(declared, |r| r.declared),
                stage: target.stage,
                percent: target.percent,
                origin: Origin::Runtime,
                why: String::new(),
                revision: row.map(|r| r.revision.clone()).unwrap_or_default(),
                updated_at_ms: 0,
            },
            who: who.clone(),
        })
    };
    match store.update(&route.name, &decide).await? {
        strangler_state::route_store::Updated::Written { entry, .. } => Ok(*entry),
        other => {
            let now = match &other {
                strangler_state::route_store::Updated::Kept(Some(r)) => r.explain_state(),
                _ => seen.to_string(),
            };
            Err(PromoteError::Changed {
                route: route.name.clone(),
                now,
            })
        }
    }
}

/// The audit entry of an update that always writes.
pub(crate) fn written(u: strangler_state::route_store::Updated) -> Result<AuditEntry, StoreError> {
    u.entry()
        .cloned()
        .ok_or_else(|| StoreError::Corrupt("the store did not record the change".into()))
}
