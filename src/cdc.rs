//! `strangler cdc snapshot | run | status | verify | reverse`
//!
//! (About 430 lines: the five commands' argument handling, environment
//! variables and printing; the work itself is in `strangler_cdc::run`,
//! `status` and `verify`.)

use std::time::Duration;

use serde_json::json;
use strangler_cdc::pipeline::{Progress, Start};
use strangler_cdc::source::{self, SourceConfig};
use strangler_cdc::status::{CheckPlan, StoreStatus};
use strangler_cdc::verify;
use strangler_config::{CdcConfig, CdcSink, CdcTransport, Config, SnapshotMode, TableName};
use strangler_state::lag::Direction;
use strangler_state::store::StateStore;

use crate::cli::{CdcArgs, CdcCommand};
use crate::Exit;

fn env_url(var: &str, key: &str) -> Result<String, String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!("{key} names {var}, which is not set: export the database URL in it")
        })
}

fn usage(msg: impl std::fmt::Display) -> anyhow::Result<Exit> {
    eprintln!("error: {msg}");
    Ok(Exit::Usage)
}

fn sink_specs(sinks: &[&CdcSink], urls: &[String]) -> Vec<strangler_cdc::run::SinkSpec> {
    sinks
        .iter()
        .zip(urls)
        .map(|(s, url)| strangler_cdc::run::SinkSpec {
            name: s.name.clone(),
            url: url.clone(),
            tables: s.tables.clone(),
            connections: s.connections,
        })
        .collect()
}

pub fn run(args: CdcArgs) -> anyhow::Result<Exit> {
    let Some(config) = crate::load_config(&args.common.config) else {
        return Ok(Exit::Usage);
    };
    let Some(cdc) = config.cdc.clone() else {
        return usage(format!("{} has no [cdc] section", config.path.display()));
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Kafka sink workers read the broker, not the monolith: they need
        // no source credentials.
        let sink_worker = matches!(args.command, CdcCommand::Run { sinks_only: true, .. })
            && matches!(cdc.transport, CdcTransport::Kafka { .. });
        let source_url = match env_url(&cdc.source.url_env, "cdc.source.url_env") {
            Ok(u) => u,
            Err(_) if sink_worker => String::new(),
            Err(e) => return usage(e),
        };
        let json = args.common.json;
        match args.command {
            CdcCommand::Snapshot { table: Some(_) } if cdc.source.kind.is_mysql() => {
                usage("cdc snapshot --table is not available for a MySQL source yet: `strangler cdc snapshot` copies every table again")
            }
            CdcCommand::Snapshot { table: Some(t) } => request_chunked(&cdc, &source_url, &t, json).await,
            CdcCommand::Run { .. } | CdcCommand::Snapshot { table: None } => {
                let sinks: Vec<&CdcSink> = cdc.sinks.iter().filter(|s| !s.reverse).collect();
                let mut urls = Vec::new();
                for s in &sinks {
                    match env_url(&s.url_env, &format!("cdc.sinks {:?} url_env", s.name)) {
                        Ok(u) => urls.push(u),
                        Err(e) => return usage(e),
                    }
                }
                let cfg = SourceConfig::from_config(&cdc, source_url);
                let snapshot_only = matches!(args.command, CdcCommand::Snapshot { .. });
                let start = match (snapshot_only, cdc.source.snapshot) {
                    (true, _) => Start::Again,
                    (false, SnapshotMode::Initial) => Start::Initial,
                    (false, _) => Start::Never,
                };
                if snapshot_only && !cfg.kind.is_mysql() {
                    say_if_held(&cfg).await;
                }
                let metrics = match &args.command {
                    CdcCommand::Run { metrics: Some(addr), .. } => {
                        let m = strangler_cdc::metrics::CdcMetrics::new(&cfg.slot, &cfg.name);
                        m.serve(*addr).await?;
                        Some(m)
                    }
                    _ => None,
                };
                match &cdc.transport {
                    CdcTransport::Embedded { .. } => {
                        run_pipeline(&config, cfg, &sinks, &urls, RunOpts { start, snapshot_only, json, metrics, direction: Direction::Forward }).await
                    }
                    transport @ CdcTransport::Kafka { topic_prefix, .. } => {
                        let kafka = match strangler_cdc::transport::kafka::KafkaClient::from_transport(transport) {
                            Ok(Some(k)) => k,
                            Ok(None) => return usage("cdc.transport: not a Kafka transport"),
                            Err(e) => return usage(&e),
                        };
                        let (source_only, sinks_only) = match &args.command {
                            CdcCommand::Run { source_only, sinks_only, .. } => (*source_only, *sinks_only),
                            _ => (true, false),
                        };
                        run_kafka(&config, cfg, &sinks, &urls, (kafka, topic_prefix), (snapshot_only || source_only, sinks_only), RunOpts { start, snapshot_only, json, metrics, direction: Direction::Forward }).await
                    }
                }
            }
            CdcCommand::Reverse => {
                let reverse: Vec<&CdcSink> = cdc.sinks.iter().filter(|s| s.reverse).collect();
                if reverse.is_empty() {
                    return usage("no [[cdc.sinks]] has reverse = true: add one with the inverse mapping (service table → monolith table)");
                }
                let mut tasks = Vec::new();
                for s in reverse {
                    let svc_url = match env_url(&s.url_env, &format!("cdc.sinks {:?} url_env", s.name)) {
                        Ok(u) => u,
                        Err(e) => return usage(e),
                    };
                    let name = crate::teardown::reverse_slot(&s.name);
                    let cfg = SourceConfig {
                        url: svc_url,
                        slot: name.clone(),
                        publication: name,
                        tables: s.tables.iter().map(|t| t.source.clone()).collect(),
                        name: format!("{}-reverse", s.name),
                        format: cdc.format,
                        check_rows: 0,
                        tx_memory: cdc.source.transaction_memory,
                        chunk_rows: cdc.source.snapshot_chunk_rows,
                        workers: cdc.source.snapshot_workers,
                        kind: strangler_config::SourceKind::Postgres,
                    };
                    let (config, s, url) = (config.clone(), s.clone(), source_url.clone());
                    tasks.push(tokio::spawn(async move { run_pipeline(&config, cfg, &[&s], &[url], RunOpts { start: Start::Never, snapshot_only: false, json, metrics: None, direction: Direction::Reverse }).await }));
                }
                let mut exit = Exit::Ok;
                for t in tasks {
                    if t.await?? != Exit::Ok {
                        exit = Exit::Failed;
                    }
                }
                Ok(exit)
            }
            CdcCommand::Status => status(&config, &cdc, &source_url, json).await,
            CdcCommand::Teardown { sink, yes } => {
                crate::teardown::cdc_teardown(&config, &cdc, &source_url, sink.as_deref(), yes, json).await
            }
            CdcCommand::Verify { table } => verify_cmd(&cdc, &source_url, table.as_deref(), json).await,
        }
    })
}

