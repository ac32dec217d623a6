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

mod apply;
mod chunked;
mod copy;
mod dead_letters;
mod destination;
mod evolve;
mod lanes;
mod mapping;
mod target;

use std::collections::HashMap;

use sqlx::{Connection, PgConnection, Row};
use strangler_config::TableMapping;

pub use copy::CopyJob;
pub use destination::Sinks;
pub use mapping::Mapped;
pub use target::{TargetColumn, TargetTable};

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
    /// A MySQL target failed (`mysql/sink.rs`; reverse sync into a MySQL
    /// monolith).
    #[error("sink {sink}: {source}")]
    MySql {
        sink: String,
        source: mysql_async::Error,
    },
    /// A schema change of a source table the target cannot follow
    /// (`evolve.rs`): the sink stops before the rows of the new shape.
    #[error("sink {sink}: table {table} changed on the source: {message}")]
    SchemaChange {
        sink: String,
        table: String,
        message: String,
    },
}

impl SinkError {
    /// Whether reconnecting and replaying may succeed (the database was
    /// unreachable, restarting, in a deadlock); a target schema that does
    /// not fit the mapping is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Database { source, .. } => strangler_state::retry::sqlx_retryable(source),
            SinkError::MySql { source, .. } => crate::mysql::retryable(source),
            SinkError::Schema { .. } | SinkError::SchemaChange { .. } => false,
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

impl Applied {
    fn add(&mut self, o: &Applied) {
        self.rows += o.rows;
        self.skipped += o.skipped;
        self.dead_letters += o.dead_letters;
    }
}

/// One sink: a target database and its table mappings.
pub struct Sink {
    pub name: String,
    /// The target database (more connections are opened: snapshot copies,
    /// lanes).
    url: String,
    /// Replication slot whose positions this sink tracks.
    slot: String,
    conn: PgConnection,
    /// By source table (`schema.table`).
    tables: HashMap<String, TargetTable>,
    /// Last applied commit position, as stored.
    position: Lsn,
    snapshot_done: bool,
    /// Dead letters also go to a dead-letter topic (Kafka): they are kept
    /// unpublished until [`Sink::mark_dead_letters_published`].
    publishes_dead_letters: bool,
    /// A target transaction is open across the parts of a large source
    /// transaction ([`Sink::apply_part`]).
    in_part: bool,
    /// Source tables being copied again in chunks: their applied position
    /// is not reported until the copy completes (the router's `cdc_lag`
    /// gate must not take a half-copied table for caught up).
    copying: std::collections::HashSet<String>,
    /// Connections beyond the first (`lanes.rs`).
    lanes: Vec<lanes::Lane>,
    /// No bookkeeping of this sink existed when it connected: a sink added
    /// to a running migration (`Sinks::adopt_new_sinks`).
    fresh: bool,
    /// Tables being copied in chunks for other sinks only (a sink added
    /// later): this sink skips those copies' rows (op `r` while streaming).
    skip_chunks: std::collections::HashSet<String>,
}

/// What is stored with the rows.
enum Bookkeeping<'a> {
    /// The source commit position (the embedded transport).
    Lsn {
        through: Lsn,
        snapshot_complete: bool,
    },
    /// A transport's own position ([`Position`]).
    Other(&'a dyn Position),
}

/// A position a transport stores with the rows, in the same transaction
/// (so a replay after a crash skips exactly what was applied): Kafka's
/// next offset per partition, for example.
#[async_trait::async_trait]
pub trait Position: Send + Sync {
    async fn store(&self, sink: &str, conn: &mut PgConnection) -> Result<(), sqlx::Error>;
}

const SETUP: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS strangler_cdc_offsets (
        sink TEXT NOT NULL,
        slot TEXT NOT NULL,
        lsn BIGINT NOT NULL,
        snapshot_done BOOLEAN NOT NULL DEFAULT false,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, slot))",
    "CREATE TABLE IF NOT EXISTS strangler_cdc_dead_letters (
        id BIGSERIAL PRIMARY KEY,
        sink TEXT NOT NULL,
        topic TEXT NOT NULL,
        key TEXT,
        value TEXT,
        reason TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT now())",
    // Rows from before it existed were published (or had no topic).
    "ALTER TABLE strangler_cdc_dead_letters ADD COLUMN IF NOT EXISTS published BOOLEAN NOT NULL DEFAULT true",
    // Where the slot was consistent when the snapshot began (`chunked.rs`:
    // an interrupted one resumes while the slot is still there).
    "ALTER TABLE strangler_cdc_offsets ADD COLUMN IF NOT EXISTS snapshot_lsn BIGINT NOT NULL DEFAULT 0",
    lanes::LANES_TABLE,
    evolve::SHAPES_TABLE,
    // Where a chunked snapshot stands (`chunked.rs`); also the tables an
    // initial snapshot finished.
    "CREATE TABLE IF NOT EXISTS strangler_cdc_chunked_snapshots (
        sink TEXT NOT NULL,
        slot TEXT NOT NULL,
        source_table TEXT NOT NULL,
        after_key TEXT,
        complete BOOLEAN NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, slot, source_table))",
];

