//! Kafka's side of exactly-once in effect. Per partition the target
//! database stores, with the rows they brought (`strangler_cdc_kafka_offsets`):
//!
//! - the next offset: a record below it — a re-delivery after a crash or a
//!   rebalance — was applied before and is skipped;
//! - the source position (`commit_lsn`, `seq`) of the last record applied:
//!   along a partition it only grows, so a record the source published
//!   twice (replayed from the slot after a fault, at a new offset) is
//!   skipped too.
//!
//! The cache of stored values is dropped when the group's assignment
//! changes ([`PartitionOffsets::forget`]), so a partition that comes back
//! is read from the database again, never from an old copy.
//!
//! The database, not the group's committed offset, says where a partition
//! resumes: a batch that starts past the stored next offset (the consumer
//! was started at a committed offset ahead of what was applied) would
//! otherwise mark the records in between as applied without applying them.
//! [`PartitionOffsets::gaps`] finds such partitions; the worker seeks them
//! back to the stored offset.

use std::collections::HashMap;

use sqlx::PgConnection;

use crate::event::Record;
use crate::lsn::Lsn;
use crate::sink::{Applied, Position, Sink, SinkError};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS strangler_cdc_kafka_offsets (
    sink TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INT NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, topic, partition))";

/// Columns added after the first release (kept for tables that exist).
const COLUMNS: &[&str] = &[
    "ALTER TABLE strangler_cdc_kafka_offsets ADD COLUMN IF NOT EXISTS lsn BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE strangler_cdc_kafka_offsets ADD COLUMN IF NOT EXISTS seq BIGINT NOT NULL DEFAULT 0",
];

/// A consumed record: the record, its topic, partition and offset.
pub type ConsumedRecord = (Record, String, i32, i64);

/// What is stored for one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// Whether the database has a row for the partition.
    pub exists: bool,
    pub next_offset: i64,
    /// (`commit_lsn`, `seq`) of the last streamed record applied.
    pub position: (u64, u32),
}

/// The stored values of every partition a sink worker has seen.
#[derive(Debug, Default)]
pub struct PartitionOffsets {
    stored: HashMap<(String, i32), Stored>,
    table_ready: bool,
}

/// The offsets and positions a batch advances to, stored with its rows;
/// each with the next offset it was read at (compare-and-set: when another
/// worker moved the partition meanwhile, the batch is rolled back).
struct Advance(Vec<(String, i32, Stored, i64)>);

#[async_trait::async_trait]
impl Position for Advance {
    async fn store(&self, sink: &str, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for (topic, partition, s, read_at) in &self.0 {
            let done = sqlx::query(
                "INSERT INTO strangler_cdc_kafka_offsets (sink, topic, partition, next_offset, lsn, seq, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, now()) \
                 ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, \
                 lsn = excluded.lsn, seq = excluded.seq, updated_at = now() \
                 WHERE strangler_cdc_kafka_offsets.next_offset = $7",
            )
            .bind(sink)
            .bind(topic)
            .bind(partition)
            .bind(s.next_offset)
            .bind(i64::try_from(s.position.0).unwrap_or(i64::MAX))
            .bind(i64::from(s.position.1))
            .bind(read_at)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 0 {
                // Another worker applied this partition since it was read:
                // roll back; the worker resumes from what is stored.
                return Err(sqlx::Error::Io(std::io::Error::other(MovedOn(format!(
                    "{topic}[{partition}] moved on under another worker of the group; reading its offsets again"
                )))));
            }
        }
        Ok(())
    }
}

/// A batch lost the compare-and-set on a partition's stored offset: another
/// worker of the group applied it meanwhile (a rebalance moved it).
#[derive(Debug)]
pub struct MovedOn(String);

impl std::fmt::Display for MovedOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MovedOn {}

/// Whether `e` is a lost compare-and-set ([`MovedOn`]).
pub fn moved_on(e: &SinkError) -> bool {
    matches!(e, SinkError::Database { source: sqlx::Error::Io(io), .. }
        if io.get_ref().is_some_and(|x| x.is::<MovedOn>()))
}

/// Whether a record at `offset` with the source position of `r` was
/// applied before, given what is stored for its partition.
fn applied_before(stored: &Stored, r: &Record, offset: i64) -> bool {
    offset < stored.next_offset
        || (r.commit_lsn.0 > 0 && (r.commit_lsn.0, r.seq) <= stored.position)
}

impl PartitionOffsets {
    /// Forgets the cached values: the assignment changed, a partition that
    /// comes back may have moved on under another worker.
    pub fn forget(&mut self) {
        self.stored.clear();
    }

