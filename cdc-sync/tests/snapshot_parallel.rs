//! The initial snapshot read by several source connections at once: a big
//! table is split into page ranges, every worker reads the slot's exported
//! snapshot (changes committed after the slot was made are not seen), and
//! every row arrives exactly once, its table marked done after its last
//! part.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;

use sqlx::postgres::PgPoolOptions;
use strangler_cdc::source::{self, SnapshotItem, SourceConfig};
use strangler_config::TableName;
use strangler_testkit::PgCluster;
use tokio::sync::mpsc;

/// Rows of `wide`: about 1 KiB each, so about 4,000 pages — split.
const WIDE: i64 = 32_000;
/// Rows of `tiny`: copied whole.
const TINY: i64 = 100;

#[derive(Default, Debug)]
struct Seen {
    /// Parts per table.
    parts: BTreeMap<String, usize>,
    /// Ids per table, as often as they arrived.
    ids: BTreeMap<String, Vec<i64>>,
    /// Tables marked done, with the parts received before.
    done: Vec<(String, usize)>,
}

#[tokio::test]
async fn workers_join_the_exported_snapshot_and_copy_every_row_once() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = pg.create_database("shop").unwrap();
    let src = PgPoolOptions::new().connect(&url).await.unwrap();
    for (name, rows) in [("wide", WIDE), ("tiny", TINY)] {
        sqlx::query(&format!(
            "CREATE TABLE {name} (id BIGINT PRIMARY KEY, pad TEXT NOT NULL)"
        ))
        .execute(&src)
        .await
        .unwrap();
        // Not compressible, not toasted: the rows fill the pages.
        sqlx::query(&format!(
            "ALTER TABLE {name} ALTER COLUMN pad SET STORAGE PLAIN"
        ))
        .execute(&src)
        .await
        .unwrap();
        sqlx::query(&format!(
            "INSERT INTO {name} SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, {rows}) g"
        ))
        .execute(&src)
        .await
        .unwrap();
    }
    let t = |s: &str| s.parse::<TableName>().unwrap();
    let cfg = SourceConfig {
        url: url.clone(),
        slot: "strangler".into(),
        publication: "strangler".into(),
        tables: vec![t("public.wide"), t("public.tiny")],
        name: "monolith".into(),
        format: Default::default(),
        check_rows: 0,
        tx_memory: source::DEFAULT_TX_MEMORY,
        chunk_rows: source::chunk::CHUNK_ROWS,
        workers: 2,
        kind: strangler_config::SourceKind::Postgres,
    };
    let mut conn = source::connect(&cfg).await.unwrap();
    source::ensure_publication(&mut conn, &cfg).await.unwrap();

    let (tx, mut rx) = mpsc::channel(2);
    let snap = tokio::spawn({
        let cfg = cfg.clone();
        async move { source::snapshot(&cfg, tx).await.map(|_| ()) }
    });
    let mut seen = Seen::default();
    while let Some(item) = rx.recv().await {
        match item {
            SnapshotItem::Begun(_) => {
                // Committed after the slot's snapshot, before any worker
                // starts: none of it may be read.
                sqlx::query("DELETE FROM wide WHERE id <= 10 OR id > 31990")
                    .execute(&src)
                    .await
                    .unwrap();
                sqlx::query("INSERT INTO wide VALUES (100000, 'new'), (100001, 'new')")
                    .execute(&src)
                    .await
                    .unwrap();
                sqlx::query("UPDATE tiny SET id = id + 1000 WHERE id <= 5")
                    .execute(&src)
                    .await
                    .unwrap();
            }
            SnapshotItem::Table {
                columns, answer, ..
            } => {
                let _ = answer.send(Some(columns.into_iter().map(|(c, _)| c).collect()));
            }
            SnapshotItem::Copy {
                table,
                mut chunks,
                done,
                ..
            } => {
                *seen.parts.entry(table.clone()).or_default() += 1;
                let ids = seen.ids.entry(table).or_default();
                while let Some(chunk) = chunks.recv().await {
                    for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        let id = line.split(|b| *b == b'\t').next().unwrap();
                        ids.push(std::str::from_utf8(id).unwrap().parse().unwrap());
                    }
                }
                let _ = done.send(true);
            }
            SnapshotItem::TableDone(table) => {
                let parts = seen.parts.get(&table).copied().unwrap_or(0);
                seen.done.push((table, parts));
            }
            SnapshotItem::Records(r) => panic!("{} rows came as records", r.len()),
            SnapshotItem::Expected(_) => {}
        }
    }
    snap.await.unwrap().unwrap();

    // Parts of at least 1,024 pages, at most two per worker: 3 for the
    // about 4,000 pages of `wide` (computed from its size, so a server that
    // packs rows a little differently still checks exactly).
    let pages: i64 =
        sqlx::query_scalar("SELECT pg_relation_size('wide') / current_setting('block_size')::int8")
            .fetch_one(&src)
            .await
            .unwrap();
    assert!(
        (3_072..4_096).contains(&pages),
        "{pages} pages: not split in 3"
    );
    assert_eq!(seen.parts["public.wide"], 3, "{seen:?}");
    assert_eq!(seen.parts["public.tiny"], 1, "{seen:?}");
    for (table, rows) in [("public.wide", WIDE), ("public.tiny", TINY)] {
        let mut ids = seen.ids[table].clone();
        ids.sort_unstable();
        assert_eq!(ids, (1..=rows).collect::<Vec<_>>(), "{table}");
    }
    // Each table once, after all of its parts.
    let mut done = seen.done.clone();
    done.sort();
    assert_eq!(
        done,
        [
            ("public.tiny".to_string(), 1),
            ("public.wide".to_string(), 3)
        ]
    );
}
