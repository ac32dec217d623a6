//! `strangler cdc snapshot --table T` while `cdc run` streams and writes
//! go on: the table is copied again in chunks between watermarks; rows
//! the stream changed meanwhile are not overwritten by older copies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cdc::{cli_env, databases, embedded_ledger_config, plain_ledger, spawn_cdc_with};
use crate::cdc_faults::count;
use crate::support::{eventually, Harness};

const ROWS: i64 = 7_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_copied_again_in_chunks_while_writes_go_on_ends_equal_to_the_source() {
    let db = databases().await;
    plain_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config(""));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    let _cdc = spawn_cdc_with(&h, &env, &[]);
    sqlx::query("INSERT INTO ledger (n, note) SELECT 0, 'row ' || g FROM generate_series(1, $1) g")
        .bind(ROWS)
        .execute(&db.src)
        .await
        .expect("rows");
    let arrived = eventually(Duration::from_secs(60), || async {
        count(&db.dst, "SELECT count(*) FROM ledger").await == ROWS
    })
    .await;
    assert!(arrived.is_some(), "{}", log());

    // The target drifted (rows lost, rows changed behind the sink's back).
    sqlx::query("DELETE FROM ledger WHERE id % 3 = 0")
        .execute(&db.dst)
        .await
        .expect("drift");
    sqlx::query("UPDATE ledger SET note = 'wrong' WHERE id % 5 = 0")
        .execute(&db.dst)
        .await
        .expect("drift");

    // Writes go on: every row's n only grows, one small transaction at a
    // time, so a chunk copy older than a streamed change would show.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (src, stop) = (db.src.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = (i * 7919) % ROWS + 1;
                sqlx::query("UPDATE ledger SET n = n + 1 WHERE id = $1")
                    .bind(id)
                    .execute(&src)
                    .await
                    .expect("update");
                if i % 50 == 0 {
                    sqlx::query("INSERT INTO ledger (n, note) VALUES (0, 'new')")
                        .execute(&src)
                        .await
                        .expect("insert");
                }
            }
            i
        })
    };
    let (code, out, err) = cli_env(&["cdc", "snapshot", "--table", "ledger"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("public.ledger"), "{out}");
    let complete = eventually(Duration::from_secs(120), || async {
        log().contains("chunked snapshot complete")
    })
    .await;
    assert!(complete.is_some(), "{}", log());
    stop.store(true, Ordering::Relaxed);
    let updates = writer.await.expect("writer");
    assert!(updates > 0);

    // Once the stream has caught up, the target equals the source.
    let equal = eventually(Duration::from_secs(60), || async {
        cli_env(&["cdc", "verify"], &h, &env).0 == 0
    })
    .await;
    let (_, out, _) = cli_env(&["cdc", "verify"], &h, &env);
    assert!(equal.is_some(), "verify: {out}\n{}", log());
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM ledger WHERE note = 'wrong'").await,
        0
    );
    let chunks = log().matches("chunked snapshot requested").count();
    assert_eq!(chunks, 1, "{}", log());
}

/// A chunked snapshot killed (-9) in the middle resumes after the last
/// chunk recorded, not from the start: the chunk reads are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_snapshot_killed_in_the_middle_resumes_at_the_next_chunk() {
    let db = databases().await;
    plain_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config("snapshot_chunk_rows = 100"));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    let reads = || log().matches("chunk read").count();
    let mut cdc = spawn_cdc_with(&h, &env, &[]);
    sqlx::query("INSERT INTO ledger (n, note) SELECT 0, 'row ' || g FROM generate_series(1, $1) g")
        .bind(ROWS)
        .execute(&db.src)
        .await
        .expect("rows");
    let arrived = eventually(Duration::from_secs(60), || async {
        count(&db.dst, "SELECT count(*) FROM ledger").await == ROWS
    })
    .await;
    assert!(arrived.is_some(), "{}", log());
    sqlx::query("DELETE FROM ledger WHERE id % 3 = 0")
        .execute(&db.dst)
        .await
        .expect("drift");

    let (code, out, err) = cli_env(&["cdc", "snapshot", "--table", "public.ledger"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let requested: String =
        sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0')::text")
            .fetch_one(&db.src)
            .await
            .expect("lsn");
    let requested: i64 = requested.parse().expect("lsn as a number");
    // 70 full chunks and a last, empty read. Killed a fifth of the way.
    let partway = eventually(Duration::from_secs(120), || async { reads() >= 15 }).await;
    assert!(partway.is_some(), "{}", log());
    // While the table is copied again, its applied position stays before
    // the request: the router's cdc_lag gate does not take it for caught up.
    let store = crate::support::harness_store(&h).await;
    let applied = store
        .lag_view()
        .await
        .expect("lag view")
        .for_table("public.ledger")
        .iter()
        .map(|l| l.applied)
        .max()
        .unwrap_or(0);
    assert!(
        applied > 0 && applied <= requested,
        "applied {applied}, requested at {requested}"
    );
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    let before = reads();
    assert!(
        !log().contains("chunked snapshot complete"),
        "killed too late: {}",
        log()
    );

    let _cdc = spawn_cdc_with(&h, &env, &[]);
    let complete = eventually(Duration::from_secs(120), || async {
        log().contains("chunked snapshot complete")
    })
    .await;
    assert!(complete.is_some(), "{}", log());
    assert!(log().contains("chunked snapshot resumed"), "{}", log());
    let total = reads();
    // Without a resume: 71 after the restart alone. With it: the chunks
    // not yet recorded when killed are read again (a few at most).
    assert!(
        (71..71 + 5).contains(&total),
        "{total} chunk reads ({before} before the kill): {}",
        log()
    );
    let equal = eventually(Duration::from_secs(60), || async {
        cli_env(&["cdc", "verify"], &h, &env).0 == 0
    })
    .await;
    let (_, out, _) = cli_env(&["cdc", "verify"], &h, &env);
    assert!(equal.is_some(), "verify: {out}");
}

/// The initial snapshot killed (-9) after two of its three tables: on
/// restart the slot is still at its consistent point, so the finished
/// tables are kept (not one of their rows applied again) and the third is
/// copied in chunks while the stream replays what changed since. The
/// third table is held back by a lock on its target, so the kill always
/// lands between the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_snapshot_killed_between_tables_keeps_the_finished_ones() {
    let db = three_tables().await;
    // No transaction id (a SHARE lock needs none), so the slot is created
    // without waiting for it; the sink's write into items waits.
    let mut hold = db.dst.begin().await.expect("begin");
    sqlx::query("LOCK TABLE items IN SHARE MODE")
        .execute(&mut *hold)
        .await
        .expect("lock");
    let h = Harness::new();
    let mut tables = String::new();
    for t in ["ledger", "orders", "items"] {
        tables += &format!("[[cdc.sinks.tables]]\nsource = \"public.{t}\"\n");
    }
    h.write_config(&format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\", \"public.orders\", \"public.items\"]\nsnapshot_chunk_rows = 5000\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n{tables}"
    ));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    let mut cdc = spawn_cdc_with(&h, &env, &[]);
    let two_done = eventually(Duration::from_secs(120), || async {
        count(
            &db.dst,
            "SELECT count(*) FROM strangler_cdc_chunked_snapshots WHERE complete",
        )
        .await
            == 2
    })
    .await;
    assert!(two_done.is_some(), "{}", log());
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    assert_eq!(
        count(
            &db.dst,
            "SELECT count(*) FROM strangler_cdc_offsets WHERE snapshot_done"
        )
        .await,
        0,
        "the snapshot finished before the kill: {}",
        log()
    );
    // `cdc status` says where the snapshot stands.
    let (code, out, err) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    let snap = &status["sinks"][0]["snapshot"];
    assert_eq!(snap["complete"], false, "{status}");
    let copied: Vec<&str> = snap["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "copied")
        .filter_map(|t| t["table"].as_str())
        .collect();
    assert_eq!(copied, ["public.ledger", "public.orders"], "{status}");
    hold.rollback().await.expect("unlock");
    let _cdc = restart_and_resume(&h, &env, &db.src).await;
    // Each ledger row applied once by the snapshot, then once per change:
    // the 2,000 copied, 10 updated, 10 inserted — not copied again.
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        2_020,
        "{}",
        log()
    );
}

