//! Progress charts as inline SVG (no script, no library): request share
//! by stage per hour as stacked bars, routes by stage per hour likewise.

use std::fmt::Write;

use crate::progress::{Hour, UNROUTED};

const W: f64 = 720.0;
const H: f64 = 160.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 20.0;

/// Stages bottom to top, with their colours (the same as the badges').
const STAGES: [(&str, &str); 5] = [
    ("migrated", "#2e7d32"),
    ("canary", "#f9a825"),
    ("shadow", "#6a1b9a"),
    ("legacy", "#90a4ae"),
    (UNROUTED, "#cfd8dc"),
];

fn frame(id: &str, title: &str, body: &str, hours: &[Hour]) -> String {
    let mut out = format!(
        r#"<figure><figcaption>{title}</figcaption><svg id="{id}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{title}">"#
    );
    for (pct, y) in [(100, 0.0), (50, (H - BOTTOM) / 2.0), (0, H - BOTTOM)] {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{W}" y1="{y}" y2="{y}" stroke="#e0e0e0"/><text x="{x}" y="{ty}" font-size="10" text-anchor="end">{pct}%</text>"##,
            x = LEFT - 4.0,
            ty = (y + 4.0f64).max(10.0),
        );
    }
    out.push_str(body);
    // Hour labels: the first, the last, and every sixth.
    let n = hours.len().max(1) as f64;
    let bw = (W - LEFT) / n;
    for (i, h) in hours.iter().enumerate() {
        if i % 6 == 0 || i + 1 == hours.len() {
            let label = chrono::DateTime::from_timestamp_millis(h.start_ms)
                .map(|t| t.format("%H:00").to_string())
                .unwrap_or_default();
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{label}</text>"#,
                LEFT + bw * (i as f64 + 0.5),
                H - 6.0
            );
        }
    }
    out.push_str("</svg><p class=\"legend\">");
    for (stage, colour) in STAGES.iter().rev() {
        let _ = write!(
            out,
            r#"<span><i style="background:{colour}"></i>{stage}</span>"#
        );
    }
    out.push_str("</p></figure>");
    out
}

fn stacked(
    hours: &[Hour],
    value: impl Fn(&Hour, &str) -> f64,
    title: impl Fn(&Hour, &str, f64) -> String,
) -> String {
    let n = hours.len().max(1) as f64;
    let bw = (W - LEFT) / n;
    let plot = H - BOTTOM;
    let mut out = String::new();
    for (i, h) in hours.iter().enumerate() {
        let mut y = plot;
        for (stage, colour) in STAGES {
            let share = value(h, stage);
            if share <= 0.0 {
                continue;
            }
            let height = share * plot;
            y -= height;
            let _ = write!(
                out,
                r#"<rect class="bar {stage}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{height:.1}" fill="{colour}"><title>{}</title></rect>"#,
                LEFT + bw * i as f64 + 1.0,
                (bw - 2.0).max(1.0),
                super::html::esc(&title(h, stage, share)),
            );
        }
    }
    out
}

fn hour_label(h: &Hour) -> String {
    chrono::DateTime::from_timestamp_millis(h.start_ms)
        .map(|t| t.format("%Y-%m-%d %H:00 UTC").to_string())
        .unwrap_or_default()
}

/// Request share by stage, per hour.
pub fn requests_by_stage(hours: &[Hour]) -> String {
    let body = stacked(
        hours,
        |h, s| h.stage_share(s),
        |h, s, share| {
            format!(
                "{}: {:.1}% of {} requests on {s} routes",
                hour_label(h),
                share * 100.0,
                h.requests
            )
        },
    );
    frame(
        "chart-requests",
        "Requests by the stage of their route, per hour",
        &body,
        hours,
    )
}

/// Routes by stage, per hour.
pub fn routes_by_stage(hours: &[Hour]) -> String {
    let body = stacked(
        hours,
        |h, s| {
            let total: u64 = h.routes.values().sum();
            if total == 0 {
                0.0
            } else {
                h.routes.get(s).copied().unwrap_or(0) as f64 / total as f64
            }
        },
        |h, s, share| {
            format!(
                "{}: {} routes in {s} ({:.0}%)",
                hour_label(h),
                h.routes.get(s).copied().unwrap_or(0),
                share * 100.0
            )
        },
    );
    frame("chart-routes", "Routes by stage, per hour", &body, hours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_as_tall_as_their_share() {
        let h = Hour {
            start_ms: 0,
            routes: [("legacy".to_string(), 3), ("migrated".to_string(), 1)].into(),
            requests: 100,
            requests_by_stage: [("legacy".to_string(), 75), ("migrated".to_string(), 25)].into(),
            served_by_services: 25,
        };
        let svg = requests_by_stage(&[h.clone()]);
        let plot = H - BOTTOM;
        assert!(
            svg.contains(&format!(r##"height="{:.1}" fill="#2e7d32""##, 0.25 * plot)),
            "{svg}"
        );
        assert!(
            svg.contains(&format!(r##"height="{:.1}" fill="#90a4ae""##, 0.75 * plot)),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect").count(), 2);
        let routes = routes_by_stage(&[h]);
        assert!(routes.contains("1 routes in migrated (25%)"), "{routes}");
    }
}
