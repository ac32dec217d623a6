//! The store's schema, versioned.
//!
//! `strangler_schema_version` holds the version the tables are at. A store
//! with no strangler tables is created at [`CURRENT`] by the first process
//! that uses it (under a lock, so a fleet starting together creates it
//! once). Any other change is a migration, run only by `strangler
//! migrate`: a binary finding an older version refuses to use the store
//! and asks for `migrate`; one finding a newer version refuses and names
//! both (the store was migrated by a newer strangler; downgrading a store
//! is not supported).
//!
//! ```text
//!  version 0  tables from before versioning (no version table)
//!  version 1  the tables below; tables of older layouts dropped
//!  version 2  strangler_inventory (the endpoint inventory)
//! ```

use sqlx::AnyPool;

use super::{Backend, StoreError};

/// The schema version this binary reads and writes.
pub const CURRENT: i64 = 2;

/// Tables of layouts from before versioning: their data lives in the
/// tables below now (positions are re-reported by CDC within a second).
/// The old audit log (`strangler_audit_log`) is kept: history is never
/// dropped.
const OBSOLETE: &[&str] = &[
    "strangler_route_overrides",
    "strangler_route_usage",
    "strangler_cdc_source",
    "strangler_cdc_sinks",
    "strangler_cdc_partitions",
    "strangler_cdc_published",
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS strangler_schema_version (
        version BIGINT NOT NULL,
        migrated_at_ms BIGINT NOT NULL,
        migrated_by TEXT NOT NULL)";

/// The audit log: a hash chain (see `audit.rs`); ids are given by the
/// writer under the write lock, so they have no gaps.
const AUDIT: &str = "CREATE TABLE IF NOT EXISTS strangler_audit (
        id BIGINT PRIMARY KEY,
        route TEXT NOT NULL,
        actor TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        reason TEXT NOT NULL,
        before_stage TEXT NOT NULL,
        before_percent DOUBLE PRECISION NOT NULL,
        after_stage TEXT NOT NULL,
        after_percent DOUBLE PRECISION NOT NULL,
        revision TEXT NOT NULL,
        fleet_revision TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL)";

/// Version 2: the endpoint inventory, one row per method and inferred
/// path template (`inventory.rs`; the histogram and times in `stats`).
const INVENTORY: &str = "CREATE TABLE IF NOT EXISTS strangler_inventory (
        method TEXT NOT NULL,
        template TEXT NOT NULL,
        requests BIGINT NOT NULL,
        stats TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (method, template))";

/// Tables both dialects write the same way.
const COMMON: &[&str] = &[
    AUDIT,
    "CREATE TABLE IF NOT EXISTS strangler_routes (
        route TEXT PRIMARY KEY,
        declared_stage TEXT NOT NULL,
        declared_percent DOUBLE PRECISION NOT NULL,
        stage TEXT NOT NULL,
        percent DOUBLE PRECISION NOT NULL,
        origin TEXT NOT NULL,
        why TEXT NOT NULL,
        revision TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS strangler_proxies (
        id TEXT PRIMARY KEY,
        revision TEXT NOT NULL,
        seen_at_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS strangler_shadow_stats (
        route TEXT PRIMARY KEY,
        stats TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
    // CDC positions, keyed by the stream they belong to (the source
    // cluster's system identifier and slot): lag is computed inside one.
    "CREATE TABLE IF NOT EXISTS strangler_cdc_source_positions (
        cluster TEXT NOT NULL,
        slot TEXT NOT NULL,
        direction TEXT NOT NULL,
        source_lsn BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (cluster, slot))",
    "CREATE TABLE IF NOT EXISTS strangler_usage (
        route TEXT NOT NULL,
        minute BIGINT NOT NULL,
        state_ms BIGINT NOT NULL,
        requests BIGINT NOT NULL,
        service_requests BIGINT NOT NULL,
        service_errors BIGINT NOT NULL,
        fallbacks BIGINT NOT NULL,
        PRIMARY KEY (route, minute, state_ms))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_published_positions (
        cluster TEXT NOT NULL,
        slot TEXT NOT NULL,
        lsn BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (cluster, slot))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_partition_positions (
        cluster TEXT NOT NULL,
        slot TEXT NOT NULL,
        direction TEXT NOT NULL,
        sink TEXT NOT NULL,
        source_table TEXT NOT NULL,
        target_table TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INT NOT NULL,
        applied_lsn BIGINT NOT NULL,
        caught_up INT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (cluster, slot, sink, topic, partition))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_reconnects (
        slot TEXT NOT NULL,
        part TEXT NOT NULL,
        count BIGINT NOT NULL,
        last_at_ms BIGINT NOT NULL,
        last_error TEXT NOT NULL,
        PRIMARY KEY (slot, part))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_snapshots (
        slot TEXT PRIMARY KEY,
        done_at_ms BIGINT NOT NULL)",
    // Kafka: where a published snapshot stands (`published_snapshot.rs`).
    "CREATE TABLE IF NOT EXISTS strangler_cdc_published_snapshots (
        slot TEXT PRIMARY KEY,
        consistent_lsn BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_published_chunks (
        slot TEXT NOT NULL,
        source_table TEXT NOT NULL,
        after_key TEXT,
        complete INT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (slot, source_table))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_applied_positions (
        cluster TEXT NOT NULL,
        slot TEXT NOT NULL,
        direction TEXT NOT NULL,
        sink TEXT NOT NULL,
        source_table TEXT NOT NULL,
        target_table TEXT NOT NULL,
        applied_lsn BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (cluster, slot, sink, source_table))",
];

