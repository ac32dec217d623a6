//! CDC high availability: several `cdc run` for one slot (one active, the
//! others standing by, a kill -9 of the active taken over without loss or
//! double apply), and a slot lost under the sinks reported — never a
//! silent new snapshot — with `cdc snapshot` as the way back.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cdc::{
    cli_env, counted_ledger, databases, embedded_ledger_config, spawn_cdc_with, stop_gracefully,
    until_count,
};
use crate::cdc_faults::count;
use crate::support::*;

const ACTIVE: &str = "strangler_cdc_active";
const LOST: &str = "strangler_cdc_slot_lost";
/// Every series of a CDC process names its slot and source.
const LABELS: &[(&str, &str)] = &[("slot", "strangler"), ("source", "shop")];

/// The value of `series` on a `cdc run --metrics` endpoint (`None`: no
/// such series yet, or the process is not answering).
async fn metric(addr: &str, series: &str) -> Option<f64> {
    let text = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    series_value(&text, series, LABELS)
}

async fn until_metric(addr: &str, series: &str, want: f64, log: impl Fn() -> String) {
    let seen = eventually(Duration::from_secs(60), || async {
        metric(addr, series).await == Some(want)
    })
    .await;
    if seen.is_none() {
        let raw = client().get(format!("http://{addr}/metrics")).send().await;
        let body = match raw {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("scrape failed: {e}"),
        };
        panic!("{series} never became {want} at {addr}:\n{body}\n{}", log());
    }
}

