//! Kafka's side of exactly-once in effect: each partition's next offset is
//! stored in the target database with the rows it brought
//! (`strangler_cdc_kafka_offsets`), and a record below it — a replay after
//! a crash or a rebalance — is skipped.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::event::Record;
use crate::sink::{Applied, Position, Sink, SinkError};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS strangler_cdc_kafka_offsets (
    sink TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INT NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, topic, partition))";

/// A consumed record: the record, its topic, partition and offset.
pub type ConsumedRecord = (Record, String, i32, i64);

/// The next offset of every partition a sink worker has seen.
#[derive(Debug, Default)]
pub struct PartitionOffsets {
    next: HashMap<(String, i32), i64>,
    table_ready: bool,
}

/// The offsets a batch advances to, stored with its rows.
struct Advance(Vec<(String, i32, i64)>);

#[async_trait::async_trait]
impl Position for Advance {
    async fn store(&self, sink: &str, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for (topic, partition, next) in &self.0 {
            sqlx::query(
                "INSERT INTO strangler_cdc_kafka_offsets (sink, topic, partition, next_offset, updated_at) VALUES ($1, $2, $3, $4, now()) \
                 ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()",
            )
            .bind(sink)
            .bind(topic)
            .bind(partition)
            .bind(next)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

impl PartitionOffsets {
    async fn stored(
        &mut self,
        sink: &mut Sink,
        topic: &str,
        partition: i32,
    ) -> Result<i64, SinkError> {
        if let Some(o) = self.next.get(&(topic.to_string(), partition)) {
            return Ok(*o);
        }
        let name = sink.name.clone();
        let db = |source| SinkError::Database {
            sink: name.clone(),
            source,
        };
        let conn = sink.connection();
        if !self.table_ready {
            sqlx::query(TABLE).execute(&mut *conn).await.map_err(db)?;
            self.table_ready = true;
        }
        let o: Option<i64> = sqlx::query_scalar(
            "SELECT next_offset FROM strangler_cdc_kafka_offsets WHERE sink = $1 AND topic = $2 AND partition = $3",
        )
        .bind(&name)
        .bind(topic)
        .bind(partition)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        let o = o.unwrap_or(0);
        self.next.insert((topic.to_string(), partition), o);
        Ok(o)
    }

    /// Applies consumed records to `sink` and stores each partition's next
    /// offset with them; records below a stored offset were applied before
    /// and are skipped.
    pub async fn apply(
        &mut self,
        sink: &mut Sink,
        records: &[ConsumedRecord],
    ) -> Result<Applied, SinkError> {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        let mut fresh = Vec::new();
        let mut skipped = 0;
        for (r, topic, partition, offset) in records {
            if *offset < self.stored(sink, topic, *partition).await? {
                skipped += 1;
                continue;
            }
            let n = next.entry((topic.clone(), *partition)).or_insert(0);
            *n = (*n).max(offset + 1);
            fresh.push(r);
        }
        if next.is_empty() {
            return Ok(Applied {
                skipped,
                ..Applied::default()
            });
        }
        let advance = Advance(next.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect());
        let mut applied = sink.apply_with(&fresh, &advance).await?;
        self.next.extend(next);
        applied.skipped = skipped;
        Ok(applied)
    }
}
