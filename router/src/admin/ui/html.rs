//! The web board's HTML, rendered on the server: the page frame, the
//! board (routes, progress, inventory) and a route's page (gates, shadow
//! differences, audit history). Everything from the store or the config is
//! escaped; the only script is `board.js`.

use std::fmt::Write;

use strangler_config::Stage;
use strangler_shadow::report::RouteReport as ShadowReport;
use strangler_state::inventory::Listed;
use strangler_state::route_state::Origin;
use strangler_state::store::AuditEntry;

use crate::board::{lag_cell, Row};
use crate::progress::Hour;

/// Text safe inside HTML elements and quoted attributes (the shadow
/// report's escaping).
pub use strangler_shadow::report::escape_html as esc;

/// A route name in a URL path segment.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The page around `body`: `live` is the fragment URL `board.js` polls.
pub fn page(title: &str, live: &str, body: &str, who: &str, logout: bool) -> String {
    let logout = if logout {
        r#"<form method="post" action="/ui/logout"><button type="submit" class="link">Log out</button></form>"#
    } else {
        ""
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · strangler</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/board.css">
<script src="/ui/board.js" defer></script>
</head><body data-live="{live}">
<header><a class="brand" href="/ui">strangler</a><span class="who">{who}</span>{logout}</header>
<main id="live">{body}</main>
<dialog id="act"><form id="act-form">
<h3 id="act-title"></h3>
<input type="hidden" name="route"><input type="hidden" name="action">
<label id="act-percent-row">Percent on the service <input name="percent" type="number" min="0" max="100" step="0.1"></label>
<label>Reason <input name="reason" type="text" placeholder="why (written to the audit log)"></label>
<label><input name="force" type="checkbox"> Force past failed gates (needs a reason; audited as FORCED)</label>
<p id="act-result" role="status"></p>
<menu><button type="submit" id="act-go">Apply</button> <button type="button" id="act-close">Close</button></menu>
</form></dialog>
</body></html>"#,
        title = esc(title),
        live = esc(live),
        who = esc(who),
    )
}

