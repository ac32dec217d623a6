//! `strangler cdc` as a user runs it: killed with SIGKILL mid-stream and
//! restarted, nothing is lost and nothing is applied twice in effect.
//!
//! (Longer than 400 lines: one scenario per test, each a whole CDC run
//! through the binary; they share the process and database helpers here.)

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use strangler_state::store::StateStore;

use crate::support::*;

pub(crate) fn spawn_cdc(h: &Harness, env: &[(&str, &str)]) -> KillOnDrop {
    spawn_cdc_with(h, env, &[])
}

pub(crate) fn spawn_cdc_with(h: &Harness, env: &[(&str, &str)], extra: &[&str]) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(h.dir.path().join("cdc.log"))
        .expect("log");
    Command::new(strangler_bin())
        .args(["cdc", "run"])
        .args(extra)
        .arg("-c")
        .arg(h.config_path())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map(KillOnDrop)
        .expect("spawn strangler cdc run")
}

/// Stops a `cdc run` as systemd or Kubernetes would (SIGTERM: it confirms
/// what is durable and leaves), and waits for it.
pub(crate) fn stop_gracefully(cdc: &mut KillOnDrop) {
    let stopped = Command::new("kill")
        .args(["-TERM", &cdc.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(stopped.success());
    let _ = cdc.wait();
}

/// Waits (at most 60 s) until `cdc` exits; its exit code (fails with
/// `log` when it keeps running).
pub(crate) async fn exit_code(cdc: &mut KillOnDrop, log: impl Fn() -> String) -> Option<i32> {
    let exited = eventually(Duration::from_secs(60), || {
        let status = cdc.try_wait().expect("try_wait");
        async move { status.is_some() }
    })
    .await;
    assert!(exited.is_some(), "cdc run kept running:\n{}", log());
    cdc.try_wait().expect("status").and_then(|s| s.code())
}

/// Waits until `sql` (a count) on `pool` gives `want`; fails with what it
/// gave and `log`.
pub(crate) async fn until_count(
    pool: &sqlx::PgPool,
    sql: &str,
    want: i64,
    log: impl Fn() -> String,
) {
    let seen = eventually(Duration::from_secs(90), || async {
        crate::cdc_faults::count(pool, sql).await == want
    })
    .await;
    assert!(
        seen.is_some(),
        "{sql}: {} (want {want})\n{}",
        crate::cdc_faults::count(pool, sql).await,
        log()
    );
}

pub(crate) fn cli_env(args: &[&str], h: &Harness, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(strangler_bin())
        .args(args)
        .arg("-c")
        .arg(h.config_path())
        .envs(env.iter().copied())
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A cluster with a monolith database (`shop`) and a service database (`svc`).
pub(crate) struct Databases {
    pub _pg: PgCluster,
    pub src_url: String,
    pub dst_url: String,
    pub src: sqlx::PgPool,
    pub dst: sqlx::PgPool,
}

pub(crate) async fn databases() -> Databases {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let src_url = pg.create_database("shop").expect("db");
    let dst_url = pg.create_database("svc").expect("db");
    let src = PgPoolOptions::new()
        .max_connections(2)
        .connect(&src_url)
        .await
        .expect("src");
    let dst = PgPoolOptions::new()
        .max_connections(2)
        .connect(&dst_url)
        .await
        .expect("dst");
    Databases {
        _pg: pg,
        src_url,
        dst_url,
        src,
        dst,
    }
}

/// `public.ledger` synced to sink `svc` in-process (`E2E_SRC` → `E2E_DST`);
/// `source` adds lines to `[cdc.source]`.
pub(crate) fn embedded_ledger_config(source: &str) -> String {
    format!("[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n{source}\n\n[cdc.transport]\nkind = \"embedded\"\ntopic_prefix = \"shop\"\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\n")
}

/// `ledger` in the source and the target, with no bookkeeping of applies.
pub(crate) async fn plain_ledger(src: &sqlx::PgPool, dst: &sqlx::PgPool) {
    sqlx::query("CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, note TEXT)")
        .execute(src)
        .await
        .expect("ddl");
    sqlx::query("CREATE TABLE ledger (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, note TEXT)")
        .execute(dst)
        .await
        .expect("ddl");
}

/// `ledger` in the source, and in the target with `applied_log`: one row
/// per apply of a ledger row (a row applied twice shows up twice).
pub(crate) async fn counted_ledger(src: &sqlx::PgPool, dst: &sqlx::PgPool) {
    sqlx::query("CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, n INT NOT NULL, note TEXT)")
        .execute(src)
        .await
        .expect("ddl");
    for sql in [
        "CREATE TABLE ledger (id BIGINT PRIMARY KEY, n INT NOT NULL, note TEXT)",
        "CREATE TABLE applied_log (id BIGINT NOT NULL)",
        "CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO applied_log VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER ledger_applied AFTER INSERT OR UPDATE ON ledger FOR EACH ROW EXECUTE FUNCTION log_apply()",
    ] {
        sqlx::query(sql).execute(dst).await.expect("ddl");
    }
}

#[tokio::test]
async fn cdc_killed_mid_stream_resumes_without_loss_or_double_apply() {
    let Databases {
        _pg,
        src_url,
        dst_url,
        src,
        dst,
    } = databases().await;
    counted_ledger(&src, &dst).await;
    let h = Harness::new();
    h.write_config(&embedded_ledger_config(""));
    let env = [("E2E_SRC", src_url.as_str()), ("E2E_DST", dst_url.as_str())];
    assert_eq!(cli_env(&["check"], &h, &env).0, 0);
    let mut cdc = spawn_cdc(&h, &env);
    // Wait for the slot: from then on every change is captured.
    let ready = eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'strangler' AND active)")
            .fetch_one(&src)
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(ready.is_some(), "cdc did not start: {}", h.cdc_log());

    let total = 3_000;
    let writer = {
        let src = src.clone();
        tokio::spawn(async move {
            for batch in 0..300 {
                sqlx::query("INSERT INTO ledger (n, note) SELECT $1, 'row ' || g FROM generate_series(1, 10) g").bind(batch).execute(&src).await.expect("insert");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    // Kill it hard once some of the stream is through, then start it again.
    let some = eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger")
            .fetch_one(&dst)
            .await
            .unwrap_or(0)
            >= 500
    })
    .await;
    assert!(some.is_some());
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut cdc = spawn_cdc_with(&h, &env, &["--metrics", &metrics_addr]);
    writer.await.expect("writer");
    let done = eventually(Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger")
            .fetch_one(&dst)
            .await
            .unwrap_or(0)
            == total
    })
    .await;
    assert!(done.is_some(), "not every row arrived: {}", h.cdc_log());
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM applied_log")
        .fetch_one(&dst)
        .await
        .expect("count");
    assert_eq!(applied, total, "a replayed transaction was applied again");

    // Prometheus metrics of the restarted pipeline.
    let text = client()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metric_value(&text, "strangler_cdc_rows_applied_total") > 0.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "strangler_cdc_confirmed_lsn") > 0.0,
        "{text}"
    );
    assert!(text.contains("strangler_cdc_lag_bytes"), "{text}");
    // Every series names its slot and source; each sink's table its lag.
    let labels = [
        ("sink", "svc"),
        ("table", "public.ledger"),
        ("slot", "strangler"),
        ("source", "shop"),
    ];
    assert!(
        series_value(&text, "strangler_cdc_sink_applied_lsn", &labels).is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert!(
        series_value(&text, "strangler_cdc_sink_lag_bytes", &labels).is_some(),
        "{text}"
    );

    // verify: clean, then a planted difference is found (exit 1).
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("clean"), "{out}");
    // status: the slot and the sink's position.
    let (code, out, _) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["exists"], true);
    assert!(status["sinks"][0]["applied"].is_string(), "{status}");
    // The router sees per-table positions in the state store.
    let store = StateStore::connect(&format!(
        "sqlite://{}/state.db?mode=rwc",
        h.dir.path().display()
    ))
    .await
    .expect("store");
    let lag = store.lag_view().await.expect("lag view");
    let ledger = lag.for_table("public.ledger");
    assert!(
        ledger.len() == 1
            && ledger[0].source.is_some()
            && ledger[0].direction == strangler_state::lag::Direction::Forward,
        "{lag:?}"
    );

    cdc.kill().expect("kill");
    let _ = cdc.wait();
    sqlx::query("UPDATE ledger SET note = 'tampered' WHERE id = 42")
        .execute(&dst)
        .await
        .expect("tamper");
    let (code, out, _) = cli_env(&["cdc", "verify", "--table", "ledger"], &h, &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("differs key (42)"), "{out}");
}

