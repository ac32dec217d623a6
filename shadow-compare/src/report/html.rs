//! The HTML report: one self-contained file (inline CSS, no scripts, no
//! fetches), readable on screen and on paper.

use std::fmt::Write;

use super::{kinds_text, pct, RouteReport};
use crate::verdict::Status;

/// Text safe inside HTML elements and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn badge(status: Status) -> String {
    let class = match status {
        Status::Ready => "ready",
        Status::NotReady => "not-ready",
        Status::InsufficientData => "insufficient",
    };
    format!("<span class=\"badge {class}\">{}</span>", status.label())
}

const STYLE: &str = r#"
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg:#f6f8fa; --ok:#1a7f37; --bad:#cf222e; --wait:#9a6700; --noise:#8250df; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; background: #fff; }
header { padding: 24px 40px; border-bottom: 1px solid var(--line); background: var(--bg); }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
main { padding: 24px 40px 60px; max-width: 1200px; }
table { border-collapse: collapse; width: 100%; margin: 12px 0 24px; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow-x: auto; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 12px; font-weight: 600; color: #fff; }
.ready { background: var(--ok); } .not-ready { background: var(--bad); } .insufficient { background: var(--wait); }
.noise { color: var(--noise); font-weight: 600; }
section.route { border: 1px solid var(--line); border-radius: 8px; padding: 4px 24px 12px; margin: 28px 0; }
section.route h2 { font-size: 20px; margin: 16px 0 4px; }
.facts { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.fact { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 130px; }
.fact b { display: block; font-size: 18px; }
.fact span { color: var(--muted); font-size: 12px; }
.bar { background: var(--bg); border-radius: 3px; height: 8px; width: 120px; display: inline-block; vertical-align: middle; margin-right: 6px; }
.bar i { display: block; height: 8px; border-radius: 3px; background: var(--bad); }
tr.is-noise .bar i { background: var(--noise); }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
.side div { min-width: 0; }
.side .label { font-size: 12px; color: var(--muted); }
details summary { cursor: pointer; color: var(--muted); }
.muted { color: var(--muted); }
@media print { details { display: block; } }
"#;

pub fn render(routes: &[RouteReport], generated_at: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Shadow comparison report</title><style>{STYLE}</style></head><body>\
         <header><h1>Shadow comparison report</h1><p>Generated {} · {} route(s) · the monolith answered every client; the service got a copy</p></header><main>",
        esc(generated_at),
        routes.len()
    );
    h.push_str("<h2>Summary</h2><table><thead><tr><th>Route</th><th>Endpoint</th><th>Stage</th><th class=\"num\">Samples</th><th class=\"num\">Match rate</th><th>Verdict</th><th class=\"num\">Mismatch bound</th></tr></thead><tbody>");
    for r in routes {
        let _ = write!(
            h,
            "<tr><td><a href=\"#route-{id}\">{route}</a></td><td><code>{ep}</code></td><td>{stage}</td><td class=\"num\">{n}</td><td class=\"num\">{rate}</td><td>{badge}</td><td class=\"num\">{bound}</td></tr>",
            id = esc(&r.route),
            route = esc(&r.route),
            ep = esc(&r.endpoint),
            stage = esc(&r.stage),
            n = r.comparisons,
            rate = pct(r.match_rate),
            badge = badge(r.verdict.status),
            bound = pct(r.verdict.upper_bound)
        );
    }
    h.push_str("</tbody></table>");
    for r in routes {
        route(&mut h, r);
    }
    h.push_str("<p class=\"muted\">Noise: fields that also differ when the monolith answers the same request twice (A/A); they are not counted as regressions. Verdict: READY when the 95 % Wilson upper bound of the real-mismatch rate is within the allowed rate.</p></main></body></html>\n");
    h
}

fn route(h: &mut String, r: &RouteReport) {
    let v = &r.verdict;
    let _ = write!(
        h,
        "<section class=\"route\" id=\"route-{id}\"><h2>{route} {badge}</h2><p><code>{ep}</code> · stage {stage}{svc}</p><div class=\"facts\">",
        id = esc(&r.route),
        route = esc(&r.route),
        badge = badge(v.status),
        ep = esc(&r.endpoint),
        stage = esc(&r.stage),
        svc = r.service.as_deref().map_or(String::new(), |s| format!(" · service {}", esc(s)))
    );
    for (value, label) in [
        (r.comparisons.to_string(), "comparisons"),
        (pct(r.match_rate), "match rate"),
        (v.real_mismatches.to_string(), "real mismatches"),
        (pct(v.upper_bound), "95 % bound"),
        (pct(v.max_mismatch), "allowed"),
        (r.stale.to_string(), "stale (lag)"),
        (r.aa_comparisons.to_string(), "A/A pairs"),
    ] {
        let _ = write!(
            h,
            "<div class=\"fact\"><b>{}</b><span>{label}</span></div>",
            esc(&value)
        );
    }
    h.push_str("</div>");
    if v.samples_needed > 0 {
        let _ = write!(
            h,
            "<p class=\"muted\">About {} more samples are needed at the observed rate.</p>",
            v.samples_needed
        );
    }
    if !r.skipped.is_empty() {
        let s: Vec<String> = r
            .skipped
            .iter()
            .map(|(k, n)| format!("{} {n}", esc(k)))
            .collect();
        let _ = write!(h, "<p>Not compared: {}.</p>", s.join(", "));
    }
    if r.fields.is_empty() {
        h.push_str("<p>No field differed.</p></section>");
        return;
    }
    h.push_str("<table><thead><tr><th>Field</th><th class=\"num\">Mismatches</th><th>Share</th><th>Kinds</th><th>Example</th></tr></thead><tbody>");
    for f in &r.fields {
        let _ = write!(
            h,
            "<tr class=\"{cls}\"><td><code>{field}</code>{noise}</td><td class=\"num\">{n}</td><td><span class=\"bar\"><i style=\"width:{w:.0}%\"></i></span>{share}</td><td>{kinds}</td><td>",
            cls = if f.noise { "is-noise" } else { "" },
            field = esc(&f.field),
            noise = if f.noise { format!(" <span class=\"noise\">noise</span> <span class=\"muted\">(A/A {})</span>", f.aa) } else { String::new() },
            n = f.mismatches,
            w = (f.share * 100.0).clamp(0.0, 100.0),
            share = pct(f.share),
            kinds = esc(&kinds_text(&f.kinds)),
        );
        if let Some(s) = f.examples.first() {
            let _ = write!(
                h,
                "<details><summary><code>{req}</code> at <code>{path}</code></summary><div class=\"side\"><div><div class=\"label\">monolith</div><pre>{a}</pre></div><div><div class=\"label\">service</div><pre>{b}</pre></div></div>{diff}</details>",
                req = esc(&s.request),
                path = esc(&s.path),
                a = esc(s.legacy.as_deref().unwrap_or("(absent)")),
                b = esc(s.candidate.as_deref().unwrap_or("(absent)")),
                diff = s.unified_diff.as_deref().map_or(String::new(), |d| format!("<pre>{}</pre>", esc(d)))
            );
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table></section>");
}
