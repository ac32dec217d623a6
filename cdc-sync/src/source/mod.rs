//! The source: a PostgreSQL database read through logical replication.
//!
//! ```text
//!  regular session (sqlx)               replication session (pgwire-replication)
//!  ─ CREATE PUBLICATION if missing
//!                                       ─ CREATE_REPLICATION_SLOT … (SNAPSHOT 'export')
//!  ─ BEGIN REPEATABLE READ;                 ↳ consistent_point C, snapshot S
//!    SET TRANSACTION SNAPSHOT S;          (session kept idle: S stays valid)
//!    SELECT every table → op 'r' records
//!                                       ─ START_REPLICATION SLOT … LOGICAL 0/0
//!                                         → transactions committed after C, in order
//! ```
//!
//! Contract: the source emits whole transactions in commit order and is
//! told, through [`Stream::confirm`], how far they are durably taken; the
//! slot's confirmed position never moves past that, so a restart replays
//! everything not confirmed (at-least-once; sinks make it exactly-once in
//! effect). Transactions that carry a replication origin of ours (written
//! by a sink) are dropped here: reverse sync never loops.

pub mod chunk;
pub mod shape;
mod snapshot;
mod spill;
mod stream;

use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};
use strangler_config::{EventFormat, SourceKind, TableName};

pub use snapshot::{snapshot, SnapshotItem};
pub use stream::{Item, Large, Stream, Tx, PART};

use crate::lsn::Lsn;