/// Reads every message of `topic` from the start (a plain consumer, as a
/// Debezium consumer would).
pub(crate) async fn read_topic(
    brokers: &str,
    topic: &str,
    at_least: usize,
) -> Vec<(Option<Value>, Option<Value>)> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("e2e-reader-{}", fastrand_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < at_least && std::time::Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            let parse = |b: Option<&[u8]>| b.and_then(|b| serde_json::from_slice::<Value>(b).ok());
            out.push((parse(m.key()), parse(m.payload())));
        }
    }
    out
}

fn fastrand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[tokio::test]
async fn cdc_through_a_real_kafka_protocol_broker() {
    let broker = tokio::task::spawn_blocking(strangler_testkit::Broker::start)
        .await
        .expect("join")
        .expect("tansu");
    let Databases {
        _pg,
        src_url,
        dst_url,
        src,
        dst,
    } = databases().await;
    sqlx::query("CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, n INT NOT NULL, note TEXT)")
        .execute(&src)
        .await
        .expect("ddl");
    sqlx::query(
        "CREATE TABLE ledger (id BIGINT PRIMARY KEY, n INT NOT NULL CHECK (n >= 0), note TEXT)",
    )
    .execute(&dst)
    .await
    .expect("ddl");
    sqlx::query("INSERT INTO ledger (n, note) SELECT g, 'before' FROM generate_series(1, 100) g")
        .execute(&src)
        .await
        .expect("seed");
    // A dead letter an earlier worker committed but crashed before
    // publishing: the next worker publishes it.
    for sql in [
        "CREATE TABLE strangler_cdc_dead_letters (id BIGSERIAL PRIMARY KEY, sink TEXT NOT NULL, topic TEXT NOT NULL, \
         key TEXT, value TEXT, reason TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now(), published BOOLEAN NOT NULL DEFAULT true)",
        "INSERT INTO strangler_cdc_dead_letters (sink, topic, key, value, reason, published) \
         VALUES ('svc', 'shop.public.ledger', '{\"id\":999}', NULL, 'left by a crash before publishing', false)",
    ] {
        sqlx::query(sql).execute(&dst).await.expect("dead letter");
    }
    let h = Harness::new();
    h.write_config(&format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n\n[cdc.transport]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"shop\"\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\n",
        broker.bootstrap()
    ));
    let env = [("E2E_SRC", src_url.as_str()), ("E2E_DST", dst_url.as_str())];
    let mut cdc = spawn_cdc(&h, &env);
    let log = || h.cdc_log();
    let snap = eventually(Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger")
            .fetch_one(&dst)
            .await
            .unwrap_or(0)
            == 100
    })
    .await;
    assert!(
        snap.is_some(),
        "snapshot did not arrive through the broker: {}",
        log()
    );
    // Before any new dead letter: the worker published the one left over.
    let early = read_topic(&broker.bootstrap(), "shop.dlq", 1).await;
    assert!(
        early
            .iter()
            .any(|(_, v)| v.as_ref().is_some_and(|v| v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("left by a crash")))),
        "the worker publishes what a crash left unpublished when it starts: {early:?}"
    );
    sqlx::query("INSERT INTO ledger (n, note) SELECT g, 'after' FROM generate_series(1, 200) g")
        .execute(&src)
        .await
        .expect("insert");
    sqlx::query("UPDATE ledger SET note = 'updated' WHERE id % 10 = 0")
        .execute(&src)
        .await
        .expect("update");
    sqlx::query("DELETE FROM ledger WHERE id = 7")
        .execute(&src)
        .await
        .expect("delete");
    // A poison event: the service's schema refuses a negative n.
    sqlx::query("INSERT INTO ledger (n, note) VALUES (-1, 'poison')")
        .execute(&src)
        .await
        .expect("poison");
    sqlx::query("INSERT INTO ledger (n, note) VALUES (5, 'after the poison')")
        .execute(&src)
        .await
        .expect("insert");
    let done = eventually(Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger WHERE note = 'after the poison'")
            .fetch_one(&dst)
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    assert!(done.is_some(), "{}", log());
    let (count, updated): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE note = 'updated') FROM ledger")
            .fetch_one(&dst)
            .await
            .expect("count");
    assert_eq!(
        (count, updated),
        (300, 30),
        "300 rows (301 minus the deleted one; the poison one set aside)"
    );

    // What a Debezium consumer sees on the topic.
    let messages = read_topic(
        &broker.bootstrap(),
        "shop.public.ledger",
        100 + 200 + 30 + 2 + 2,
    )
    .await;
    let ops: Vec<&str> = messages
        .iter()
        .filter_map(|(_, v)| v.as_ref().and_then(|v| v["op"].as_str()))
        .collect();
    assert_eq!(
        ops.iter().filter(|o| **o == "r").count(),
        100,
        "snapshot reads"
    );
    assert!(ops.contains(&"c") && ops.contains(&"u") && ops.contains(&"d"));
    let tombstone = messages
        .iter()
        .find(|(k, v)| v.is_none() && k.as_ref().is_some_and(|k| k["id"] == 7));
    assert!(tombstone.is_some(), "a tombstone follows the delete");
    let dlq = read_topic(&broker.bootstrap(), "shop.dlq", 2).await;
    let reasons: Vec<String> = dlq
        .iter()
        .filter_map(|(_, v)| v.as_ref())
        .map(|v| v["reason"].to_string())
        .collect();
    assert_eq!(reasons.len(), 2, "{dlq:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("left by a crash before publishing")),
        "the dead letter a crash left unpublished reached the topic: {dlq:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("check constraint")),
        "the poison event reached the dead-letter topic: {dlq:?}"
    );
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM strangler_cdc_dead_letters WHERE NOT published")
            .fetch_one(&dst)
            .await
            .expect("count");
    assert_eq!(unpublished, 0, "every dead letter is marked published");

    cdc.kill().expect("kill");
    let _ = cdc.wait();
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 1, "the poison row is the one difference: {out}{err}");
    assert_eq!(out.matches("missing key").count(), 1, "{out}");
}

