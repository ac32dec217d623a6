//! `strangler status`: the migration board.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use strangler_config::{Config, Stage};
use strangler_router::gates;
use strangler_state::route_state::{Origin, Target};
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
pub async fn board(config: &Config, store: &StateStore) -> anyhow::Result<Vec<Row>> {
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
fn lag_cell(lag: gates::CdcLag) -> String {
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
        let mut stage = if r.stage == Stage::Canary {
            format!("canary {}", percent(r.percent))
        } else {
            r.stage.to_string()
        };
        match r.origin {
            Origin::Hold => stage.push_str(" (HELD)"),
            Origin::Runtime => stage.push_str(" (runtime)"),
            Origin::File
                if r.declared
                    != (Target {
                        stage: r.stage,
                        percent: r.percent,
                    }) =>
            {
                stage.push_str(" (gated)")
            }
            Origin::File => {}
        }
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
            lag_cell(r.cdc_lag),
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
    let Some(config) = crate::load_config(&args.common.config) else {
        return Ok(Exit::Usage);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = crate::open_store(&config).await?;
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