/// `strangler doctor`.
pub fn doctor(args: &crate::cli::Common) -> anyhow::Result<Exit> {
    let Some(config) = crate::load_config(&args.config) else {
        return Ok(Exit::Usage);
    };
    let Some(cdc) = config.cdc.clone() else {
        println!(
            "{} has no [cdc] section: nothing of strangler's in databases to check",
            config.path.display()
        );
        return Ok(Exit::Ok);
    };
    let source_url = match env_url(&cdc.source.url_env, "cdc.source.url_env") {
        Ok(u) => u,
        Err(e) => return usage(e),
    };
    crate::block_on(crate::teardown::doctor(
        &config,
        &cdc,
        &source_url,
        args.json,
    ))
}

async fn run_pipeline(
    config: &Config,
    cfg: SourceConfig,
    sinks: &[&CdcSink],
    urls: &[String],
    opts: RunOpts,
) -> anyhow::Result<Exit> {
    let RunOpts {
        start,
        snapshot_only,
        json,
        metrics,
        direction,
    } = opts;
    let plan = CheckPlan::new(&cfg.url, sinks, urls, Duration::from_secs(10));
    let specs = sink_specs(sinks, urls);
    let store = StateStore::connect(config.state.store_url().map_err(crate::UsageError)?).await.map_err(|e| tracing::warn!(error = %e, "state store unavailable; CDC status will not be shared")).ok();
    let status = StoreStatus::new(store, metrics.clone(), &cfg.slot, direction).with_check(plan);
    // A spinner on a terminal (indicatif draws nothing elsewhere).
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let spinner = indicatif::ProgressStyle::default_spinner();
    let rows_bar = indicatif::ProgressStyle::with_template(
        "snapshot [{bar:30}] {human_pos}/~{human_len} rows · {per_sec} · ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let mut snapshotting = false;
    let on_progress = |p: &Progress| {
        if let Some(m) = &metrics {
            m.update(p);
        }
        // During the snapshot (nothing confirmed yet): a bar against the
        // tables' estimated rows; then a spinner while streaming.
        if p.confirmed.0 == 0 && p.snapshot_expected > 0 {
            if !snapshotting {
                snapshotting = true;
                bar.set_style(rows_bar.clone());
                bar.reset_eta();
            }
            bar.set_length(p.snapshot_expected.max(p.snapshot_rows));
            bar.set_position(p.snapshot_rows);
            return;
        }
        if std::mem::take(&mut snapshotting) {
            bar.set_style(spinner.clone());
        }
        bar.set_message(format!(
            "snapshot {} rows ({} by COPY) · {} transactions · {} events · {} rows applied · {} dead letters · {} ms behind the source · confirmed {}",
            p.snapshot_rows, p.snapshot_copied, p.transactions, p.events, p.rows_applied, p.dead_letters, p.behind_ms, p.confirmed
        ));
    };
    let shutdown = async move {
        if !snapshot_only {
            shutdown_signal().await;
        }
    };
    let p = match strangler_cdc::run::embedded(&cfg, &specs, start, &status, shutdown, on_progress)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            bar.finish_and_clear();
            return Ok(fatal(&e, &strangler_cdc::remedy::for_pipeline(&e)));
        }
    };
    bar.finish_and_clear();
    let differing = status.finish_checks().await;
    if json {
        println!(
            "{}",
            json!({"slot": cfg.slot, "snapshot_rows": p.snapshot_rows, "transactions": p.transactions, "events": p.events,
                   "rows_applied": p.rows_applied, "dead_letters": p.dead_letters, "confirmed": p.confirmed.to_string(),
                   "snapshot_check_differences": differing})
        );
    } else {
        println!(
            "{}: snapshot {} rows, {} transactions ({} events), {} rows applied, {} dead letters, slot confirmed at {}",
            cfg.slot, p.snapshot_rows, p.transactions, p.events, p.rows_applied, p.dead_letters, p.confirmed
        );
        if differing > 0 {
            println!("snapshot check: {differing} sampled rows differ in the sinks (see the log; `strangler cdc verify` lists them all)");
        }
    }
    Ok(if differing > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// `cdc snapshot` waits for the slot's lease: says who holds it, if anyone.
async fn say_if_held(cfg: &SourceConfig) {
    let Ok(mut conn) = source::connect(cfg).await else {
        return;
    };
    if let Ok((Some((name, client, pid)), _)) =
        strangler_cdc::run::lease::holder(&mut conn, &cfg.slot).await
    {
        eprintln!("waiting: {name} (pid {pid} from {client}) holds slot {}'s lease; the snapshot starts once that cdc run stops or loses the lease", cfg.slot);
    }
}

/// A fault CDC cannot ride out: the cause, what to do, exit 2.
fn fatal(e: &dyn std::fmt::Display, remedy: &str) -> Exit {
    eprintln!("error: CDC stopped: {e}");
    eprintln!("what to do: {remedy}");
    Exit::Usage
}

/// The snapshot published to Kafka: complete, and per table published
/// (by the initial snapshot) or being copied in chunks (through which key).
async fn published_snapshot(store: &StateStore, slot: &str) -> serde_json::Value {
    let complete = store.cdc_snapshot_done(slot).await.unwrap_or(false);
    let done = store
        .published_snapshot(slot)
        .await
        .ok()
        .flatten()
        .map(|(_, done)| done)
        .unwrap_or_default();
    let copying = store.published_unfinished(slot).await.unwrap_or_default();
    let mut tables: Vec<serde_json::Value> = done
        .iter()
        .map(|t| json!({"table": t, "state": "published"}))
        .collect();
    tables.extend(copying.iter().map(|(t, after)| {
        json!({"table": t, "state": "copying",
               "after_key": after.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())})
    }));
    json!({"complete": complete, "tables": tables})
}

