//! Safe promotion: the next stage of a route, and the gates it must pass.
//! [`evaluate_all`] gathers the inputs from the store and is the one engine
//! every surface uses; `reconcile` brings a config file to the fleet
//! through the same gates; `actions` holds set, rollback (a hold) and
//! resume.

mod actions;
mod evaluate;
pub mod reconcile;

pub use actions::{
    note, resume, rollback, rollback_checked, set, ResumeError, Resumed, SetOutcome,
};
pub use evaluate::{
    evaluate_all, evaluate_with_lag, gates_to, promote, write_runtime, CdcLag, PromoteError,
    Promotion, RouteReport,
};

use strangler_config::{Route, Stage};
use strangler_shadow::verdict::{Status, Verdict};

use crate::shadow::lag::Direction;
use crate::shadow::LagView;
use strangler_state::counts::Counts;
use strangler_state::lag::STALE_AFTER_MS;
use strangler_state::route_state::{Effective, Target};

/// One gate and whether it passed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Gate {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The next step of `route` from `current`: legacy → shadow → canary steps
/// → migrated; `to` picks a canary percent (100 = migrated).
pub fn next_step(route: &Route, current: Effective, to: Option<f64>) -> Result<Target, String> {
    if route.service.is_none() {
        return Err(format!(
            "route {:?} has no service to promote to",
            route.name
        ));
    }
    if let Some(p) = to {
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!(
                "--to {p}: a canary percent in (0, 100], or 100 for migrated"
            ));
        }
        if current.stage == Stage::Migrated
            || (current.stage == Stage::Canary && p <= current.percent)
        {
            return Err(format!(
                "--to {p} is not ahead of {} {}%",
                current.stage, current.percent
            ));
        }
        return Ok(if p >= 100.0 {
            Target {
                stage: Stage::Migrated,
                percent: 100.0,
            }
        } else {
            Target {
                stage: Stage::Canary,
                percent: p,
            }
        });
    }
    let steps = &route.promote.canary_steps;
    Ok(match current.stage {
        Stage::Legacy => Target {
            stage: Stage::Shadow,
            percent: 0.0,
        },
        Stage::Shadow => match steps.first() {
            Some(p) => Target {
                stage: Stage::Canary,
                percent: *p,
            },
            None => Target {
                stage: Stage::Migrated,
                percent: 100.0,
            },
        },
        Stage::Canary => match steps.iter().find(|p| **p > current.percent) {
            Some(p) => Target {
                stage: Stage::Canary,
                percent: *p,
            },
            None => Target {
                stage: Stage::Migrated,
                percent: 100.0,
            },
        },
        Stage::Migrated => return Err(format!("route {:?} is already migrated", route.name)),
    })
}

/// The gates of promoting `route` out of `current`. Entering shadow needs
/// none (nothing has been measured yet).
pub fn check(
    route: &Route,
    current: Effective,
    verdict: Option<&Verdict>,
    lag: &LagView,
    usage: &Counts,
) -> Vec<Gate> {
    if current.stage == Stage::Legacy {
        return Vec::new();
    }
    let mut out = Vec::new();
    out.push(match verdict {
        Some(v) => Gate {
            name: "shadow",
            ok: v.status == Status::Ready,
            detail: format!(
                "verdict {} — {} samples, real-mismatch bound {:.3} % (allowed {:.3} %)",
                v.status.label(),
                v.samples,
                v.upper_bound * 100.0,
                v.max_mismatch * 100.0
            ),
        },
        None => Gate {
            name: "shadow",
            ok: false,
            detail: "no shadow comparison recorded".into(),
        },
    });
    // Every stream that carries a table (forward, and reverse where it
    // runs), each measured against its own source's WAL.
    let max = route.promote.max_lag_bytes;
    for t in &route.tables {
        let lags = lag.for_table(t);
        if lags.iter().all(|l| l.direction != Direction::Forward) {
            out.push(Gate {
                name: "cdc_lag",
                ok: false,
                detail: format!("{t}: no CDC position recorded (is `strangler cdc run` running?)"),
            });
        }
        let now = strangler_state::store::now_ms();
        for l in lags {
            let stream = format!("{} {} (slot {})", l.direction, l.source_table, l.slot);
            let age_ms = l.source.map_or(0, |(_, at)| now - at);
            out.push(match l.behind {
                // A source that stopped reporting says nothing about now.
                Some(_) if age_ms > STALE_AFTER_MS => Gate {
                    name: "cdc_lag",
                    ok: false,
                    detail: format!(
                        "{t} {stream}: no position reported for {} s (is its `strangler cdc` process running?)",
                        age_ms / 1000
                    ),
                },
                Some(behind) => Gate {
                    name: "cdc_lag",
                    ok: behind <= max,
                    detail: format!("{t} {stream}: {behind} bytes behind (allowed {max})"),
                },
                None => Gate {
                    name: "cdc_lag",
                    ok: false,
                    detail: format!("{t} {stream}: the source has not reported its position"),
                },
            });
        }
    }
    let rate = usage.error_rate();
    out.push(Gate {
        name: "error_rate",
        ok: rate <= route.promote.max_error_rate,
        detail: if usage.service_requests == 0 {
            "no requests meant for the service in the window".into()
        } else {
            format!(
                "service errors {:.2} % of {} requests in the last {} s (allowed {:.2} %)",
                rate * 100.0,
                usage.service_requests,
                route.promote.window.as_secs(),
                route.promote.max_error_rate * 100.0
            )
        },
    });
    out
}

