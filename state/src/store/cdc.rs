//! CDC positions in the state store: written by the CDC pipeline, read by
//! the router (lag-aware comparison) and `strangler status`.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{now_ms, StateStore, StoreError};
use crate::lag::{Direction, LagView, StreamKey, StreamLag, TableApplied};

impl StateStore {
    /// The source's current WAL position (written by the CDC source).
    pub async fn report_source_position(
        &self,
        stream: &StreamKey,
        lsn: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_source_positions (cluster, slot, direction, source_lsn, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cluster, slot) DO UPDATE SET \
             direction = excluded.direction, source_lsn = excluded.source_lsn, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&stream.cluster)
        .bind(&stream.slot)
        .bind(stream.direction.as_str())
        .bind(lsn)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The position a sink has applied of a source table (written by the
    /// sink); `tables` is (source table, target table).
    pub async fn report_applied_position(
        &self,
        stream: &StreamKey,
        sink: &str,
        (source_table, target_table): (&str, &str),
        lsn: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_applied_positions (cluster, slot, direction, sink, source_table, target_table, applied_lsn, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (cluster, slot, sink, source_table) DO UPDATE SET \
             direction = excluded.direction, target_table = excluded.target_table, \
             applied_lsn = excluded.applied_lsn, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&stream.cluster)
        .bind(&stream.slot)
        .bind(stream.direction.as_str())
        .bind(sink)
        .bind(source_table)
        .bind(target_table)
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
        stream: &StreamKey,
        sink: &str,
        tables: (&str, &str),
        partition: (&str, i32),
        at: (i64, bool),
    ) -> Result<(), StoreError> {
        self.write_partition(stream, sink, tables, partition, at, true)
            .await
    }

    /// Kafka: a partition of a table's topic exists. Recorded at position 0
    /// (not caught up) unless a worker has reported it: a partition nobody
    /// reported yet holds its table back.
    pub async fn seed_partition(
        &self,
        stream: &StreamKey,
        sink: &str,
        tables: (&str, &str),
        partition: (&str, i32),
    ) -> Result<(), StoreError> {
        self.write_partition(stream, sink, tables, partition, (0, false), false)
            .await
    }

    /// A partition's row: written, or (`overwrite` false) only when there
    /// is none yet.
    async fn write_partition(
        &self,
        stream: &StreamKey,
        sink: &str,
        (source_table, target_table): (&str, &str),
        (topic, partition): (&str, i32),
        (lsn, caught_up): (i64, bool),
        overwrite: bool,
    ) -> Result<(), StoreError> {
        let on_conflict = if overwrite {
            "DO UPDATE SET direction = excluded.direction, source_table = excluded.source_table, \
             target_table = excluded.target_table, applied_lsn = excluded.applied_lsn, \
             caught_up = excluded.caught_up, updated_at_ms = excluded.updated_at_ms"
        } else {
            "DO NOTHING"
        };
        sqlx::query(&format!(
            "INSERT INTO strangler_cdc_partition_positions (cluster, slot, direction, sink, source_table, target_table, topic, partition, applied_lsn, caught_up, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (cluster, slot, sink, topic, partition) {on_conflict}"
        ))
        .bind(&stream.cluster)
        .bind(&stream.slot)
        .bind(stream.direction.as_str())
        .bind(sink)
        .bind(source_table)
        .bind(target_table)
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

    /// Forgets what CDC recorded about `slot` (`cdc teardown`): every
    /// position, reconnect and snapshot mark; with `sink`, only that sink's
    /// applied positions. Returns the rows removed.
    pub async fn forget_cdc(&self, slot: &str, sink: Option<&str>) -> Result<u64, StoreError> {
        self.ready().await?;
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        let (tables, by_sink): (&[&str], bool) = match sink {
            Some(_) => (
                &[
                    "strangler_cdc_applied_positions",
                    "strangler_cdc_partition_positions",
                ],
                true,
            ),
            None => (
                &[
                    "strangler_cdc_source_positions",
                    "strangler_cdc_published_positions",
                    "strangler_cdc_partition_positions",
                    "strangler_cdc_applied_positions",
                    "strangler_cdc_reconnects",
                    "strangler_cdc_snapshots",
                    "strangler_cdc_published_snapshots",
                    "strangler_cdc_published_chunks",
                ],
                false,
            ),
        };
        for table in tables {
            let sql = if by_sink {
                format!("DELETE FROM {table} WHERE slot = $1 AND sink = $2")
            } else {
                format!("DELETE FROM {table} WHERE slot = $1")
            };
            let mut q = sqlx::query(&sql).bind(slot);
            if by_sink {
                q = q.bind(sink.unwrap_or_default());
            }
            n += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(n)
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
    pub async fn report_published(&self, stream: &StreamKey, lsn: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_published_positions (cluster, slot, lsn, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (cluster, slot) DO UPDATE SET lsn = excluded.lsn, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&stream.cluster)
        .bind(&stream.slot)
        .bind(lsn)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Kafka: the cluster and last published position of `slot` (the
    /// newest report when slots of two clusters share the name).
    pub async fn published(&self, slot: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT cluster, lsn FROM strangler_cdc_published_positions WHERE slot = $1 ORDER BY updated_at_ms DESC LIMIT 1",
        )
        .bind(slot)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    /// Whether a complete snapshot of `slot` was published.
    pub async fn cdc_snapshot_done(&self, slot: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM strangler_cdc_snapshots WHERE slot = $1")
            .bind(slot)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The latest positions of every stream: its source's position and,
    /// per (source table, target table), the lowest position applied by
    /// any sink or Kafka partition of that stream.
    pub async fn lag_view(&self) -> Result<LagView, StoreError> {
        let mut streams: BTreeMap<StreamKey, StreamLag> = BTreeMap::new();
        let key = |r: &sqlx::any::AnyRow| -> Result<StreamKey, StoreError> {
            let d: String = r.try_get("direction")?;
            Ok(StreamKey {
                cluster: r.try_get("cluster")?,
                slot: r.try_get("slot")?,
                direction: Direction::parse(&d).unwrap_or(Direction::Forward),
            })
        };
        let sources = sqlx::query(
            "SELECT cluster, slot, direction, source_lsn, updated_at_ms FROM strangler_cdc_source_positions",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &sources {
            let k = key(r)?;
            streams.insert(
                k.clone(),
                StreamLag {
                    key: k,
                    source: Some((r.try_get("source_lsn")?, r.try_get("updated_at_ms")?)),
                    tables: Vec::new(),
                },
            );
        }
        // Embedded sinks report per table; Kafka sink workers per partition
        // (a table is as far as its slowest partition).
        let applied = sqlx::query(
            "SELECT cluster, slot, direction, source_table, target_table, MIN(applied_lsn) AS applied FROM ( \
               SELECT cluster, slot, direction, source_table, target_table, applied_lsn FROM strangler_cdc_applied_positions \
               UNION ALL SELECT cluster, slot, direction, source_table, target_table, applied_lsn FROM strangler_cdc_partition_positions \
             ) positions GROUP BY cluster, slot, direction, source_table, target_table",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &applied {
            let k = key(r)?;
            streams
                .entry(k.clone())
                .or_insert_with(|| StreamLag {
                    key: k,
                    source: None,
                    tables: Vec::new(),
                })
                .tables
                .push(TableApplied {
                    source_table: r.try_get("source_table")?,
                    target_table: r.try_get("target_table")?,
                    applied: r.try_get("applied")?,
                });
        }
        // A table being copied again in chunks through Kafka is behind
        // until its copy completes, whatever its partitions applied (the
        // embedded sinks hold their reports back themselves).
        let copying = sqlx::query(
            "SELECT slot, source_table FROM strangler_cdc_published_chunks WHERE complete = 0",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &copying {
            let (slot, table): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            for s in streams
                .values_mut()
                .filter(|s| s.key.slot == slot && s.key.direction == Direction::Forward)
            {
                for t in s.tables.iter_mut().filter(|t| t.source_table == table) {
                    t.applied = 0;
                }
            }
        }
        Ok(LagView {
            streams: streams.into_values().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_partition_nobody_reported_holds_its_table_back() {
        let (_dir, store) = crate::store::temp_store().await;
        let stream = StreamKey {
            cluster: "c".into(),
            slot: "strangler".into(),
            direction: Direction::Forward,
        };
        let tables = ("public.ledger", "public.ledger");
        let topic = "shop.public.ledger";
        let applied = async || {
            let view = store.lag_view().await.expect("view");
            let lags = view.for_table("public.ledger");
            assert_eq!(lags.len(), 1, "{lags:?}");
            lags[0].applied
        };
        // Partitions 0 and 2 caught up; 1 (its worker died before it ever
        // reported) is known only to exist.
        for p in [0, 2] {
            store
                .report_partition(&stream, "svc", tables, (topic, p), (900, true))
                .await
                .expect("report");
        }
        for p in 0..3 {
            store
                .seed_partition(&stream, "svc", tables, (topic, p))
                .await
                .expect("seed");
        }
        assert_eq!(applied().await, 0, "the unreported partition holds it back");
        store
            .report_partition(&stream, "svc", tables, (topic, 1), (700, false))
            .await
            .expect("report");
        assert_eq!(applied().await, 700, "as far as its slowest partition");
        // Seeding again (another worker's rebalance) keeps what was reported.
        store
            .seed_partition(&stream, "svc", tables, (topic, 1))
            .await
            .expect("seed");
        assert_eq!(applied().await, 700);
        // Copied again in chunks through Kafka: behind until complete.
        store
            .report_partition(&stream, "svc", tables, (topic, 1), (900, true))
            .await
            .expect("report");
        assert_eq!(applied().await, 900);
        store
            .published_chunk("strangler", "public.ledger", None, false)
            .await
            .expect("chunk");
        assert_eq!(applied().await, 0, "a half-copied table is not caught up");
        store
            .published_chunk("strangler", "public.ledger", Some("[\"5\"]"), true)
            .await
            .expect("chunk");
        assert_eq!(applied().await, 900);
    }
}
