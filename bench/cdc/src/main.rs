//! `cdc-bench [ROWS]`: three CDC comparisons on one throw-away cluster,
//! printed as Markdown (see bench/cdc/run.sh).

#![allow(clippy::unwrap_used)] // a benchmark: a failed step ends it

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use strangler_cdc::lsn::Lsn;
use strangler_cdc::pipeline::{self, NoStatus, Start};
use strangler_cdc::run::{Finished, KafkaPlan, SinkSpec};
use strangler_cdc::sink::{Sink, Sinks};
use strangler_cdc::source::{Item, SourceConfig, Stream};
use strangler_config::{TableMapping, TableName};
use strangler_sandbox::PgCluster;

mod mysql;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TABLE: &str = "CREATE TABLE bench (id BIGSERIAL PRIMARY KEY, a INT NOT NULL, b TEXT NOT NULL, c TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())";
const TARGET: &str = "CREATE TABLE bench (id BIGINT PRIMARY KEY, a INT NOT NULL, b TEXT NOT NULL, c TIMESTAMPTZ NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())";

fn table() -> TableName {
    table_of("bench")
}

fn table_of(name: &str) -> TableName {
    format!("public.{name}").parse().unwrap()
}

fn mapping_of(name: &str) -> TableMapping {
    TableMapping {
        source: table_of(name),
        target: table_of(name),
        rename: BTreeMap::new(),
        exclude: vec![],
        drop_columns: false,
    }
}

fn cfg(url: &str, slot: &str) -> SourceConfig {
    SourceConfig {
        url: url.into(),
        slot: slot.into(),
        publication: "bench".into(),
        tables: vec![table()],
        name: "bench".into(),
        format: Default::default(),
        check_rows: 0,
        tx_memory: strangler_cdc::source::DEFAULT_TX_MEMORY,
        chunk_rows: strangler_cdc::source::chunk::CHUNK_ROWS,
        workers: strangler_config::DEFAULT_SNAPSHOT_WORKERS,
        kind: strangler_config::SourceKind::Postgres,
    }
}

fn mapping() -> TableMapping {
    mapping_of("bench")
}

async fn fill(pool: &PgPool, rows: i64) {
    fill_table(pool, "bench", rows).await;
}

/// Rows in transactions of 5,000 (each one batch of the stream).
async fn fill_table(pool: &PgPool, name: &str, rows: i64) {
    let per_tx = 5_000;
    let mut done = 0;
    while done < rows {
        let n = per_tx.min(rows - done);
        sqlx::query(&format!("INSERT INTO {name} (a, b) SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, $1) g")).bind(n).execute(pool).await.unwrap();
        done += n;
    }
}

pub(crate) fn row(name: &str, rows: i64, secs: f64, extra: &str) {
    println!(
        "| {name} | {rows} | {secs:.2} | {:.0} | {extra} |",
        rows as f64 / secs
    );
}

