//! The one promotion engine: what every surface that shows or moves a
//! stage asks (`route promote`, `status`, the demo, the admin API).
//!
//! ```text
//!  store ─ overrides, shadow stats, CDC lag view, usage over the window
//!    │
//!    ▼ evaluate_all ─▶ RouteReport per route: stage, verdict, lag, usage, gates
//!                        │
//!  promote(name, to, force) ─ next_step ─ gates all ok? ─ set_route (audited)
//!                                  └ not ok, no force ─▶ Refused (nothing written)
//!                                  └ not ok, force + reason ─▶ "FORCED past failed gates (…)"
//! ```

use strangler_config::{Config, Route, Stage};
use strangler_shadow::verdict::Verdict;
use strangler_state::counts::Counts;
use strangler_state::route_state::{effective, Effective};
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
    /// Highest CDC lag (bytes) over the route's tables; `None` when not known.
    pub cdc_lag_bytes: Option<u64>,
    /// Counts over the route's promotion window.
    pub usage: Counts,
    /// Gates of the next promotion (none for a route without a service or
    /// already migrated).
    pub gates: Vec<Gate>,
    #[serde(skip)]
    pub current: Effective,
}

/// Evaluates every route of `config` against the store.
pub async fn evaluate_all(
    config: &Config,
    store: &StateStore,
) -> Result<Vec<RouteReport>, StoreError> {
    let overrides = store.overrides().await?;
    let eff = |r: &Route| effective(r, overrides.iter().find(|o| o.route == r.name));
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
        let cdc_lag_bytes = if r.tables.is_empty() {
            None
        } else {
            r.tables
                .iter()
                .map(|t| match (lag.source, lag.applied.get(t)) {
                    (Some((s, _)), Some(a)) => Some(u64::try_from((s - a).max(0)).unwrap_or(0)),
                    _ => None,
                })
                .try_fold(0u64, |m, v| v.map(|v| m.max(v)))
        };
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
            cdc_lag_bytes,
            usage,
            gates,
            current,
        });
    }
    Ok(out)
}

/// What a promotion did.
#[derive(Debug, Clone)]
pub enum Promotion {
    /// Moved (and audited); `forced` when gates had failed.
    Promoted {
        entry: AuditEntry,
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
            gates: report.gates,
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
    let entry = store.set_route(route, target, actor, &reason).await?;
    Ok(Promotion::Promoted {
        entry,
        gates: report.gates,
        forced,
    })
}