    async fn stored(
        &mut self,
        sink: &mut Sink,
        topic: &str,
        partition: i32,
    ) -> Result<Stored, SinkError> {
        if let Some(s) = self.stored.get(&(topic.to_string(), partition)) {
            return Ok(*s);
        }
        let name = sink.name.clone();
        let db = |source| SinkError::Database {
            sink: name.clone(),
            source,
        };
        let conn = sink.connection();
        if !self.table_ready {
            let mut ddl = vec![TABLE];
            ddl.extend_from_slice(COLUMNS);
            crate::sink::setup_ddl(conn, &ddl).await.map_err(db)?;
            self.table_ready = true;
        }
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT next_offset, lsn, seq FROM strangler_cdc_kafka_offsets WHERE sink = $1 AND topic = $2 AND partition = $3",
        )
        .bind(&name)
        .bind(topic)
        .bind(partition)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        let s = row.map_or(Stored::default(), |(o, l, q)| Stored {
            exists: true,
            next_offset: o,
            position: (u64::try_from(l).unwrap_or(0), u32::try_from(q).unwrap_or(0)),
        });
        self.stored.insert((topic.to_string(), partition), s);
        Ok(s)
    }

    /// The next offset stored with the rows for a partition, if any.
    pub async fn stored_next(
        &mut self,
        sink: &mut Sink,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, SinkError> {
        let s = self.stored(sink, topic, partition).await?;
        Ok(s.exists.then_some(s.next_offset))
    }

    /// Partitions whose first record in `records` lies past the stored
    /// next offset — records in between were never applied here — with the
    /// offset to resume them at. Their records must not be applied.
    pub async fn gaps(
        &mut self,
        sink: &mut Sink,
        records: &[ConsumedRecord],
    ) -> Result<Vec<(String, i32, i64)>, SinkError> {
        let mut first: Vec<(&str, i32, i64)> = Vec::new();
        for (_, topic, partition, offset) in records {
            if !first.iter().any(|(t, p, _)| t == topic && p == partition) {
                first.push((topic, *partition, *offset));
            }
        }
        let mut out = Vec::new();
        for (topic, partition, offset) in first {
            let s = self.stored(sink, topic, partition).await?;
            if s.exists && offset > s.next_offset {
                out.push((topic.to_string(), partition, s.next_offset));
            }
        }
        Ok(out)
    }

    /// Applies consumed records to `sink` and stores each partition's next
    /// offset and source position with them; records applied before (below
    /// the stored offset, or at or below the stored position) are skipped.
    pub async fn apply(
        &mut self,
        sink: &mut Sink,
        records: &[ConsumedRecord],
    ) -> Result<Applied, SinkError> {
        let mut next: HashMap<(String, i32), Stored> = HashMap::new();
        let mut read_at: HashMap<(String, i32), i64> = HashMap::new();
        let mut fresh = Vec::new();
        let mut skipped = 0;
        for (r, topic, partition, offset) in records {
            let key = (topic.clone(), *partition);
            let before = match next.get(&key) {
                Some(s) => *s,
                None => {
                    // What the database holds (as last read or written).
                    let s = self.stored(sink, topic, *partition).await?;
                    read_at.insert(key.clone(), s.next_offset);
                    s
                }
            };
            let n = next.entry(key).or_insert(before);
            n.next_offset = n.next_offset.max(offset + 1);
            if applied_before(&before, r, *offset) {
                skipped += 1;
                continue;
            }
            if r.commit_lsn.0 > 0 {
                n.position = n.position.max((r.commit_lsn.0, r.seq));
            }
            fresh.push(r);
        }
        if next.is_empty() {
            return Ok(Applied {
                skipped,
                ..Applied::default()
            });
        }
        let advance = Advance(
            next.iter()
                .map(|(k, s)| (k.0.clone(), k.1, *s, read_at.get(k).copied().unwrap_or(0)))
                .collect(),
        );
        let mut applied = match sink.apply_with(&fresh, &advance).await {
            Ok(a) => a,
            Err(e) => {
                // What was read may be stale: read it again next time.
                self.forget();
                return Err(e);
            }
        };
        self.stored.extend(next);
        applied.skipped = skipped;
        Ok(applied)
    }

    /// The next offset stored for a partition, if known.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.stored
            .get(&(topic.to_string(), partition))
            .map(|s| s.next_offset)
    }

    /// The source position last applied on each partition.
    pub fn positions(&self) -> impl Iterator<Item = (&str, i32, Lsn)> + '_ {
        self.stored
            .iter()
            .map(|((t, p), s)| (t.as_str(), *p, Lsn(s.position.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(lsn: u64, seq: u32) -> Record {
        Record {
            topic: "t".into(),
            table: "public.t".into(),
            key: None,
            value: None,
            commit_lsn: Lsn(lsn),
            seq,
            exact: None,
            schemas: None,
            shape: None,
        }
    }

    #[test]
    fn a_record_published_twice_is_applied_once() {
        let s = Stored {
            exists: true,
            next_offset: 10,
            position: (500, 3),
        };
        assert!(
            applied_before(&s, &rec(500, 3), 12),
            "the same event again, at a new offset"
        );
        assert!(applied_before(&s, &rec(400, 9), 13));
        assert!(
            !applied_before(&s, &rec(500, 4), 14),
            "the next event of that transaction"
        );
        assert!(!applied_before(&s, &rec(600, 0), 15));
        assert!(
            applied_before(&s, &rec(900, 0), 9),
            "below the stored offset"
        );
        assert!(
            !applied_before(&s, &rec(0, 0), 10),
            "snapshot records go by offset only"
        );
    }
}