/// The three tables of the interrupted-snapshot tests: `ledger` (2,000
/// rows, each application counted in the target's `applied_log`),
/// `orders` (20,000) and `items` (30,000), in both databases.
pub(crate) async fn three_tables() -> crate::cdc::Databases {
    let db = databases().await;
    crate::cdc::counted_ledger(&db.src, &db.dst).await;
    for (pool, serial) in [(&db.src, "BIGSERIAL"), (&db.dst, "BIGINT")] {
        for t in ["orders", "items"] {
            sqlx::query(&format!(
                "CREATE TABLE {t} (id {serial} PRIMARY KEY, n BIGINT NOT NULL, note TEXT)"
            ))
            .execute(pool)
            .await
            .expect("ddl");
        }
    }
    for (t, rows) in [("ledger", 2_000), ("orders", 20_000), ("items", 30_000)] {
        sqlx::query(&format!(
            "INSERT INTO {t} (n, note) SELECT g, 'row ' || g FROM generate_series(1, {rows}) g"
        ))
        .execute(&db.src)
        .await
        .expect("rows");
    }
    db
}

/// Changes while `cdc run` was down, to a finished table and the
/// unfinished one.
async fn changes_while_down(src: &sqlx::PgPool) {
    for sql in [
        "UPDATE ledger SET n = -n WHERE id <= 10",
        "DELETE FROM ledger WHERE id > 1990",
        "INSERT INTO ledger (n, note) SELECT g, 'late' FROM generate_series(1, 10) g",
        "UPDATE items SET note = 'changed' WHERE id % 100 = 0",
        "DELETE FROM items WHERE id % 100 = 1",
        "INSERT INTO items (n, note) SELECT g, 'late' FROM generate_series(1, 100) g",
    ] {
        sqlx::query(sql).execute(src).await.expect(sql);
    }
}

/// Changes while `cdc run` was down, then `cdc run` again: it resumes the
/// interrupted snapshot, the targets end equal to the source, and only
/// `items` was read again (in chunks). The running `cdc run`.
pub(crate) async fn restart_and_resume(
    h: &Harness,
    env: &[(&str, &str)],
    src: &sqlx::PgPool,
) -> crate::support::KillOnDrop {
    changes_while_down(src).await;
    let cdc = spawn_cdc_with(h, env, &[]);
    let log = || h.cdc_log();
    let complete = eventually(Duration::from_secs(150), || async {
        log().contains("chunked snapshot complete")
    })
    .await;
    assert!(complete.is_some(), "{}", log());
    assert!(
        log().contains("resuming an interrupted snapshot"),
        "{}",
        log()
    );
    let text = log();
    let equal = eventually(Duration::from_secs(60), || async {
        cli_env(&["cdc", "verify"], h, env).0 == 0
    })
    .await;
    let (_, out, _) = cli_env(&["cdc", "verify"], h, env);
    assert!(equal.is_some(), "verify: {out}\n{text}");
    let reads: Vec<&str> = text.lines().filter(|l| l.contains("chunk read")).collect();
    assert!(
        !reads.is_empty() && reads.iter().all(|l| l.contains("public.items")),
        "{text}"
    );
    cdc
}
