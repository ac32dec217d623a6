//! Run-time route state: the stage and percent a route runs with.
//!
//! A change made at run time (CLI or admin API) is kept in the state store as
//! an *override* and wins over the file until the file changes that route's
//! stage or percent: the override records the file's values it was made
//! against (its base), and applies only while the file still says the same.

use serde::{Deserialize, Serialize};
use strangler_config::{Route, Stage};

/// Where a route's effective stage comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    File,
    Override,
}

/// The stage and percent a route runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    pub stage: Stage,
    pub percent: f64,
    pub origin: Origin,
}

/// A run-time change kept in the state store.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub route: String,
    pub stage: Stage,
    pub percent: f64,
    /// The file's stage when the override was made.
    pub base_stage: Stage,
    /// The file's percent when the override was made.
    pub base_percent: f64,
}

/// The effective state of `route` given its override, if any.
pub fn effective(route: &Route, ov: Option<&Override>) -> Effective {
    match ov {
        Some(o) if o.base_stage == route.stage && o.base_percent == route.percent => Effective {
            stage: o.stage,
            percent: o.percent,
            origin: Origin::Override,
        },
        _ => Effective {
            stage: route.stage,
            percent: route.percent,
            origin: Origin::File,
        },
    }
}

/// The state a route is asked to move to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub stage: Stage,
    pub percent: f64,
}

/// Checks a requested change against the route; the error is for the user.
pub fn check_target(
    route: &Route,
    stage: Stage,
    percent: Option<f64>,
    current: Effective,
) -> Result<Target, String> {
    if stage != Stage::Legacy && route.service.is_none() {
        return Err(format!(
            "route {:?} has no service; only stage legacy is possible",
            route.name
        ));
    }
    let percent = match (stage, percent) {
        (_, Some(p)) if !(0.0..=100.0).contains(&p) => {
            return Err(format!("percent {p} is outside 0..=100"))
        }
        (Stage::Canary, Some(p)) => p,
        (Stage::Canary, None) if current.stage == Stage::Canary => current.percent,
        (Stage::Canary, None) => return Err("stage canary needs --percent".to_string()),
        (Stage::Migrated, _) => 100.0,
        (_, _) => 0.0,
    };
    Ok(Target { stage, percent })
}
