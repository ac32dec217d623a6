//! `strangler doctor` (what strangler made in the databases, the WAL its
//! slots hold back, what is left over) and `strangler cdc teardown` (remove
//! it). The finding and removing is `strangler_cdc::teardown`; this file
//! maps the configuration to databases and prints.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use serde_json::json;
use strangler_cdc::teardown::{self, Object, Place, Removal};
use strangler_config::{CdcConfig, Config};
use strangler_state::store::StateStore;

use crate::output::table;
use crate::Exit;

/// The reverse slot (and publication) of reverse sink `sink`.
pub fn reverse_slot(sink: &str) -> String {
    format!(
        "strangler_rev_{}",
        sink.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The databases of `[cdc]`, one place per distinct URL: what the
/// configuration keeps there. A URL whose variable is unset is named in
/// the returned errors.
fn places(cdc: &CdcConfig, source_url: &str) -> (Vec<Place>, Vec<String>) {
    let mut by_url: BTreeMap<String, Place> = BTreeMap::new();
    let mut missing = Vec::new();
    fn at<'a>(by_url: &'a mut BTreeMap<String, Place>, url: &str, label: String) -> &'a mut Place {
        let p = by_url.entry(url.to_string()).or_insert_with(|| Place {
            label: String::new(),
            url: url.to_string(),
            slots: Vec::new(),
            sinks: Vec::new(),
            sink_slots: Vec::new(),
        });
        if !p.label.split(", ").any(|l| l == label) {
            if !p.label.is_empty() {
                p.label.push_str(", ");
            }
            p.label.push_str(&label);
        }
        p
    }
    // A MySQL source keeps nothing of strangler's: no slot, no
    // publication (the lease is a lock that ends with its session).
    if !cdc.source.kind.is_mysql() {
        let src = at(&mut by_url, source_url, "source".into());
        src.slots
            .extend([cdc.source.slot.clone(), cdc.source.publication.clone()]);
    }
    for s in &cdc.sinks {
        let url = match std::env::var(&s.url_env) {
            Ok(u) if !u.is_empty() => u,
            _ => {
                missing.push(format!(
                    "sink {}: {} is not set, so its database was not looked at",
                    s.name, s.url_env
                ));
                continue;
            }
        };
        if s.reverse {
            let rev = reverse_slot(&s.name);
            let svc = at(&mut by_url, &url, format!("service of {}", s.name));
            svc.slots.push(rev.clone());
            // A MySQL monolith's bookkeeping (`strangler_cdc_offsets`) is
            // not looked at here (see the README).
            if !cdc.source.kind.is_mysql() {
                let src = at(&mut by_url, source_url, "source".into());
                src.sinks.push(s.name.clone());
                src.sink_slots.push(rev);
            }
        } else {
            let t = at(&mut by_url, &url, format!("sink {}", s.name));
            t.sinks.push(s.name.clone());
            t.sink_slots.push(cdc.source.slot.clone());
        }
    }
    (by_url.into_values().collect(), missing)
}

/// Origins are one set per PostgreSQL cluster: an origin seen from two
/// databases of one cluster is listed once, judged against every sink.
fn dedup_origins(found: &mut Vec<Object>, cdc: &CdcConfig) {
    let all: Vec<String> = cdc.sinks.iter().map(|s| s.name.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    found.retain(|o| o.kind != "origin" || seen.insert(o.name.clone()));
    for o in found.iter_mut().filter(|o| o.kind == "origin") {
        o.configured = all.iter().any(|s| {
            o.name == strangler_cdc::origin::name(s)
                || o.name
                    .starts_with(&format!("{}_", strangler_cdc::origin::name(s)))
        });
    }
}

fn state_of(o: &Object) -> String {
    let mut s = if o.configured { "in use" } else { "LEFT OVER" }.to_string();
    if o.kind == "slot" {
        s.push_str(if o.active { ", streaming" } else { ", idle" });
    }
    s
}

fn detail(o: &Object) -> String {
    match (o.retained_wal_bytes, o.rows) {
        (Some(b), _) => format!("retains {} of WAL", human_bytes(b)),
        (_, Some(n)) => format!("{n} rows"),
        _ => String::new(),
    }
}

fn human_bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    match b {
        b if b >= 1024.0 * 1024.0 * 1024.0 => format!("{:.1} GiB", b / 1024f64.powi(3)),
        b if b >= 1024.0 * 1024.0 => format!("{:.1} MiB", b / 1024f64.powi(2)),
        b if b >= 1024.0 => format!("{:.1} KiB", b / 1024.0),
        b => format!("{b} B"),
    }
}

