//! `strangler status`: the migration board.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use strangler_config::Stage;
use strangler_state::route_state::{Origin, Target};

use crate::cli::StatusArgs;
use crate::output::percent;
use crate::Exit;

pub use strangler_router::board::{board, lag_cell, Row};
use strangler_router::progress::{hourly, Hour};

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

/// Migration progress, an hour a line (hours without traffic or change left
/// out, the current hour always shown).
pub fn render_progress(hours: &[Hour]) -> String {
    let mut out = vec![format!(
        "{:<17} {:>8}  {:>7} {:>7} {:>7} {:>8}  {:>9}  {:>9}",
        "HOUR (UTC)", "REQUESTS", "LEGACY", "SHADOW", "CANARY", "MIGRATED", "ON SVC", "ROUTES ON"
    )];
    let last = hours.len().saturating_sub(1);
    for (i, h) in hours.iter().enumerate() {
        let before = i.checked_sub(1).map(|j| &hours[j].routes);
        if h.requests == 0 && i != last && before == Some(&h.routes) {
            continue;
        }
        let at = chrono::DateTime::from_timestamp_millis(h.start_ms)
            .map(|t| t.format("%Y-%m-%d %H:00").to_string())
            .unwrap_or_default();
        let share = |s: &str| format!("{:.1}%", h.stage_share(s) * 100.0);
        let (on, routes) = h.routes_on_services();
        out.push(format!(
            "{at:<17} {:>8}  {:>7} {:>7} {:>7} {:>8}  {:>9}  {:>9}",
            h.requests,
            share("legacy"),
            share("shadow"),
            share("canary"),
            share("migrated"),
            format!("{:.1}%", h.served_share() * 100.0),
            format!("{on}/{routes}"),
        ));
    }
    out.push(
        "(request share by the stage of the route that took them; ON SVC: answered by new services; ROUTES ON: routes in canary or migrated)"
            .into(),
    );
    out.join("\n")
}

pub fn run(args: StatusArgs) -> anyhow::Result<Exit> {
    let Some(config) = crate::load_config(&args.common.config) else {
        return Ok(Exit::Usage);
    };
    crate::block_on(async {
        let store = crate::open_store(&config).await?;
        loop {
            let rows = board(&config, &store).await?;
            let now = strangler_state::store::now_ms();
            let progress = hourly(&config, &store, now, args.hours).await?;
            if args.common.json {
                println!("{}", json!({ "routes": rows, "progress": progress }));
            } else {
                let text = format!(
                    "{}\n\nMigration progress\n{}",
                    render(&rows),
                    render_progress(&progress)
                );
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
