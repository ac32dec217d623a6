//! `strangler status`: the migration board.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use strangler_config::{Config, Route, Stage};
use strangler_router::gates;
use strangler_router::shadow::summaries;
use strangler_router::usage::minute;
use strangler_state::route_state::effective;
use strangler_state::store::StateStore;

use crate::cli::StatusArgs;
use crate::output::percent;
use crate::Exit;

/// One row of the board.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub route: String,
    pub r#match: String,
    pub stage: Stage,
    pub percent: f64,
    pub service: Option<String>,
    pub shadow: Option<serde_json::Value>,
    /// Highest CDC lag (bytes) over the route's tables; `None` when not known.
    pub cdc_lag_bytes: Option<u64>,
    pub requests: u64,
    pub fallbacks: u64,
    pub service_error_rate: f64,
    /// Gates of the next promotion.
    pub gates: Vec<gates::Gate>,
}

pub async fn board(config: &Config, store: &StateStore) -> anyhow::Result<Vec<Row>> {
    let overrides = store.overrides().await?;
    let eff = |r: &Route| effective(r, overrides.iter().find(|o| o.route == r.name));
    let stats = store.shadow_stats().await?;
    let verdicts = summaries(config, |r| eff(r).stage, &stats, 0.001, 500);
    let lag = store.lag_view().await?;
    let now = strangler_state::store::now_ms();
    let mut rows = Vec::new();
    for r in &config.routes {
        let e = eff(r);
        let since = minute(now - r.promote.window.as_millis() as i64);
        let usage = store
            .usage_since(since)
            .await?
            .get(&r.name)
            .copied()
            .unwrap_or_default();
        // The route's own thresholds (`[routes.promote] max_mismatch, min_samples`).
        let verdict = verdicts.iter().find(|v| v.route == r.name).map(|v| {
            strangler_shadow::verdict::verdict(
                v.verdict.samples,
                v.verdict.real_mismatches,
                r.promote.max_mismatch,
                r.promote.min_samples,
            )
        });
        let lag_bytes = r
            .tables
            .iter()
            .map(|t| match (lag.source, lag.applied.get(t)) {
                (Some((s, _)), Some(a)) => Some(u64::try_from((s - a).max(0)).unwrap_or(0)),
                _ => None,
            })
            .try_fold(0u64, |m, v| v.map(|v| m.max(v)));
        let methods = if r.methods.is_empty() {
            "*".to_string()
        } else {
            r.methods.join(",")
        };
        rows.push(Row {
            route: r.name.clone(),
            r#match: format!("{methods} {}", r.path),
            stage: e.stage,
            percent: e.percent,
            service: r.service.clone(),
            shadow: verdict.map(|v| json!({"verdict": v.status.label(), "samples": v.samples, "bound": v.upper_bound})),
            cdc_lag_bytes: if r.tables.is_empty() { None } else { lag_bytes },
            requests: usage.requests,
            fallbacks: usage.fallbacks,
            service_error_rate: usage.error_rate(),
            gates: if r.service.is_some() && e.stage != Stage::Migrated { gates::check(r, e, verdict.as_ref(), &lag, &usage) } else { Vec::new() },
        });
    }
    Ok(rows)
}

pub fn render(rows: &[Row]) -> String {
    let mut table: Vec<Vec<String>> = vec![[
        "ROUTE",
        "MATCH",
        "STAGE",
        "SERVICE",
        "SHADOW",
        "CDC LAG",
        "REQS",
        "FALLBACKS",
        "SVC ERR",
        "NEXT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for r in rows {
        let stage = if r.stage == Stage::Canary {
            format!("canary {}", percent(r.percent))
        } else {
            r.stage.to_string()
        };
        let shadow = r.shadow.as_ref().map_or("-".to_string(), |s| {
            format!(
                "{} ({}, ≤{:.2}%)",
                s["verdict"].as_str().unwrap_or("?"),
                s["samples"],
                s["bound"].as_f64().unwrap_or(1.0) * 100.0
            )
        });
        let next = if r.gates.is_empty() {
            "-".to_string()
        } else if r.gates.iter().all(|g| g.ok) {
            "ready to promote".to_string()
        } else {
            let failed: Vec<&str> = r.gates.iter().filter(|g| !g.ok).map(|g| g.name).collect();
            format!("blocked: {}", failed.join(", "))
        };
        table.push(vec![
            r.route.clone(),
            r.r#match.clone(),
            stage,
            r.service.clone().unwrap_or_else(|| "-".into()),
            shadow,
            r.cdc_lag_bytes.map_or("-".into(), |b| format!("{b} B")),
            r.requests.to_string(),
            r.fallbacks.to_string(),
            format!("{:.2}%", r.service_error_rate * 100.0),
            next,
        ]);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    table
        .iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn run(args: StatusArgs) -> anyhow::Result<Exit> {
    let config = match Config::load(&args.common.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(Exit::Usage);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = StateStore::connect(&config.state.url).await?;
        loop {
            let rows = board(&config, &store).await?;
            if args.common.json {
                println!("{}", json!({ "routes": rows }));
            } else {
                let text = render(&rows);
                if args.watch {
                    // Redraw in place.
                    print!(
                        "\x1b[H\x1b[2J{}\n\nrefreshing every 2 s — Ctrl-C to stop\n",
                        text
                    );
                    let _ = std::io::stdout().flush();
                } else {
                    println!("{text}");
                }
            }
            if !args.watch {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        store.close().await;
        Ok(Exit::Ok)
    })
}
