//! The sink: applies change events to a service's own database.
//!
//! Contract: delivery into the sink is at-least-once (a restart replays
//! from the slot's confirmed position); the sink makes it exactly-once in
//! effect by storing, in the same transaction as the rows, the commit
//! position of the last source transaction it applied
//! (`strangler_cdc_offsets`) and skipping anything at or below it.
//!
//! Writes run in a session with a replication origin
//! (`pg_replication_origin_session_setup`), so a source that reads this
//! database (reverse sync) recognizes and drops them: no ping-pong.
//!
//! An event that cannot be applied is rolled back alone (savepoint) and
//! written to `strangler_cdc_dead_letters` with the reason; the rest of the
//! batch goes on.

mod mapping;
mod target;

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};
use strangler_config::TableMapping;

pub use mapping::Mapped;
pub use target::TargetTable;

use crate::event::Record;
use crate::lsn::Lsn;
use crate::types::{Catalog, EventFormat};

/// Errors of a sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The database failed (retryable: reconnect and replay).
    #[error("sink {sink}: {source}")]
    Database { sink: String, source: sqlx::Error },
    /// The target schema does not fit the mapping (fatal until fixed).
    #[error("sink {sink}: {message}")]
    Schema { sink: String, message: String },
}

impl SinkError {
    /// Whether reconnecting and replaying may succeed (the database was
    /// unreachable, restarting, in a deadlock); a target schema that does
    /// not fit the mapping is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Database { source, .. } => strangler_state::retry::sqlx_retryable(source),
            SinkError::Schema { .. } => false,
        }
    }
}

/// What one `apply` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub rows: u64,
    pub skipped: u64,
    pub dead_letters: u64,
}

/// One sink: a target database and its table mappings.
pub struct Sink {
    pub name: String,
    /// Replication slot whose positions this sink tracks.
    slot: String,
    conn: PgConnection,
    /// By source table (`schema.table`).
    tables: HashMap<String, TargetTable>,
    /// Last applied commit position, as stored.
    position: Lsn,
    snapshot_done: bool,
    /// Next offset per consumed topic partition (Kafka transport).
    kafka_offsets: HashMap<(String, i32), i64>,
    /// Id of the newest dead letter seen.
    last_dead_letter: i64,
}

/// A stored dead letter: id, topic, key, value, reason.
type DeadLetterRow = (i64, String, Option<String>, Option<String>, String);

/// What is stored with the rows.
enum Bookkeeping {
    Lsn {
        through: Lsn,
        snapshot_complete: bool,
    },
    Kafka(Vec<(String, i32, i64)>),
}

const SETUP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS strangler_cdc_offsets (
        sink TEXT NOT NULL,
        slot TEXT NOT NULL,
        lsn BIGINT NOT NULL,
        snapshot_done BOOLEAN NOT NULL DEFAULT false,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, slot))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_kafka_offsets (
        sink TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INT NOT NULL,
        next_offset BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, topic, partition))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_dead_letters (
        id BIGSERIAL PRIMARY KEY,
        sink TEXT NOT NULL,
        topic TEXT NOT NULL,
        key TEXT,
        value TEXT,
        reason TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now())",
];

/// The outcome of the last post-snapshot check, per sink and slot.
pub const CHECKS_TABLE: &str = "CREATE TABLE IF NOT EXISTS strangler_cdc_checks (
    sink TEXT NOT NULL,
    slot TEXT NOT NULL,
    rows_checked BIGINT NOT NULL,
    rows_differing BIGINT NOT NULL,
    report TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, slot))";

/// Maps a database error of sink `name`.
fn db_err(name: &str) -> impl Fn(sqlx::Error) -> SinkError + '_ {
    move |source| SinkError::Database {
        sink: name.to_string(),
        source,
    }
}

/// Sets a record that cannot be applied aside, with the reason.
async fn dead_letter(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sink: &str,
    r: &Record,
    reason: &str,
) -> Result<(), SinkError> {
    tracing::warn!(sink, topic = %r.topic, reason, "event set aside to the dead-letter table");
    sqlx::query("INSERT INTO strangler_cdc_dead_letters (sink, topic, key, value, reason) VALUES ($1, $2, $3, $4, $5)")
        .bind(sink)
        .bind(&r.topic)
        .bind(r.key.as_ref().map(Value::to_string))
        .bind(r.value.as_ref().map(Value::to_string))
        .bind(reason)
        .execute(&mut **tx)
        .await
        .map_err(db_err(sink))?;
    Ok(())
}

