//! The migration board's rows: every route with its stage, shadow verdict,
//! CDC lag per direction, usage and the gates of its next promotion, from
//! the one promotion engine. `strangler status`, the demo and the web
//! board (`admin/ui/`) show these.

use serde_json::json;
use strangler_config::{Config, Stage};
use strangler_state::route_state::{Origin, Target};
use strangler_state::store::StateStore;

use crate::gates;

/// One row of the board.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub route: String,
    pub r#match: String,
    pub stage: Stage,
    pub percent: f64,
    /// What the file declares, where the effective state comes from (file,
    /// runtime, hold) and why it differs.
    pub declared: Target,
    pub origin: Origin,
    pub why: String,
    pub service: Option<String>,
    pub shadow: Option<serde_json::Value>,
    /// Highest CDC lag (bytes) over the route's tables, forward and reverse.
    pub cdc_lag: gates::CdcLag,
    pub requests: u64,
    pub fallbacks: u64,
    pub service_error_rate: f64,
    /// Gates of the next promotion.
    pub gates: Vec<gates::Gate>,
}

/// The board: one row per route, from the one promotion engine.
pub async fn board(
    config: &Config,
    store: &StateStore,
) -> Result<Vec<Row>, strangler_state::StoreError> {
    let reports = gates::evaluate_all(config, store).await?;
    Ok(config
        .routes
        .iter()
        .zip(reports)
        .map(|(r, e)| {
            let methods = if r.methods.is_empty() {
                "*".to_string()
            } else {
                r.methods.join(",")
            };
            Row {
                route: e.route,
                r#match: format!("{methods} {}", r.path),
                stage: e.stage,
                percent: e.percent,
                declared: e.live.as_ref().map_or(Target::declared(r), |l| l.declared),
                origin: e.current.origin,
                why: e.live.as_ref().map(|l| l.explain()).unwrap_or_default(),
                service: r.service.clone(),
                shadow: e.verdict.map(|v| json!({"verdict": v.status.label(), "samples": v.samples, "bound": v.upper_bound})),
                cdc_lag: e.cdc_lag,
                requests: e.usage.requests,
                fallbacks: e.usage.fallbacks,
                service_error_rate: e.usage.error_rate(),
                gates: e.gates,
            }
        })
        .collect())
}

/// `fwd 0 B`, `fwd 0 B · rev 12 B`, or `-` when nothing reports.
pub fn lag_cell(lag: gates::CdcLag) -> String {
    let parts: Vec<String> = [("fwd", lag.forward_bytes), ("rev", lag.reverse_bytes)]
        .iter()
        .filter_map(|(d, b)| b.map(|b| format!("{d} {b} B")))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" · ")
    }
}
