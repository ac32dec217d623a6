//! The source when the monolith runs on MySQL or MariaDB
//! (`[cdc.source] kind = "mysql"`): its row-based binlog read as a replica
//! would (`mysql_async`'s binlog stream), an initial snapshot consistent
//! with a binlog position, and the same destinations as PostgreSQL's —
//! embedded sinks or Kafka — fed through [`crate::pipeline::Destination`].
//!
//! ```text
//!  snapshot connection                        binlog connection (server_id)
//!  ─ START TRANSACTION WITH CONSISTENT SNAPSHOT
//!    binlog position P it is consistent with
//!    (MariaDB: binlog_snapshot_file/_position;
//!     MySQL: read under FLUSH TABLES WITH READ LOCK)
//!    SELECT every table → op 'r' records
//!  ─ COMMIT                                   COM_BINLOG_DUMP from P
//!                                             → transactions in commit order
//! ```
//!
//! Positions are binlog coordinates encoded as [`crate::lsn::Lsn`]s
//! ([`position`]): a transaction's records carry the coordinate of its end
//! (the XID event's end), each sink stores the last it committed with its
//! rows, and a restart reads the binlog again from the oldest position a
//! destination has — so nothing is lost and each sink skips what it has
//! (at-least-once reading, exactly-once effect), as with PostgreSQL. The
//! server must log rows in full with their column names:
//! `binlog_format = ROW`, `binlog_row_image = FULL`,
//! `binlog_row_metadata = FULL` (checked at start).
//!
//! Schema changes: a DDL statement naming a captured table makes the
//! reader read the table's shape again and put it in the stream as a
//! schema-change record (`ALTER`, each column with the PostgreSQL type it
//! takes in a service, [`columns::pg_type`]); the sinks carry it as they
//! do PostgreSQL's (`sink/evolve.rs`). Rows are read by the columns the
//! binlog names, so rows written before the change keep their shape.
//!
//! Transactions written by a session with `skip_replication = 1`
//! (MariaDB) are not read: the marker a writer back into the monolith
//! sets so its writes do not come back.

pub mod binlog;
pub mod columns;
pub mod position;
pub mod record;
pub mod rows;
pub mod run;
pub mod sink;
pub mod snapshot;
pub mod statement;
pub mod value;
pub mod verify;

use mysql_async::prelude::Queryable;

use crate::lsn::Lsn;
use crate::source::SourceError;
use position::Position;

/// A session with the MySQL source.
pub type Conn = mysql_async::Conn;

/// Whether reconnecting may succeed after `e`: the connection lost, the
/// server restarting or busy, a deadlock or lock wait, a query interrupted
/// by a shutdown. Access denied, a missing table or a purged binlog are
/// not made right by waiting.
pub fn retryable(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(d) => matches!(
            d,
            mysql_async::DriverError::ConnectionClosed | mysql_async::DriverError::PoolDisconnected
        ),
        mysql_async::Error::Server(s) => matches!(
            s.code,
            // too many connections, shutdown in progress, lock wait timeout,
            // deadlock, network errors, query interrupted, connection killed,
            // read only (a failover in progress), server gone
            1040 | 1053 | 1205 | 1213 | 1158..=1161 | 1317 | 1927 | 1290 | 2006 | 2013
        ),
        mysql_async::Error::Other(_) | mysql_async::Error::Url(_) => false,
    }
}

/// Opens a session: UTC (`TIMESTAMP` values read as the binlog has them),
/// UTF-8.
pub async fn connect(url: &str) -> Result<mysql_async::Conn, SourceError> {
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_string(),
    };
    let opts = mysql_async::Opts::from_url(&url)
        .map_err(|e| SourceError::Invalid(format!("source URL: {e}")))?;
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .tcp_keepalive(Some(std::time::Duration::from_secs(5)))
        .prefer_socket(false);
    let mut c = mysql_async::Conn::new(opts).await?;
    c.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
        .await?;
    Ok(c)
}

/// Whether the server is MariaDB (else MySQL).
pub async fn is_mariadb(conn: &mut mysql_async::Conn) -> Result<bool, SourceError> {
    let v: Option<String> = conn.query_first("SELECT VERSION()").await?;
    Ok(v.is_some_and(|v| v.contains("MariaDB")))
}

