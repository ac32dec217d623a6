//! `strangler cdc run` (Kafka transport) under a steady write load through
//! the faults of production: the source PostgreSQL restarted, then the
//! target restarted, then the network to the broker cut for 30 s. The same
//! process rides them out without an operator; every row arrives, and each
//! is applied once (a per-row apply counter in the target, as the kill -9
//! test has).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

use crate::cdc::{cli_env, spawn_cdc};
use crate::support::*;

pub(crate) async fn cluster() -> (PgCluster, String, sqlx::PgPool) {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let url = pg.create_database("db").expect("db");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("pool");
    (pg, url, pool)
}

/// `public.ledger` through Kafka (`brokers`) into the sink `svc`.
fn kafka_ledger_config(brokers: &str) -> String {
    format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n\n[cdc.transport]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ntopic_prefix = \"shop\"\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\n"
    )
}

pub(crate) async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

// Multi-threaded: the broker's forwarder must keep running while the test
// waits on pg_ctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_rides_out_source_target_and_broker_faults_under_load() {
    let (src_pg, src_url, src) = cluster().await;
    let (dst_pg, dst_url, dst) = cluster().await;
    crate::cdc::counted_ledger(&src, &dst).await;
    // The broker behind a connection we can cut.
    let broker_port = free_port();
    let cut = Cuttable::start(([127, 0, 0, 1], broker_port).into()).await;
    let advertised = cut.port;
    let _broker = tokio::task::spawn_blocking(move || {
        strangler_testkit::Broker::start_on(broker_port, advertised)
    })
    .await
    .expect("join")
    .expect("tansu");

    let h = Harness::new();
    h.write_config(&format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n\n[cdc.transport]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:{}\"\ntopic_prefix = \"shop\"\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\n",
        cut.port
    ));
    let env = [("E2E_SRC", src_url.as_str()), ("E2E_DST", dst_url.as_str())];
    let mut cdc = spawn_cdc(&h, &env);
    let log = || h.cdc_log();
    // The log without librdkafka's noise while the broker is away, last lines.
    let log_tail = || {
        let all = log();
        let lines: Vec<&str> = all
            .lines()
            .filter(|l| !l.contains("librdkafka") && !l.contains("rdkafka::client"))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let ready = eventually(Duration::from_secs(60), || async {
        count(
            &src,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'strangler' AND active",
        )
        .await
            == 1
    })
    .await;
    assert!(ready.is_some(), "cdc did not start: {}", log());

    // A steady write load, riding out the source's restart itself.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (src, stop) = (src.clone(), stop.clone());
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.load(Ordering::Relaxed) {
                let ok = sqlx::query(
                    "INSERT INTO ledger (n, note) SELECT $1, 'row ' || g FROM generate_series(1, 10) g",
                )
                .bind(batch)
                .execute(&src)
                .await
                .is_ok();
                batch += i32::from(ok);
                tokio::time::sleep(Duration::from_millis(if ok { 20 } else { 200 })).await;
            }
        })
    };
    // Rows keep arriving: `more` past what the target had.
    let grows = |what: &'static str| {
        let (dst, log) = (dst.clone(), log_tail);
        async move {
            let from = count(&dst, "SELECT count(*) FROM ledger").await;
            let grew = eventually(Duration::from_secs(90), || async {
                count(&dst, "SELECT count(*) FROM ledger").await >= from + 300
            })
            .await;
            assert!(grew.is_some(), "no rows arrived after {what}: {}", log());
        }
    };
    grows("the start").await;

    let src_pg = Arc::new(src_pg);
    let dst_pg = Arc::new(dst_pg);
    let restart = |pg: &Arc<PgCluster>| {
        let pg = pg.clone();
        async move {
            let p = pg.clone();
            match tokio::time::timeout(
                Duration::from_secs(100),
                tokio::task::spawn_blocking(move || p.restart()),
            )
            .await
            {
                Ok(r) => r.expect("join"),
                Err(_) => Err(anyhow::anyhow!(
                    "pg_ctl restart hangs; its log:\n{}",
                    pg.log_tail(30)
                )),
            }
        }
    };
    if let Err(e) = restart(&src_pg).await {
        panic!("restart the source: {e:#}\ncdc log:\n{}", log());
    }
    grows("the source restarted").await;
    if let Err(e) = restart(&dst_pg).await {
        panic!("restart the target: {e:#}\ncdc log:\n{}", log());
    }
    grows("the target restarted").await;
    cut.cut();
    let cut_at = std::time::Instant::now();
    // The broker stays away until the pipeline has felt it (its consumer
    // reports the broker unreachable) and for at least the 30 s the fault
    // calls for.
    let felt = eventually(Duration::from_secs(90), || async {
        log().contains("Kafka broker unreachable") && cut_at.elapsed() >= Duration::from_secs(30)
    })
    .await;
    assert!(
        felt.is_some(),
        "the broker outage went unnoticed: {}",
        log()
    );
    cut.restore().await;
    grows("the broker came back").await;

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let written = count(&src, "SELECT count(*) FROM ledger").await;
    let all = eventually(Duration::from_secs(120), || async {
        count(&dst, "SELECT count(*) FROM ledger").await == written
    })
    .await;
    let alive = cdc.try_wait().expect("wait").is_none();
    assert!(
        all.is_some() && alive,
        "alive {alive}; {} of {written} rows: {}",
        count(&dst, "SELECT count(*) FROM ledger").await,
        log()
    );
    assert_eq!(
        count(&dst, "SELECT count(*) FROM applied_log").await,
        written,
        "a row was applied twice: {}",
        log()
    );
    let rows = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT md5(string_agg(l::text, ',' ORDER BY id)) FROM ledger l",
        )
        .fetch_one(&pool)
        .await
        .expect("rows")
    };
    assert_eq!(rows(dst.clone()).await, rows(src.clone()).await);
    assert!(
        log().contains("CDC failed with a retryable error; reconnecting"),
        "{}",
        log()
    );

    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).expect("json");
    let reconnects: i64 = status["reconnects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["count"].as_i64())
        .sum();
    assert!(reconnects >= 2, "{status}");
    let _ = cdc.kill();
    let _ = cdc.wait();
}