async fn status(
    config: &Config,
    cdc: &CdcConfig,
    source_url: &str,
    json: bool,
) -> anyhow::Result<Exit> {
    let cfg = SourceConfig::from_config(cdc, source_url.to_string());
    let sinks: Vec<(String, Result<String, String>)> = cdc
        .sinks
        .iter()
        .filter(|s| !s.reverse)
        .map(|s| {
            (
                s.name.clone(),
                env_url(&s.url_env, "url_env").map_err(|_| format!("{} is not set", s.url_env)),
            )
        })
        .collect();
    let mut out = strangler_cdc::status::report(&cfg, &sinks).await?;
    let store = match config.state.store_url() {
        Ok(url) => StateStore::connect(url).await.ok(),
        Err(_) => None,
    };
    // Reconnects after faults, as `cdc run` recorded them.
    let reconnects = match &store {
        Some(store) => store.cdc_reconnects(&cfg.slot).await.unwrap_or_default(),
        None => Vec::new(),
    };
    // Kafka: where the snapshot published to the topics stands.
    if let (strangler_config::CdcTransport::Kafka { .. }, Some(store)) = (&cdc.transport, &store) {
        out["published_snapshot"] = published_snapshot(store, &cfg.slot).await;
    }
    out["reconnects"] = json!(reconnects
        .iter()
        .map(|(part, n, at, err)| json!({"part": part, "count": n, "last_at": strangler_state::store::rfc3339(*at), "last_error": err}))
        .collect::<Vec<_>>());
    let slot = out["exists"]
        .as_bool()
        .unwrap_or(false)
        .then_some(out["active"].as_bool().unwrap_or(false));
    let (current, lag_bytes, rate) = (
        out["source_lsn"].as_str().unwrap_or("-").to_string(),
        out["lag_bytes"].as_u64(),
        out["confirmed_bytes_per_second"].as_u64().unwrap_or(0),
    );
    if json {
        println!("{out}");
    } else {
        println!(
            "slot {}: {} · source at {} · confirmed {} · lag {} bytes · {} bytes/s confirmed",
            cfg.slot,
            match slot {
                Some(true) => "active",
                Some(false) => "idle",
                None => "missing",
            },
            current,
            out["confirmed"].as_str().unwrap_or("-"),
            lag_bytes.map_or("-".to_string(), |b| b.to_string()),
            rate
        );
        let lease = &out["lease"];
        match lease["active"].as_object() {
            Some(a) => println!(
                "  active cdc run: {} (pid {} from {}) · {} standby",
                a["application_name"].as_str().unwrap_or("?"),
                a["pid"],
                a["client"].as_str().unwrap_or("?"),
                lease["standbys"]
            ),
            None => println!(
                "  no cdc run is active on this slot · {} standby",
                lease["standbys"]
            ),
        }
        if let Some(b) = out["retained_wal_bytes"].as_u64() {
            println!("  WAL retained for the slot: {b} bytes");
        }
        if out["lost"].as_bool() == Some(true) {
            println!("  LOST: the slot is gone although sinks applied changes from it. Run `strangler cdc snapshot` (a new slot and a new copy), then `strangler cdc verify`");
        }
        for (part, n, at, err) in &reconnects {
            println!(
                "  reconnects of the {part}: {n} (last at {}: {err})",
                strangler_state::store::rfc3339(*at)
            );
        }
        let published = &out["published_snapshot"];
        if let Some(complete) = published["complete"].as_bool() {
            let tables = published["tables"].as_array().cloned().unwrap_or_default();
            let of = |state: &str| {
                tables
                    .iter()
                    .filter(|t| t["state"] == state)
                    .filter_map(|t| t["table"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !complete {
                println!(
                    "  initial snapshot to Kafka in progress; published: {}",
                    of("published")
                );
            }
            let copying = of("copying");
            if !copying.is_empty() {
                println!("  copying to Kafka in chunks: {copying}");
            }
        }
        for s in out["sinks"].as_array().into_iter().flatten() {
            println!(
                "  sink {}: applied {} at {} · lag {} bytes, {:.1} s",
                s["sink"].as_str().unwrap_or("?"),
                s["applied"].as_str().unwrap_or("-"),
                s["applied_at"].as_str().unwrap_or("-"),
                s["lag_bytes"].as_u64().unwrap_or(0),
                s["lag_seconds"].as_f64().unwrap_or(0.0)
            );
            let snap = &s["snapshot"];
            let copying: Vec<String> = snap["tables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["state"] == "copying")
                .map(|t| match t["after_key"].as_array() {
                    Some(k) => format!(
                        "{} (copied through key {})",
                        t["table"].as_str().unwrap_or("?"),
                        k.iter()
                            .map(|v| v.as_str().unwrap_or("?"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => format!("{} (starting)", t["table"].as_str().unwrap_or("?")),
                })
                .collect();
            match snap["complete"].as_bool() {
                Some(false) => {
                    let copied = snap["tables"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| t["state"] == "copied")
                        .count();
                    println!("    initial snapshot in progress: {copied} table(s) copied");
                }
                None => println!("    no snapshot yet"),
                Some(true) => {}
            }
            if !copying.is_empty() {
                println!("    copying in chunks: {}", copying.join("; "));
            }
            let c = &s["snapshot_check"];
            if let Some(n) = c["rows_checked"].as_i64() {
                let d = c["rows_differing"].as_i64().unwrap_or(0);
                println!(
                    "    snapshot check at {}: {n} rows, {}",
                    c["at"].as_str().unwrap_or("-"),
                    if d == 0 {
                        "all identical".to_string()
                    } else {
                        format!("{d} DIFFER (run strangler cdc verify)")
                    }
                );
            }
        }
    }
    Ok(Exit::Ok)
}

/// The source `cdc verify` reads.
enum Side {
    Postgres(strangler_cdc::verify::PgConnection),
    MySql(strangler_cdc::mysql::Conn),
}

async fn verify_cmd(
    cdc: &CdcConfig,
    source_url: &str,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<Exit> {
    let cfg = SourceConfig::from_config(cdc, source_url.to_string());
    let mut src = if cfg.kind.is_mysql() {
        Side::MySql(strangler_cdc::mysql::connect(&cfg.url).await?)
    } else {
        Side::Postgres(source::connect(&cfg).await?)
    };
    let matches = |t: &TableName| only.is_none_or(|o| o == t.to_string() || o == t.table);
    let mut reports = Vec::new();
    for s in cdc.sinks.iter().filter(|s| !s.reverse) {
        let url = match env_url(&s.url_env, &format!("cdc.sinks {:?} url_env", s.name)) {
            Ok(u) => u,
            Err(e) => return usage(e),
        };
        let mut dst = verify::connect(&url).await?;
        for m in s
            .tables
            .iter()
            .filter(|m| matches(&m.source) || matches(&m.target))
        {
            let target = strangler_cdc::sink::TargetTable::load_for_verify(&mut dst, m).await?;
            let bar = if json {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new(0)
                    .with_style(
                        indicatif::ProgressStyle::with_template(
                            "{msg} [{bar:30}] {pos}/{len} chunks · ETA {eta}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    )
                    .with_message(format!("verify {} → {} ({})", m.source, m.target, s.name))
            };
            let progress = |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let r = match &mut src {
                Side::Postgres(src) => verify::table(src, &mut dst, &target, progress).await?,
                Side::MySql(src) => {
                    let shape = strangler_cdc::mysql::columns::load(src, &m.source).await?;
                    strangler_cdc::mysql::verify::table(
                        src,
                        &shape,
                        &mut dst,
                        &target,
                        &cdc.format,
                        progress,
                    )
                    .await?
                }
            };
            bar.finish_and_clear();
            reports.push((s.name.clone(), r));
        }
    }
    if only.is_some() && reports.is_empty() {
        return usage(format!(
            "--table {}: no mapped table by that name",
            only.unwrap_or_default()
        ));
    }
    let differing = reports.iter().any(|(_, r)| !r.differences.is_empty());
    if json {
        let list: Vec<_> = reports
            .iter()
            .map(|(sink, r)| json!({"sink": sink, "report": r}))
            .collect();
        println!("{}", json!({"ok": !differing, "tables": list}));
    } else {
        for (sink, r) in &reports {
            println!(
                "{} → {} ({sink}): {} source rows, {} target rows, {} chunks, {} differing, {}",
                r.source,
                r.target,
                r.source_rows,
                r.target_rows,
                r.chunks,
                r.differing_chunks,
                if r.differences.is_empty() {
                    "clean".to_string()
                } else {
                    format!("{} rows differ", r.differences.len())
                }
            );
            for d in r.differences.iter().take(50) {
                println!("  {} key ({})", d.kind, d.key.join(", "));
            }
            if r.differences.len() > 50 {
                println!("  … and {} more", r.differences.len() - 50);
            }
        }
    }
    Ok(if differing { Exit::Failed } else { Exit::Ok })
}

/// How a pipeline run behaves and reports.
struct RunOpts {
    start: Start,
    /// Stop after the snapshot (`strangler cdc snapshot`).
    snapshot_only: bool,
    json: bool,
    metrics: Option<std::sync::Arc<strangler_cdc::metrics::CdcMetrics>>,
    /// Which way the pipeline carries changes (positions are stored under it).
    direction: Direction,
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Kafka transport: the source publishes (unless `sinks_only`), and each
/// sink runs as a member of its consumer group (unless `source_only`).
async fn run_kafka(
    config: &Config,
    cfg: SourceConfig,
    sinks: &[&CdcSink],
    urls: &[String],
    (kafka, prefix): (strangler_cdc::transport::kafka::KafkaClient, &str),
    (source_only, sinks_only): (bool, bool),
    opts: RunOpts,
) -> anyhow::Result<Exit> {
    let RunOpts {
        start,
        snapshot_only,
        json,
        metrics,
        ..
    } = opts;
    let plan = strangler_cdc::run::KafkaPlan {
        kafka,
        prefix: prefix.to_string(),
        sinks: sink_specs(sinks, urls),
        source: !sinks_only,
        workers: !source_only,
        start,
        store: StateStore::connect(config.state.store_url().map_err(crate::UsageError)?)
            .await
            .ok(),
        metrics,
        check: Some(CheckPlan::new(
            &cfg.url,
            sinks,
            urls,
            Duration::from_secs(120),
        )),
        outbox: config
            .cdc
            .as_ref()
            .map(|c| c.outbox.clone())
            .unwrap_or_default(),
    };
    let source_shutdown = async move {
        if !snapshot_only {
            shutdown_signal().await;
        }
    };
    let finished =
        match strangler_cdc::run::kafka(&cfg, plan, source_shutdown, shutdown_signal).await {
            Ok(f) => f,
            Err(e) => return Ok(fatal(&e, &strangler_cdc::remedy::for_kafka_run(&e))),
        };
    let mut exit = Exit::Ok;
    for f in finished {
        let line = match f {
            strangler_cdc::run::Finished::Source { progress: p, check_differences } => {
                if check_differences > 0 {
                    eprintln!("snapshot check: {check_differences} sampled rows differ in the sinks (see the log; `strangler cdc verify` lists them all)");
                    exit = Exit::Failed;
                }
                format!(
                    "{}: snapshot {} rows, {} transactions, {} records published, slot confirmed at {}",
                    cfg.slot, p.snapshot_rows, p.transactions, p.published, p.confirmed
                )
            }
            strangler_cdc::run::Finished::Sink { name, consumed: c } => format!(
                "sink {name}: {} messages, {} rows applied, {} skipped (already applied), {} dead letters",
                c.messages, c.rows, c.skipped, c.dead_letters
            ),
        };
        if json {
            println!("{}", json!({ "done": line }));
        } else {
            println!("{line}");
        }
    }
    Ok(exit)
}

/// `cdc snapshot --table T`: a request in the source's WAL (a
/// transactional logical message), read by the running `cdc run`, which
/// copies the table in chunks between watermarks while streaming.
async fn request_chunked(
    cdc: &CdcConfig,
    source_url: &str,
    table: &str,
    json: bool,
) -> anyhow::Result<Exit> {
    let wanted = |t: &TableName| t.to_string() == table || t.table == table;
    let Some(t) = cdc.source.tables.iter().find(|t| wanted(t)) else {
        let known: Vec<String> = cdc.source.tables.iter().map(ToString::to_string).collect();
        return usage(format!(
            "--table {table}: not a table of [cdc.source] tables ({})",
            known.join(", ")
        ));
    };
    let mut conn = source::connect(&SourceConfig::from_config(cdc, source_url.to_string())).await?;
    strangler_cdc::source::chunk::request(&mut conn, &cdc.source.slot, t).await?;
    if json {
        println!(
            "{}",
            json!({"requested": t.to_string(), "slot": cdc.source.slot})
        );
    } else {
        println!(
            "requested a chunked snapshot of {t} on slot {}: the running `strangler cdc run` copies it while streaming (its log says when it is complete)",
            cdc.source.slot
        );
    }
    Ok(Exit::Ok)
}