/// `strangler cdc run` (monolith → service) and `strangler cdc reverse`
/// (service → monolith) side by side on the same table: edits on either
/// side reach the other, and nothing bounces.
#[tokio::test]
async fn forward_and_reverse_processes_converge_without_echo() {
    let Databases {
        _pg,
        src_url,
        dst_url,
        src,
        dst,
    } = databases().await;
    sqlx::query("CREATE TABLE products (id BIGSERIAL PRIMARY KEY, title TEXT NOT NULL, price_cents BIGINT NOT NULL)").execute(&src).await.expect("ddl");
    sqlx::query("CREATE TABLE catalog_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price BIGINT NOT NULL)").execute(&dst).await.expect("ddl");
    sqlx::query("INSERT INTO products (title, price_cents) SELECT 'p' || g, g FROM generate_series(1, 20) g").execute(&src).await.expect("seed");
    let h = Harness::new();
    h.write_config(
        r#"[upstreams.legacy]
url = "http://127.0.0.1:1"

[cdc.source]
url_env = "E2E_SRC"
tables = ["public.products"]

[[cdc.sinks]]
name = "catalog"
url_env = "E2E_DST"
[[cdc.sinks.tables]]
source = "public.products"
target = "public.catalog_items"
rename = { title = "name", price_cents = "price" }

[[cdc.sinks]]
name = "catalog-back"
url_env = "E2E_DST"
reverse = true
[[cdc.sinks.tables]]
source = "public.catalog_items"
target = "public.products"
rename = { name = "title", price = "price_cents" }
"#,
    );
    let env = [("E2E_SRC", src_url.as_str()), ("E2E_DST", dst_url.as_str())];
    let log = || h.cdc_log();
    let mut forward = spawn_cdc(&h, &env);
    let copied = eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM catalog_items")
            .fetch_one(&dst)
            .await
            .unwrap_or(0)
            == 20
    })
    .await;
    assert!(copied.is_some(), "{}", log());
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(h.dir.path().join("cdc.log"))
        .expect("log");
    let mut reverse = Command::new(strangler_bin())
        .args(["cdc", "reverse", "-c"])
        .arg(h.config_path())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .map(KillOnDrop)
        .expect("spawn reverse");
    // Streaming has begun once the reverse sink stored its start position
    // (after the slot's consistent point): a slot is already "active" while
    // it is still being created, and an edit committed before its
    // consistent point is, rightly, not streamed by a `never`-snapshot start.
    let started = eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM strangler_cdc_offsets WHERE sink = 'catalog-back')",
        )
        .fetch_one(&src)
        .await
        .unwrap_or(false)
    })
    .await;
    assert!(started.is_some(), "{}", log());
    sqlx::query("UPDATE catalog_items SET name = 'from the service' WHERE id = 3")
        .execute(&dst)
        .await
        .expect("svc edit");
    sqlx::query("UPDATE products SET price_cents = 999 WHERE id = 4")
        .execute(&src)
        .await
        .expect("monolith edit");
    let sides = || async {
        let t: String = sqlx::query_scalar("SELECT title FROM products WHERE id = 3")
            .fetch_one(&src)
            .await
            .unwrap_or_default();
        let p: i64 = sqlx::query_scalar("SELECT price FROM catalog_items WHERE id = 4")
            .fetch_one(&dst)
            .await
            .unwrap_or(0);
        (t, p)
    };
    let converged = eventually(Duration::from_secs(60), || async {
        let (t, p) = sides().await;
        t == "from the service" && p == 999
    })
    .await;
    if converged.is_none() {
        let (t, p) = sides().await;
        panic!("not converged: monolith title of 3 = {t:?} (reverse), catalog price of 4 = {p} (forward)\n{}", log());
    }
    // No echo: the sinks' positions stop moving.
    let positions = || async {
        let a: Vec<i64> = sqlx::query_scalar("SELECT lsn FROM strangler_cdc_offsets ORDER BY sink")
            .fetch_all(&dst)
            .await
            .expect("forward offsets");
        let b: Vec<i64> = sqlx::query_scalar("SELECT lsn FROM strangler_cdc_offsets ORDER BY sink")
            .fetch_all(&src)
            .await
            .expect("reverse offsets");
        // Both directions have applied something: an empty list would
        // compare equal to itself and prove nothing.
        assert!(!a.is_empty() && !b.is_empty(), "no offsets: {a:?} {b:?}");
        (a, b)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = positions().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        positions().await,
        before,
        "a change bounced between the databases"
    );

    // The way out. While CDC runs, teardown refuses and removes nothing.
    let (code, out, err) = cli_env(&["cdc", "teardown", "--yes"], &h, &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("stop every cdc run"), "{err}");
    for p in [&mut forward, &mut reverse] {
        let _ = p.kill();
        let _ = p.wait();
    }
    // doctor lists what strangler made, with the WAL each slot holds back.
    let (code, out, err) = cli_env(&["doctor", "--json"], &h, &env);
    assert_eq!(code, 0, "nothing is left over yet: {out}{err}");
    let doctor: serde_json::Value = serde_json::from_str(&out).expect("json");
    let names = |kind: &str| -> Vec<String> {
        let mut v: Vec<String> = doctor["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["kind"] == kind)
            .filter_map(|o| o["name"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names("slot"),
        ["strangler", "strangler_rev_catalog_back"],
        "{doctor}"
    );
    // Each sink's origin (a sink's later sessions have origins of their own).
    for origin in ["strangler_catalog", "strangler_catalog-back"] {
        assert!(
            names("origin").iter().any(|o| o == origin),
            "{origin}: {doctor}"
        );
    }
    assert_eq!(doctor["left_over"], 0, "{doctor}");
    assert!(
        doctor["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["kind"] == "slot")
            .all(|o| o["retained_wal_bytes"].as_i64().is_some_and(|b| b >= 0)),
        "{doctor}"
    );
    // A slot nobody configured is left over: doctor exits 1 and says how
    // to drop it.
    sqlx::query("SELECT pg_create_logical_replication_slot('strangler_forgotten', 'pgoutput')")
        .execute(&src)
        .await
        .expect("forgotten slot");
    let (code, out, _) = cli_env(&["doctor"], &h, &env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("pg_drop_replication_slot('strangler_forgotten')"),
        "{out}"
    );
    sqlx::query("SELECT pg_drop_replication_slot('strangler_forgotten')")
        .execute(&src)
        .await
        .expect("drop");

    // Without --yes (and no terminal to ask on), nothing is removed.
    let (code, out, err) = cli_env(&["cdc", "teardown"], &h, &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("strangler_rev_catalog_back"), "{out}");
    let (code, out, err) = cli_env(&["cdc", "teardown", "--yes"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    // Nothing of strangler's is left on either database.
    for (pool, db) in [(&src, "source"), (&dst, "service")] {
        let left: Vec<String> = sqlx::query_scalar(
            "SELECT 'slot ' || slot_name FROM pg_replication_slots \
             UNION ALL SELECT 'publication ' || pubname FROM pg_publication \
             UNION ALL SELECT 'origin ' || roname FROM pg_replication_origin \
             UNION ALL SELECT 'table ' || tablename FROM pg_tables WHERE tablename LIKE 'strangler%'",
        )
        .fetch_all(pool)
        .await
        .expect("leftovers");
        assert!(left.is_empty(), "{db} still has {left:?}");
    }
    let (code, out, err) = cli_env(&["doctor"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nothing left over"), "{out}");
}

/// PostgreSQL (source and sink) restarts under a running `cdc run`: the
/// process stays up, reconnects with backoff, and every row written before
/// and after the restart arrives exactly once.
#[tokio::test]
async fn cdc_run_reconnects_after_a_postgres_restart() {
    let db = databases().await;
    for (pool, sql) in [
        (
            &db.src,
            "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, n INT NOT NULL, note TEXT)",
        ),
        (
            &db.dst,
            "CREATE TABLE ledger (id BIGINT PRIMARY KEY, n INT NOT NULL, note TEXT)",
        ),
    ] {
        sqlx::query(sql).execute(pool).await.expect("ddl");
    }
    let h = Harness::new();
    h.write_config(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\n",
    );
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let mut cdc = spawn_cdc(&h, &env);
    let log = || h.cdc_log();
    let insert = |from: i32| {
        sqlx::query("INSERT INTO ledger (n, note) SELECT g, 'row ' || g FROM generate_series($1, $1 + 99) g")
            .bind(from)
    };
    let count = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger")
            .fetch_one(&pool)
            .await
            .unwrap_or(-1)
    };
    let ready = eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'strangler' AND active)")
            .fetch_one(&db.src)
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(ready.is_some(), "cdc did not start: {}", log());
    insert(1).execute(&db.src).await.expect("insert");
    let first = eventually(Duration::from_secs(30), || async {
        count(db.dst.clone()).await == 100
    })
    .await;
    assert!(first.is_some(), "first rows: {}", log());

    db._pg.stop().expect("stop postgres");
    let noticed = eventually(Duration::from_secs(30), || async {
        log().contains("CDC failed with a retryable error; reconnecting")
    })
    .await;
    assert!(noticed.is_some(), "no retry logged: {}", log());
    db._pg.start_again().expect("start postgres");
    assert!(
        cdc.try_wait().expect("wait").is_none(),
        "cdc run exited: {}",
        log()
    );

    // The pools reconnect by themselves; the second batch must arrive too.
    let inserted = eventually(Duration::from_secs(30), || async {
        insert(101).execute(&db.src).await.is_ok()
    })
    .await;
    assert!(inserted.is_some());
    let all = eventually(Duration::from_secs(60), || async {
        count(db.dst.clone()).await == 200
    })
    .await;
    let alive = cdc.try_wait().expect("wait").is_none();
    let _ = cdc.kill();
    let _ = cdc.wait();
    assert!(
        all.is_some() && alive,
        "alive {alive}, rows {}: {}",
        count(db.dst.clone()).await,
        log()
    );
    let rows = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>("SELECT string_agg(l::text, ',' ORDER BY id) FROM ledger l")
            .fetch_one(&pool)
            .await
            .expect("rows")
    };
    assert_eq!(rows(db.dst.clone()).await, rows(db.src.clone()).await);
}