fn stage_badge(stage: Stage, percent: f64) -> String {
    let text = if stage == Stage::Canary {
        format!("canary {percent}%")
    } else {
        stage.to_string()
    };
    format!(r#"<span class="stage {stage}">{}</span>"#, esc(&text))
}

fn verdict_cell(shadow: &Option<serde_json::Value>) -> String {
    match shadow {
        None => "-".into(),
        Some(s) => {
            let label = s["verdict"].as_str().unwrap_or("?");
            let class = label.to_ascii_lowercase().replace(' ', "-");
            format!(
                r#"<span class="verdict {class}">{}</span> <small>{} samples, bound {:.2}%</small>"#,
                esc(label),
                s["samples"],
                s["bound"].as_f64().unwrap_or(1.0) * 100.0
            )
        }
    }
}

fn next_cell(r: &Row) -> String {
    if r.origin == Origin::Hold {
        return r#"<span class="blocked">held by a rollback</span> (resume to follow the file again)"#.into();
    }
    if r.gates.is_empty() {
        return if r.service.is_some() && r.stage == Stage::Legacy {
            "shadow: no gate".into()
        } else {
            "-".into()
        };
    }
    let failed: Vec<&crate::gates::Gate> = r.gates.iter().filter(|g| !g.ok).collect();
    if failed.is_empty() {
        return r#"<span class="ok">ready to promote</span>"#.into();
    }
    let mut out = String::from(r#"<span class="blocked">blocked:</span><ul class="gates">"#);
    for g in failed {
        let _ = write!(out, "<li><b>{}</b> {}</li>", esc(g.name), esc(&g.detail));
    }
    out.push_str("</ul>");
    out
}

fn action_buttons(r: &Row) -> String {
    let name = esc(&r.route);
    let mut out = String::new();
    if r.origin == Origin::Hold {
        let _ = write!(
            out,
            r#"<button data-act="resume" data-route="{name}">Resume</button>"#
        );
        return out;
    }
    if r.service.is_some() && r.stage != Stage::Migrated {
        let _ = write!(
            out,
            r#"<button data-act="promote" data-route="{name}">Promote</button><button data-act="percent" data-route="{name}">Set %</button>"#
        );
    }
    if r.stage != Stage::Legacy {
        let _ = write!(
            out,
            r#"<button data-act="rollback" data-route="{name}" class="danger">Roll back</button>"#
        );
    }
    out
}

/// The routes table.
pub fn routes(rows: &[Row]) -> String {
    let mut out = String::from(
        r#"<section><h2>Routes</h2><table id="routes"><thead><tr><th>Route</th><th>Match</th><th>Stage</th><th>Service</th><th>Shadow</th><th>CDC lag</th><th>Requests</th><th>Fallbacks</th><th>Service errors</th><th>Next promotion</th><th></th></tr></thead><tbody>"#,
    );
    for r in rows {
        let mut stage = stage_badge(r.stage, r.percent);
        if !r.why.is_empty() {
            let _ = write!(stage, r#"<br><small class="why">{}</small>"#, esc(&r.why));
        }
        let _ = write!(
            out,
            r#"<tr data-route="{name}"><td><a href="/ui/routes/{seg}">{name}</a></td><td><code>{m}</code></td><td class="stage-cell">{stage}</td><td>{svc}</td><td>{verdict}</td><td>{lag}</td><td>{req}</td><td>{fb}</td><td>{err:.2}%</td><td>{next}</td><td class="actions">{acts}</td></tr>"#,
            name = esc(&r.route),
            seg = path_segment(&r.route),
            m = esc(&r.r#match),
            svc = esc(r.service.as_deref().unwrap_or("-")),
            verdict = verdict_cell(&r.shadow),
            lag = esc(&lag_cell(r.cdc_lag)),
            req = r.requests,
            fb = r.fallbacks,
            err = r.service_error_rate * 100.0,
            next = next_cell(r),
            acts = action_buttons(r),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The inventory table, with "Create route" for what no route covers.
pub fn inventory(rows: &[Listed], top: usize, editable: bool) -> String {
    let total: u64 = rows.iter().map(|r| r.requests).sum();
    let covered = rows.iter().filter(|r| r.route.is_some()).count();
    let mut out = format!(
        r#"<section id="inventory"><h2>Inventory <small>{} templates, {} covered by a route, {} requests seen</small></h2><table><thead><tr><th>Method</th><th>Template</th><th>Requests</th><th>Share</th><th>p50 ms</th><th>p99 ms</th><th>Errors</th><th>Bytes</th><th>Example</th><th>Route</th></tr></thead><tbody>"#,
        rows.len(),
        covered,
        total
    );
    for r in rows.iter().take(top) {
        let route = match &r.route {
            Some(name) => format!(
                r#"<a href="/ui/routes/{}">{}</a>"#,
                path_segment(name),
                esc(name)
            ),
            None if editable && r.method != strangler_state::inventory::OVERFLOW_METHOD => format!(
                r#"<button data-act="create" data-method="{}" data-template="{}">Create route</button>"#,
                esc(&r.method),
                esc(&r.template)
            ),
            None => "-".into(),
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{:.1}%</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}%</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>"#,
            esc(&r.method),
            esc(&r.template),
            r.requests,
            r.share * 100.0,
            r.p50_ms,
            r.p99_ms,
            r.error_rate * 100.0,
            r.bytes,
            esc(&r.example),
            route
        );
    }
    if rows.len() > top {
        let _ = write!(
            out,
            r#"<tr><td colspan="10">… {} more (strangler inventory lists them all)</td></tr>"#,
            rows.len() - top
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// Progress: the last hour's figures and the charts.
pub fn progress(hours: &[Hour]) -> String {
    let now = hours.last().cloned().unwrap_or_default();
    let (on, routes) = now.routes_on_services();
    let mut out = format!(
        r#"<section><h2>Progress</h2><p class="figures"><span><b id="routes-on">{on}/{routes}</b> routes on new services ({mig} migrated)</span><span><b id="served-share">{served:.1}%</b> of this hour's requests answered by new services</span></p><div class="charts">"#,
        mig = now.routes.get("migrated").copied().unwrap_or(0),
        served = now.served_share() * 100.0,
    );
    out.push_str(&super::chart::requests_by_stage(hours));
    out.push_str(&super::chart::routes_by_stage(hours));
    out.push_str("</div></section>");
    out
}

/// A route's page: its row, gates, shadow differences and history.
pub fn route_page(row: &Row, shadow: Option<&ShadowReport>, history: &[AuditEntry]) -> String {
    let mut out = format!(
        r#"<p><a href="/ui">← Board</a></p><h2>{name} <code>{m}</code></h2>"#,
        name = esc(&row.route),
        m = esc(&row.r#match)
    );
    out.push_str(&routes(std::slice::from_ref(row)));
    out.push_str(r#"<section><h2>Gates of the next promotion</h2>"#);
    if row.gates.is_empty() {
        let why = if row.service.is_none() {
            "the route has no service to move to"
        } else if row.stage == Stage::Migrated {
            "the route is migrated"
        } else {
            "entering shadow needs none: nothing has been measured yet"
        };
        let _ = write!(out, r#"<p id="gates">no gate: {why}</p>"#);
    } else {
        out.push_str(r#"<table id="gates"><thead><tr><th>Gate</th><th>Passes</th><th>Detail</th></tr></thead><tbody>"#);
        for g in &row.gates {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="{}">{}</td><td>{}</td></tr>"#,
                esc(g.name),
                if g.ok { "ok" } else { "blocked" },
                if g.ok { "yes" } else { "no" },
                esc(&g.detail)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section><section><h2>Shadow differences</h2>");
    match shadow {
        None => out.push_str("<p>no comparisons yet</p>"),
        Some(s) => {
            let _ = write!(
                out,
                r#"<p id="shadow-summary">{} comparisons, {} matched, {} stale (explained by replication lag), verdict <b>{}</b> (95 % upper bound {:.2}% against {:.2}% allowed, {} samples of {} needed)</p>"#,
                s.comparisons,
                s.matches,
                s.stale,
                esc(s.verdict.status.label()),
                s.verdict.upper_bound * 100.0,
                s.verdict.max_mismatch * 100.0,
                s.verdict.samples,
                s.verdict.min_samples
            );
            out.push_str(r#"<table id="fields"><thead><tr><th>Field</th><th>Differed</th><th>Share</th><th>Kinds</th><th>Noise</th><th>Examples (monolith → service)</th></tr></thead><tbody>"#);
            for f in &s.fields {
                let kinds: Vec<String> = f
                    .kinds
                    .iter()
                    .map(|(k, n)| {
                        let k = serde_json::to_value(k)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        format!("{k} {n}")
                    })
                    .collect();
                let mut examples = String::new();
                for e in f.examples.iter().take(3) {
                    let _ = write!(
                        examples,
                        "<div><code>{}</code>: <code>{}</code> → <code>{}</code></div>",
                        esc(&e.request),
                        esc(e.legacy.as_deref().unwrap_or("∅")),
                        esc(e.candidate.as_deref().unwrap_or("∅"))
                    );
                    if let Some(d) = &e.unified_diff {
                        let _ = write!(examples, "<pre>{}</pre>", esc(d));
                    }
                }
                let _ = write!(
                    out,
                    r#"<tr><td><code>{}</code></td><td>{}</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    esc(&f.field),
                    f.mismatches,
                    f.share * 100.0,
                    esc(&kinds.join(", ")),
                    if f.noise { "noise (A/A)" } else { "" },
                    examples
                );
            }
            if s.fields.is_empty() {
                out.push_str(r#"<tr><td colspan="6">no field differed</td></tr>"#);
            }
            out.push_str("</tbody></table>");
        }
    }
    out.push_str(r#"</section><section><h2>History</h2><table id="history"><thead><tr><th>When (UTC)</th><th>Who</th><th>From</th><th>To</th><th>Reason</th></tr></thead><tbody>"#);
    for e in history.iter().rev() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.at),
            esc(&e.actor),
            esc(&e.before.to_string()),
            esc(&e.after.to_string()),
            esc(&e.reason)
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The login form (`error`: why the last try failed).
pub fn login(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="blocked" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · strangler</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/ui/board.css"></head>
<body><main class="login"><h1>strangler</h1>
<form method="post" action="/ui/login">
<label>Admin token <input type="password" name="token" id="token" autocomplete="current-password" required autofocus></label>
{error}<button type="submit" id="login">Log in</button>
</form><p><small>A token from <code>[proxy] admin_tokens</code> (or an OIDC access token). The browser keeps it in an HTTP-only cookie for this admin listener.</small></p></main></body></html>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_store_cannot_become_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(path_segment("get product/1"), "get%20product%2F1");
    }
}