/// Two `cdc run` on one slot under writes: one active, one standby (still
/// standing by well past the 30 s a second run used to wait before it
/// exited); kill -9 of the active: the standby takes over, every row
/// arrives once, verify is clean, and the standby never exits on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_cdc_run_takes_over_from_a_killed_active_one_without_loss_or_double_apply() {
    let db = databases().await;
    counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config(""));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let (a_addr, b_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut a = spawn_cdc_with(&h, &env, &["--metrics", &a_addr]);
    until_metric(&a_addr, ACTIVE, 1.0, || h.cdc_log()).await;
    let b_began = Instant::now();
    let mut b = spawn_cdc_with(&h, &env, &["--metrics", &b_addr]);
    until_metric(&b_addr, ACTIVE, 0.0, || h.cdc_log()).await;

    // `cdc status` names the active run and counts the standby.
    let (code, out, err) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let status: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        status["lease"]["active"]["application_name"], "strangler-cdc active strangler",
        "{status}"
    );
    assert_eq!(status["lease"]["standbys"], 1, "{status}");

    let total = 3_000;
    let writer = {
        let src = db.src.clone();
        tokio::spawn(async move {
            for batch in 0..300 {
                sqlx::query("INSERT INTO ledger (n, note) SELECT $1, 'row ' || g FROM generate_series(1, 10) g")
                    .bind(batch)
                    .execute(&src)
                    .await
                    .expect("insert");
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    // The standby outlives the 30 s after which a second run used to give
    // up, and the active one keeps applying meanwhile.
    let waited = eventually(Duration::from_secs(90), || async {
        b_began.elapsed() > Duration::from_secs(35)
            && count(&db.dst, "SELECT count(*) FROM ledger").await >= 500
    })
    .await;
    assert!(waited.is_some(), "{}", h.cdc_log());
    assert!(
        b.try_wait().expect("wait").is_none(),
        "the standby exited: {}",
        h.cdc_log()
    );
    assert_eq!(metric(&b_addr, ACTIVE).await, Some(0.0));
    assert!(
        count(&db.dst, "SELECT count(*) FROM ledger").await < total,
        "the writer finished before the kill: nothing is left to take over"
    );

    a.kill().expect("kill -9 the active run");
    let _ = a.wait();
    until_metric(&b_addr, ACTIVE, 1.0, || h.cdc_log()).await;
    writer.await.expect("writer");
    until_count(&db.dst, "SELECT count(*) FROM ledger", total, || {
        h.cdc_log()
    })
    .await;
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        total,
        "a transaction was applied twice"
    );
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("clean"), "{out}");
    assert!(
        b.try_wait().expect("wait").is_none(),
        "the run that took over exited: {}",
        h.cdc_log()
    );
}

/// The slot is dropped under a running migration (as a failover of an old
/// PostgreSQL's primary loses it): `cdc run` reports it (metric, `cdc
/// status`, log) and waits, never copying the tables again on its own; the
/// operator's `cdc snapshot` is the way back, after which the same run
/// streams again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_is_reported_and_waits_for_cdc_snapshot_instead_of_a_silent_new_snapshot() {
    let db = databases().await;
    counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config(""));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let insert = |n: i32| {
        sqlx::query(
            "INSERT INTO ledger (n, note) SELECT $1, 'row ' || g FROM generate_series(1, 100) g",
        )
        .bind(n)
        .execute(&db.src)
    };
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cdc = spawn_cdc_with(&h, &env, &["--metrics", &addr]);
    until_metric(&addr, ACTIVE, 1.0, || h.cdc_log()).await;
    // Streaming (not the initial snapshot) carries the first rows: the
    // sink has taken changes from the slot.
    until_count(
        &db.dst,
        "SELECT count(*) FROM strangler_cdc_offsets WHERE snapshot_done",
        1,
        || h.cdc_log(),
    )
    .await;
    insert(0).await.expect("insert");
    until_count(&db.dst, "SELECT count(*) FROM ledger", 100, || h.cdc_log()).await;
    until_count(
        &db.dst,
        "SELECT count(*) FROM strangler_cdc_offsets WHERE lsn > 0",
        1,
        || h.cdc_log(),
    )
    .await;
    stop_gracefully(&mut cdc);

    // The slot is lost; meanwhile rows come and one goes.
    sqlx::query("SELECT pg_drop_replication_slot('strangler')")
        .execute(&db.src)
        .await
        .expect("drop slot");
    insert(1).await.expect("insert");
    sqlx::query("DELETE FROM ledger WHERE id = 1")
        .execute(&db.src)
        .await
        .expect("delete");

    let mut cdc = spawn_cdc_with(&h, &env, &["--metrics", &addr]);
    until_metric(&addr, LOST, 1.0, || h.cdc_log()).await;
    let (code, out, err) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let status: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["lost"], true, "{status}");
    assert!(
        h.cdc_log().contains("strangler cdc snapshot"),
        "the log does not say the way back: {}",
        h.cdc_log()
    );
    // Nothing was copied again behind the operator's back, and no slot
    // was created.
    assert_eq!(count(&db.dst, "SELECT count(*) FROM ledger").await, 100);
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        100
    );
    assert_eq!(
        count(&db.src, "SELECT count(*) FROM pg_replication_slots").await,
        0
    );
    assert!(cdc.try_wait().expect("wait").is_none(), "{}", h.cdc_log());

    // The way back: a new snapshot, taken while the run waits.
    let (code, out, err) = cli_env(&["cdc", "snapshot"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    until_metric(&addr, LOST, 0.0, || h.cdc_log()).await;
    until_metric(&addr, ACTIVE, 1.0, || h.cdc_log()).await;
    // 199 rows in the source; the target keeps row 1 besides them.
    until_count(&db.dst, "SELECT count(*) FROM ledger", 200, || h.cdc_log()).await;
    insert(2).await.expect("insert");
    until_count(&db.dst, "SELECT count(*) FROM ledger", 300, || h.cdc_log()).await;
    // What the gap deleted is still in the target: verify names it.
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(cdc.try_wait().expect("wait").is_none(), "{}", h.cdc_log());
}

/// The server invalidates the slot (it fell behind `max_slot_wal_keep_size`
/// while `cdc run` was down): the slot still exists but its changes are
/// gone. `cdc run` reports it lost and waits; `cdc snapshot` drops it and
/// takes a new one, after which the same run streams again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_is_lost_and_cdc_snapshot_makes_a_new_one() {
    let db = databases().await;
    counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config(""));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cdc = spawn_cdc_with(&h, &env, &["--metrics", &addr]);
    until_count(
        &db.dst,
        "SELECT count(*) FROM strangler_cdc_offsets WHERE snapshot_done",
        1,
        || h.cdc_log(),
    )
    .await;
    sqlx::query("INSERT INTO ledger (n, note) SELECT g, 'before' FROM generate_series(1, 100) g")
        .execute(&db.src)
        .await
        .expect("rows");
    until_count(&db.dst, "SELECT count(*) FROM ledger", 100, || h.cdc_log()).await;
    stop_gracefully(&mut cdc);

    // The slot falls behind a tiny max_slot_wal_keep_size: WAL is written,
    // segments switched, a checkpoint removes them.
    for sql in [
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'",
        "SELECT pg_reload_conf()",
        "CREATE TABLE filler (b TEXT)",
    ] {
        sqlx::query(sql).execute(&db.src).await.expect(sql);
    }
    let invalidated = eventually(Duration::from_secs(60), || async {
        for sql in [
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000)",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        ] {
            sqlx::query(sql).execute(&db.src).await.expect(sql);
        }
        count(
            &db.src,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'strangler' AND wal_status = 'lost'",
        )
        .await
            == 1
    })
    .await;
    assert!(
        invalidated.is_some(),
        "the server did not invalidate the slot"
    );
    sqlx::query("INSERT INTO ledger (n, note) SELECT g, 'after' FROM generate_series(1, 50) g")
        .execute(&db.src)
        .await
        .expect("rows");

    let mut cdc = spawn_cdc_with(&h, &env, &["--metrics", &addr]);
    until_metric(&addr, LOST, 1.0, || h.cdc_log()).await;
    let (code, out, err) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let status: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (status["invalidated"].clone(), status["lost"].clone()),
        (Value::Bool(true), Value::Bool(true)),
        "{status}"
    );
    assert_eq!(count(&db.dst, "SELECT count(*) FROM ledger").await, 100);
    assert!(cdc.try_wait().expect("wait").is_none(), "{}", h.cdc_log());

    let (code, out, err) = cli_env(&["cdc", "snapshot"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    until_metric(&addr, LOST, 0.0, || h.cdc_log()).await;
    until_count(&db.dst, "SELECT count(*) FROM ledger", 150, || h.cdc_log()).await;
    sqlx::query("INSERT INTO ledger (n, note) SELECT g, 'streamed' FROM generate_series(1, 10) g")
        .execute(&db.src)
        .await
        .expect("rows");
    until_count(&db.dst, "SELECT count(*) FROM ledger", 160, || h.cdc_log()).await;
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
}
