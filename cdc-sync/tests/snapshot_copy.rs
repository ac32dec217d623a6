//! The snapshot as COPY text straight into the target: into an empty table,
//! merged into a table that has rows, and as records (dead letters) when the
//! target refuses a row.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use strangler_cdc::pipeline::{self, NoStatus, Progress, Start, TableProgress};
use strangler_cdc::sink::{Sink, Sinks, TargetTable};
use strangler_cdc::source::SourceConfig;
use strangler_cdc::verify;
use strangler_config::{TableMapping, TableName};
use strangler_testkit::PgCluster;

struct Env {
    _pg: PgCluster,
    src_url: String,
    dst_url: String,
    dst: PgPool,
}

fn t(s: &str) -> TableName {
    s.parse().unwrap()
}

fn mapping() -> TableMapping {
    TableMapping {
        source: t("public.products"),
        target: t("public.catalog_items"),
        rename: BTreeMap::from([("title".into(), "name".into())]),
        exclude: vec!["internal_notes".into()],
        drop_columns: false,
    }
}

/// 3,000 products (one with a tab, a newline and a backslash in its title);
/// `bad_price` adds one the target's CHECK refuses.
async fn env(bad_price: bool) -> Env {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let src_url = pg.create_database("shop").unwrap();
    let dst_url = pg.create_database("svc").unwrap();
    let src = PgPoolOptions::new().connect(&src_url).await.unwrap();
    let dst = PgPoolOptions::new().connect(&dst_url).await.unwrap();
    sqlx::query("CREATE TABLE products (id BIGINT PRIMARY KEY, title TEXT NOT NULL, price NUMERIC(12,2) NOT NULL, internal_notes TEXT, seen TIMESTAMPTZ)")
        .execute(&src)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE catalog_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(12,2) NOT NULL CHECK (price >= 0), seen TIMESTAMPTZ, extra TEXT DEFAULT 'default')")
        .execute(&dst)
        .await
        .unwrap();
    sqlx::query("INSERT INTO products SELECT g, 'Item ' || g, g * 1.25, 'secret', TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 3000) g")
        .execute(&src)
        .await
        .unwrap();
    sqlx::query("UPDATE products SET title = E'tab\\there\\nnew line \\\\ back' WHERE id = 7")
        .execute(&src)
        .await
        .unwrap();
    // Exact estimates for the progress bar.
    sqlx::query("ANALYZE products").execute(&src).await.unwrap();
    if bad_price {
        sqlx::query("UPDATE products SET price = -1 WHERE id = 42")
            .execute(&src)
            .await
            .unwrap();
    }
    Env {
        _pg: pg,
        src_url,
        dst_url,
        dst,
    }
}

/// Snapshots, then stops once the target has `rows` rows.
async fn snapshot(e: &Env, rows: i64) -> Progress {
    let cfg = SourceConfig {
        url: e.src_url.clone(),
        slot: "strangler".into(),
        publication: "strangler".into(),
        tables: vec![t("public.products")],
        name: "monolith".into(),
        format: Default::default(),
        check_rows: 0,
        tx_memory: strangler_cdc::source::DEFAULT_TX_MEMORY,
        chunk_rows: strangler_cdc::source::chunk::CHUNK_ROWS,
        workers: strangler_config::DEFAULT_SNAPSHOT_WORKERS,
        kind: strangler_config::SourceKind::Postgres,
    };
    let mut sinks = vec![
        Sink::connect("catalog", &e.dst_url, "strangler", &[mapping()])
            .await
            .unwrap(),
    ];
    let dst = e.dst.clone();
    let done = async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_items")
                .fetch_one(&dst)
                .await
                .unwrap();
            let snapshot_done: bool = sqlx::query_scalar(
                "SELECT COALESCE(bool_and(snapshot_done), false) FROM strangler_cdc_offsets",
            )
            .fetch_one(&dst)
            .await
            .unwrap_or(false);
            if n == rows && snapshot_done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    pipeline::run(
        &cfg,
        &mut Sinks(&mut sinks),
        Start::Initial,
        &NoStatus,
        done,
        |_| {},
    )
    .await
    .unwrap()
}

async fn diff(e: &Env) -> verify::TableReport {
    let mut s = PgConnection::connect(&e.src_url).await.unwrap();
    let mut d = PgConnection::connect(&e.dst_url).await.unwrap();
    let target = TargetTable::load_for_verify(&mut d, &mapping())
        .await
        .unwrap();
    verify::table(&mut s, &mut d, &target, |_, _| {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_target_gets_the_snapshot_by_copy_exactly() {
    let e = env(false).await;
    let p = snapshot(&e, 3_000).await;
    assert_eq!((p.snapshot_rows, p.snapshot_copied), (3_000, 3_000));
    assert_eq!(p.snapshot_expected, 3_000, "the estimate the bar shows");
    assert_eq!(
        p.snapshot_tables["public.products"],
        TableProgress {
            rows: 3_000,
            expected: 3_000,
            done: true
        },
        "the table's progress (--metrics)"
    );
    let r = diff(&e).await;
    assert!(r.differences.is_empty(), "{r:?}");
    let (name, extra): (String, String) =
        sqlx::query_as("SELECT name, extra FROM catalog_items WHERE id = 7")
            .fetch_one(&e.dst)
            .await
            .unwrap();
    assert_eq!(name, "tab\there\nnew line \\ back");
    assert_eq!(
        extra, "default",
        "a column the source lacks gets its default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_rows_gets_the_snapshot_merged() {
    let e = env(false).await;
    // Stale copies of the first 100 and one row the source never had.
    sqlx::query("INSERT INTO catalog_items (id, name, price) SELECT g, 'stale', 0 FROM generate_series(1, 100) g UNION ALL SELECT 99999, 'only here', 1")
        .execute(&e.dst)
        .await
        .unwrap();
    let p = snapshot(&e, 3_001).await;
    assert_eq!((p.snapshot_rows, p.snapshot_copied), (3_000, 3_000));
    let stale: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_items WHERE name = 'stale'")
        .fetch_one(&e.dst)
        .await
        .unwrap();
    assert_eq!(stale, 0, "every stale row was overwritten");
    let r = diff(&e).await;
    assert_eq!(
        r.differences.len(),
        1,
        "only the row the source never had differs: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_target_refuses_sends_the_table_as_records_with_one_dead_letter() {
    let e = env(true).await;
    let p = snapshot(&e, 2_999).await;
    assert_eq!((p.snapshot_rows, p.snapshot_copied), (3_000, 0));
    assert_eq!(p.dead_letters, 1);
    let t = &p.snapshot_tables["public.products"];
    assert_eq!((t.rows, t.done), (3_000, true), "counted once, as records");
    let reason: String = sqlx::query_scalar("SELECT reason FROM strangler_cdc_dead_letters")
        .fetch_one(&e.dst)
        .await
        .unwrap();
    assert!(reason.contains("check constraint"), "{reason}");
    let r = diff(&e).await;
    assert_eq!(r.differences.len(), 1, "{r:?}");
}
