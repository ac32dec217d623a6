//! How a sink applies, on a real target: through several connections
//! (`connections`) a crash between two connections' commits, then the
//! replay, applies every row once and a TRUNCATE is ordered with the rows
//! around it; a fault that passes (a deadlock) fails the batch for a retry
//! instead of setting an event aside.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use serde_json::json;
use sqlx::PgPool;
use strangler_cdc::event::Record;
use strangler_cdc::lsn::Lsn;
use strangler_cdc::sink::Sink;
use strangler_config::TableMapping;
use strangler_testkit::PgCluster;

const TARGET: &str = "
CREATE TABLE ledger (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE applied_log (id BIGINT NOT NULL, n BIGINT NOT NULL);
CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO applied_log VALUES (NEW.id, NEW.n); RETURN NEW; END $$;
CREATE TRIGGER ledger_applied AFTER INSERT OR UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION log_apply();
-- While `fail` has a row, a transaction that wrote id 13 fails at COMMIT:
-- the connection that applies key 13 fails after the others committed.
CREATE TABLE fail (x INT);
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 13 AND EXISTS (SELECT 1 FROM fail) THEN
        RAISE EXCEPTION 'the connection dies at commit' USING ERRCODE = '08006';
    END IF;
    RETURN NEW;
END $$;
CREATE CONSTRAINT TRIGGER ledger_fail AFTER INSERT OR UPDATE ON ledger
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();
-- The first two writes of n = 777 end in a deadlock (a sequence: not
-- rolled back with the failed transaction).
CREATE SEQUENCE deadlocks;
CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.n = 777 AND nextval('deadlocks') <= 2 THEN
        RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_deadlock BEFORE INSERT OR UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION deadlock_once();
";

fn mapping() -> TableMapping {
    TableMapping {
        source: "public.ledger".parse().unwrap(),
        target: "public.ledger".parse().unwrap(),
        rename: Default::default(),
        exclude: Vec::new(),
        drop_columns: false,
    }
}

fn row(lsn: u64, id: i64, n: i64) -> Record {
    Record {
        topic: "shop.public.ledger".into(),
        table: "public.ledger".into(),
        key: Some(json!({ "id": id })),
        value: Some(json!({ "op": "c", "before": null, "after": { "id": id, "n": n } })),
        commit_lsn: Lsn(lsn),
        seq: 0,
        exact: None,
        schemas: None,
        shape: None,
    }
}

fn truncate(lsn: u64) -> Record {
    Record {
        key: None,
        value: Some(json!({ "op": "t", "before": null, "after": null })),
        ..row(lsn, 0, 0)
    }
}

async fn target() -> (PgCluster, String, PgPool) {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = pg.create_database("svc").unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(TARGET).execute(&pool).await.unwrap();
    (pg, url, pool)
}

async fn sink(url: &str, connections: usize) -> Sink {
    Sink::connect("svc", url, "strangler", &[mapping()])
        .await
        .unwrap()
        .with_connections(connections)
        .await
        .unwrap()
}

async fn rows(pool: &PgPool) -> Vec<(i64, i64)> {
    sqlx::query_as("SELECT id, n FROM ledger ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// 20 transactions of 10 new keys each (key 13 in the first).
fn stream() -> Vec<Record> {
    (1..=20u64)
        .flat_map(|tx| (0..10).map(move |i| row(tx * 100, (tx * 10 + i) as i64 - 10, 1)))
        .collect()
}

/// 20 transactions; each writes 10 keys of 0..40 (every key five times,
/// each time a new value).
fn rewrites(from: u64) -> Vec<Record> {
    (1..=20u64)
        .flat_map(|tx| {
            (0..10).map(move |i| {
                row(
                    from + tx * 100,
                    ((tx * 7 + i * 4) % 40) as i64,
                    (tx * 1000 + i) as i64,
                )
            })
        })
        .collect()
}

fn expected(records: &[Record]) -> Vec<(i64, i64)> {
    let mut last = std::collections::BTreeMap::new();
    for r in records {
        let v = r.value.as_ref().unwrap();
        last.insert(
            v["after"]["id"].as_i64().unwrap(),
            v["after"]["n"].as_i64().unwrap(),
        );
    }
    last.into_iter().collect()
}

#[tokio::test]
async fn a_crash_between_connections_then_the_replay_applies_every_row_once() {
    let (_pg, url, pool) = target().await;
    let records = stream();
    let through = Lsn(2_000);
    sqlx::query("INSERT INTO fail VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let mut s = sink(&url, 3).await;
    let err = s.apply(&records, through, false).await;
    assert!(err.is_err(), "the lane with key 13 fails at commit");
    // The other connections committed their rows: part of the batch is in.
    let partial = count(&pool, "SELECT count(*) FROM applied_log").await;
    assert!(
        partial > 0 && partial < records.len() as i64,
        "{partial} of {} applied before the crash",
        records.len()
    );
    drop(s);
    sqlx::query("DELETE FROM fail")
        .execute(&pool)
        .await
        .unwrap();

    // Restarted, the slot replays the batch, grouped differently (whole
    // transactions of 10 rows, as the pipeline sends them).
    let mut s = sink(&url, 3).await;
    for part in records.chunks(30) {
        s.apply(part, part.last().unwrap().commit_lsn, false)
            .await
            .unwrap();
    }
    s.apply(&[], through, false).await.unwrap();
    assert_eq!(rows(&pool).await, expected(&records));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM applied_log").await,
        records.len() as i64,
        "every row applied once"
    );
    // A third replay changes nothing.
    let mut s = sink(&url, 3).await;
    s.apply(&records, through, false).await.unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM applied_log").await,
        records.len() as i64
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM strangler_cdc_lane_offsets WHERE lsn = 2000"
        )
        .await,
        2,
        "lanes 1 and 2 stored their position with their rows"
    );
    // One key's changes stay in order across batches and connections.
    let more = rewrites(2_000);
    for part in more.chunks(50) {
        s.apply(part, part.last().unwrap().commit_lsn, false)
            .await
            .unwrap();
    }
    let mut all = records.clone();
    all.extend(more);
    assert_eq!(rows(&pool).await, expected(&all));
}

#[tokio::test]
async fn a_truncate_waits_for_the_rows_before_it_and_the_rows_after_it_wait_for_it() {
    let (_pg, url, pool) = target().await;
    let mut s = sink(&url, 4).await;
    for round in 0..5u64 {
        let base = round * 10_000;
        let mut batch: Vec<Record> = (0..200).map(|i| row(base + 100, i, 1)).collect();
        batch.push(truncate(base + 200));
        batch.extend((0..5).map(|i| row(base + 300, i, 2)));
        s.apply(&batch, Lsn(base + 300), false).await.unwrap();
        assert_eq!(
            rows(&pool).await,
            (0..5).map(|i| (i, 2)).collect::<Vec<_>>(),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn a_changed_number_of_connections_starts_every_one_from_the_lowest_position() {
    let (_pg, url, pool) = target().await;
    let records = stream();
    sqlx::query("INSERT INTO fail VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let mut s = sink(&url, 3).await;
    assert!(s.apply(&records, Lsn(2_000), false).await.is_err());
    drop(s);
    sqlx::query("DELETE FROM fail")
        .execute(&pool)
        .await
        .unwrap();
    // Fewer connections now: keys move between them. Applied again from
    // the lowest position, in order: nothing lost, the end state right.
    let partial = count(&pool, "SELECT count(*) FROM applied_log").await;
    let mut s = sink(&url, 2).await;
    s.apply(&records, Lsn(2_000), false).await.unwrap();
    assert_eq!(rows(&pool).await, expected(&records));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM applied_log").await,
        partial + records.len() as i64,
        "everything applied again after the {partial} rows applied before the crash"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM strangler_cdc_lane_offsets").await,
        1
    );
}

/// A deadlock while applying (first in the batch statement, then again for
/// the event alone) fails the batch — retryable, nothing set aside — and
/// the retry applies it.
#[tokio::test]
async fn a_deadlock_fails_the_batch_for_a_retry_and_never_makes_a_dead_letter() {
    let (_pg, url, pool) = target().await;
    let records: Vec<Record> = (0..10)
        .map(|i| row(100, i, if i == 7 { 777 } else { 1 }))
        .collect();
    let mut s = sink(&url, 1).await;
    let err = s
        .apply(&records, Lsn(100), false)
        .await
        .expect_err("the deadlock fails the batch");
    assert!(err.is_retryable(), "{err}");
    // The pipeline reconnects: the failed transaction goes with the old
    // connection.
    drop(s);
    assert_eq!(count(&pool, "SELECT count(*) FROM ledger").await, 0);
    let mut s = sink(&url, 1).await;
    let applied = s.apply(&records, Lsn(100), false).await.unwrap();
    assert_eq!(applied.dead_letters, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM ledger").await, 10);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM strangler_cdc_dead_letters").await,
        0
    );
}
