//! `strangler shadow report | gate | noise | reset`
//!
//! These read the shadow statistics every proxy flushes to the state store.

use std::path::PathBuf;

use serde_json::json;
use strangler_config::{Config, Route};
use strangler_shadow::noise::{self, Suggestion, Thresholds};
use strangler_shadow::report::summaries;
use strangler_shadow::report::{self, RouteReport};
use strangler_shadow::verdict::Status;
use strangler_shadow::Rules;
use strangler_state::route_state::effective;
use strangler_state::store::{now_ms, rfc3339, StateStore};

use crate::cli::{Common, ShadowArgs, ShadowCommand};
use crate::Exit;

pub fn run(args: ShadowArgs) -> anyhow::Result<Exit> {
    let Some(config) = crate::load_config(&args.common.config) else {
        return Ok(Exit::Usage);
    };
    crate::block_on(async {
        let store = crate::open_store(&config).await?;
        let exit = match args.command {
            ShadowCommand::Report {
                route,
                format,
                output,
            } => report_cmd(&config, &store, &args.common, route, format, output).await?,
            ShadowCommand::Gate {
                name,
                max_mismatch,
                min_samples,
            } => {
                gate(
                    &config,
                    &store,
                    &args.common,
                    &name,
                    max_mismatch,
                    min_samples,
                )
                .await?
            }
            ShadowCommand::Noise { name, accept } => {
                noise_cmd(&config, &store, &args.common, &name, accept).await?
            }
            ShadowCommand::Reset { name } => {
                if config.route(&name).is_none() {
                    return Ok(crate::route::unknown_route(&config, &name));
                }
                let had = store.reset_shadow(&name).await?;
                if let Some(route) = config.route(&name) {
                    let entry = strangler_router::gates::note(
                        &store,
                        route,
                        crate::route::who(&config, "shadow reset: comparison statistics cleared"),
                    )
                    .await?;
                    println!(
                        "{name}: shadow statistics {} (audit #{})",
                        if had { "cleared" } else { "were already empty" },
                        entry.id
                    );
                }
                Exit::Ok
            }
        };
        store.close().await;
        Ok(exit)
    })
}

async fn reports(
    config: &Config,
    store: &StateStore,
    thresholds: Option<(f64, u64)>,
) -> anyhow::Result<Vec<RouteReport>> {
    let stats = store.shadow_stats().await?;
    let rows = strangler_state::RouteStore::routes(store).await?;
    let stage_of = |r: &Route| effective(r, rows.iter().find(|o| o.route == r.name)).stage;
    Ok(summaries(config, stage_of, &stats, thresholds))
}

