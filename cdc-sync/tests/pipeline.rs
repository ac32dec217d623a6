//! The pipeline on real PostgreSQL: a source database and a target database
//! in a throw-away cluster with `wal_level = logical`.
//!
//! (Longer than 400 lines: one scenario per test on the same two databases
//! and mapping; they share the fixtures here.)

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use strangler_cdc::pipeline::{self, NoStatus, Progress, Start};
use strangler_cdc::sink::{Sink, Sinks, TargetTable};
use strangler_cdc::source::{SourceConfig, Stream};
use strangler_cdc::verify;
use strangler_config::{TableMapping, TableName};
use strangler_testkit::PgCluster;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SOURCE_SCHEMA: &str = "
CREATE TABLE products (
    id BIGSERIAL PRIMARY KEY,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    price_cents BIGINT NOT NULL,
    internal_notes TEXT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    big TEXT
)";

const TARGET_SCHEMA: &str = "
CREATE TABLE catalog_items (
    id BIGINT PRIMARY KEY,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    price BIGINT NOT NULL CHECK (price >= 0),
    updated_at TIMESTAMPTZ NOT NULL,
    big TEXT
)";

struct Env {
    _pg: PgCluster,
    src_url: String,
    dst_url: String,
    src: PgPool,
    dst: PgPool,
}

fn t(s: &str) -> TableName {
    s.parse().unwrap()
}

fn mapping() -> TableMapping {
    TableMapping {
        source: t("public.products"),
        target: t("public.catalog_items"),
        rename: BTreeMap::from([
            ("title".into(), "name".into()),
            ("price_cents".into(), "price".into()),
        ]),
        exclude: vec!["internal_notes".into()],
        drop_columns: false,
    }
}

fn reverse_mapping() -> TableMapping {
    TableMapping {
        source: t("public.catalog_items"),
        target: t("public.products"),
        rename: BTreeMap::from([
            ("name".into(), "title".into()),
            ("price".into(), "price_cents".into()),
        ]),
        exclude: vec![],
        drop_columns: false,
    }
}

async fn env() -> Env {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let src_url = pg.create_database("shop").unwrap();
    let dst_url = pg.create_database("svc").unwrap();
    let src = PgPoolOptions::new()
        .max_connections(4)
        .connect(&src_url)
        .await
        .unwrap();
    let dst = PgPoolOptions::new()
        .max_connections(4)
        .connect(&dst_url)
        .await
        .unwrap();
    sqlx::query(SOURCE_SCHEMA).execute(&src).await.unwrap();
    sqlx::query(TARGET_SCHEMA).execute(&dst).await.unwrap();
    Env {
        _pg: pg,
        src_url,
        dst_url,
        src,
        dst,
    }
}

