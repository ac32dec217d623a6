//! Table definitions, per dialect. Created when missing; never dropped.

use sqlx::AnyPool;

use super::{Backend, StoreError};

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

/// The statements for `backend`, in order.
fn statements(backend: Backend) -> Vec<String> {
    let mut out: Vec<String> = match backend {
        Backend::Sqlite => vec!["PRAGMA journal_mode = WAL".into()],
        // Two proxies starting at once must not race on CREATE TABLE.
        Backend::Postgres => vec!["SELECT pg_advisory_xact_lock(7395562000)".into()],
    };
    out.extend(COMMON.iter().map(|s| s.to_string()));
    out.push(
        "CREATE INDEX IF NOT EXISTS strangler_audit_route ON strangler_audit (route, id)".into(),
    );
    // The audit log is append-only: an UPDATE or DELETE is refused (whoever
    // drops the trigger first is still caught by the hash chain).
    match backend {
        Backend::Sqlite => out.extend(["UPDATE", "DELETE"].map(|op| {
            format!(
                "CREATE TRIGGER IF NOT EXISTS strangler_audit_no_{} BEFORE {op} ON strangler_audit \
                 BEGIN SELECT RAISE(ABORT, 'strangler_audit is append-only'); END",
                op.to_lowercase()
            )
        })),
        Backend::Postgres => out.extend([
            "CREATE OR REPLACE FUNCTION strangler_audit_append_only() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'strangler_audit is append-only'; END $$"
                .to_string(),
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'strangler_audit_append_only') THEN \
             CREATE TRIGGER strangler_audit_append_only BEFORE UPDATE OR DELETE ON strangler_audit \
             FOR EACH ROW EXECUTE FUNCTION strangler_audit_append_only(); END IF; END $$"
                .to_string(),
        ]),
    }
    out
}

pub(super) async fn create(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let (pragmas, tables): (Vec<String>, Vec<String>) = statements(backend)
        .into_iter()
        .partition(|s| s.starts_with("PRAGMA"));
    // journal_mode cannot change inside a transaction; it persists in the file.
    for sql in &pragmas {
        sqlx::query(sql).execute(pool).await?;
    }
    let mut tx = pool.begin().await?;
    for sql in &tables {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
