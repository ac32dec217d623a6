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

    /// Kafka: what a sink worker has applied on one partition of a table's
    /// topic — everything the source published when `caught_up` (its
    /// consumer position is the partition's high watermark), else the
    /// commit position of the last record applied.
    pub async fn report_partition(
        &self,
        sink: &str,
        source_table: &str,
        (topic, partition): (&str, i32),
        lsn: i64,
        caught_up: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_partitions (sink, source_table, topic, partition, applied_lsn, caught_up, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sink, topic, partition) DO UPDATE SET \
             source_table = excluded.source_table, applied_lsn = excluded.applied_lsn, \
             caught_up = excluded.caught_up, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(sink)
        .bind(source_table)
        .bind(topic)
        .bind(partition)
        .bind(lsn)
        .bind(i32::from(caught_up))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that a CDC part (`pipeline`, `source`, `sink`) of `slot`
    /// reconnected after `error`.
    pub async fn record_cdc_reconnect(
        &self,
        slot: &str,
        part: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_reconnects (slot, part, count, last_at_ms, last_error) VALUES ($1, $2, 1, $3, $4) \
             ON CONFLICT (slot, part) DO UPDATE SET count = strangler_cdc_reconnects.count + 1, \
             last_at_ms = excluded.last_at_ms, last_error = excluded.last_error",
        )
        .bind(slot)
        .bind(part)
        .bind(now_ms())
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reconnects of `slot`'s parts: (part, count, last at ms, last error).
    pub async fn cdc_reconnects(
        &self,
        slot: &str,
    ) -> Result<Vec<(String, i64, i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT part, count, last_at_ms, last_error FROM strangler_cdc_reconnects WHERE slot = $1 ORDER BY part",
        )
        .bind(slot)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
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
        // Embedded sinks report per table; Kafka sink workers per partition
        // (a table is as far as its slowest partition).
        let rows = sqlx::query(
            "SELECT source_table, MIN(applied_lsn) FROM ( \
               SELECT source_table, applied_lsn FROM strangler_cdc_sinks \
               UNION ALL SELECT source_table, applied_lsn FROM strangler_cdc_partitions \
             ) positions GROUP BY source_table",
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