async fn decode(pg: &PgCluster, rows: i64) {
    let url = pg.create_database("decode").unwrap();
    let pool = PgPoolOptions::new().connect(&url).await.unwrap();
    sqlx::query(TABLE).execute(&pool).await.unwrap();
    sqlx::query("CREATE PUBLICATION bench FOR TABLE bench")
        .execute(&pool)
        .await
        .unwrap();
    for s in ["recv", "ours"] {
        sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
            .bind(s)
            .execute(&pool)
            .await
            .unwrap();
    }
    fill(&pool, rows).await;
    let end: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    let end = Lsn::parse(&end).unwrap();

    let bin = std::env::var("PG_BINDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let start = Instant::now();
    let status = Command::new(bin.join("pg_recvlogical"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-d",
            "decode",
            "--slot",
            "recv",
            "--start",
            "--no-loop",
        ])
        .args([
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=bench",
            "-P",
            "pgoutput",
            "-E",
            &end.to_string(),
            "-f",
            "/dev/null",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    row(
        "pg_recvlogical (raw pgoutput to /dev/null)",
        rows,
        start.elapsed().as_secs_f64(),
        "physical limit",
    );

    let start = Instant::now();
    let mut stream = Stream::start(&cfg(&url, "ours")).await.unwrap();
    let mut n = 0i64;
    loop {
        match stream.next().await.unwrap() {
            Item::Tx(tx) => {
                // Change events (the table's shape comes once, first).
                n += tx
                    .records
                    .iter()
                    .filter(|r| strangler_cdc::source::shape::of(r).is_none())
                    .count() as i64;
                if tx.end_lsn >= end {
                    break;
                }
            }
            Item::Large(mut l) => {
                while let Some(part) = stream.part(&mut l).await.unwrap() {
                    n += part
                        .iter()
                        .filter(|r| strangler_cdc::source::shape::of(r).is_none())
                        .count() as i64;
                }
                if l.end_lsn >= end {
                    break;
                }
            }
            Item::Idle(l) | Item::Skipped(l) if l >= end => break,
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    stream.shutdown().await;
    assert_eq!(n, rows);
    row("strangler: decode + Debezium envelopes", rows, secs, "");
}

/// Tables of the snapshot comparison: one of a million rows (at least)
/// and two smaller ones.
fn snapshot_tables(rows: i64) -> [(&'static str, i64); 3] {
    [
        ("big", rows.max(1_000_000)),
        ("mid", rows),
        ("small", (rows / 4).max(1)),
    ]
}

async fn snapshot(pg: &PgCluster, rows: i64) {
    let tables = snapshot_tables(rows);
    let total: i64 = tables.iter().map(|t| t.1).sum();
    let src_url = pg.create_database("snap").unwrap();
    let src = PgPoolOptions::new().connect(&src_url).await.unwrap();
    for (name, n) in tables {
        sqlx::query(&TABLE.replace("bench", name))
            .execute(&src)
            .await
            .unwrap();
        fill_table(&src, name, n).await;
    }
    let bin = std::env::var("PG_BINDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let create_targets = |pool: PgPool| async move {
        for (name, _) in tables {
            sqlx::query(&TARGET.replace("bench", name))
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let names: Vec<&str> = tables.iter().map(|t| t.0).collect();

    let dump_url = pg.create_database("dumped").unwrap();
    let dump = PgPoolOptions::new().connect(&dump_url).await.unwrap();
    create_targets(dump.clone()).await;
    let port = pg.port().to_string();
    let only: Vec<String> = names.iter().map(|n| format!("-t {n}")).collect();
    let start = Instant::now();
    // Sequences are left out: the targets have none (a plain id column).
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}/pg_dump -h 127.0.0.1 -p {port} -U postgres --data-only {} snap | grep -v '^SELECT pg_catalog.setval' | psql -q -h 127.0.0.1 -p {port} -U postgres -d dumped >/dev/null",
            bin.display(),
            only.join(" ")
        ))
        .status()
        .unwrap();
    assert!(ok.success());
    let anchor = start.elapsed().as_secs_f64();
    row(
        "pg_dump | psql (COPY out, COPY in), 3 tables",
        total,
        anchor,
        &format!(
            "tables of {} rows",
            tables.map(|t| t.1.to_string()).join(", ")
        ),
    );

    // One source connection, then the default number of workers.
    for workers in [1, strangler_config::DEFAULT_SNAPSHOT_WORKERS] {
        snapshot_into(pg, &src_url, tables, workers, anchor).await;
    }
}

/// strangler's snapshot of `tables` with `workers` source connections.
async fn snapshot_into(
    pg: &PgCluster,
    src_url: &str,
    tables: [(&'static str, i64); 3],
    workers: usize,
    anchor: f64,
) {
    let total: i64 = tables.iter().map(|t| t.1).sum();
    let names: Vec<&str> = tables.iter().map(|t| t.0).collect();
    let dst_url = pg.create_database(&format!("snapped{workers}")).unwrap();
    let dst = PgPoolOptions::new().connect(&dst_url).await.unwrap();
    for (name, _) in tables {
        sqlx::query(&TARGET.replace("bench", name))
            .execute(&dst)
            .await
            .unwrap();
    }
    let mappings: Vec<TableMapping> = names.iter().map(|n| mapping_of(n)).collect();
    let slot = format!("snap{workers}");
    let mut sinks = vec![Sink::connect("bench", &dst_url, &slot, &mappings)
        .await
        .unwrap()];
    let mut c = cfg(src_url, &slot);
    c.tables = names.iter().map(|n| table_of(n)).collect();
    c.workers = workers;
    let start = Instant::now();
    let mut applied = None;
    let p = pipeline::run(
        &c,
        &mut Sinks(&mut sinks),
        Start::Initial,
        &NoStatus,
        async {},
        |p| {
            // The last report of the snapshot: every table applied and the
            // sink's snapshot marked complete (the session's shutdown after
            // it is not part of the copy).
            if p.snapshot_rows == total as u64 {
                applied = Some(start.elapsed());
            }
        },
    )
    .await
    .unwrap();
    let secs = applied.expect("the snapshot completed").as_secs_f64();
    for (name, n) in tables {
        let got: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {name}"))
            .fetch_one(&dst)
            .await
            .unwrap();
        assert_eq!(got, n, "{name}");
    }
    row(
        &format!("strangler snapshot (exported snapshot → COPY into the sink), 3 tables, {workers} source connection(s)"),
        total,
        secs,
        &format!(
            "**{:.2}×**; {} of {} rows as COPY text",
            anchor / secs,
            p.snapshot_copied,
            p.snapshot_rows
        ),
    );
}

/// Writes `rows` (0: until `until`) in 12-row transactions (10 inserts, 2
/// updates) from `writers` tasks, at `rate` rows/s in total when given.
async fn write_load(
    src: &PgPool,
    writers: usize,
    rate: Option<u64>,
    until: Instant,
    rows: i64,
) -> i64 {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let src = src.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = rate.map(|r| {
                let per_writer = r as f64 / writers as f64;
                let mut i = tokio::time::interval(Duration::from_secs_f64(12.0 / per_writer));
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                i
            });
            let mut written = 0i64;
            while (rows == 0 && Instant::now() < until) || (rows > 0 && written < rows / writers as i64) {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let mut tx = src.begin().await.unwrap();
                let ids: Vec<i64> = sqlx::query_scalar("INSERT INTO bench (a, b) SELECT $1, md5(g::text) FROM generate_series(1, 10) g RETURNING id").bind(w as i32).fetch_all(&mut *tx).await.unwrap();
                // Two of them updated by primary key (a lookup, as an
                // application does; not a scan of the growing table).
                sqlx::query("UPDATE bench SET a = -a - 1, c = clock_timestamp() WHERE id = ANY($1)").bind(&ids[..2]).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
                written += 12;
            }
            written
        }));
    }
    let mut written = 0;
    for t in tasks {
        written += t.await.unwrap();
    }
    written
}

/// Waits until the target has the source's rows; the seconds it took.
async fn drain(src: &PgPool, dst: &PgPool) -> f64 {
    let target_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bench")
        .fetch_one(src)
        .await
        .unwrap();
    let caught = Instant::now();
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM bench")
        .fetch_one(dst)
        .await
        .unwrap()
        < target_rows
        && caught.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    caught.elapsed().as_secs_f64()
}

/// Source and target databases with the bench table.
async fn pair(pg: &PgCluster, name: &str, writers: usize) -> (String, PgPool, String, PgPool) {
    let src_url = pg.create_database(name).unwrap();
    let dst_url = pg.create_database(&format!("{name}_target")).unwrap();
    let src = PgPoolOptions::new()
        .max_connections(writers as u32 + 1)
        .connect(&src_url)
        .await
        .unwrap();
    let dst = PgPoolOptions::new().connect(&dst_url).await.unwrap();
    sqlx::query(TABLE).execute(&src).await.unwrap();
    sqlx::query(TARGET).execute(&dst).await.unwrap();
    (src_url, src, dst_url, dst)
}

/// How the bench runs the pipeline.
#[derive(Clone)]
enum Transport {
    /// Sinks in the pipeline's process, applying through this many
    /// connections.
    Embedded(usize),
    /// Through a Kafka broker at these bootstrap servers (tansu).
    Kafka(String),
}

impl Transport {
    fn label(&self) -> String {
        match self {
            Transport::Embedded(1) => "embedded".into(),
            Transport::Embedded(n) => format!("embedded, {n} sink connections"),
            Transport::Kafka(_) => "Kafka (tansu)".into(),
        }
    }
}

/// Runs the pipeline (source and sink) until the returned sender says stop;
/// the task's result is the number of events the source read.
fn start_pipeline(
    transport: &Transport,
    src_url: &str,
    dst_url: &str,
    slot: &str,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<u64>,
) {
    start_parts(transport, src_url, dst_url, slot, true, Start::Initial)
}

/// [`start_pipeline`]; with Kafka, `workers: false` runs the source side
/// (publishing) alone.
fn start_parts(
    transport: &Transport,
    src_url: &str,
    dst_url: &str,
    slot: &str,
    workers: bool,
    start: Start,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<u64>,
) {
    let (stop, _) = tokio::sync::watch::channel(false);
    let stopped = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    // Topics named after the run (`<slot>.public.bench`): runs share one
    // broker, and a consumer group reading an earlier run's topic would
    // apply its rows into this run's target.
    let c = SourceConfig {
        name: slot.to_string(),
        ..cfg(src_url, slot)
    };
    let dst_url = dst_url.to_string();
    let source_stop = stopped(&stop);
    let task = match transport.clone() {
        Transport::Embedded(connections) => tokio::spawn(async move {
            let mut sinks = vec![Sink::connect("bench", &dst_url, &c.slot, &[mapping()])
                .await
                .unwrap()
                .with_connections(connections)
                .await
                .unwrap()];
            pipeline::run(
                &c,
                &mut Sinks(&mut sinks),
                Start::Initial,
                &NoStatus,
                source_stop,
                |_| {},
            )
            .await
            .unwrap()
            .events
        }),
        Transport::Kafka(brokers) => {
            let worker_stop = stop.clone();
            tokio::spawn(async move {
                let plan = KafkaPlan {
                    kafka: strangler_cdc::transport::kafka::KafkaClient::new(&brokers),
                    prefix: c.name.clone(),
                    sinks: vec![SinkSpec {
                        name: "bench".into(),
                        url: dst_url,
                        tables: vec![mapping()],
                        connections: 1,
                    }],
                    source: true,
                    workers,
                    start,
                    store: None,
                    metrics: None,
                    check: None,
                    outbox: Vec::new(),
                };
                let finished =
                    strangler_cdc::run::kafka(&c, plan, source_stop, move || stopped(&worker_stop))
                        .await
                        .unwrap();
                finished
                    .iter()
                    .map(|f| match f {
                        Finished::Source { progress, .. } => progress.events,
                        Finished::Sink { .. } => 0,
                    })
                    .sum()
            })
        }
    };
    (stop, task)
}

/// Waits until a first row written to the source has arrived: the slot,
/// the (empty) snapshot and every consumer are in place.
async fn ready(src: &PgPool, dst: &PgPool) {
    sqlx::query("INSERT INTO bench (a, b) VALUES (-1, 'ready')")
        .execute(src)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM bench")
        .fetch_one(dst)
        .await
        .unwrap()
        < 1
    {
        assert!(Instant::now() < deadline, "the pipeline did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// End to end under a write load: `rate` rows/s offered (or as fast as
/// the writers go), lag from the source commit to the row's arrival.
async fn end_to_end(
    pg: &PgCluster,
    transport: &Transport,
    secs: u64,
    writers: usize,
    rate: Option<u64>,
) {
    let name = format!(
        "e2e_{}_{}",
        match transport {
            Transport::Embedded(n) => format!("embedded{n}"),
            Transport::Kafka(_) => "kafka".to_string(),
        },
        rate.unwrap_or(0)
    );
    let (src_url, src, dst_url, dst) = pair(pg, &name, writers).await;
    let (stop, pipe) = start_pipeline(transport, &src_url, &dst_url, &name);
    ready(&src, &dst).await;
    sqlx::query("DELETE FROM bench")
        .execute(&src)
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    let written = write_load(&src, writers, rate, until, 0).await;
    let drain = drain(&src, &dst).await;
    let _ = stop.send(true);
    let events = pipe.await.unwrap();
    // Lag: from the source commit (c, set in the transaction) to the row's
    // arrival (applied_at), over rows never updated (an update's c is
    // later than the insert that set applied_at).
    let lag: (f64, f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.95) WITHIN GROUP (ORDER BY l), percentile_cont(0.99) WITHIN GROUP (ORDER BY l) \
         FROM (SELECT EXTRACT(EPOCH FROM applied_at - c)::float8 AS l FROM bench WHERE a >= 0) x",
    )
    .fetch_one(&dst)
    .await
    .unwrap();
    let offered = match rate {
        Some(r) => format!("{r} rows/s offered"),
        None => "writers unthrottled".to_string(),
    };
    row(
        &format!(
            "strangler end to end, {} ({writers} writers, {secs} s, {offered})",
            transport.label()
        ),
        events as i64,
        secs as f64 + drain,
        &format!(
            "written {written} rows ({:.0}/s); lag p50 {:.3} s, p95 {:.3} s, p99 {:.3} s; drain after load {drain:.2} s",
            written as f64 / secs as f64,
            lag.0,
            lag.1,
            lag.2
        ),
    );
}

/// The pipeline alone: a backlog written while it was stopped, applied
/// with no writers competing for the 2 cores.
async fn catch_up(pg: &PgCluster, rows: i64, connections: usize) {
    let embedded = Transport::Embedded(connections);
    let name = format!("catch_up{connections}");
    let (src_url, src, dst_url, dst) = pair(pg, &name, 8).await;
    let (stop, pipe) = start_pipeline(&embedded, &src_url, &dst_url, &name);
    ready(&src, &dst).await;
    let _ = stop.send(true);
    pipe.await.unwrap();
    let far = Instant::now() + Duration::from_secs(3600);
    let written = write_load(&src, 8, None, far, rows).await;
    let (stop, pipe) = start_pipeline(&embedded, &src_url, &dst_url, &name);
    let secs = drain(&src, &dst).await;
    let _ = stop.send(true);
    pipe.await.unwrap();
    row(
        &format!(
            "strangler catch-up, {} (backlog in 12-row transactions, no writers)",
            embedded.label()
        ),
        written,
        secs,
        "the pipeline's own rate: reconnect, stream, apply",
    );
}

/// The Kafka source side alone: a backlog published, timed until the
/// slot is confirmed past it (the broker acknowledged every record).
async fn publish_only(pg: &PgCluster, transport: &Transport, rows: i64) {
    let (src_url, src, dst_url, dst) = pair(pg, "publish", 8).await;
    let (stop, pipe) = start_pipeline(transport, &src_url, &dst_url, "publish");
    ready(&src, &dst).await;
    let _ = stop.send(true);
    pipe.await.unwrap();
    let far = Instant::now() + Duration::from_secs(3600);
    let written = write_load(&src, 8, None, far, rows).await;
    let end: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(&src)
        .await
        .unwrap();
    let start = Instant::now();
    // Never snapshot again: without a state store the source side cannot
    // know the first run's snapshot was published.
    let (stop, pipe) = start_parts(
        transport,
        &src_url,
        &dst_url,
        "publish",
        false,
        Start::Never,
    );
    loop {
        let done: bool = sqlx::query_scalar(
            "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = 'publish'",
        )
        .bind(&end)
        .fetch_one(&src)
        .await
        .unwrap();
        if done || start.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = stop.send(true);
    pipe.await.unwrap();
    row(
        "strangler publish only, Kafka (tansu) (backlog in 12-row transactions)",
        written,
        secs,
        "the source side alone: stream, encode, produce, acknowledged",
    );
}

/// Peak memory (VmHWM) of this process streaming one transaction of
/// `rows` rows (run alone: `cdc-bench memory ROWS`).
async fn memory(pg: &PgCluster, rows: i64) {
    let (src_url, src, dst_url, dst) = pair(pg, "memory", 1).await;
    let (stop, pipe) = start_pipeline(&Transport::Embedded(1), &src_url, &dst_url, "memory");
    ready(&src, &dst).await;
    let start = Instant::now();
    sqlx::query("INSERT INTO bench (a, b) SELECT g, md5(g::text) FROM generate_series(1, $1) g")
        .bind(rows)
        .execute(&src)
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64() + drain(&src, &dst).await;
    let _ = stop.send(true);
    pipe.await.unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .to_string();
    row(
        &format!("one transaction of {rows} rows, embedded (transaction_memory_mb = 64)"),
        rows,
        secs,
        &format!("peak resident memory of the whole process {peak}"),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    println!("| run | rows/events | seconds | per second | notes |");
    println!("|---|---:|---:|---:|---|");
    if args.get(1).map(String::as_str) == Some("mysql") {
        let rows = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
        mysql::run(&pg, rows).await;
        return;
    }
    if args.get(1).map(String::as_str) == Some("memory") {
        let rows = args
            .get(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000_000);
        memory(&pg, rows).await;
        return;
    }
    // `cdc-bench kafka ROWS SECS`: the Kafka rows alone.
    let kafka_only = args.get(1).map(String::as_str) == Some("kafka");
    let connections_only = args.get(1).map(String::as_str) == Some("connections");
    // `cdc-bench snapshot ROWS`: the snapshot rows alone.
    let snapshot_only = args.get(1).map(String::as_str) == Some("snapshot");
    let args = &args[usize::from(kafka_only || connections_only || snapshot_only)..];
    let rows: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    if snapshot_only {
        snapshot(
            &pg,
            args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000),
        )
        .await;
        return;
    }
    if !kafka_only && !connections_only {
        decode(&pg, rows).await;
        snapshot(&pg, rows).await;
        catch_up(&pg, rows, 1).await;
        end_to_end(&pg, &Transport::Embedded(1), secs, 8, Some(25_000)).await;
        end_to_end(&pg, &Transport::Embedded(1), secs, 8, None).await;
    }
    if connections_only {
        // `cdc-bench connections ROWS SECS`: one sink connection, then two.
        for n in [1, 2] {
            catch_up(&pg, rows, n).await;
            end_to_end(&pg, &Transport::Embedded(n), secs, 8, None).await;
        }
        return;
    }
    let broker = tokio::task::spawn_blocking(strangler_testkit::Broker::start)
        .await
        .unwrap()
        .unwrap();
    let kafka = Transport::Kafka(broker.bootstrap());
    publish_only(&pg, &kafka, rows).await;
    end_to_end(&pg, &kafka, secs, 8, Some(25_000)).await;
    end_to_end(&pg, &kafka, secs, 8, None).await;
}
