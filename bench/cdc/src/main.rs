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
use strangler_cdc::sink::{Sink, Sinks};
use strangler_cdc::source::{Item, SourceConfig, Stream};
use strangler_config::{TableMapping, TableName};
use strangler_sandbox::PgCluster;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TABLE: &str = "CREATE TABLE bench (id BIGSERIAL PRIMARY KEY, a INT NOT NULL, b TEXT NOT NULL, c TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())";
const TARGET: &str = "CREATE TABLE bench (id BIGINT PRIMARY KEY, a INT NOT NULL, b TEXT NOT NULL, c TIMESTAMPTZ NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())";

fn table() -> TableName {
    "public.bench".parse().unwrap()
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
    }
}

fn mapping() -> TableMapping {
    TableMapping {
        source: table(),
        target: table(),
        rename: BTreeMap::new(),
        exclude: vec![],
    }
}

async fn fill(pool: &PgPool, rows: i64) {
    let per_tx = 10_000;
    let mut done = 0;
    while done < rows {
        let n = per_tx.min(rows - done);
        sqlx::query("INSERT INTO bench (a, b) SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, $1) g").bind(n).execute(pool).await.unwrap();
        done += n;
    }
}

fn row(name: &str, rows: i64, secs: f64, extra: &str) {
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
                n += tx.records.len() as i64;
                if tx.end_lsn >= end {
                    break;
                }
            }
            Item::Large(mut l) => {
                while let Some(part) = stream.part(&mut l).await.unwrap() {
                    n += part.len() as i64;
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

async fn snapshot(pg: &PgCluster, rows: i64) {
    let src_url = pg.create_database("snap").unwrap();
    let src = PgPoolOptions::new().connect(&src_url).await.unwrap();
    sqlx::query(TABLE).execute(&src).await.unwrap();
    fill(&src, rows).await;
    let bin = std::env::var("PG_BINDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());

    let dump_url = pg.create_database("dumped").unwrap();
    let dump = PgPoolOptions::new().connect(&dump_url).await.unwrap();
    sqlx::query(TARGET).execute(&dump).await.unwrap();
    let port = pg.port().to_string();
    let start = Instant::now();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{}/pg_dump -h 127.0.0.1 -p {port} -U postgres --data-only -t bench snap | psql -q -h 127.0.0.1 -p {port} -U postgres -d dumped >/dev/null",
            bin.display()
        ))
        .status()
        .unwrap();
    assert!(ok.success());
    row(
        "pg_dump | psql (COPY out, COPY in)",
        rows,
        start.elapsed().as_secs_f64(),
        "",
    );

    let dst_url = pg.create_database("snapped").unwrap();
    let dst = PgPoolOptions::new().connect(&dst_url).await.unwrap();
    sqlx::query(TARGET).execute(&dst).await.unwrap();
    let mut sinks = vec![Sink::connect("bench", &dst_url, "snap", &[mapping()])
        .await
        .unwrap()];
    let start = Instant::now();
    pipeline::run(
        &cfg(&src_url, "snap"),
        &mut Sinks(&mut sinks),
        Start::Initial,
        &NoStatus,
        async {},
        |_| {},
    )
    .await
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bench")
        .fetch_one(&dst)
        .await
        .unwrap();
    assert_eq!(n, rows);
    row(
        "strangler snapshot (slot + exported snapshot → sink upserts)",
        rows,
        secs,
        "",
    );
}

async fn end_to_end(pg: &PgCluster, secs: u64, writers: usize) {
    let src_url = pg.create_database("e2e").unwrap();
    let dst_url = pg.create_database("e2e_target").unwrap();
    let src = PgPoolOptions::new()
        .max_connections(writers as u32 + 1)
        .connect(&src_url)
        .await
        .unwrap();
    let dst = PgPoolOptions::new().connect(&dst_url).await.unwrap();
    sqlx::query(TABLE).execute(&src).await.unwrap();
    sqlx::query(TARGET).execute(&dst).await.unwrap();
    let mut sinks = vec![Sink::connect("bench", &dst_url, "e2e", &[mapping()])
        .await
        .unwrap()];
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let c = cfg(&src_url, "e2e");
    let pipe = tokio::spawn(async move {
        pipeline::run(
            &c,
            &mut Sinks(&mut sinks),
            Start::Initial,
            &NoStatus,
            async {
                let _ = stop_rx.await;
            },
            |_| {},
        )
        .await
        .unwrap()
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // pgbench-style load: writers in small transactions (10 inserts + 2 updates).
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let src = src.clone();
        tasks.push(tokio::spawn(async move {
            let mut rows = 0i64;
            while Instant::now() < deadline {
                let mut tx = src.begin().await.unwrap();
                sqlx::query("INSERT INTO bench (a, b) SELECT $1, md5(g::text) FROM generate_series(1, 10) g").bind(w as i32).execute(&mut *tx).await.unwrap();
                sqlx::query("UPDATE bench SET a = a + 1, c = clock_timestamp() WHERE id IN (SELECT id FROM bench WHERE a = $1 ORDER BY id DESC LIMIT 2)").bind(w as i32).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
                rows += 12;
            }
            rows
        }));
    }
    let mut written = 0;
    for t in tasks {
        written += t.await.unwrap();
    }
    let load_secs = secs as f64;
    // Wait for the tail to arrive.
    let target_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bench")
        .fetch_one(&src)
        .await
        .unwrap();
    let caught = Instant::now();
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM bench")
        .fetch_one(&dst)
        .await
        .unwrap()
        < target_rows
        && caught.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = caught.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let p = pipe.await.unwrap();
    // Lag: from the source commit (c, set in the transaction) to the row's arrival (applied_at).
    let lag: (f64, f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.95) WITHIN GROUP (ORDER BY l), percentile_cont(0.99) WITHIN GROUP (ORDER BY l) \
         FROM (SELECT EXTRACT(EPOCH FROM applied_at - c)::float8 AS l FROM bench) x",
    )
    .fetch_one(&dst)
    .await
    .unwrap();
    let events = p.events as i64;
    row(
        &format!("strangler end to end, embedded ({writers} writers, {secs} s)"),
        events,
        load_secs + drain,
        &format!("written {written} rows; lag of inserted rows p50 {:.3} s, p95 {:.3} s, p99 {:.3} s; drain after load {drain:.2} s", lag.0, lag.1, lag.2),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let secs: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    println!("| run | rows/events | seconds | per second | notes |");
    println!("|---|---:|---:|---:|---|");
    decode(&pg, rows).await;
    snapshot(&pg, rows).await;
    end_to_end(&pg, secs, 8).await;
}
