//! Type fidelity through `strangler cdc` as a user runs it: the boolean
//! and edge-value report of issue 15, and the check that follows every
//! snapshot.

use std::time::Duration;

use serde_json::Value;

use crate::cdc::{cli_env, databases, spawn_cdc};
use crate::support::*;

/// Both sides: the table of the report, and one of edge values.
const SCHEMA: [&str; 2] = [
    "CREATE TABLE t (id int PRIMARY KEY, b boolean, arr text[], n numeric(10,2), iv interval)",
    "CREATE TABLE edge (id int PRIMARY KEY, d date, ts timestamptz, iv interval, a int[], f float8, n numeric)",
];

const CONFIG: &str = "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.t\", \"public.edge\"]\n\n[cdc.transport]\nkind = \"embedded\"\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.t\"\n[[cdc.sinks.tables]]\nsource = \"public.edge\"\n";

/// The two databases, each with [`SCHEMA`].
async fn with_schema() -> crate::cdc::Databases {
    let db = databases().await;
    for sql in SCHEMA {
        sqlx::query(sql).execute(&db.src).await.expect("ddl");
        sqlx::query(sql).execute(&db.dst).await.expect("ddl");
    }
    db
}

/// Every row of `table` as text.
async fn text_rows(pool: &sqlx::PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT x::text FROM {table} x ORDER BY id"))
        .fetch_all(pool)
        .await
        .expect("rows")
}

#[tokio::test]
async fn booleans_and_edge_values_arrive_identical_through_snapshot_and_stream() {
    let db = with_schema().await;
    for sql in [
        "INSERT INTO t VALUES (1, true, '{x,y}', 12.34, '1 day 2 hours'), (2, false, null, null, null)",
        "INSERT INTO edge VALUES (1, '0001-01-01 BC', 'infinity', '-1 days', '{}', 'NaN', 'NaN'), \
         (2, '2024-01-01', '2024-01-01 00:00:00+00', '1 mon', '{1}', 1.5, 1.5)",
    ] {
        sqlx::query(sql).execute(&db.src).await.expect("rows");
    }
    let h = Harness::new();
    h.write_config(CONFIG);
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let (code, out, err) = cli_env(&["cdc", "snapshot"], &h, &env);
    assert_eq!(code, 0, "{out}\n{err}");
    for table in ["t", "edge"] {
        assert_eq!(
            text_rows(&db.dst, table).await,
            text_rows(&db.src, table).await,
            "{table} after the snapshot"
        );
    }
    assert_eq!(
        text_rows(&db.dst, "t").await[0],
        "(1,t,\"{x,y}\",12.34,\"1 day 02:00:00\")"
    );

    // Streaming: the same values inserted and updated while running.
    let mut cdc = spawn_cdc(&h, &env);
    for sql in [
        "INSERT INTO t VALUES (3, true, '{\"a b\",NULL}', -0.01, '-1 days')",
        "UPDATE t SET b = NOT b WHERE id = 2",
        "INSERT INTO edge VALUES (3, '10000-12-31', '0044-03-15 12:00:00+00 BC', '-00:00:00.000001', '{{1,2},{3,4}}', '-Infinity', 1e-20)",
    ] {
        sqlx::query(sql).execute(&db.src).await.expect("change");
    }
    let same = eventually(Duration::from_secs(60), || async {
        text_rows(&db.dst, "t").await == text_rows(&db.src, "t").await
            && text_rows(&db.dst, "edge").await == text_rows(&db.src, "edge").await
    })
    .await;
    let _ = cdc.kill();
    let _ = cdc.wait();
    assert!(
        same.is_some(),
        "t: {:?} vs {:?}; edge: {:?} vs {:?}\n{}",
        text_rows(&db.src, "t").await,
        text_rows(&db.dst, "t").await,
        text_rows(&db.src, "edge").await,
        text_rows(&db.dst, "edge").await,
        h.cdc_log()
    );
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "verify: {out}\n{err}");
    let (code, out, _) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        status["sinks"][0]["snapshot_check"]["rows_checked"], 4,
        "{status}"
    );
    assert_eq!(status["sinks"][0]["snapshot_check"]["rows_differing"], 0);
}

/// A sink that writes something else than it was given (here a trigger
/// flips every boolean) is caught right after the snapshot: `cdc snapshot`
/// fails, the log says which rows, `cdc status` shows it.
#[tokio::test]
async fn the_check_after_the_snapshot_reports_a_sink_that_changed_rows() {
    let db = with_schema().await;
    for sql in [
        "CREATE FUNCTION flip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.b := NOT NEW.b; RETURN NEW; END $$",
        "CREATE TRIGGER flip BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION flip()",
    ] {
        sqlx::query(sql).execute(&db.dst).await.expect("trigger");
    }
    sqlx::query("INSERT INTO t VALUES (1, true, null, 1, null), (2, false, null, 2, null), (3, null, null, 3, null)")
        .execute(&db.src)
        .await
        .expect("rows");
    let h = Harness::new();
    h.write_config(CONFIG);
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let (code, out, err) = cli_env(&["cdc", "snapshot"], &h, &env);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("2 sampled rows differ"), "{out}");
    assert!(err.contains("SNAPSHOT CHECK FAILED"), "{err}");
    let (_, out, _) = cli_env(&["cdc", "status", "--json"], &h, &env);
    let status: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        status["sinks"][0]["snapshot_check"]["rows_differing"], 2,
        "{status}"
    );
    assert_eq!(status["sinks"][0]["snapshot_check"]["rows_checked"], 3);
}