async fn report_cmd(
    config: &Config,
    store: &StateStore,
    args: &Common,
    route: Option<String>,
    format: Option<String>,
    output: Option<PathBuf>,
) -> anyhow::Result<Exit> {
    let mut routes = reports(config, store, None).await?;
    if let Some(name) = &route {
        if config.route(name).is_none() {
            return Ok(crate::route::unknown_route(config, name));
        }
        routes.retain(|r| &r.route == name);
    }
    let format = match (format.as_deref(), &output, args.json) {
        (Some(f), _, _) => f.to_string(),
        (None, _, true) => "json".into(),
        (None, Some(p), _) if p.extension().is_some_and(|e| e == "html" || e == "htm") => {
            "html".into()
        }
        (None, Some(p), _) if p.extension().is_some_and(|e| e == "json") => "json".into(),
        _ => "md".into(),
    };
    let at = rfc3339(now_ms());
    let text = match format.as_str() {
        "md" | "markdown" => report::markdown(&routes, &at),
        "json" => report::json(&routes, &at),
        "html" => report::html(&routes, &at),
        other => {
            eprintln!("error: --format {other:?}: expected html, md or json");
            return Ok(Exit::Usage);
        }
    };
    match output {
        Some(path) => {
            std::fs::write(&path, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            println!("{}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(Exit::Ok)
}

async fn gate(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
    max_mismatch_pct: Option<f64>,
    min_samples: Option<u64>,
) -> anyhow::Result<Exit> {
    if config.route(name).is_none() {
        return Ok(crate::route::unknown_route(config, name));
    }
    // The route's own thresholds unless given here.
    let own = config
        .route(name)
        .map(|r| (r.promote.max_mismatch, r.promote.min_samples));
    let thresholds = own.map(|(mm, ms)| {
        (
            max_mismatch_pct.map_or(mm, |p| p / 100.0),
            min_samples.unwrap_or(ms),
        )
    });
    let routes = reports(config, store, thresholds).await?;
    let Some(r) = routes.iter().find(|r| r.route == name) else {
        eprintln!("error: route {name:?} has no service, so nothing is compared");
        return Ok(Exit::Usage);
    };
    let v = &r.verdict;
    if args.json {
        println!("{}", json!({ "route": name, "verdict": v }));
    } else {
        println!(
            "{name}: {} — {} samples, {} real mismatches, 95 % upper bound {:.3} % (allowed {:.3} %, at least {} samples){}",
            v.status.label(),
            v.samples,
            v.real_mismatches,
            v.upper_bound * 100.0,
            v.max_mismatch * 100.0,
            v.min_samples,
            if v.samples_needed > 0 { format!("; about {} more samples needed", v.samples_needed) } else { String::new() }
        );
    }
    Ok(match v.status {
        Status::Ready => Exit::Ok,
        Status::NotReady => Exit::Failed,
        Status::InsufficientData => Exit::Usage,
    })
}

async fn noise_cmd(
    config: &Config,
    store: &StateStore,
    args: &Common,
    name: &str,
    accept: bool,
) -> anyhow::Result<Exit> {
    let Some(route) = config.route(name) else {
        return Ok(crate::route::unknown_route(config, name));
    };
    let stats = store.shadow_stats().await?;
    let mut s = stats
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
        .unwrap_or_default();
    let rules = Rules::new(&route.compare);
    s.forget_fields(|f| rules.ignores_field(f));
    let suggestions = noise::suggestions(&s, &route.compare.ignore, Thresholds::default());
    if args.json {
        println!(
            "{}",
            json!({ "route": name, "aa_comparisons": s.aa_comparisons, "suggestions": suggestions })
        );
    } else if suggestions.is_empty() {
        println!(
            "{name}: no suggestions ({} comparisons, {} A/A pairs so far)",
            s.comparisons, s.aa_comparisons
        );
    } else {
        for sg in &suggestions {
            println!("{name}: {} {:?} — {}", sg.rule, sg.value, sg.reason);
        }
    }
    if accept && !suggestions.is_empty() {
        accept_suggestions(&config.path, name, &suggestions)?;
        let rules: Vec<String> = suggestions
            .iter()
            .map(|s| format!("{} {:?}", s.rule, s.value))
            .collect();
        let entry = strangler_router::gates::note(
            store,
            route,
            crate::route::who(
                config,
                &format!(
                    "shadow noise --accept: {} written to {}",
                    rules.join(", "),
                    config.path.display()
                ),
            ),
        )
        .await?;
        if !args.json {
            println!(
                "written to {} (running proxies reload it; audit #{})",
                config.path.display(),
                entry.id
            );
        }
    }
    Ok(Exit::Ok)
}

/// Appends the suggestions to the route's `[routes.compare]` in the file,
/// keeping its formatting and comments.
pub(crate) fn accept_suggestions(
    path: &std::path::Path,
    name: &str,
    suggestions: &[Suggestion],
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    let routes = doc
        .get_mut("routes")
        .and_then(|r| r.as_array_of_tables_mut())
        .ok_or_else(|| anyhow::anyhow!("{}: no [[routes]]", path.display()))?;
    let route = routes
        .iter_mut()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
        .ok_or_else(|| anyhow::anyhow!("{}: no route {name:?}", path.display()))?;
    let compare = route
        .entry("compare")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(false);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| anyhow::anyhow!("routes.compare of {name:?} is not a table"))?;
    for sg in suggestions {
        let list = compare
            .entry(&sg.rule)
            .or_insert_with(|| toml_edit::value(toml_edit::Array::new()))
            .as_array_mut()
            .ok_or_else(|| {
                anyhow::anyhow!("routes.compare.{} of {name:?} is not an array", sg.rule)
            })?;
        if !list.iter().any(|v| v.as_str() == Some(&sg.value)) {
            list.push(sg.value.as_str());
        }
    }
    let new = doc.to_string();
    // Never write a file the router would reject.
    Config::from_toml(&new, path)
        .map_err(|e| anyhow::anyhow!("the edited file would be invalid: {e}"))?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, new)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
