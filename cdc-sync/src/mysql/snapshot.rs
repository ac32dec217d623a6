//! The initial snapshot: every captured table read inside one transaction
//! consistent with a binlog position, so streaming from that position
//! misses nothing and repeats nothing.
//!
//! MariaDB tells the position of a consistent snapshot without locks
//! (`binlog_snapshot_file` / `binlog_snapshot_position`, kept in step with
//! group commit). MySQL does not: there the position is read under
//! `FLUSH TABLES WITH READ LOCK`, held only while the snapshot transaction
//! starts (Debezium's `minimal` locking; it needs the `RELOAD` privilege).

use mysql_async::prelude::Queryable;

use super::columns::{ident, quoted, Shape};
use super::position::Position;
use super::record::{records, Source};
use super::value::From;
use crate::event::Op;
use crate::lsn::Lsn;
use crate::pipeline::{Destination, PipelineError, Progress, StatusReporter, BATCH};
use crate::source::{SourceConfig, SourceError};

/// Opens the snapshot transaction on `conn`: the binlog position it is
/// consistent with, and the GTID position there when the server has one.
pub async fn begin(
    conn: &mut mysql_async::Conn,
) -> Result<(Position, Option<String>), SourceError> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    if super::is_mariadb(conn).await? {
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await?;
        let rows: Vec<(String, String)> =
            conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
        let get = |name: &str| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let (Some(file), Some(pos)) =
            (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
        else {
            return Err(SourceError::Invalid(
                "MariaDB did not report binlog_snapshot_file/position: is binary logging on?"
                    .into(),
            ));
        };
        let pos: u64 = pos
            .parse()
            .map_err(|_| SourceError::Invalid(format!("binlog_snapshot_position {pos:?}")))?;
        let gtid: Option<String> = conn
            .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, pos))
            .await
            .ok()
            .flatten();
        Ok((Position { file, pos }, gtid))
    } else {
        conn.query_drop("FLUSH TABLES WITH READ LOCK").await?;
        let started = async {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await?;
            let p = super::current_position(conn).await?;
            let gtid: Option<String> = conn
                .query_first("SELECT @@GLOBAL.gtid_executed")
                .await
                .ok()
                .flatten();
            Ok::<_, SourceError>((p, gtid))
        }
        .await;
        conn.query_drop("UNLOCK TABLES").await?;
        started
    }
}

/// Takes the snapshot of `shapes` into `target` (after forgetting every
/// stored position when `reset`; else into the destinations without a
/// snapshot); returns the position it is consistent with.
pub async fn take(
    cfg: &SourceConfig,
    shapes: &[Shape],
    target: &mut dyn Destination,
    status: &dyn StatusReporter,
    progress: &mut Progress,
    on_progress: &mut impl FnMut(&Progress),
    reset: bool,
) -> Result<Position, PipelineError> {
    let mut conn = super::connect(&cfg.url).await?;
    // Rows stream to the client while batches are written to the target.
    conn.query_drop("SET SESSION net_write_timeout = 3600")
        .await
        .map_err(SourceError::from)?;
    let (at, gtid) = begin(&mut conn).await?;
    let consistent = at
        .lsn()
        .ok_or_else(|| SourceError::Invalid(format!("binlog file {} has no number", at.file)))?;
    tracing::info!(slot = %cfg.slot, position = %at, gtid = gtid.as_deref().unwrap_or("-"), "snapshot consistent with the binlog");
    if reset {
        target.reset().await?;
    }
    target.snapshot_begun(consistent).await?;
    let server_id: u32 = conn
        .query_first("SELECT @@server_id")
        .await
        .map_err(SourceError::from)?
        .unwrap_or(0);
    for shape in shapes {
        let name = shape.name();
        let estimate: Option<u64> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&shape.table.schema, &shape.table.table),
            )
            .await
            .map_err(SourceError::from)?
            .flatten();
        progress
            .snapshot_tables
            .entry(name.clone())
            .or_default()
            .expected = estimate.unwrap_or(0);
        progress.snapshot_expected += estimate.unwrap_or(0);
        // The baseline the sinks tell later schema changes from.
        let at_shape = crate::source::shape::At {
            prefix: &cfg.name,
            db: &shape.table.schema,
            commit_lsn: consistent,
            seq: 0,
            ts_ms: crate::now_ms(),
        };
        target
            .snapshot_shape(&shape.record("CREATE", &at_shape))
            .await?;
        let cols: Vec<String> = shape.columns.iter().map(|c| ident(&c.name)).collect();
        let sql = format!("SELECT {} FROM {}", cols.join(", "), quoted(&shape.table));
        let src = Source {
            name: &cfg.name,
            server_id,
            file: &at.file,
            pos: at.pos,
            row: 0,
            gtid: gtid.as_deref(),
            thread: None,
            ts_ms: 0,
            snapshot: true,
        };
        let mut batch = Vec::with_capacity(BATCH);
        // The binary protocol: values typed as the binlog has them (a FLOAT
        // whole, not as the text protocol rounds it).
        let mut result = conn.exec_iter(sql, ()).await.map_err(SourceError::from)?;
        loop {
            let row = result.next().await.map_err(SourceError::from)?;
            let end = row.is_none();
            if let Some(row) = row {
                let vals = row.unwrap();
                let made = records(
                    shape,
                    Op::Read,
                    None,
                    Some(&vals),
                    From::Query,
                    &src,
                    (Lsn(0), 0),
                    &cfg.format,
                )
                .map_err(|e| SourceError::Invalid(format!("snapshot of {name}: {e}")))?;
                batch.extend(made);
            }
            if batch.len() >= BATCH || (end && !batch.is_empty()) {
                // Written while the rows stream on (the target is another
                // database): the next batch is read meanwhile by the server.
                target
                    .write(&batch, Lsn(0), false, progress, status)
                    .await?;
                progress.snapshot_rows += batch.len() as u64;
                progress
                    .snapshot_tables
                    .entry(name.clone())
                    .or_default()
                    .rows += batch.len() as u64;
                batch.clear();
                on_progress(progress);
            }
            if end {
                break;
            }
        }
        drop(result);
        target.snapshot_table_done(&name).await?;
        progress
            .snapshot_tables
            .entry(name.clone())
            .or_default()
            .done = true;
        on_progress(progress);
    }
    conn.query_drop("COMMIT").await.map_err(SourceError::from)?;
    target
        .write(&[], consistent, true, progress, status)
        .await?;
    status.snapshot_complete(&cfg.slot).await;
    target.confirmed(consistent, true, &cfg.slot, status).await;
    progress.confirmed = consistent;
    on_progress(progress);
    Ok(at)
}
