//! A migration grows while it runs: a table added to `cdc.source.tables`
//! is copied alone (in chunks, while streaming), and a sink added beside
//! streaming sinks gets its own copy — the others are not copied again and
//! the slot is kept. Targets count every row they are written
//! (`applied_log`), so a copy made again shows as rows applied twice.

use crate::cdc::{
    cli_env, counted_ledger, databases, spawn_cdc, stop_gracefully as stop, until_count as until,
};
use crate::cdc_faults::count;
use crate::support::*;

fn config(tables: &[&str], sinks: &[(&str, &str)]) -> String {
    let list = tables
        .iter()
        .map(|t| format!("\"public.{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [{list}]\n\n[cdc.transport]\nkind = \"embedded\"\ntopic_prefix = \"shop\"\n"
    );
    for (name, env) in sinks {
        text.push_str(&format!(
            "\n[[cdc.sinks]]\nname = \"{name}\"\nurl_env = \"{env}\"\n"
        ));
        for t in tables {
            text.push_str(&format!("[[cdc.sinks.tables]]\nsource = \"public.{t}\"\n"));
        }
    }
    text
}

async fn insert(pool: &sqlx::PgPool, table: &str, n: i32) {
    sqlx::query(&format!(
        "INSERT INTO {table} (n, note) SELECT g, 'row ' || g FROM generate_series(1, $1) g"
    ))
    .bind(n)
    .execute(pool)
    .await
    .expect("insert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_added_to_a_running_migration_is_copied_alone() {
    let db = databases().await;
    counted_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&config(&["ledger"], &[("svc", "E2E_DST")]));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let mut cdc = spawn_cdc(&h, &env);
    insert(&db.src, "ledger", 300).await;
    until(&db.dst, "SELECT count(*) FROM ledger", 300, || h.cdc_log()).await;
    until(
        &db.dst,
        "SELECT count(*) FROM strangler_cdc_offsets WHERE snapshot_done",
        1,
        || h.cdc_log(),
    )
    .await;
    stop(&mut cdc);

    // A new table with rows from before it was captured.
    sqlx::query("CREATE TABLE items (id BIGSERIAL PRIMARY KEY, n INT NOT NULL, note TEXT)")
        .execute(&db.src)
        .await
        .expect("ddl");
    sqlx::query("CREATE TABLE items (id BIGINT PRIMARY KEY, n INT NOT NULL, note TEXT)")
        .execute(&db.dst)
        .await
        .expect("ddl");
    insert(&db.src, "items", 2_500).await;
    h.write_config(&config(&["ledger", "items"], &[("svc", "E2E_DST")]));
    let mut cdc = spawn_cdc(&h, &env);
    insert(&db.src, "ledger", 200).await;
    insert(&db.src, "items", 100).await;
    until(&db.dst, "SELECT count(*) FROM items", 2_600, || h.cdc_log()).await;
    until(&db.dst, "SELECT count(*) FROM ledger", 500, || h.cdc_log()).await;
    // The ledger was not copied again: each of its rows written once.
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        500
    );
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    stop(&mut cdc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_beside_a_streaming_one_gets_its_own_copy_only() {
    let db = databases().await;
    counted_ledger(&db.src, &db.dst).await;
    let second_url = db._pg.create_database("svc2").expect("db");
    let second = sqlx::PgPool::connect(&second_url).await.expect("svc2");
    for sql in [
        "CREATE TABLE ledger (id BIGINT PRIMARY KEY, n INT NOT NULL, note TEXT)",
        "CREATE TABLE applied_log (id BIGINT NOT NULL)",
        "CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO applied_log VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER ledger_applied AFTER INSERT OR UPDATE ON ledger FOR EACH ROW EXECUTE FUNCTION log_apply()",
    ] {
        sqlx::query(sql).execute(&second).await.expect(sql);
    }
    let h = Harness::new();
    h.write_config(&config(&["ledger"], &[("svc", "E2E_DST")]));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("E2E_DST2", second_url.as_str()),
    ];
    let mut cdc = spawn_cdc(&h, &env);
    insert(&db.src, "ledger", 1_500).await;
    until(&db.dst, "SELECT count(*) FROM ledger", 1_500, || {
        h.cdc_log()
    })
    .await;
    // The first sink streams (its snapshot is complete).
    until(
        &db.dst,
        "SELECT count(*) FROM strangler_cdc_offsets WHERE snapshot_done",
        1,
        || h.cdc_log(),
    )
    .await;
    stop(&mut cdc);
    // Where the first sink's snapshot began: a new snapshot (a new slot)
    // would move it.
    let began = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT snapshot_lsn FROM strangler_cdc_offsets WHERE sink = 'svc'",
        )
        .fetch_one(&db.dst)
        .await
        .expect("offsets")
    };
    let began_before = began().await;

    h.write_config(&config(
        &["ledger"],
        &[("svc", "E2E_DST"), ("svc2", "E2E_DST2")],
    ));
    let mut cdc = spawn_cdc(&h, &env);
    insert(&db.src, "ledger", 200).await;
    until(&second, "SELECT count(*) FROM ledger", 1_700, || {
        h.cdc_log()
    })
    .await;
    until(&db.dst, "SELECT count(*) FROM ledger", 1_700, || {
        h.cdc_log()
    })
    .await;
    // The first sink was not copied again; the slot is the same one.
    assert_eq!(
        count(&db.dst, "SELECT count(*) FROM applied_log").await,
        1_700,
        "{}",
        h.cdc_log()
    );
    assert_eq!(
        began().await,
        began_before,
        "the first sink's snapshot was taken again"
    );
    // The new sink has every row (a row changed while it was copied is
    // written by both the copy and the stream: at most twice).
    assert_eq!(
        count(&second, "SELECT count(DISTINCT id) FROM applied_log").await,
        1_700
    );
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    stop(&mut cdc);
}