/// Errors of the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The database failed.
    #[error("source database: {0}")]
    Database(#[from] sqlx::Error),
    /// The replication session failed.
    #[error("replication: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    /// The MySQL/MariaDB source failed ([`crate::mysql`]).
    #[error("MySQL source: {0}")]
    MySql(#[from] mysql_async::Error),
    /// The replication stream ended or stopped: the server went away.
    #[error("replication: {0}")]
    Ended(&'static str),
    /// pgoutput sent something this version cannot read.
    #[error(transparent)]
    Decode(#[from] crate::pgoutput::DecodeError),
    /// The side the snapshot is read for stopped taking it (its own error
    /// is the one to report).
    #[error("snapshot: the consumer went away")]
    ConsumerGone,
    /// Bad input, configuration or server answer.
    #[error("{0}")]
    Invalid(String),
    /// This process lost the slot's lease (`run/lease.rs`): it stops and
    /// stands by again.
    #[error("lease: {0}")]
    Lease(String),
    /// The slot is gone (or invalidated) while the destinations took
    /// changes from it (dropped, invalidated, or not carried over by a
    /// failover): the changes since their position cannot be read any more.
    #[error("replication slot {slot} is lost: the destinations took changes from it{}, but the source has no usable slot (dropped, invalidated, or not carried over by a failover of the monolith's primary). The way back: `strangler cdc snapshot` copies the tables again under a new slot (this process stands by meanwhile and resumes after it), then `strangler cdc verify` lists rows deleted on the source while no slot existed, which stay in the targets", applied_text(*applied))]
    SlotLost { slot: String, applied: Lsn },
}

impl SourceError {
    /// Whether reconnecting may succeed: connection lost or refused, the
    /// server restarting, the slot still held by a session that died, a
    /// serialization failure. Authentication, a missing table, a slot
    /// gone, bad data are not made right by waiting.
    pub fn is_retryable(&self) -> bool {
        use pgwire_replication::PgWireError as W;
        match self {
            SourceError::Database(e) => strangler_state::retry::sqlx_retryable(e),
            SourceError::MySql(e) => crate::mysql::retryable(e),
            SourceError::Replication(w) => match w {
                W::Io(_) | W::Task(_) => true,
                W::Server(m) => sqlstate_of(m).is_some_and(|c| {
                    // 55006: the slot is active (a crashed session not yet noticed).
                    strangler_state::retry::sqlstate_retryable(c) || c == "55006"
                }),
                W::Protocol(m) => m.contains("EOF") || m.contains("closed"),
                _ => false,
            },
            // A lost slot waits for the way back (`cdc snapshot`) without
            // a crash loop; `run` says what to do while it waits.
            SourceError::Ended(_) | SourceError::Lease(_) | SourceError::SlotLost { .. } => true,
            SourceError::Decode(_) | SourceError::ConsumerGone | SourceError::Invalid(_) => false,
        }
    }
}

fn applied_text(applied: Lsn) -> String {
    if applied.0 > 0 {
        format!(" (applied up to {applied})")
    } else {
        String::new()
    }
}

/// The SQLSTATE in a server error's text (`… (SQLSTATE 57P01)`).
fn sqlstate_of(message: &str) -> Option<&str> {
    let at = message.rfind("(SQLSTATE ")? + "(SQLSTATE ".len();
    message.get(at..at + 5)
}

/// What the source needs to know.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `postgres://user:password@host:port/db`.
    pub url: String,
    pub slot: String,
    pub publication: String,
    pub tables: Vec<TableName>,
    /// Logical name of the source: `topic_prefix` (`source.name` in events).
    pub name: String,
    /// How values are represented in events.
    pub format: EventFormat,
    /// Rows per table sampled by the snapshot for the check that follows
    /// it (0: none).
    pub check_rows: u32,
    /// Bytes of one transaction held in memory while it is read; the rest
    /// is spilled to a temporary file ([`DEFAULT_TX_MEMORY`]).
    pub tx_memory: usize,
    /// Rows per chunk of a chunked snapshot ([`chunk::CHUNK_ROWS`] by default).
    pub chunk_rows: usize,
    /// Source connections copying the initial snapshot at once.
    pub workers: usize,
    /// PostgreSQL or MySQL/MariaDB ([`crate::mysql`]).
    pub kind: SourceKind,
}

/// The default of [`SourceConfig::tx_memory`] (64 MiB).
pub const DEFAULT_TX_MEMORY: usize = 64 << 20;

/// The session settings every source session runs with: the text forms
/// [`crate::types::text`] reads (the snapshot's COPY and pgoutput's text
/// mode both write values with them).
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
];

impl SourceConfig {
    /// The forward source of `[cdc]`: the monolith's tables, events named
    /// after `topic_prefix`.
    pub fn from_config(cdc: &strangler_config::CdcConfig, url: String) -> SourceConfig {
        let name = match &cdc.transport {
            strangler_config::CdcTransport::Kafka { topic_prefix, .. }
            | strangler_config::CdcTransport::Embedded { topic_prefix } => topic_prefix.clone(),
        };
        SourceConfig {
            url,
            slot: cdc.source.slot.clone(),
            publication: cdc.source.publication.clone(),
            tables: cdc.source.tables.clone(),
            name,
            format: cdc.format,
            check_rows: cdc.source.verify_after_snapshot,
            tx_memory: cdc.source.transaction_memory,
            chunk_rows: cdc.source.snapshot_chunk_rows,
            workers: cdc.source.snapshot_workers,
            kind: cdc.source.kind,
        }
    }

    /// The database name (for `source.db`).
    pub fn db(&self) -> String {
        url::Url::parse(&self.url)
            .map(|u| u.path().trim_start_matches('/').to_string())
            .unwrap_or_default()
    }

    pub(crate) fn replication(&self) -> Result<pgwire_replication::ReplicationConfig, SourceError> {
        let u = url::Url::parse(&self.url)
            .map_err(|e| SourceError::Invalid(format!("source URL: {e}")))?;
        let host = u.host_str().unwrap_or("127.0.0.1").to_string();
        let user = if u.username().is_empty() {
            "postgres".to_string()
        } else {
            u.username().to_string()
        };
        let password = u.password().unwrap_or("").to_string();
        Ok(pgwire_replication::ReplicationConfig::new(
            host,
            user,
            password,
            self.db(),
            self.slot.clone(),
            self.publication.as_str(),
        )
        .with_port(u.port().unwrap_or(5432))
        .with_options(
            SESSION_SETTINGS
                .iter()
                .map(|(k, v)| format!("-c {k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .with_status_interval(Duration::from_millis(500))
        .with_application_name("strangler-cdc"))
    }
}

/// The state of the slot on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotState {
    pub confirmed: Lsn,
    pub active: bool,
    /// The server invalidated it (`wal_status = 'lost'`: it fell behind
    /// `max_slot_wal_keep_size`): its changes cannot be read any more.
    pub invalidated: bool,
}

/// Creates the publication when missing and adds missing tables to it.
pub async fn ensure_publication(
    conn: &mut PgConnection,
    cfg: &SourceConfig,
) -> Result<(), SourceError> {
    for t in &cfg.tables {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2)",
        )
        .bind(&t.schema)
        .bind(&t.table)
        .fetch_one(&mut *conn)
        .await?;
        if !exists {
            return Err(SourceError::Invalid(format!(
                "cdc.source.tables: table {t} does not exist in the source database"
            )));
        }
    }
    let quoted = |t: &TableName| {
        format!(
            "\"{}\".\"{}\"",
            t.schema.replace('"', "\"\""),
            t.table.replace('"', "\"\"")
        )
    };
    let publication = format!("\"{}\"", cfg.publication.replace('"', "\"\""));
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(&cfg.publication)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        let list: Vec<String> = cfg.tables.iter().map(quoted).collect();
        sqlx::query(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE {}",
            list.join(", ")
        ))
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    let present: Vec<(String, String)> =
        sqlx::query("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1")
            .bind(&cfg.publication)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    for t in &cfg.tables {
        if !present.iter().any(|(s, n)| *s == t.schema && *n == t.table) {
            // A table added to a running migration: in the same transaction,
            // a request to copy it in chunks, which the slot's reader finds
            // right after the table joins the stream — so its rows arrive
            // (and only its rows are copied) however the process stops.
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::query(&format!(
                "ALTER PUBLICATION {publication} ADD TABLE {}",
                quoted(t)
            ))
            .execute(&mut *tx)
            .await?;
            chunk::request(&mut tx, &cfg.slot, t).await?;
            tx.commit().await?;
            tracing::info!(table = %t, "table added to the publication: its rows are copied in chunks while streaming");
        }
    }
    Ok(())
}