/// A fault no retry fixes (the target table is missing): `cdc run` stops
/// at once, names the cause and what to do, and exits 2.
#[tokio::test]
async fn a_fatal_cdc_error_names_the_cause_and_the_fix_and_exits_2() {
    let db = crate::cdc::databases().await;
    sqlx::query("CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, n INT NOT NULL)")
        .execute(&db.src)
        .await
        .expect("ddl");
    let h = Harness::new();
    h.write_config(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\ntarget = \"public.no_such_table\"\n",
    );
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(strangler_bin())
            .args(["cdc", "run", "-c"])
            .arg(h.config_path())
            .envs(env)
            .output(),
    )
    .await
    .expect("cdc run stops by itself")
    .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no_such_table")
            && err.contains("what to do:")
            && err.contains("[[cdc.sinks.tables]]"),
        "{err}"
    );
}

/// Two sink workers of one group (`--sinks-only`) beside a source process
/// (`--source-only`) share one sink (each under its own replication origin,
/// the bookkeeping created once). One is killed with -9: while its
/// partitions wait, the table's applied position stays behind — the live
/// worker, idle on its own partitions, does not report the table caught up.
/// When the broker expires the dead member (its session timeout), its
/// partitions move to the live worker, which resumes at the offsets stored
/// with the rows: every row arrives, none applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sink_workers_one_killed_its_partitions_hold_the_table_back_then_move_without_double_apply(
) {
    // rdkafka's mock broker, which expires a killed member when its session
    // times out, as Kafka does (tansu kept one for minutes at times).
    let broker = rdkafka::mocking::MockCluster::new(1).expect("mock broker");
    // It has no CreateTopics: the topics exist beforehand, as on a managed
    // Kafka whose administrator creates them (the schema-change topic too).
    for topic in ["shop.public.ledger", "shop.dlq", "shop.schema-changes"] {
        broker.create_topic(topic, 3, 1).expect("topic");
    }
    let db = crate::cdc::databases().await;
    crate::cdc::counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&kafka_ledger_config(&broker.bootstrap_servers()));
    // Info logs: a failure shows assignments, seeks and resumes.
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    let mut source = crate::cdc::spawn_cdc_with(&h, &env, &["--source-only"]);
    // The sink workers get no source credentials: they read the broker.
    let sink_env = [("E2E_DST", db.dst_url.as_str()), ("STRANGLER_LOG", "info")];
    let mut a = crate::cdc::spawn_cdc_with(&h, &sink_env, &["--sinks-only"]);
    let mut b = crate::cdc::spawn_cdc_with(&h, &sink_env, &["--sinks-only"]);
    let insert = |n: i32| {
        sqlx::query(
            "INSERT INTO ledger (n, note) SELECT $1, 'row ' || g FROM generate_series(1, 100) g",
        )
        .bind(n)
        .execute(&db.src)
    };
    // Both workers apply: every partition has stored offsets.
    let ready = eventually(Duration::from_secs(90), || async {
        // A few thousand rows are enough to reach every partition; more
        // would only pile up while the group forms on a loaded machine.
        if count(&db.src, "SELECT count(*) FROM ledger").await < 3_000 {
            insert(0).await.expect("insert");
        }
        count(
            &db.dst,
            "SELECT count(DISTINCT partition) FROM strangler_cdc_kafka_offsets",
        )
        .await
            == 3
    })
    .await;
    assert!(ready.is_some(), "the workers did not start: {}", log());
    let origins = count(
        &db.dst,
        "SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'strangler_svc%'",
    )
    .await;
    assert_eq!(origins, 2, "one origin per worker: {}", log());
    for p in [&mut a, &mut b] {
        assert!(
            p.try_wait().expect("wait").is_none(),
            "a worker stopped: {}",
            log()
        );
    }
    let caught_up = eventually(Duration::from_secs(90), || async {
        count(&db.dst, "SELECT count(*) FROM ledger").await
            == count(&db.src, "SELECT count(*) FROM ledger").await
    })
    .await;
    assert!(caught_up.is_some(), "{}", log());
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        count(&db.src, "SELECT count(*) FROM ledger").await,
        "a row was applied twice"
    );
    let store = strangler_state::StateStore::connect(&format!(
        "sqlite://{}/state.db?mode=rwc",
        h.dir.path().display()
    ))
    .await
    .expect("store");

    a.kill().expect("kill -9 a worker");
    let _ = a.wait();
    for n in 1..=5 {
        insert(n).await.expect("insert");
    }
    let written = count(&db.src, "SELECT count(*) FROM ledger").await;
    // Every row written so far committed at or before this WAL position.
    let through: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(&db.src)
        .await
        .expect("lsn");
    let through = {
        let (hi, lo) = through.split_once('/').expect("lsn");
        (i64::from_str_radix(hi, 16).expect("hi") << 32) | i64::from_str_radix(lo, 16).expect("lo")
    };
    // From now until every row is in (or 240 s: the broker decides when
    // the killed member's session has expired, slowly under load): whenever
    // rows are missing in the target, the table's applied position must be
    // before their commits — the live worker, idle on its own partitions,
    // must not report the table caught up while the dead one's wait for
    // the group to expire it. It must be seen with rows missing at least
    // once. (Not the published position: the store's copy may trail.)
    let mut seen_behind = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let applied = store
            .lag_view()
            .await
            .expect("lag view")
            .for_table("public.ledger")
            .iter()
            .map(|l| l.applied)
            .min()
            .unwrap_or(0);
        // Read the rows last: a row applied after the positions were read
        // can only make the target look more complete, never less.
        let behind = count(&db.dst, "SELECT count(*) FROM ledger").await < written;
        if !behind || std::time::Instant::now() > deadline {
            break;
        }
        seen_behind += 1;
        // A table that lacks rows cannot claim a position past them.
        assert!(
            applied < through,
            "rows are missing but the table claims everything through {through}: applied {applied}: {}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen_behind > 0,
        "the dead worker's rows were never seen missing"
    );
    // The dead worker's partitions moved to the live one: every row is in,
    // each applied once.
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM ledger").await,
        written,
        "the killed worker's partitions never moved: {}",
        log()
    );
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        written,
        "a row was applied twice"
    );
    for p in [&mut source, &mut b] {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// The target database is restored from a backup taken while CDC ran: the
/// group's committed offsets are ahead of the offsets stored with the rows.
/// The worker resumes where the rows say (seeking back), so what the
/// restore lost is applied again instead of silently skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_restored_from_a_backup_gets_every_row_again() {
    let broker = tokio::task::spawn_blocking(strangler_testkit::Broker::start)
        .await
        .expect("join")
        .expect("tansu");
    let db = crate::cdc::databases().await;
    crate::cdc::counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&kafka_ledger_config(&broker.bootstrap()));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let log = || h.cdc_log();
    let insert = |n: i32| {
        sqlx::query(
            "INSERT INTO ledger (n, note) SELECT $1, 'row ' || g FROM generate_series(1, 100) g",
        )
        .bind(n)
        .execute(&db.src)
    };
    let rows_in_target = |want: i64| {
        let dst = db.dst.clone();
        async move {
            eventually(Duration::from_secs(60), || async {
                count(&dst, "SELECT count(*) FROM ledger").await == want
            })
            .await
        }
    };
    let mut cdc = spawn_cdc(&h, &env);
    for n in 0..3 {
        insert(n).await.expect("insert");
    }
    assert!(rows_in_target(300).await.is_some(), "{}", log());
    // The backup: rows and the offsets stored with them, consistent.
    let dump = async |sql: &str| sqlx::query(sql).execute(&db.dst).await.expect(sql);
    dump("CREATE TABLE ledger_backup AS SELECT * FROM ledger").await;
    dump("CREATE TABLE offsets_backup AS SELECT * FROM strangler_cdc_kafka_offsets").await;
    for n in 3..6 {
        insert(n).await.expect("insert");
    }
    assert!(rows_in_target(600).await.is_some(), "{}", log());
    // The group has committed offsets past the backup's. (Stopped, not
    // killed: the member leaves the group, the next one gets the
    // partitions at once.)
    crate::cdc::stop_gracefully(&mut cdc);
    // The restore.
    dump("TRUNCATE ledger").await;
    dump("INSERT INTO ledger SELECT * FROM ledger_backup").await;
    dump("TRUNCATE strangler_cdc_kafka_offsets").await;
    dump("INSERT INTO strangler_cdc_kafka_offsets SELECT * FROM offsets_backup").await;
    dump("TRUNCATE applied_log").await;
    let mut cdc = spawn_cdc(&h, &env);
    assert!(
        rows_in_target(600).await.is_some(),
        "rows lost by the restore were not applied again: {} of 600\n{}",
        count(&db.dst, "SELECT count(*) FROM ledger").await,
        log()
    );
    // Exactly the 300 rows the restore lost were applied again, once each.
    assert_eq!(
        count(&db.dst, "SELECT count(DISTINCT id) FROM applied_log").await,
        300
    );
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        300
    );
    let _ = cdc.kill();
    let _ = cdc.wait();
}
