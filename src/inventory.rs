//! `strangler inventory`: the endpoints the proxies have seen, and the
//! routes to add for those no route covers.

use std::collections::HashSet;

use serde_json::json;
use strangler_config::edit::{append_routes_to_file, route_name, NewRoute};
use strangler_config::Config;
use strangler_state::inventory::{listed, Listed};

use crate::cli::InventoryArgs;
use crate::Exit;

/// The inventory as listed, with the route covering each template.
pub async fn list(
    config: &Config,
    store: &strangler_state::StateStore,
) -> anyhow::Result<Vec<Listed>> {
    let t = store.inventory().await?;
    Ok(listed(&t, |method, path| {
        config.route_for(method, path).map(|r| r.name.clone())
    }))
}

/// Routes for the templates in `rows` that no route covers.
pub fn uncovered_routes(config: &Config, rows: &[Listed], min_requests: u64) -> Vec<NewRoute> {
    let mut taken: HashSet<String> = config.routes.iter().map(|r| r.name.clone()).collect();
    let mut out = Vec::new();
    for r in rows {
        if r.route.is_some()
            || !strangler_config::edit::METHODS.contains(&r.method.as_str())
            || r.requests < min_requests
            || strangler_config::PathTemplate::parse(&r.template).is_err()
        {
            continue;
        }
        let name = route_name(&r.method, &r.template, &taken);
        taken.insert(name.clone());
        out.push(NewRoute {
            name,
            method: r.method.clone(),
            path: r.template.clone(),
        });
    }
    out
}

fn ago(ms: i64, now: i64) -> String {
    let s = (now - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// The human table.
pub fn render(rows: &[Listed], top: usize) -> Vec<Vec<String>> {
    let now = strangler_state::store::now_ms();
    rows.iter()
        .take(top)
        .map(|r| {
            vec![
                r.method.clone(),
                r.template.clone(),
                r.requests.to_string(),
                format!("{:.1}%", r.share * 100.0),
                format!("{:.1}", r.p50_ms),
                format!("{:.1}", r.p99_ms),
                format!("{:.1}%", r.error_rate * 100.0),
                r.bytes.to_string(),
                ago(r.last_seen_ms, now),
                r.route.clone().unwrap_or_else(|| "- (not covered)".into()),
                r.example.clone(),
            ]
        })
        .collect()
}

pub const HEADER: [&str; 11] = [
    "METHOD",
    "TEMPLATE",
    "REQUESTS",
    "SHARE",
    "P50 MS",
    "P99 MS",
    "ERRORS",
    "BYTES",
    "LAST SEEN",
    "ROUTE",
    "EXAMPLE",
];

pub fn run(args: &InventoryArgs) -> anyhow::Result<Exit> {
    let Some(config) = crate::load_config(&args.common.config) else {
        return Ok(Exit::Usage);
    };
    crate::block_on(async {
        let store = crate::open_store(&config).await?;
        if args.reset {
            let n = store.reset_inventory().await?;
            println!("inventory reset ({n} templates forgotten)");
            store.close().await;
            return Ok(Exit::Ok);
        }
        let rows: Vec<Listed> = list(&config, &store)
            .await?
            .into_iter()
            .filter(|r| r.requests >= args.min_requests)
            .collect();
        store.close().await;
        if args.emit_routes {
            let add = uncovered_routes(&config, &rows, args.min_requests);
            if add.is_empty() {
                if args.common.json {
                    println!("{}", json!({ "added": [] }));
                } else {
                    println!("every template seen is covered by a route; nothing added");
                }
                return Ok(Exit::Ok);
            }
            if let Err(e) = append_routes_to_file(
                &args.common.config,
                &add,
                "strangler inventory --emit-routes",
            ) {
                eprintln!("{}: {e}", args.common.config.display());
                return Ok(Exit::Usage);
            }
            if args.common.json {
                let added: Vec<_> = add
                    .iter()
                    .map(|r| json!({ "name": r.name, "method": r.method, "path": r.path }))
                    .collect();
                println!("{}", json!({ "added": added }));
            } else {
                println!(
                    "added {} routes in stage legacy to {}:",
                    add.len(),
                    args.common.config.display()
                );
                for r in &add {
                    println!("  {:<32} {} {}", r.name, r.method, r.path);
                }
            }
            return Ok(Exit::Ok);
        }
        if args.common.json {
            let total: u64 = rows.iter().map(|r| r.requests).sum();
            println!("{}", json!({ "requests": total, "templates": rows }));
        } else if rows.is_empty() {
            println!("no traffic seen yet: the proxies count every request (proxy.inventory = true) and save it every 5 s");
        } else {
            crate::output::table(&HEADER, &render(&rows, args.top));
            let covered = rows.iter().filter(|r| r.route.is_some()).count();
            if rows.len() > args.top {
                println!("({} more; --top N shows more)", rows.len() - args.top);
            }
            println!(
                "\n{} templates, {} covered by a route; `strangler inventory --emit-routes` adds the others as routes in stage legacy",
                rows.len(),
                covered
            );
        }
        Ok(Exit::Ok)
    })
}