/// The tables of [`CURRENT`] for `backend`, in order.
fn statements(backend: Backend) -> Vec<String> {
    let mut out: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
    out.push(INVENTORY.into());
    out.push(
        "CREATE INDEX IF NOT EXISTS strangler_audit_route ON strangler_audit (route, id)".into(),
    );
    // The audit log is append-only: an UPDATE or DELETE is refused (whoever
    // drops the trigger first is still caught by the hash chain).
    out.extend(append_only(backend));
    out
}

/// The statements that keep the audit log append-only, run when the store
/// is opened: they do nothing when the triggers are in place, and put them
/// back when someone dropped them.
fn append_only(backend: Backend) -> Vec<String> {
    match backend {
        Backend::Sqlite => ["UPDATE", "DELETE"]
            .map(|op| {
                format!(
                    "CREATE TRIGGER IF NOT EXISTS strangler_audit_no_{} BEFORE {op} ON strangler_audit \
                     BEGIN SELECT RAISE(ABORT, 'strangler_audit is append-only'); END",
                    op.to_lowercase()
                )
            })
            .to_vec(),
        Backend::Postgres => vec![
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE t.tgname = 'strangler_audit_append_only' AND c.oid = 'strangler_audit'::regclass) THEN \
             CREATE OR REPLACE FUNCTION strangler_audit_append_only() RETURNS trigger \
             LANGUAGE plpgsql AS $f$ BEGIN RAISE EXCEPTION 'strangler_audit is append-only'; END $f$; \
             CREATE TRIGGER strangler_audit_append_only BEFORE UPDATE OR DELETE ON strangler_audit \
             FOR EACH ROW EXECUTE FUNCTION strangler_audit_append_only(); END IF; END $$"
                .to_string(),
        ],
    }
}

/// What the store's schema is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No strangler tables at all.
    Empty,
    /// Tables at this version (0: from before versioning).
    At(i64),
}

async fn found(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<Found, StoreError> {
    let tables: Vec<String> = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'strangler\\_%' ESCAPE '\\'")
                .fetch_all(&mut *conn)
                .await?
        }
        Backend::Postgres => {
            sqlx::query_scalar("SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'strangler\\_%'")
                .fetch_all(&mut *conn)
                .await?
        }
    };
    if tables.is_empty() {
        return Ok(Found::Empty);
    }
    if !tables.iter().any(|t| t == "strangler_schema_version") {
        return Ok(Found::At(0));
    }
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM strangler_schema_version")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Found::At(v.unwrap_or(0)))
}

