//! `strangler cdc` as a user runs it: killed with SIGKILL mid-stream and
//! restarted, nothing is lost and nothing is applied twice in effect.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use strangler_router::store::StateStore;

use crate::support::*;

fn spawn_cdc(h: &Harness, env: &[(&str, &str)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(h.dir.path().join("cdc.log")).expect("log");
    Command::new(strangler_bin())
        .args(["cdc", "run", "-c"])
        .arg(h.config_path())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn strangler cdc run")
}

fn cli_env(args: &[&str], h: &Harness, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(strangler_bin()).args(args).arg("-c").arg(h.config_path()).envs(env.iter().copied()).output().expect("run");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn cdc_killed_mid_stream_resumes_without_loss_or_double_apply() {
    let pg = tokio::task::spawn_blocking(PgCluster::start).await.expect("join").expect("postgres");
    let src_url = pg.create_database("shop").expect("db");
    let dst_url = pg.create_database("svc").expect("db");
    let src = PgPoolOptions::new().max_connections(2).connect(&src_url).await.expect("src");
    let dst = PgPoolOptions::new().max_connections(2).connect(&dst_url).await.expect("dst");
    sqlx::query("CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, n INT NOT NULL, note TEXT)").execute(&src).await.expect("ddl");
    for sql in [
        "CREATE TABLE ledger (id BIGINT PRIMARY KEY, n INT NOT NULL, note TEXT)",
        "CREATE TABLE applied_log (id BIGINT NOT NULL)",
        "CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO applied_log VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER ledger_applied AFTER INSERT OR UPDATE ON ledger FOR EACH ROW EXECUTE FUNCTION log_apply()",
    ] {
        sqlx::query(sql).execute(&dst).await.expect("ddl");
    }
    let h = Harness::new();
    h.write_config(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n\n[cdc.transport]\nkind = \"embedded\"\ntopic_prefix = \"shop\"\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\n",
    );
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
    assert!(ready.is_some(), "cdc did not start: {}", std::fs::read_to_string(h.dir.path().join("cdc.log")).unwrap_or_default());

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
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger").fetch_one(&dst).await.unwrap_or(0) >= 500
    })
    .await;
    assert!(some.is_some());
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cdc = spawn_cdc(&h, &env);
    writer.await.expect("writer");
    let done = eventually(Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ledger").fetch_one(&dst).await.unwrap_or(0) == total
    })
    .await;
    assert!(done.is_some(), "not every row arrived: {}", std::fs::read_to_string(h.dir.path().join("cdc.log")).unwrap_or_default());
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM applied_log").fetch_one(&dst).await.expect("count");
    assert_eq!(applied, total, "a replayed transaction was applied again");

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
    let store = StateStore::connect(&format!("sqlite://{}/state.db?mode=rwc", h.dir.path().display())).await.expect("store");
    let lag = store.lag_view().await.expect("lag view");
    assert!(lag.source.is_some() && lag.applied.contains_key("public.ledger"), "{lag:?}");

    cdc.kill().expect("kill");
    let _ = cdc.wait();
    sqlx::query("UPDATE ledger SET note = 'tampered' WHERE id = 42").execute(&dst).await.expect("tamper");
    let (code, out, _) = cli_env(&["cdc", "verify", "--table", "ledger"], &h, &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("differs key (42)"), "{out}");
}
