//! Shadow-diff reports: per endpoint the samples, match rate and verdict,
//! fields ranked by mismatch count with example diffs, noise fields and
//! skipped counts. Markdown, JSON, or one self-contained HTML page.

mod html;
mod markdown;
mod summaries;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::noise::{self, Thresholds};
use crate::verdict::{self, Verdict};
use crate::{Kind, RouteStats, Sample};

pub use html::esc as escape_html;
pub use html::render as html;
pub use markdown::render as markdown;
pub use summaries::summaries;

/// One field of one route, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct FieldRow {
    pub field: String,
    /// Comparisons in which it differed.
    pub mismatches: u64,
    /// … as a share of the route's comparisons.
    pub share: f64,
    pub kinds: BTreeMap<Kind, u64>,
    /// It differs monolith-vs-monolith too: not counted as a regression.
    pub noise: bool,
    /// A/A comparisons in which it differed.
    pub aa: u64,
    pub examples: Vec<Sample>,
}

/// One route, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    pub route: String,
    /// `GET /products/{id}`
    pub endpoint: String,
    pub stage: String,
    pub service: Option<String>,
    pub comparisons: u64,
    pub matches: u64,
    pub stale: u64,
    pub aa_comparisons: u64,
    /// matches / comparisons (stale counted as matches).
    pub match_rate: f64,
    pub verdict: Verdict,
    /// Ranked by mismatches, most first; noise fields included and marked.
    pub fields: Vec<FieldRow>,
    pub skipped: BTreeMap<String, u64>,
}

/// What a route's report needs besides its stats.
pub struct RouteInfo<'a> {
    pub route: &'a str,
    pub endpoint: String,
    pub stage: &'a str,
    pub service: Option<&'a str>,
}

/// Builds a route's report.
pub fn route(
    info: RouteInfo<'_>,
    stats: &RouteStats,
    t: Thresholds,
    max_mismatch: f64,
    min_samples: u64,
) -> RouteReport {
    let real = noise::real_mismatches(stats, t);
    let mut fields: Vec<FieldRow> = stats
        .fields
        .iter()
        .filter(|(_, f)| f.candidate > 0 || f.aa > 0)
        .map(|(name, f)| FieldRow {
            field: name.clone(),
            mismatches: f.candidate,
            share: if stats.comparisons == 0 {
                0.0
            } else {
                f.candidate as f64 / stats.comparisons as f64
            },
            kinds: f.kinds.clone(),
            noise: noise::is_noise(stats, f, t),
            aa: f.aa,
            examples: f.samples.clone(),
        })
        .collect();
    fields.sort_by(|a, b| {
        a.noise
            .cmp(&b.noise)
            .then(b.mismatches.cmp(&a.mismatches))
            .then(a.field.cmp(&b.field))
    });
    RouteReport {
        route: info.route.to_string(),
        endpoint: info.endpoint,
        stage: info.stage.to_string(),
        service: info.service.map(str::to_string),
        comparisons: stats.comparisons,
        matches: stats.matches,
        stale: stats.stale,
        aa_comparisons: stats.aa_comparisons,
        match_rate: if stats.comparisons == 0 {
            0.0
        } else {
            (stats.matches + stats.stale) as f64 / stats.comparisons as f64
        },
        verdict: verdict::verdict(stats.comparisons, real, max_mismatch, min_samples),
        fields,
        skipped: stats.skipped.clone(),
    }
}

/// The whole report as JSON.
pub fn json(routes: &[RouteReport], generated_at: &str) -> String {
    serde_json::to_string_pretty(
        &serde_json::json!({ "generated_at": generated_at, "routes": routes }),
    )
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub(crate) fn pct(x: f64) -> String {
    if x == 0.0 {
        "0 %".into()
    } else if x < 0.001 {
        format!("{:.3} %", x * 100.0)
    } else {
        format!("{:.1} %", x * 100.0)
    }
}

pub(crate) fn kinds_text(kinds: &BTreeMap<Kind, u64>) -> String {
    kinds
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