fn source_cfg(e: &Env) -> SourceConfig {
    SourceConfig {
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
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Progress>,
}

impl Running {
    async fn stop(self) -> Progress {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

async fn start(
    cfg: SourceConfig,
    sink_url: &str,
    sink_name: &str,
    m: TableMapping,
    mode: Start,
) -> Running {
    let mut sinks = vec![Sink::connect(sink_name, sink_url, &cfg.slot, &[m])
        .await
        .unwrap()];
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        pipeline::run(
            &cfg,
            &mut Sinks(&mut sinks),
            mode,
            &NoStatus,
            async move {
                let _ = rx.await;
            },
            |_| {},
        )
        .await
        .unwrap()
    });
    Running { stop, task }
}

async fn insert(src: &PgPool, n: i64) {
    sqlx::query(
        "INSERT INTO products (sku, title, description, price_cents, internal_notes) \
         SELECT 'SKU-' || g, 'Item ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'About ' || g END, 100 + g, 'secret ' || g FROM generate_series(1, $1) g",
    )
    .bind(n)
    .execute(src)
    .await
    .unwrap();
}

async fn diff(e: &Env, m: &TableMapping) -> verify::TableReport {
    let mut s = PgConnection::connect(&e.src_url).await.unwrap();
    let mut d = PgConnection::connect(&e.dst_url).await.unwrap();
    for c in [&mut s, &mut d] {
        sqlx::query("SET TimeZone = 'UTC'")
            .execute(&mut *c)
            .await
            .unwrap();
    }
    let target = TargetTable::load_for_verify(&mut d, m).await.unwrap();
    verify::table(&mut s, &mut d, &target, |_, _| {})
        .await
        .unwrap()
}

async fn converge(e: &Env, m: &TableMapping) -> verify::TableReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = diff(e, m).await;
        if r.differences.is_empty() || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn snapshot_then_stream_keeps_the_target_equal_after_mapping() {
    let e = env().await;
    insert(&e.src, 1_000).await;
    let run = start(
        source_cfg(&e),
        &e.dst_url,
        "catalog",
        mapping(),
        Start::Initial,
    )
    .await;
    insert(&e.src, 200).await;
    sqlx::query("UPDATE products SET title = title || ' (new)', price_cents = price_cents + 1 WHERE id % 10 = 0").execute(&e.src).await.unwrap();
    sqlx::query("DELETE FROM products WHERE id % 20 = 1")
        .execute(&e.src)
        .await
        .unwrap();
    let r = converge(&e, &mapping()).await;
    assert!(r.differences.is_empty(), "{r:?}");
    assert_eq!(r.source_rows, 1_200 - 60);
    let name: String = sqlx::query_scalar("SELECT name FROM catalog_items WHERE id = 10")
        .fetch_one(&e.dst)
        .await
        .unwrap();
    assert_eq!(name, "Item 10 (new)", "title → name");
    let p = run.stop().await;
    // The snapshot holds whatever was committed when the slot was created.
    assert!(
        (1_000..=1_200).contains(&p.snapshot_rows),
        "{}",
        p.snapshot_rows
    );
    assert_eq!(p.dead_letters, 0);
    // Stopped cleanly: the slot is confirmed at the last transaction.
    let confirmed: String = sqlx::query_scalar(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'strangler'",
    )
    .fetch_one(&e.src)
    .await
    .unwrap();
    assert_eq!(confirmed, p.confirmed.to_string());
}

#[tokio::test]
async fn key_changes_toast_and_truncate() {
    let e = env().await;
    insert(&e.src, 20).await;
    // A value stored out of line (TOAST): random text does not compress.
    sqlx::query("ALTER TABLE products ALTER COLUMN big SET STORAGE EXTERNAL")
        .execute(&e.src)
        .await
        .unwrap();
    sqlx::query("UPDATE products SET big = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 3000)) WHERE id = 3").execute(&e.src).await.unwrap();
    let run = start(
        source_cfg(&e),
        &e.dst_url,
        "catalog",
        mapping(),
        Start::Initial,
    )
    .await;
    // Update another column: `big` arrives as __debezium_unavailable_value and is kept.
    sqlx::query("UPDATE products SET title = 'Renamed' WHERE id = 3")
        .execute(&e.src)
        .await
        .unwrap();
    // Primary-key change: delete + tombstone + create.
    sqlx::query("UPDATE products SET id = 1000 WHERE id = 5")
        .execute(&e.src)
        .await
        .unwrap();
    let r = converge(&e, &mapping()).await;
    assert!(r.differences.is_empty(), "{r:?}");
    let big_len: i32 = sqlx::query_scalar("SELECT length(big) FROM catalog_items WHERE id = 3")
        .fetch_one(&e.dst)
        .await
        .unwrap();
    assert_eq!(
        big_len, 96_000,
        "the TOASTed value survived an update that did not send it"
    );
    let moved: (i64, i64) = sqlx::query_as("SELECT (SELECT count(*) FROM catalog_items WHERE id = 5), (SELECT count(*) FROM catalog_items WHERE id = 1000)").fetch_one(&e.dst).await.unwrap();
    assert_eq!(moved, (0, 1));
    sqlx::query("TRUNCATE products")
        .execute(&e.src)
        .await
        .unwrap();
    let r = converge(&e, &mapping()).await;
    assert!(r.differences.is_empty() && r.target_rows == 0, "{r:?}");
    run.stop().await;
}

#[tokio::test]
async fn a_poison_event_goes_to_the_dead_letters_and_the_rest_goes_on() {
    let e = env().await;
    let run = start(
        source_cfg(&e),
        &e.dst_url,
        "catalog",
        mapping(),
        Start::Initial,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The service's schema refuses a negative price; the monolith's does not.
    sqlx::query("INSERT INTO products (sku, title, price_cents) VALUES ('BAD', 'Bad', -5), ('OK1', 'Fine', 5)").execute(&e.src).await.unwrap();
    insert(&e.src, 10).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n: i64 = 0;
    while Instant::now() < deadline {
        n = sqlx::query_scalar("SELECT count(*) FROM catalog_items")
            .fetch_one(&e.dst)
            .await
            .unwrap();
        if n == 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n, 11, "everything but the poison event is applied");
    let (reason, value): (String, String) =
        sqlx::query_as("SELECT reason, value FROM strangler_cdc_dead_letters")
            .fetch_one(&e.dst)
            .await
            .unwrap();
    assert!(reason.contains("check constraint"), "{reason}");
    assert!(value.contains("\"BAD\""), "{value}");
    let p = run.stop().await;
    assert_eq!(p.dead_letters, 1);
    let r = diff(&e, &mapping()).await;
    assert_eq!(
        r.differences.len(),
        1,
        "verify reports the row that could not be applied: {r:?}"
    );
}

#[tokio::test]
async fn verify_finds_planted_differences() {
    let e = env().await;
    insert(&e.src, 25_000).await;
    let run = start(
        source_cfg(&e),
        &e.dst_url,
        "catalog",
        mapping(),
        Start::Initial,
    )
    .await;
    let r = converge(&e, &mapping()).await;
    assert!(r.differences.is_empty());
    run.stop().await;
    assert_eq!(r.chunks, 3);
    sqlx::query("UPDATE catalog_items SET name = 'tampered' WHERE id = 12345")
        .execute(&e.dst)
        .await
        .unwrap();
    sqlx::query("DELETE FROM catalog_items WHERE id = 20001")
        .execute(&e.dst)
        .await
        .unwrap();
    sqlx::query("INSERT INTO catalog_items (id, sku, name, price, updated_at) VALUES (99999, 'X', 'x', 1, now())").execute(&e.dst).await.unwrap();
    let r = diff(&e, &mapping()).await;
    let mut found: Vec<(String, &str)> = r
        .differences
        .iter()
        .map(|d| (d.key.join(","), d.kind))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("12345".to_string(), "differs"),
            ("20001".to_string(), "missing"),
            ("99999".to_string(), "extra")
        ]
    );
    assert_eq!(
        r.differing_chunks, 2,
        "only the chunks that differ are compared row by row"
    );
}

