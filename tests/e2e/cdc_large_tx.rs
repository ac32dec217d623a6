//! One source transaction of two million rows: it streams through in parts
//! with memory bounded by `transaction_memory_mb`, the target sees it whole
//! or not at all, and a crash in the middle of it loses and repeats
//! nothing.

use std::time::Duration;

use crate::cdc::{counted_ledger, databases, embedded_ledger_config, spawn_cdc_with};
use crate::cdc_faults::count;
use crate::support::{eventually, Harness};

const ROWS: i64 = 2_000_000;

/// The peak resident memory of a process (`VmHWM`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_million_row_transaction_streams_in_bounded_memory_whole_or_not_at_all() {
    let db = databases().await;
    counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config("transaction_memory_mb = 16"));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    let mut cdc = spawn_cdc_with(&h, &env, &[]);
    // A first row through: the snapshot is done and streaming runs.
    sqlx::query("INSERT INTO ledger (n, note) VALUES (-1, 'first')")
        .execute(&db.src)
        .await
        .expect("insert");
    let streaming = eventually(Duration::from_secs(60), || async {
        count(&db.dst, "SELECT count(*) FROM ledger").await == 1
    })
    .await;
    assert!(streaming.is_some(), "CDC did not start: {}", log());

    sqlx::query(
        "INSERT INTO ledger (n, note) SELECT g % 1000, 'row ' || g FROM generate_series(1, $1) g",
    )
    .bind(ROWS)
    .execute(&db.src)
    .await
    .expect("one big transaction");

    // The sink has begun writing it (its session holds a transaction id):
    // kill the process there.
    let writing = eventually(Duration::from_secs(300), || async {
        let target = count(&db.dst, "SELECT count(*) FROM ledger").await;
        assert_eq!(target, 1, "part of the transaction became visible");
        count(
            &db.dst,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
        )
        .await
            > 0
    })
    .await;
    assert!(writing.is_some(), "the sink never began: {}", log());
    let first_peak = peak_memory(cdc.id());
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM ledger").await,
        1,
        "the killed process left part of the transaction behind"
    );

    // Started again: the slot replays the transaction, which arrives whole
    // and once.
    let mut cdc = spawn_cdc_with(&h, &env, &[]);
    let arrived = eventually(Duration::from_secs(900), || async {
        let target = count(&db.dst, "SELECT count(*) FROM ledger").await;
        assert!(
            target == 1 || target == ROWS + 1,
            "part of the transaction became visible: {target} rows"
        );
        target == ROWS + 1
    })
    .await;
    assert!(
        arrived.is_some(),
        "the transaction never arrived: {}",
        log()
    );
    let peak = peak_memory(cdc.id());
    for sql in [
        "SELECT sum(n) FROM ledger",
        "SELECT sum(length(note)) FROM ledger",
        "SELECT sum(id) FROM ledger",
    ] {
        assert_eq!(
            count(&db.src, sql).await,
            count(&db.dst, sql).await,
            "{sql} differs"
        );
    }
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        ROWS + 1,
        "a row was applied twice (or the killed attempt was kept)"
    );
    eprintln!(
        "peak memory: killed process {} MiB, second {} MiB",
        first_peak >> 20,
        peak >> 20
    );
    for (what, bytes) in [("killed", first_peak), ("second", peak)] {
        assert!(
            bytes < 256 << 20,
            "the {what} process peaked at {} MiB",
            bytes >> 20
        );
    }
    assert!(
        log().contains("spilling it to a temporary file"),
        "the transaction was held in memory: {}",
        log()
    );
    let _ = cdc.kill();
    let _ = cdc.wait();
}