/// The slot, if it exists.
pub async fn slot_state(
    conn: &mut PgConnection,
    slot: &str,
) -> Result<Option<SlotState>, SourceError> {
    let row = sqlx::query(
        "SELECT confirmed_flush_lsn::text, active, coalesce(wal_status = 'lost', false) FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => {
            let lsn: Option<String> = r.try_get(0)?;
            Some(SlotState {
                confirmed: lsn.as_deref().and_then(Lsn::parse).unwrap_or_default(),
                active: r.try_get(1)?,
                invalidated: r.try_get(2)?,
            })
        }
        None => None,
    })
}

/// Drops the slot (to take a new snapshot).
pub async fn drop_slot(conn: &mut PgConnection, slot: &str) -> Result<(), SourceError> {
    sqlx::query("SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active")
        .bind(slot)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Opens a regular session to the source.
pub async fn connect(cfg: &SourceConfig) -> Result<PgConnection, SourceError> {
    let mut c = PgConnection::connect(&cfg.url).await?;
    for (k, v) in SESSION_SETTINGS {
        sqlx::query(&format!("SET {k} = '{v}'"))
            .execute(&mut c)
            .await?;
    }
    Ok(c)
}

/// The cluster's system identifier: positions are only comparable with
/// positions of the same cluster.
pub async fn system_identifier(conn: &mut PgConnection) -> Result<String, SourceError> {
    Ok(
        sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The WAL the server keeps for `slot`: its current position minus the
/// slot's restart position (`None`: no such slot).
pub async fn retained_wal(conn: &mut PgConnection, slot: &str) -> Result<Option<u64>, SourceError> {
    let bytes: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await?;
    // An invalidated slot has no restart position: it retains nothing, and
    // is reported as lost instead.
    Ok(bytes.flatten().map(|b| b.max(0) as u64))
}

/// The source's current WAL position (for lag).
pub async fn current_lsn(conn: &mut PgConnection) -> Result<Lsn, SourceError> {
    let s: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Lsn::parse(&s).unwrap_or_default())
}