/// How to remove a left-over by hand (doctor never removes one: it may
/// belong to another environment sharing the cluster).
fn drop_sql(o: &Object) -> Option<String> {
    let lit = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let ident = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    match o.kind {
        "slot" => Some(format!(
            "SELECT pg_drop_replication_slot({});",
            lit(&o.name)
        )),
        "publication" => Some(format!("DROP PUBLICATION {};", ident(&o.name))),
        "origin" => Some(format!(
            "SELECT pg_replication_origin_drop({});",
            lit(&o.name)
        )),
        "rows" => {
            let table = o.name.split(':').next()?;
            let sink = lit(o.sink.as_deref()?);
            Some(match &o.slot {
                Some(slot) => format!(
                    "DELETE FROM {table} WHERE sink = {sink} AND slot = {};",
                    lit(slot)
                ),
                None => format!("DELETE FROM {table} WHERE sink = {sink};"),
            })
        }
        _ => None,
    }
}

/// `strangler doctor`: exit 0 when nothing is left over, 1 otherwise.
pub async fn doctor(
    config: &Config,
    cdc: &CdcConfig,
    source_url: &str,
    json: bool,
) -> anyhow::Result<Exit> {
    let (places, missing) = places(cdc, source_url);
    let mut found = Vec::new();
    for p in &places {
        found.extend(teardown::inventory(p).await?);
    }
    dedup_origins(&mut found, cdc);
    let _ = config;
    let left: Vec<&Object> = found.iter().filter(|o| !o.configured).collect();
    if json {
        println!(
            "{}",
            json!({"objects": found, "left_over": left.len(), "not_checked": missing})
        );
    } else {
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|o| {
                vec![
                    o.place.clone(),
                    o.kind.into(),
                    o.name.clone(),
                    state_of(o),
                    detail(o),
                ]
            })
            .collect();
        table(&["WHERE", "KIND", "NAME", "STATE", "DETAIL"], &rows);
        for m in &missing {
            println!("not checked: {m}");
        }
        if left.is_empty() {
            println!("nothing left over");
        } else {
            println!("\n{} left over (not in this configuration; another environment's, or forgotten). A forgotten slot keeps WAL on the source until its disk fills. To remove one, in its database:", left.len());
            for o in &left {
                if let Some(sql) = drop_sql(o) {
                    println!("  [{}] {sql}", o.place);
                }
            }
        }
    }
    Ok(if left.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// `strangler cdc teardown [--sink NAME] [--yes]`.
pub async fn cdc_teardown(
    config: &Config,
    cdc: &CdcConfig,
    source_url: &str,
    sink: Option<&str>,
    yes: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    let (places, missing) = places(cdc, source_url);
    if !missing.is_empty() {
        for m in &missing {
            eprintln!("error: {m}");
        }
        eprintln!("error: teardown needs every database of the migration: set the variables above");
        return Ok(Exit::Usage);
    }
    // What to remove where.
    let mut plan: Vec<(&Place, Removal)> = Vec::new();
    let mut forget: Vec<(String, Option<String>)> = Vec::new();
    match sink {
        None => {
            for p in &places {
                plan.push((
                    p,
                    Removal {
                        slots: p.slots.clone(),
                        sinks: p.sinks.clone(),
                        sink_slots: p.sink_slots.clone(),
                        tables: true,
                    },
                ));
            }
            forget.push((cdc.source.slot.clone(), None));
            for s in cdc.sinks.iter().filter(|s| s.reverse) {
                forget.push((reverse_slot(&s.name), None));
            }
        }
        Some(name) => {
            let Some(s) = cdc.sinks.iter().find(|s| s.name == name) else {
                let names: Vec<&str> = cdc.sinks.iter().map(|s| s.name.as_str()).collect();
                eprintln!(
                    "error: no [[cdc.sinks]] named {name:?} (sinks: {})",
                    names.join(", ")
                );
                return Ok(Exit::Usage);
            };
            let rev = reverse_slot(&s.name);
            for p in &places {
                let slots = if s.reverse && p.slots.contains(&rev) {
                    vec![rev.clone()]
                } else {
                    Vec::new()
                };
                let sinks = if p.sinks.contains(&s.name) {
                    vec![s.name.clone()]
                } else {
                    Vec::new()
                };
                let sink_slots = vec![if s.reverse {
                    rev.clone()
                } else {
                    cdc.source.slot.clone()
                }];
                if !slots.is_empty() || !sinks.is_empty() {
                    plan.push((
                        p,
                        Removal {
                            slots,
                            sinks,
                            sink_slots,
                            tables: false,
                        },
                    ));
                }
            }
            if s.reverse {
                forget.push((rev, None));
            } else {
                forget.push((cdc.source.slot.clone(), Some(s.name.clone())));
            }
        }
    }
    // Nothing while a cdc run (active or standing by) could come back to
    // a fresh slot and empty bookkeeping and copy everything again.
    let mut users = vec![(source_url.to_string(), cdc.source.slot.clone())];
    for s in cdc.sinks.iter().filter(|s| s.reverse) {
        if let Ok(url) = std::env::var(&s.url_env) {
            users.push((url, reverse_slot(&s.name)));
        }
    }
    for (url, slot) in &users {
        if let Some(who) = teardown::in_use(url, slot).await? {
            eprintln!("error: nothing removed: slot {slot} is used by {who}: stop every cdc run of this migration first");
            return Ok(Exit::Failed);
        }
    }
    // Show the list first.
    let mut listed = Vec::new();
    for (p, r) in &plan {
        let mut found = teardown::inventory(p).await?;
        dedup_origins(&mut found, cdc);
        listed.extend(teardown::selected(&found, r).into_iter().cloned());
    }
    if !json {
        if listed.is_empty() {
            println!("nothing of strangler's to remove in the databases");
        } else {
            println!("strangler cdc teardown removes:");
            let rows: Vec<Vec<String>> = listed
                .iter()
                .map(|o| vec![o.place.clone(), o.kind.into(), o.name.clone(), detail(o)])
                .collect();
            table(&["WHERE", "KIND", "NAME", "DETAIL"], &rows);
        }
        println!(
            "and the state store's CDC positions of {}",
            forget
                .iter()
                .map(|(s, k)| match k {
                    Some(k) => format!("sink {k} on slot {s}"),
                    None => format!("slot {s}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("error: nothing removed: run again with --yes to remove the above");
            return Ok(Exit::Failed);
        }
        eprint!("remove all of the above? type yes: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("nothing removed");
            return Ok(Exit::Failed);
        }
    }
    let mut removed = 0;
    for (p, r) in &plan {
        match teardown::remove(p, r).await {
            Ok(n) => removed += n,
            Err(e @ teardown::TeardownError::InUse(_)) => {
                eprintln!("error: {e}");
                return Ok(Exit::Failed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut forgotten = 0;
    let mut store_cleared = true;
    match config.state.store_url() {
        Ok(url) => match StateStore::connect(url).await {
            Ok(store) => {
                for (slot, sink) in &forget {
                    forgotten += store.forget_cdc(slot, sink.as_deref()).await?;
                }
            }
            Err(e) => {
                eprintln!("error: state store: {e}: the databases are clean, but the store still holds this migration's CDC positions — run `strangler cdc teardown --yes` again once it answers");
                store_cleared = false;
            }
        },
        Err(e) => {
            eprintln!("error: {e}: the store's CDC positions were not cleared");
            store_cleared = false;
        }
    }
    if json {
        println!("{}", json!({"removed": listed, "store_rows": forgotten}));
    } else {
        println!("removed {removed} objects; {forgotten} state-store rows cleared");
    }
    Ok(if store_cleared {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
