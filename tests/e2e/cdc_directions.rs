//! Forward sync A → B (`strangler cdc run`) and reverse sync B → A
//! (`strangler cdc reverse`) on two PostgreSQL clusters whose WAL positions
//! are far apart: each direction's lag is measured inside its own cluster,
//! the board shows both, and the promotion gate refuses while the stalled
//! direction is behind.

use std::time::Duration;

use serde_json::Value;
use strangler_state::lag::Direction;
use strangler_state::store::StateStore;

use crate::cdc::cli_env;
use crate::cdc_faults::{cluster, count};
use crate::support::*;

const MAX_LAG: u64 = 64 * 1024;

/// Per direction, the lag of `public.orders` (`None`: not reported).
async fn lags(store: &StateStore) -> (Option<u64>, Option<u64>) {
    let view = store.lag_view().await.expect("lag view");
    let of = |d: Direction| {
        view.for_table("public.orders")
            .iter()
            .find(|l| l.direction == d)
            .and_then(|l| l.behind)
    };
    (of(Direction::Forward), of(Direction::Reverse))
}

async fn wal_lsn(pool: &sqlx::PgPool) -> u64 {
    let text: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(pool)
        .await
        .expect("lsn");
    let (hi, lo) = text.split_once('/').expect("lsn text");
    (u64::from_str_radix(hi, 16).expect("hi") << 32) | u64::from_str_radix(lo, 16).expect("lo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_direction_has_its_own_lag_and_a_stalled_one_blocks_promotion() {
    let (_a, a_url, a) = cluster().await;
    let (_b, b_url, b) = cluster().await;
    for pool in [&a, &b] {
        sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY, note TEXT NOT NULL)")
            .execute(pool)
            .await
            .expect("ddl");
    }
    // Put B's WAL ~48 MB ahead of A's: positions compared across the two
    // clusters would show one direction hopelessly behind.
    sqlx::query("CREATE TABLE filler (n INT)")
        .execute(&b)
        .await
        .expect("filler");
    for _ in 0..3 {
        sqlx::query("INSERT INTO filler VALUES (1)")
            .execute(&b)
            .await
            .expect("filler");
        sqlx::query("SELECT pg_switch_wal()")
            .execute(&b)
            .await
            .expect("switch");
    }
    assert!(wal_lsn(&b).await > wal_lsn(&a).await + (32 << 20));

    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        r#"{}
[[routes]]
name = "orders"
methods = ["GET"]
path = "/orders/{{id}}"
service = "svc"
stage = "shadow"
tables = ["public.orders"]
[routes.promote]
max_lag_bytes = {MAX_LAG}
canary_steps = [10]

[[routes]]
name = "place-order"
methods = ["POST"]
path = "/orders"
service = "svc"
stage = "migrated"
tables = ["public.orders"]
[routes.promote]
max_lag_bytes = {MAX_LAG}

[cdc.source]
url_env = "E2E_A"
tables = ["public.orders"]

[[cdc.sinks]]
name = "svc"
url_env = "E2E_B"
[[cdc.sinks.tables]]
source = "public.orders"

[[cdc.sinks]]
name = "svc-back"
url_env = "E2E_B"
reverse = true
[[cdc.sinks.tables]]
source = "public.orders"
target = "public.orders"
"#,
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let store = harness_store(&h).await;
    // The shadow verdict is READY: only CDC can hold the route back.
    ready_shadow(&store, "orders").await;
    let env = [("E2E_A", a_url.as_str()), ("E2E_B", b_url.as_str())];
    let log = || h.cdc_log();
    let log_file = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(h.dir.path().join("cdc.log"))
            .expect("log")
    };
    let spawn = |cmd: &str| {
        std::process::Command::new(strangler_bin())
            .args(["cdc", cmd, "-c"])
            .arg(h.config_path())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(log_file()))
            .spawn()
            .map(KillOnDrop)
            .expect("spawn cdc")
    };
    let mut forward = spawn("run");
    let mut reverse = spawn("reverse");

    // Both directions report, each caught up inside its own cluster.
    let both = eventually(Duration::from_secs(60), || async {
        matches!(lags(&store).await, (Some(f), Some(r)) if f <= MAX_LAG && r <= MAX_LAG)
    })
    .await;
    assert!(both.is_some(), "lags {:?}\n{}", lags(&store).await, log());

    // Stall reverse sync: the monolith's table is locked, so the reverse
    // sink cannot apply; the service keeps writing.
    let mut lock = a.begin().await.expect("begin");
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    // A first write reaches the reverse sink and blocks it. Positions mean
    // "every transaction committed before this is applied", so from here
    // on the applied position stays at or before `before`.
    sqlx::query("INSERT INTO orders VALUES (0, 'blocks the reverse sink')")
        .execute(&b)
        .await
        .expect("first service write");
    let before = wal_lsn(&b).await;
    sqlx::query("INSERT INTO orders SELECT g, 'written by the service ' || g FROM generate_series(1, 3000) g")
        .execute(&b)
        .await
        .expect("service writes");
    let written = wal_lsn(&b).await - before;
    assert!(written > MAX_LAG, "{written}");
    // Reverse is behind by at least what the service wrote; forward is not.
    let stalled = eventually(Duration::from_secs(30), || async {
        matches!(lags(&store).await, (Some(f), Some(r)) if f <= MAX_LAG && r >= written)
    })
    .await;
    assert!(
        stalled.is_some(),
        "lags {:?} (service wrote {written} bytes)\n{}",
        lags(&store).await,
        log()
    );

    // The board shows both directions, apart.
    let (code, out, err) = cli_env(&["status", "--json"], &h, &env);
    assert_eq!(code, 0, "{err}");
    let board: Value = serde_json::from_str(&out).expect("json");
    let row = &board["routes"][0];
    assert!(
        row["cdc_lag"]["forward_bytes"]
            .as_u64()
            .is_some_and(|f| f <= MAX_LAG),
        "{row}"
    );
    assert!(
        row["cdc_lag"]["reverse_bytes"]
            .as_u64()
            .is_some_and(|r| r >= written),
        "{row}"
    );

    // The gate refuses on the reverse direction, and only on it.
    let (code, _, err) = cli_env(&["route", "promote", "orders"], &h, &env);
    assert_eq!(code, 1, "{err}");
    let failed: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("gate ") && l.contains(" failed: "))
        .collect();
    assert_eq!(failed.len(), 1, "{err}");
    assert!(
        failed[0].contains("gate cdc_lag failed: public.orders reverse public.orders (slot strangler_rev_svc_back)"),
        "{err}"
    );

    // Rolling the writing route back to the monolith would serve from a
    // monolith without the service's writes: refused, then forced with a
    // reason and audited as forced.
    let (code, out, err) = cli_env(
        &["route", "rollback", "place-order", "--reason", "errors"],
        &h,
        &env,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("not rolled back")
            && err.contains("reverse public.orders (slot strangler_rev_svc_back)"),
        "{err}"
    );
    let (code, out, err) = cli_env(&["route", "rollback", "place-order", "--force"], &h, &env);
    assert_eq!(code, 2, "forcing needs a reason: {out}{err}");
    let (code, _, _) = cli_env(&["route", "list", "--json"], &h, &env);
    assert_eq!(code, 0);
    let (code, out, err) = cli_env(
        &[
            "route",
            "rollback",
            "place-order",
            "--force",
            "--reason",
            "incident 42",
        ],
        &h,
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli_env(&["route", "history", "place-order", "--json"], &h, &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("FORCED past failed gates (reverse_lag") && out.contains("incident 42"),
        "{out}"
    );

    // Unstalled, reverse catches up and the same promotion goes through.
    lock.rollback().await.expect("unlock");
    let applied_back = eventually(Duration::from_secs(60), || async {
        count(&a, "SELECT count(*) FROM orders").await == 3001
    })
    .await;
    assert!(applied_back.is_some(), "{}", log());
    // Those rows moved A's WAL on: forward sync is caught up once it has
    // passed them (skipping them: they came from the service) — and its
    // lag measured against a source position read after them.
    let a_now = wal_lsn(&a).await as i64;
    let caught_up = eventually(Duration::from_secs(60), || async {
        let view = store.lag_view().await.expect("lag view");
        let forward_past = view.for_table("public.orders").iter().any(|l| {
            l.direction == Direction::Forward
                && l.applied >= a_now
                && l.source.is_some_and(|(src, _)| src >= a_now)
        });
        forward_past
            && matches!(lags(&store).await, (Some(f), Some(r)) if f <= MAX_LAG && r <= MAX_LAG)
    })
    .await;
    assert!(
        caught_up.is_some(),
        "lags {:?}\n{}",
        lags(&store).await,
        log()
    );
    let (code, out, err) = cli_env(&["route", "promote", "orders"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("shadow → canary 10%"), "{out}");

    for p in [&mut forward, &mut reverse] {
        let _ = p.kill();
        let _ = p.wait();
    }
}
