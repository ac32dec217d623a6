//! CDC positions in the state store: written by the CDC pipeline, read by
//! the router (lag-aware comparison) and `strangler status`.

use std::collections::HashMap;

use sqlx::Row;

use super::{now_ms, StateStore, StoreError};
use crate::lag::LagView;

impl StateStore {
    /// The source's current WAL position (written by the CDC source).
    pub async fn report_source_position(&self, slot: &str, lsn: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_source (slot, source_lsn, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (slot) DO UPDATE SET source_lsn = excluded.source_lsn, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(slot)
        .bind(lsn)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The position a sink has applied for a source table (written by the sink).
    pub async fn report_applied_position(
        &self,
        sink: &str,
        source_table: &str,
        lsn: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_sinks (sink, source_table, applied_lsn, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sink, source_table) DO UPDATE SET applied_lsn = excluded.applied_lsn, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(sink)
        .bind(source_table)
        .bind(lsn)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a complete snapshot of `slot` was published (Kafka transport).
    pub async fn mark_cdc_snapshot(&self, slot: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_snapshots (slot, done_at_ms) VALUES ($1, $2) ON CONFLICT (slot) DO UPDATE SET done_at_ms = excluded.done_at_ms",
        )
        .bind(slot)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Kafka: the source's position acknowledged by the broker.
    pub async fn report_published(&self, slot: &str, lsn: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_published (slot, lsn, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (slot) DO UPDATE SET lsn = excluded.lsn, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(slot)
        .bind(lsn)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Kafka: the last published position of `slot`.
    pub async fn published(&self, slot: &str) -> Result<Option<i64>, StoreError> {
        let lsn: Option<i64> =
            sqlx::query_scalar("SELECT lsn FROM strangler_cdc_published WHERE slot = $1")
                .bind(slot)
                .fetch_optional(&self.pool)
                .await?;
        Ok(lsn)
    }

    /// Whether a complete snapshot of `slot` was published.
    pub async fn cdc_snapshot_done(&self, slot: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM strangler_cdc_snapshots WHERE slot = $1")
            .bind(slot)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The latest positions: the newest source report and, per source
    /// table, the lowest position applied by any sink.
    pub async fn lag_view(&self) -> Result<LagView, StoreError> {
        let source = sqlx::query("SELECT source_lsn, updated_at_ms FROM strangler_cdc_source ORDER BY updated_at_ms DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok::<_, sqlx::Error>((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?)))
            .transpose()?;
        let rows = sqlx::query(
            "SELECT source_table, MIN(applied_lsn) FROM strangler_cdc_sinks GROUP BY source_table",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut applied = HashMap::new();
        for r in &rows {
            applied.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?);
        }
        Ok(LagView { source, applied })
    }
}
