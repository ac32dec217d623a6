//! `cdc run` with a sink applying through several connections
//! (`connections = 3`): killed with -9 mid-stream and started again, every
//! row arrives once and `cdc verify` is clean.

use std::time::Duration;

use crate::cdc::{cli_env, counted_ledger, databases, embedded_ledger_config, spawn_cdc};
use crate::cdc_faults::count;
use crate::support::{eventually, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_on_three_connections_killed_mid_stream_applies_every_row_once() {
    let db = databases().await;
    counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config("").replace(
        "url_env = \"E2E_DST\"\n",
        "url_env = \"E2E_DST\"\nconnections = 3\n",
    ));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    let mut cdc = spawn_cdc(&h, &env);
    let ready = eventually(Duration::from_secs(60), || async {
        count(
            &db.src,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'strangler' AND active",
        )
        .await
            == 1
    })
    .await;
    assert!(ready.is_some(), "{}", log());
    let writer = {
        let src = db.src.clone();
        tokio::spawn(async move {
            for batch in 0..300 {
                sqlx::query("INSERT INTO ledger (n, note) SELECT $1, 'row ' || g FROM generate_series(1, 10) g")
                    .bind(batch)
                    .execute(&src)
                    .await
                    .expect("insert");
            }
        })
    };
    let some = eventually(Duration::from_secs(60), || async {
        count(&db.dst, "SELECT count(*) FROM ledger").await >= 500
    })
    .await;
    assert!(some.is_some(), "{}", log());
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    writer.await.expect("writer");
    // Three connections, each under its own replication origin, and one
    // more for the snapshot's copy of the (one, small) table, made on a
    // session of its own while the three were held.
    assert_eq!(
        count(
            &db.dst,
            "SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'strangler_svc%'"
        )
        .await,
        4
    );
    let _cdc = spawn_cdc(&h, &env);
    let done = eventually(Duration::from_secs(90), || async {
        count(&db.dst, "SELECT count(*) FROM ledger").await == 3_000
    })
    .await;
    assert!(done.is_some(), "{}", log());
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        3_000,
        "a row was applied twice"
    );
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM strangler_cdc_lane_offsets").await,
        2,
        "lanes 1 and 2 keep their positions"
    );
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
}