/// The replication origin a sink writes under.
pub fn origin_name(sink: &str) -> String {
    format!("strangler_{sink}")
}

impl Sink {
    /// Connects, prepares the offset and dead-letter tables, sets up the
    /// replication origin and reads the target tables' shapes.
    pub async fn connect(
        name: &str,
        url: &str,
        slot: &str,
        mappings: &[TableMapping],
    ) -> Result<Sink, SinkError> {
        let db = |source| SinkError::Database {
            sink: name.to_string(),
            source,
        };
        let mut conn = PgConnection::connect(url).await.map_err(db)?;
        sqlx::query("SET TimeZone = 'UTC'")
            .execute(&mut conn)
            .await
            .map_err(db)?;
        for sql in SETUP {
            sqlx::query(sql).execute(&mut conn).await.map_err(db)?;
        }
        let origin = origin_name(name);
        sqlx::query("SELECT pg_replication_origin_create($1) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)")
            .bind(&origin)
            .execute(&mut conn)
            .await
            .map_err(db)?;
        sqlx::query("SELECT pg_replication_origin_session_setup($1)")
            .bind(&origin)
            .execute(&mut conn)
            .await
            .map_err(db)?;
        let catalog = Catalog::load(&mut conn).await.map_err(db)?;
        let mut tables = HashMap::new();
        for m in mappings {
            let t = TargetTable::load(&mut conn, m, &catalog, EventFormat::default())
                .await
                .map_err(|e| match e {
                    target::LoadError::Db(source) => db(source),
                    target::LoadError::Schema(message) => SinkError::Schema {
                        sink: name.to_string(),
                        message,
                    },
                })?;
            tables.insert(m.source.to_string(), t);
        }
        let row = sqlx::query(
            "SELECT lsn, snapshot_done FROM strangler_cdc_offsets WHERE sink = $1 AND slot = $2",
        )
        .bind(name)
        .bind(slot)
        .fetch_optional(&mut conn)
        .await
        .map_err(db)?;
        let (position, snapshot_done) = match row {
            Some(r) => (
                Lsn::from_i64(r.try_get(0).map_err(db)?),
                r.try_get(1).map_err(db)?,
            ),
            None => (Lsn(0), false),
        };
        let last_dead_letter: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(id), 0) FROM strangler_cdc_dead_letters WHERE sink = $1",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(db)?;
        Ok(Sink {
            name: name.to_string(),
            slot: slot.to_string(),
            conn,
            tables,
            position,
            snapshot_done,
            kafka_offsets: HashMap::new(),
            last_dead_letter,
        })
    }

    /// Reads events written under `format` (Debezium's representation
    /// options of the source; the default is Debezium's).
    pub fn with_format(mut self, format: EventFormat) -> Sink {
        for t in self.tables.values_mut() {
            t.format = format;
        }
        self
    }

    /// The last source commit applied here.
    pub fn position(&self) -> Lsn {
        self.position
    }

    pub fn snapshot_done(&self) -> bool {
        self.snapshot_done
    }

    /// Source tables this sink takes.
    pub fn source_tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    fn db(&self, source: sqlx::Error) -> SinkError {
        SinkError::Database {
            sink: self.name.clone(),
            source,
        }
    }

    /// Forgets the stored position (a new snapshot replaces everything).
    pub async fn reset(&mut self) -> Result<(), SinkError> {
        sqlx::query("DELETE FROM strangler_cdc_offsets WHERE sink = $1 AND slot = $2")
            .bind(&self.name)
            .bind(&self.slot)
            .execute(&mut self.conn)
            .await
            .map_err(|e| self.db(e))?;
        self.position = Lsn(0);
        self.snapshot_done = false;
        Ok(())
    }

    /// Applies whole source transactions ending at `through` (snapshot
    /// records carry `Lsn(0)`), and stores `through` with them.
    /// `snapshot_complete` marks the end of the initial snapshot.
    pub async fn apply(
        &mut self,
        records: &[Record],
        through: Lsn,
        snapshot_complete: bool,
    ) -> Result<Applied, SinkError> {
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| self.tables.contains_key(&r.table))
            .filter(|r| r.commit_lsn.0 == 0 || r.commit_lsn > self.position)
            .collect();
        let skipped = (records.len() - mine.len()) as u64;
        let new_position = through.max(self.position);
        if mine.is_empty() && new_position == self.position && !snapshot_complete {
            return Ok(Applied {
                skipped,
                ..Applied::default()
            });
        }
        let mut applied = self
            .apply_inner(
                &mine,
                Bookkeeping::Lsn {
                    through: new_position,
                    snapshot_complete,
                },
            )
            .await?;
        applied.skipped = skipped;
        Ok(applied)
    }

    /// Applies records consumed from Kafka and stores each partition's next
    /// offset with them; records below a stored offset were applied before
    /// (a replay after a crash or a rebalance) and are skipped.
    pub async fn apply_consumed(
        &mut self,
        records: &[(Record, String, i32, i64)],
    ) -> Result<Applied, SinkError> {
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        let mut mine = Vec::new();
        let mut skipped = 0;
        for (r, topic, partition, offset) in records {
            let stored = match self.kafka_offsets.get(&(topic.clone(), *partition)) {
                Some(o) => *o,
                None => {
                    let o: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM strangler_cdc_kafka_offsets WHERE sink = $1 AND topic = $2 AND partition = $3")
                        .bind(&self.name)
                        .bind(topic)
                        .bind(partition)
                        .fetch_optional(&mut self.conn)
                        .await
                        .map_err(|e| self.db(e))?;
                    self.kafka_offsets
                        .insert((topic.clone(), *partition), o.unwrap_or(0));
                    o.unwrap_or(0)
                }
            };
            if *offset < stored {
                skipped += 1;
                continue;
            }
            let n = next.entry((topic.clone(), *partition)).or_insert(0);
            *n = (*n).max(offset + 1);
            if self.tables.contains_key(&r.table) {
                mine.push(r);
            }
        }
        if next.is_empty() {
            return Ok(Applied {
                skipped,
                ..Applied::default()
            });
        }
        let offsets: Vec<(String, i32, i64)> =
            next.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
        let mut applied = self
            .apply_inner(&mine, Bookkeeping::Kafka(offsets.clone()))
            .await?;
        for (t, p, o) in offsets {
            self.kafka_offsets.insert((t, p), o);
        }
        applied.skipped = skipped;
        Ok(applied)
    }

    async fn apply_inner(
        &mut self,
        mine: &[&Record],
        book: Bookkeeping,
    ) -> Result<Applied, SinkError> {
        let mut applied = Applied::default();
        let mut tx = self.conn.begin().await.map_err(db_err(&self.name))?;
        // First try the batch as a whole, consecutive records of one table
        // and shape in one statement; on an error redo it event by event
        // under savepoints so only the bad event is set aside.
        let fast = {
            sqlx::query("SAVEPOINT batch")
                .execute(&mut *tx)
                .await
                .map_err(db_err(&self.name))?;
            let mut ok = true;
            let mut i = 0;
            while i < mine.len() && ok {
                let Some(t) = self.tables.get(&mine[i].table) else {
                    i += 1;
                    continue;
                };
                // A value that cannot be read: the slow path names it.
                let Ok((shape, first)) = mapping::shape(t, mine[i]) else {
                    ok = false;
                    break;
                };
                let mut rows = vec![first];
                let mut j = i + 1;
                while j < mine.len() && mine[j].table == mine[i].table {
                    match mapping::shape(t, mine[j]) {
                        Ok((s2, vals)) if s2 == shape => rows.push(vals),
                        _ => break,
                    }
                    j += 1;
                }
                let n = rows.len() as u64;
                let result = match &shape {
                    mapping::Shape::Upsert(cols) => {
                        mapping::upsert_batch(t, cols, rows).execute(&mut tx).await
                    }
                    mapping::Shape::Delete => mapping::delete_batch(t, rows).execute(&mut tx).await,
                    mapping::Shape::Truncate => match t.statement(mine[i]) {
                        Ok(Some(m)) => m.execute(&mut tx).await,
                        _ => Ok(()),
                    },
                    mapping::Shape::Nothing => Ok(()),
                };
                match result {
                    Ok(()) if shape != mapping::Shape::Nothing => applied.rows += n,
                    Ok(()) => {}
                    Err(e) => {
                        tracing::debug!(sink = %self.name, error = %e, "batch failed; applying event by event");
                        ok = false;
                    }
                }
                i = j;
            }
            ok
        };
        if !fast {
            applied.rows = 0;
            sqlx::query("ROLLBACK TO SAVEPOINT batch")
                .execute(&mut *tx)
                .await
                .map_err(db_err(&self.name))?;
            for r in mine {
                let Some(t) = self.tables.get(&r.table) else {
                    continue;
                };
                let m = match t.statement(r) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(reason) => {
                        dead_letter(&mut tx, &self.name, r, &reason).await?;
                        applied.dead_letters += 1;
                        continue;
                    }
                };
                sqlx::query("SAVEPOINT one")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err(&self.name))?;
                match m.execute(&mut tx).await {
                    Ok(()) => applied.rows += 1,
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT one")
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err(&self.name))?;
                        dead_letter(&mut tx, &self.name, r, &e.to_string()).await?;
                        applied.dead_letters += 1;
                    }
                }
            }
        }
        match book {
            Bookkeeping::Lsn {
                through,
                snapshot_complete,
            } => {
                let snapshot_done = self.snapshot_done || snapshot_complete;
                sqlx::query(
                    "INSERT INTO strangler_cdc_offsets (sink, slot, lsn, snapshot_done, updated_at) VALUES ($1, $2, $3, $4, now()) \
                     ON CONFLICT (sink, slot) DO UPDATE SET lsn = excluded.lsn, snapshot_done = excluded.snapshot_done, updated_at = now()",
                )
                .bind(&self.name)
                .bind(&self.slot)
                .bind(through.as_i64())
                .bind(snapshot_done)
                .execute(&mut *tx)
                .await
                .map_err(db_err(&self.name))?;
                tx.commit().await.map_err(db_err(&self.name))?;
                self.position = through;
                self.snapshot_done = snapshot_done;
            }
            Bookkeeping::Kafka(offsets) => {
                for (topic, partition, next) in offsets {
                    sqlx::query(
                        "INSERT INTO strangler_cdc_kafka_offsets (sink, topic, partition, next_offset, updated_at) VALUES ($1, $2, $3, $4, now()) \
                         ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()",
                    )
                    .bind(&self.name)
                    .bind(topic)
                    .bind(partition)
                    .bind(next)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err(&self.name))?;
                }
                tx.commit().await.map_err(db_err(&self.name))?;
            }
        }
        Ok(applied)
    }

    /// The id of the newest dead letter (to read the ones added after it).
    pub fn dead_letter_count(&self) -> i64 {
        self.last_dead_letter
    }

    /// Dead letters after id `after`: (topic, key, value, reason).
    pub async fn dead_letters_since(
        &mut self,
        after: i64,
    ) -> Result<Vec<(String, Option<String>, Option<String>, String)>, SinkError> {
        let rows: Vec<DeadLetterRow> =
            sqlx::query_as("SELECT id, topic, key, value, reason FROM strangler_cdc_dead_letters WHERE sink = $1 AND id > $2 ORDER BY id")
                .bind(&self.name)
                .bind(after)
                .fetch_all(&mut self.conn)
                .await
                .map_err(|e| self.db(e))?;
        if let Some(last) = rows.last() {
            self.last_dead_letter = last.0;
        }
        Ok(rows
            .into_iter()
            .map(|(_, t, k, v, r)| (t, k, v, r))
            .collect())
    }

    /// Dead letters kept so far.
    pub async fn dead_letters(&mut self) -> Result<i64, SinkError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM strangler_cdc_dead_letters WHERE sink = $1")
                .bind(&self.name)
                .fetch_one(&mut self.conn)
                .await
                .map_err(db_err(&self.name))?;
        Ok(n)
    }
}