/// Checks the server logs what CDC needs; the error names each setting
/// to change.
pub async fn check_server(conn: &mut mysql_async::Conn) -> Result<(), SourceError> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
        .query_first("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image")
        .await?;
    let (log_bin, format, image) = row.unwrap_or_default();
    // Column names in the binlog (MySQL ≥ 8.0.1, MariaDB ≥ 10.5): rows
    // are read by the shape they were written with, across schema changes.
    let metadata: Option<String> = conn
        .query_first("SELECT @@GLOBAL.binlog_row_metadata")
        .await
        .ok()
        .flatten();
    let mut wrong = Vec::new();
    if !matches!(log_bin.as_deref(), Some("1" | "ON")) {
        wrong.push("log_bin is off (start the server with --log-bin)".to_string());
    }
    if !format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("ROW"))
    {
        wrong.push(format!(
            "binlog_format is {} (set it to ROW)",
            format.as_deref().unwrap_or("unknown")
        ));
    }
    if !image
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("FULL"))
    {
        wrong.push(format!(
            "binlog_row_image is {} (set it to FULL)",
            image.as_deref().unwrap_or("unknown")
        ));
    }
    // Compressed row events cannot be read (MariaDB's are event types the
    // reader does not know; MySQL's carry no positions).
    for (setting, what) in [
        ("log_bin_compress", "MariaDB's log_bin_compress"),
        (
            "binlog_transaction_compression",
            "MySQL's binlog_transaction_compression",
        ),
    ] {
        // Absent on the other server kind: an error, taken as off.
        let on: Option<mysql_async::Value> = conn
            .query_first(format!("SELECT @@GLOBAL.{setting}"))
            .await
            .ok()
            .flatten();
        let on = match on {
            Some(mysql_async::Value::Int(n)) => n != 0,
            Some(mysql_async::Value::UInt(n)) => n != 0,
            Some(mysql_async::Value::Bytes(b)) => b == b"1" || b.eq_ignore_ascii_case(b"ON"),
            _ => false,
        };
        if on {
            wrong.push(format!("{what} is on (turn it off)"));
        }
    }
    if !metadata
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("FULL"))
    {
        wrong.push(format!(
            "binlog_row_metadata is {} (set it to FULL; it needs MySQL 8.0.1 or MariaDB 10.5 or later)",
            metadata.as_deref().unwrap_or("missing")
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(SourceError::Invalid(format!(
            "the MySQL source cannot be read by CDC: {}",
            wrong.join("; ")
        )))
    }
}

/// The binlog files the server has, oldest first.
pub async fn binlog_files(conn: &mut mysql_async::Conn) -> Result<Vec<String>, SourceError> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| r.take::<String, _>(0))
        .collect())
}

/// Where the binlog ends now.
pub async fn current_position(conn: &mut mysql_async::Conn) -> Result<Position, SourceError> {
    // MySQL 8.4 renamed it; MariaDB and older MySQL know the old name.
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(r) => r,
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query_first("SHOW MASTER STATUS").await?
        }
        Err(e) => return Err(e.into()),
    };
    let mut row = row.ok_or_else(|| {
        SourceError::Invalid("SHOW MASTER STATUS returned nothing: binary logging is off".into())
    })?;
    let file: String = row.take(0).unwrap_or_default();
    let pos: u64 = row.take(1).unwrap_or_default();
    Ok(Position { file, pos })
}

/// The server's identity for positions: they are comparable only with
/// positions of the same server.
pub async fn server_identity(conn: &mut mysql_async::Conn) -> Result<String, SourceError> {
    let row: Option<(Option<String>, u64, Option<String>)> = conn
        .query_first("SELECT @@hostname, @@server_id, @@log_bin_basename")
        .await?;
    let (host, id, base) = row.unwrap_or_default();
    Ok(format!(
        "mysql:{}:{id}:{}",
        host.unwrap_or_default(),
        base.unwrap_or_default()
    ))
}

/// The current position as an [`Lsn`] (for lag).
pub async fn current_lsn(conn: &mut mysql_async::Conn) -> Result<Lsn, SourceError> {
    let p = current_position(conn).await?;
    p.lsn()
        .ok_or_else(|| SourceError::Invalid(format!("binlog file {} has no number", p.file)))
}