/// The outcome of the last post-snapshot check, per sink and slot.
/// Runs bookkeeping DDL under a transaction-scoped advisory lock: workers
/// of one sink starting together would otherwise race on `CREATE TABLE IF
/// NOT EXISTS` (PostgreSQL answers one of them with a unique violation in
/// its catalog).
pub(crate) async fn setup_ddl(
    conn: &mut PgConnection,
    statements: &[&str],
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('strangler_cdc_setup'))")
        .execute(&mut *tx)
        .await?;
    for sql in statements {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await
}

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
        setup_ddl(&mut conn, SETUP).await.map_err(db)?;
        take_origin(&mut conn, name).await?;
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
        let fresh = row.is_none();
        let (position, snapshot_done) = match row {
            Some(r) => (
                Lsn::from_i64(r.try_get(0).map_err(db)?),
                r.try_get(1).map_err(db)?,
            ),
            None => (Lsn(0), false),
        };
        Ok(Sink {
            name: name.to_string(),
            url: url.to_string(),
            slot: slot.to_string(),
            conn,
            tables,
            position,
            snapshot_done,
            publishes_dead_letters: false,
            in_part: false,
            copying: std::collections::HashSet::new(),
            lanes: Vec::new(),
            fresh,
            skip_chunks: std::collections::HashSet::new(),
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

    /// Whether no bookkeeping of this sink existed when it connected.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Rows of chunked copies of `table` are for other sinks (`true`) or
    /// for this one too.
    pub fn set_skip_chunks(&mut self, table: &str, skip: bool) {
        if skip {
            self.skip_chunks.insert(table.to_string());
        } else {
            self.skip_chunks.remove(table);
        }
    }

    /// Whether rows of chunked copies of `table` are for other sinks.
    pub fn skip_chunks_of(&self, table: &str) -> bool {
        self.skip_chunks.contains(table)
    }

    /// A chunked copy's row meant for other sinks only.
    pub(crate) fn skips(&self, r: &crate::event::Record) -> bool {
        !self.skip_chunks.is_empty()
            && r.commit_lsn.0 > 0
            && self.skip_chunks.contains(&r.table)
            && r.value
                .as_ref()
                .and_then(|v| v.get("op"))
                .and_then(serde_json::Value::as_str)
                == Some("r")
    }

    /// The tables this sink takes: (source table, target table).
    pub fn tables(&self) -> impl Iterator<Item = (&str, String)> {
        self.tables
            .iter()
            .map(|(s, t)| (s.as_str(), t.mapping.target.to_string()))
    }

    /// The tables whose applied position may be reported: all but those
    /// being copied again in chunks.
    pub fn reported_tables(&self) -> impl Iterator<Item = (&str, String)> {
        self.tables().filter(|(s, _)| !self.copying.contains(*s))
    }

    /// Marks a source table as being copied again in chunks (or done).
    pub fn set_copying(&mut self, table: &str, on: bool) {
        if on {
            self.copying.insert(table.to_string());
        } else {
            self.copying.remove(table);
        }
    }

    /// Whether this sink writes source table `source`.
    pub fn maps(&self, source: &str) -> bool {
        self.tables.contains_key(source)
    }

    /// The table `source` is written to (`schema.table`).
    pub fn target_of(&self, source: &str) -> Option<String> {
        self.tables
            .get(source)
            .map(|t| t.mapping.target.to_string())
    }

    fn db(&self, source: sqlx::Error) -> SinkError {
        SinkError::Database {
            sink: self.name.clone(),
            source,
        }
    }

    /// Forgets the stored position (a new snapshot replaces everything).
    pub async fn reset(&mut self) -> Result<(), SinkError> {
        for table in ["strangler_cdc_offsets", "strangler_cdc_chunked_snapshots"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE sink = $1 AND slot = $2"
            ))
            .bind(&self.name)
            .bind(&self.slot)
            .execute(&mut self.conn)
            .await
            .map_err(|e| self.db(e))?;
        }
        self.position = Lsn(0);
        self.snapshot_done = false;
        // Every lane keeps its row, at nothing applied (`lanes.rs`).
        self.reset_lanes().await?;
        Ok(())
    }
}

/// Writes under the first origin of sink `name` no other session holds
/// (several Kafka workers, or several connections, of one sink write at
/// once; PostgreSQL lets one session at a time use an origin).
async fn take_origin(conn: &mut PgConnection, name: &str) -> Result<(), SinkError> {
    let db = db_err(name);
    let mut n = 0;
    loop {
        let origin = crate::origin::name_of_session(name, n);
        let create = format!(
            "SELECT pg_replication_origin_create('{o}') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = '{o}')",
            o = origin.replace('\'', "''")
        );
        setup_ddl(conn, &[&create]).await.map_err(&db)?;
        match sqlx::query("SELECT pg_replication_origin_session_setup($1)")
            .bind(&origin)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && n + 1 < crate::origin::MAX_SESSIONS =>
            {
                n += 1;
            }
            Err(e) => return Err(db(e)),
        }
    }
}

/// A connection of sink `name` to `url` ready to write: UTC, under a
/// replication origin of the sink.
async fn session(name: &str, url: &str) -> Result<PgConnection, SinkError> {
    let db = db_err(name);
    let mut conn = PgConnection::connect(url).await.map_err(&db)?;
    sqlx::query("SET TimeZone = 'UTC'")
        .execute(&mut conn)
        .await
        .map_err(&db)?;
    take_origin(&mut conn, name).await?;
    Ok(conn)
}