/// Whether a canary should be rolled back now.
pub fn should_roll_back(route: &Route, current: Effective, usage: &Counts) -> Option<String> {
    let p = &route.promote;
    if current.stage != Stage::Canary || !p.auto_rollback || usage.service_requests < p.min_requests
    {
        return None;
    }
    let rate = usage.error_rate();
    (rate > p.max_error_rate).then(|| {
        format!(
            "automatic rollback: service error rate {:.1} % of {} requests over the last {} s is above {:.1} %",
            rate * 100.0,
            usage.service_requests,
            p.window.as_secs(),
            p.max_error_rate * 100.0
        )
    })
}

/// Gates of rolling `route` back to legacy from `current`: when the route
/// writes (any method but GET, HEAD, OPTIONS) and its service has taken
/// traffic (canary, migrated), the monolith must have the service's writes
/// before it answers again — every reverse stream carrying one of the
/// route's tables within `promote.max_lag_bytes`, and reporting; a table
/// `reverse` (the monolith tables a reverse sink writes) names must have
/// one. A table without reverse sync has nothing to wait for. Automatic
/// rollbacks do not wait (a failing service must stop taking traffic);
/// operators force past these gates with a reason.
pub fn rollback_gates(
    route: &Route,
    current: Effective,
    lag: &LagView,
    reverse: &[String],
) -> Vec<Gate> {
    let writes = route.methods.is_empty()
        || route
            .methods
            .iter()
            .any(|m| !matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS"));
    if !writes || current.stage < Stage::Canary {
        return Vec::new();
    }
    let max = route.promote.max_lag_bytes;
    let now = strangler_state::store::now_ms();
    let mut out = Vec::new();
    for t in &route.tables {
        let streams = lag.for_table(t);
        if reverse.contains(t) && streams.iter().all(|l| l.direction != Direction::Reverse) {
            out.push(Gate {
                name: "reverse_lag",
                ok: false,
                detail: format!("{t}: reverse sync is configured but has reported nothing (is `strangler cdc reverse` running?): the monolith may miss the service's writes"),
            });
        }
        for l in streams {
            if l.direction != Direction::Reverse {
                continue;
            }
            let stream = format!("reverse {} (slot {})", l.source_table, l.slot);
            let age_ms = l.source.map_or(0, |(_, at)| now - at);
            out.push(match l.behind {
                Some(_) if age_ms > STALE_AFTER_MS => Gate {
                    name: "reverse_lag",
                    ok: false,
                    detail: format!(
                        "{t} {stream}: no position reported for {} s (is `strangler cdc reverse` running?): the monolith may miss the service's writes",
                        age_ms / 1000
                    ),
                },
                Some(behind) => Gate {
                    name: "reverse_lag",
                    ok: behind <= max,
                    detail: format!(
                        "{t} {stream}: the monolith is {behind} bytes behind the service's writes (allowed {max})"
                    ),
                },
                None => Gate {
                    name: "reverse_lag",
                    ok: false,
                    detail: format!("{t} {stream}: the service database has not reported its position"),
                },
            });
        }
    }
    out
}