#[tokio::test]
async fn reverse_sync_converges_without_ping_pong() {
    let e = env().await;
    insert(&e.src, 50).await;
    let fwd = start(
        source_cfg(&e),
        &e.dst_url,
        "catalog",
        mapping(),
        Start::Initial,
    )
    .await;
    assert!(converge(&e, &mapping()).await.differences.is_empty());
    let rev_cfg = SourceConfig {
        url: e.dst_url.clone(),
        slot: "strangler_rev_catalog".into(),
        publication: "strangler_rev_catalog".into(),
        tables: vec![t("public.catalog_items")],
        name: "catalog-reverse".into(),
        format: Default::default(),
        check_rows: 0,
        tx_memory: strangler_cdc::source::DEFAULT_TX_MEMORY,
        chunk_rows: strangler_cdc::source::chunk::CHUNK_ROWS,
        workers: strangler_config::DEFAULT_SNAPSHOT_WORKERS,
        kind: strangler_config::SourceKind::Postgres,
    };
    let rev = start(
        rev_cfg,
        &e.src_url,
        "catalog_reverse",
        reverse_mapping(),
        Start::Never,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Concurrent edits on both sides, on different rows and on the same row.
    for i in 0..20 {
        sqlx::query("UPDATE products SET price_cents = price_cents + 1 WHERE id = $1")
            .bind(1 + i % 5)
            .execute(&e.src)
            .await
            .unwrap();
        sqlx::query("UPDATE catalog_items SET name = 'svc ' || $2 WHERE id = $1")
            .bind(10 + i % 5)
            .bind(i)
            .execute(&e.dst)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE catalog_items SET price = 7777 WHERE id = 30")
        .execute(&e.dst)
        .await
        .unwrap();
    let r = converge(&e, &mapping()).await;
    assert!(r.differences.is_empty(), "{r:?}");
    let title: String = sqlx::query_scalar("SELECT title FROM products WHERE id = 14")
        .fetch_one(&e.src)
        .await
        .unwrap();
    assert_eq!(title, "svc 19", "the service's edit reached the monolith");
    let price: i64 = sqlx::query_scalar("SELECT price_cents FROM products WHERE id = 30")
        .fetch_one(&e.src)
        .await
        .unwrap();
    assert_eq!(price, 7777);
    // No ping-pong: once converged, nothing moves any more.
    let offsets = || async {
        let a: i64 = sqlx::query_scalar("SELECT lsn FROM strangler_cdc_offsets")
            .fetch_one(&e.dst)
            .await
            .unwrap();
        let b: i64 = sqlx::query_scalar("SELECT lsn FROM strangler_cdc_offsets")
            .fetch_one(&e.src)
            .await
            .unwrap();
        (a, b)
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = offsets().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        offsets().await,
        before,
        "no transaction bounced between the databases"
    );
    let f = fwd.stop().await;
    let r = rev.stop().await;
    assert!(
        f.transactions < 40 && r.transactions < 40,
        "forward {} and reverse {} transactions: no echo",
        f.transactions,
        r.transactions
    );
}

#[tokio::test]
async fn events_have_debeziums_structure() {
    let e = env().await;
    let cfg = source_cfg(&e);
    // Create the slot (no snapshot needed), then read raw transactions.
    let mut sinks = vec![
        Sink::connect("catalog", &e.dst_url, &cfg.slot, &[mapping()])
            .await
            .unwrap(),
    ];
    let run_cfg = cfg.clone();
    let _ = pipeline::run(
        &run_cfg,
        &mut Sinks(&mut sinks),
        Start::Never,
        &NoStatus,
        async {},
        |_| {},
    )
    .await
    .unwrap();
    sqlx::query("INSERT INTO products (sku, title, price_cents) VALUES ('A', 'Kettle', 2599)")
        .execute(&e.src)
        .await
        .unwrap();
    sqlx::query("UPDATE products SET id = 77 WHERE sku = 'A'")
        .execute(&e.src)
        .await
        .unwrap();
    sqlx::query("DELETE FROM products WHERE id = 77")
        .execute(&e.src)
        .await
        .unwrap();
    let mut stream = Stream::start(&cfg).await.unwrap();
    let mut records = Vec::new();
    while records.len() < 7 {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
        {
            strangler_cdc::source::Item::Tx(tx) => records.extend(tx.records),
            strangler_cdc::source::Item::Idle(_) | strangler_cdc::source::Item::Skipped(_) => {}
            strangler_cdc::source::Item::Large(l) => panic!("one-row transactions: {l:?}"),
            other => panic!("no snapshot requests here: {other:?}"),
        }
    }
    // The table's shape comes first (the session's first description of
    // it): Debezium's schema-change event on `<prefix>.schema-changes`.
    let shape = records.remove(0);
    assert_eq!(shape.topic, "monolith.schema-changes");
    assert_eq!(shape.table, "public.products");
    assert_eq!(shape.commit_lsn, records[0].commit_lsn);
    let change = &shape.value.as_ref().unwrap()["tableChanges"][0];
    assert_eq!(change["type"], "ALTER");
    assert_eq!(
        change["table"]["primaryKeyColumnNames"],
        serde_json::json!(["id"])
    );
    let columns: Vec<(&str, &str, i64)> = change["table"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["typeExpression"].as_str().unwrap(),
                c["position"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(columns[0], ("id", "bigint", 1), "{columns:?}");
    assert!(columns.contains(&("title", "text", 3)), "{columns:?}");
    let ops: Vec<Option<String>> = records
        .iter()
        .map(|r| {
            r.value
                .as_ref()
                .map(|v| v["op"].as_str().unwrap().to_string())
        })
        .collect();
    let c = |s: &str| Some(s.to_string());
    assert_eq!(
        ops,
        vec![c("c"), c("d"), None, c("c"), c("d"), None],
        "insert; key change = delete + tombstone + create; delete + tombstone"
    );
    let created = records[0].value.as_ref().unwrap();
    assert_eq!(records[0].topic, "monolith.public.products");
    assert_eq!(records[0].key, Some(serde_json::json!({"id": 1})));
    assert_eq!(created["after"]["title"], "Kettle");
    assert_eq!(created["after"]["price_cents"], 2599);
    assert!(created["after"]["updated_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let src = &created["source"];
    let mut keys: Vec<&str> = src
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "connector",
            "db",
            "lsn",
            "name",
            "schema",
            "sequence",
            "snapshot",
            "table",
            "ts_ms",
            "txId",
            "version",
            "xmin"
        ]
    );
    assert_eq!(
        (
            src["connector"].as_str(),
            src["db"].as_str(),
            src["table"].as_str()
        ),
        (Some("postgresql"), Some("shop"), Some("products"))
    );
    assert!(src["lsn"].is_u64() && src["txId"].is_u64());
    let mut top: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["after", "before", "op", "source", "transaction", "ts_ms"]
    );
    assert_eq!(
        records[2].key,
        Some(serde_json::json!({"id": 1})),
        "the tombstone keeps the key"
    );
    stream.shutdown().await;
}

/// A Kafka sink worker that restarts re-reads records its group had not
/// committed yet: offsets stored with the rows make it skip exactly those,
/// so an old value never overwrites a newer one.
#[tokio::test]
async fn replayed_kafka_records_below_the_stored_offset_are_skipped() {
    use strangler_cdc::event::Record;
    use strangler_cdc::lsn::Lsn;
    use strangler_cdc::transport::kafka::PartitionOffsets;
    let e = env().await;
    let topic = "monolith.public.products".to_string();
    let rec = |id: i64, price: i64| Record {
        topic: topic.clone(),
        table: "public.products".into(),
        key: Some(serde_json::json!({ "id": id })),
        value: Some(serde_json::json!({ "op": "c", "after": {
            "id": id, "sku": format!("S{id}"), "title": "t", "description": null,
            "price_cents": price, "updated_at": "2024-01-01T00:00:00Z", "internal_notes": "x", "big": null
        }})),
        commit_lsn: Lsn(0),
        seq: 0,
        exact: None,
        schemas: None,
        shape: None,
    };
    let mut sink = Sink::connect("catalog", &e.dst_url, "strangler", &[mapping()])
        .await
        .unwrap();
    let first = PartitionOffsets::default()
        .apply(
            &mut sink,
            &[
                (rec(1, 5), topic.clone(), 0, 0),
                (rec(2, 6), topic.clone(), 0, 1),
            ],
        )
        .await
        .unwrap();
    assert_eq!((first.rows, first.skipped), (2, 0));
    // A restarted worker: nothing cached, the group re-delivers from offset 0.
    let again = PartitionOffsets::default()
        .apply(
            &mut sink,
            &[
                (rec(1, 999), topic.clone(), 0, 0),
                (rec(2, 999), topic.clone(), 0, 1),
                (rec(3, 7), topic.clone(), 0, 2),
            ],
        )
        .await
        .unwrap();
    assert_eq!((again.rows, again.skipped), (1, 2));
    let prices: Vec<(i64, i64)> = sqlx::query_as("SELECT id, price FROM catalog_items ORDER BY id")
        .fetch_all(&e.dst)
        .await
        .unwrap();
    assert_eq!(prices, vec![(1, 5), (2, 6), (3, 7)]);
    let next: i64 = sqlx::query_scalar(
        "SELECT next_offset FROM strangler_cdc_kafka_offsets WHERE sink = 'catalog' AND topic = $1 AND partition = 0",
    )
    .bind(&topic)
    .fetch_one(&e.dst)
    .await
    .unwrap();
    assert_eq!(next, 3);
}
