//! The state store's schema: versioned, migrated by `strangler migrate`
//! only (a store from an older strangler is refused until then, a newer
//! one always), and `[state] schema` letting environments share one
//! PostgreSQL database.

use serde_json::Value;

use crate::support::*;

const ROUTE: &str = r#"
[upstreams.legacy]
url = "http://127.0.0.1:1"

[upstreams.svc]
url = "http://127.0.0.1:2"

[[routes]]
name = "get-product"
methods = ["GET"]
path = "/products/{id}"
service = "svc"
stage = "canary"
percent = 10
"#;

#[tokio::test]
async fn an_older_store_is_refused_until_strangler_migrate_and_a_newer_one_always() {
    let h = Harness::new();
    let path = h.write_config(ROUTE);
    // A store an older strangler wrote: tables, no schema version.
    let url = format!(
        "sqlite://{}?mode=rwc",
        h.dir.path().join("state.db").display()
    );
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        for sql in [
            "CREATE TABLE strangler_routes (route TEXT PRIMARY KEY, declared_stage TEXT NOT NULL, declared_percent DOUBLE PRECISION NOT NULL, stage TEXT NOT NULL, percent DOUBLE PRECISION NOT NULL, origin TEXT NOT NULL, why TEXT NOT NULL, revision TEXT NOT NULL, updated_at_ms BIGINT NOT NULL)",
            "CREATE TABLE strangler_route_overrides (route TEXT PRIMARY KEY, stage TEXT NOT NULL)",
        ] {
            sqlx::query(sql).execute(&mut c).await.expect(sql);
        }
    }
    let (code, out, err) = cli(&["route", "list"], &path);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("schema version 0") && err.contains("strangler migrate"),
        "{err}"
    );
    let (code, out, err) = cli(&["migrate"], &path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("migrated from schema version 0 to 2"), "{out}");
    let (code, out, err) = cli(&["route", "list", "--json"], &path);
    assert_eq!(code, 0, "{out}{err}");
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list["routes"][0]["stage"], "canary", "{list}");
    let (code, out, _) = cli(&["migrate"], &path);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");

    // A newer strangler migrated the store: refused by every command, and
    // by migrate itself.
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        sqlx::query("INSERT INTO strangler_schema_version VALUES (3, 0, 'strangler 9')")
            .execute(&mut c)
            .await
            .expect("newer");
    }
    for args in [&["route", "list"][..], &["migrate"][..]] {
        let (code, out, err) = cli(args, &path);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("schema version 3, newer than this strangler's 2"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn two_environments_share_one_postgres_database_through_state_schema() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let url = pg.create_database("state").expect("db");
    let env = |name: &str| {
        let h = Harness::new().with_state(&url);
        let text = h.config_text(ROUTE).replace(
            "poll_interval_ms = 100",
            &format!("poll_interval_ms = 100\nschema = \"{name}\""),
        );
        std::fs::write(h.config_path(), text).expect("config");
        h
    };
    let (staging, production) = (env("staging"), env("production"));
    for h in [&staging, &production] {
        let (code, out, err) = cli(&["check"], &h.config_path());
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, out, err) = cli(
        &[
            "route",
            "rollback",
            "get-product",
            "--reason",
            "staging only",
        ],
        &staging.config_path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let stage = |h: &Harness| {
        let (code, out, err) = cli(&["route", "list", "--json"], &h.config_path());
        assert_eq!(code, 0, "{out}{err}");
        let list: Value = serde_json::from_str(&out).expect("json");
        list["routes"][0]["stage"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(stage(&staging), "legacy");
    assert_eq!(stage(&production), "canary");
    // Each environment's tables in its own schema, none in public.
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT schemaname::text, count(*) FROM pg_tables WHERE tablename LIKE 'strangler%' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    let names: Vec<&str> = tables.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["production", "staging"], "{tables:?}");
    assert_eq!(tables[0].1, tables[1].1, "{tables:?}");
    // Staging's store as version 1 left it (no inventory table): refused
    // until `strangler migrate`, which upgrades it on PostgreSQL too and
    // leaves production alone.
    for sql in [
        "DROP TABLE staging.strangler_inventory",
        "DELETE FROM staging.strangler_schema_version",
        "INSERT INTO staging.strangler_schema_version VALUES (1, 0, 'strangler at version 1')",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    let (code, _, err) = cli(&["route", "list"], &staging.config_path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("schema version 1") && err.contains("strangler migrate"),
        "{err}"
    );
    let (code, out, err) = cli(&["migrate"], &staging.config_path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("migrated from schema version 1 to 2"), "{out}");
    assert_eq!(
        stage(&staging),
        "legacy",
        "the rollback made before is kept"
    );
    assert_eq!(stage(&production), "canary");
    let (code, out, err) = cli(&["inventory", "--json"], &staging.config_path());
    assert_eq!(code, 0, "the inventory table exists now: {out}{err}");
    // A schema name that is not an identifier is refused by check.
    let bad = Harness::new().with_state(&url);
    let text = bad.config_text(ROUTE).replace(
        "poll_interval_ms = 100",
        "poll_interval_ms = 100\nschema = \"Prod-1\"",
    );
    std::fs::write(bad.config_path(), text).expect("config");
    let (code, _, err) = cli(&["check"], &bad.config_path());
    assert_eq!(code, 2);
    assert!(err.contains("state.schema"), "{err}");
}