/// Takes the lock that serializes schema changes (PostgreSQL; SQLite's
/// write transaction is one already).
async fn lock(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7395562000)")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// PostgreSQL: creates the schema `[state] schema` names (the first of
/// the `search_path`) when it does not exist yet.
async fn own_schema(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<(), StoreError> {
    if backend != Backend::Postgres {
        return Ok(());
    }
    let current: Option<String> = sqlx::query_scalar("SELECT CAST(current_schema() AS TEXT)")
        .fetch_one(&mut *conn)
        .await?;
    if current.is_some() {
        return Ok(());
    }
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut *conn)
        .await?;
    let first = path
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    if !first.is_empty() && !first.starts_with('$') {
        sqlx::query(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            first.replace('"', "\"\"")
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn run(conn: &mut sqlx::AnyConnection, sqls: &[String]) -> Result<(), StoreError> {
    for sql in sqls {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A connection in a transaction that holds the write lock from its start
/// (SQLite: `BEGIN IMMEDIATE`, so two processes opening a new store wait
/// for each other instead of failing on a stale read; PostgreSQL: the
/// advisory lock of [`lock`]), in the store's own schema.
async fn begin_exclusive(
    pool: &AnyPool,
    backend: Backend,
) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
    if backend == Backend::Sqlite {
        // journal_mode cannot change inside a transaction; it persists in the file.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(pool)
            .await?;
    }
    let mut conn = pool.acquire().await?;
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    sqlx::query(begin).execute(&mut *conn).await?;
    let ready = async {
        lock(&mut conn, backend).await?;
        own_schema(&mut conn, backend).await
    }
    .await;
    if let Err(e) = ready {
        return end(&mut conn, Err(e)).await;
    }
    Ok(conn)
}

/// Commits when `done` is `Ok`, else rolls back; the connection goes back
/// to the pool outside any transaction.
async fn end<T>(
    conn: &mut sqlx::AnyConnection,
    done: Result<T, StoreError>,
) -> Result<T, StoreError> {
    let finish = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
    sqlx::query(finish).execute(&mut *conn).await?;
    done
}

/// Opens the store: creates it when empty, puts the append-only triggers
/// back, and refuses any version but [`CURRENT`].
pub(super) async fn open(pool: &AnyPool, backend: Backend, url: &str) -> Result<(), StoreError> {
    let mut tx = begin_exclusive(pool, backend).await?;
    let done = async {
        match found(&mut tx, backend).await? {
            Found::Empty => {
                run(&mut tx, &statements(backend)).await?;
                run(&mut tx, &[VERSION_TABLE.to_string()]).await?;
                record(&mut tx, CURRENT, "created").await?;
            }
            Found::At(v) if v == CURRENT => run(&mut tx, &append_only(backend)).await?,
            Found::At(v) if v < CURRENT => {
                return Err(StoreError::Schema(format!(
                    "state store {url} has schema version {v}; this strangler needs version {CURRENT}: run `strangler migrate` once (it upgrades the store in place; every proxy and command refuses the store until then)"
                )))
            }
            Found::At(v) => {
                return Err(StoreError::Schema(format!(
                    "state store {url} has schema version {v}, newer than this strangler's {CURRENT}: a newer strangler migrated it. Run that version (or a newer one) here; a store cannot be downgraded"
                )))
            }
        }
        Ok(())
    }
    .await;
    end(&mut tx, done).await
}

/// What `strangler migrate` did: the version found and the one left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: Found,
    pub to: i64,
}

/// Brings the store to [`CURRENT`] (`strangler migrate`): every migration
/// after the version found, in one transaction. A newer store is refused.
pub(super) async fn migrate(
    pool: &AnyPool,
    backend: Backend,
    url: &str,
    by: &str,
) -> Result<Migrated, StoreError> {
    let mut tx = begin_exclusive(pool, backend).await?;
    let done = async {
        let from = found(&mut tx, backend).await?;
        let at = match from {
            Found::Empty => 0,
            Found::At(v) if v > CURRENT => {
                return Err(StoreError::Schema(format!(
                    "state store {url} has schema version {v}, newer than this strangler's {CURRENT}: migrate it with that version (or a newer one)"
                )))
            }
            Found::At(v) => v,
        };
        if at < 1 {
            // 0 → 1: the current tables (those that exist are kept as they
            // are), the version table, and the tables of older layouts gone.
            run(&mut tx, &statements(backend)).await?;
            run(&mut tx, &[VERSION_TABLE.to_string()]).await?;
            let drops: Vec<String> = OBSOLETE
                .iter()
                .map(|t| format!("DROP TABLE IF EXISTS {t}"))
                .collect();
            run(&mut tx, &drops).await?;
            record(&mut tx, 1, by).await?;
        }
        if at < 2 {
            // 1 → 2: the endpoint inventory.
            run(&mut tx, &[INVENTORY.to_string()]).await?;
            record(&mut tx, 2, by).await?;
        }
        Ok(Migrated { from, to: CURRENT })
    }
    .await;
    end(&mut tx, done).await
}

async fn record(conn: &mut sqlx::AnyConnection, version: i64, by: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO strangler_schema_version (version, migrated_at_ms, migrated_by) VALUES ($1, $2, $3)")
        .bind(version)
        .bind(super::now_ms())
        .bind(by)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{StateStore, StoreError};
    use super::*;

    async fn sqlite(dir: &tempfile::TempDir) -> StateStore {
        StateStore::lazy(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("s.db").display()
        ))
        .expect("store")
    }

    #[tokio::test]
    async fn a_store_from_before_versioning_is_refused_until_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The layout of an older strangler: today's tables (some), one
        // obsolete table, no version.
        let old = sqlite(&dir).await;
        for sql in [
            COMMON[1],
            "CREATE TABLE strangler_route_overrides (route TEXT PRIMARY KEY, stage TEXT NOT NULL)",
            "INSERT INTO strangler_routes VALUES ('orders', 'canary', 10, 'canary', 10, 'file', '', 'r1', 0)",
        ] {
            sqlx::query(sql).execute(&old.pool).await.expect(sql);
        }
        old.close().await;

        let store = sqlite(&dir).await;
        let refused = store.ready().await.expect_err("an older schema is refused");
        assert!(
            matches!(&refused, StoreError::Schema(m) if m.contains("schema version 0") && m.contains("strangler migrate")),
            "{refused}"
        );
        let m = store.migrate("test").await.expect("migrate");
        assert_eq!(
            m,
            Migrated {
                from: Found::At(0),
                to: CURRENT
            }
        );
        store.close().await;

        let store = sqlite(&dir).await;
        store.ready().await.expect("the migrated store opens");
        let routes: i64 = sqlx::query_scalar("SELECT count(*) FROM strangler_routes")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(routes, 1, "migrating kept the rows");
        let obsolete: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE name = 'strangler_route_overrides'",
        )
        .fetch_one(&store.pool)
        .await
        .expect("count");
        assert_eq!(obsolete, 0);
        // Every table of this version exists: an audit write works.
        sqlx::query("SELECT count(*) FROM strangler_audit")
            .execute(&store.pool)
            .await
            .expect("audit table");
        // Migrating again does nothing.
        assert_eq!(
            store.migrate("test").await.expect("again"),
            Migrated {
                from: Found::At(CURRENT),
                to: CURRENT
            }
        );
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_by_every_use_and_by_migrate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        store.ready().await.expect("created");
        sqlx::query("INSERT INTO strangler_schema_version VALUES (3, 0, 'a newer strangler')")
            .execute(&store.pool)
            .await
            .expect("newer");
        store.close().await;
        let store = sqlite(&dir).await;
        let refused = store.ready().await.expect_err("newer refused");
        assert!(
            matches!(&refused, StoreError::Schema(m) if m.contains("schema version 3, newer than this strangler's 2")),
            "{refused}"
        );
        assert!(matches!(
            store.migrate("test").await,
            Err(StoreError::Schema(_))
        ));
    }

    #[tokio::test]
    async fn a_version_1_store_is_refused_then_migrated_to_2_keeping_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        store.ready().await.expect("created");
        // What version 1 left: no inventory table, version 1, a route row.
        for sql in [
            "DROP TABLE strangler_inventory",
            "DELETE FROM strangler_schema_version",
            "INSERT INTO strangler_schema_version VALUES (1, 0, 'strangler at version 1')",
            "INSERT INTO strangler_proxies VALUES ('p1', 'r1', 5)",
        ] {
            sqlx::query(sql).execute(&store.pool).await.expect(sql);
        }
        store.close().await;
        let store = sqlite(&dir).await;
        let refused = store.ready().await.expect_err("older refused");
        assert!(
            matches!(&refused, StoreError::Schema(m) if m.contains("schema version 1") && m.contains("strangler migrate")),
            "{refused}"
        );
        let done = store.migrate("test").await.expect("migrate");
        assert_eq!(
            done,
            Migrated {
                from: Found::At(1),
                to: 2
            }
        );
        store.ready().await.expect("usable after migrate");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM strangler_proxies")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(n, 1, "rows kept");
        let delta = crate::inventory::Templates::from([(
            ("GET".to_string(), "/a/{id}".to_string()),
            crate::inventory::Entry::one("/a/1", 200, 3, 100, 1),
        )]);
        store
            .merge_inventory(&delta)
            .await
            .expect("inventory usable");
    }

    #[tokio::test]
    async fn an_empty_store_is_created_at_the_current_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite(&dir).await;
        store.ready().await.expect("created");
        let v: i64 = sqlx::query_scalar("SELECT MAX(version) FROM strangler_schema_version")
            .fetch_one(&store.pool)
            .await
            .expect("version");
        assert_eq!(v, CURRENT);
    }
}
