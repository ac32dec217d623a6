//! The binlog read as a replica reads it, in a task of its own that hands
//! whole transactions to the pipeline ([`read`]).
//!
//! ```text
//!  GTID (MariaDB 162 / MySQL) or Query BEGIN ─ opens a transaction
//!  TABLE_MAP + WRITE/UPDATE/DELETE_ROWS      ─ rows of captured tables → records
//!  XID, or Query COMMIT                      ─ ends it: Item::Tx at the XID's end position
//!  Query (DDL)                               ─ the shapes of the tables it names are read
//!                                              again; Item::Idle at its end
//!  HEARTBEAT (idle server)                   ─ Item::Idle at the binlog's end
//!  ROTATE                                    ─ the next file
//! ```
//!
//! A transaction that writes `strangler_cdc_offsets` (a reverse sink's
//! bookkeeping, `sink.rs`) or carries MariaDB's `skip_replication` flag is
//! dropped whole: reverse sync never comes back as a change.
//!
//! Everything the reader keeps between events lives in the task, so
//! nothing is lost when the pipeline is cancelled: the task just ends with
//! the channel.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;

use super::columns::{self, MyType, Shape};
use super::position::{clean_file_name, Position};
use super::record::{records, truncate, Source};
use super::rows::{members, values, Step};
use super::statement::{added_defaults, classify, names, Statement};
use super::value::From;
use crate::event::{Op, Record};
use crate::lsn::Lsn;
use crate::source::{SourceConfig, SourceError};

/// What the reader hands the pipeline.
#[derive(Debug)]
pub enum Item {
    /// A transaction touching captured tables, ending at `end`, committed
    /// at `ts_ms` — or, `parted`, the last part of a large one.
    Tx {
        records: Vec<Record>,
        end: Lsn,
        ts_ms: i64,
        parted: bool,
    },
    /// A part of a transaction with more than [`PART`] records (more
    /// follow, the last as `Tx { parted: true }`): memory stays bounded
    /// whatever its size. Its records carry `commit`.
    Part { records: Vec<Record>, commit: Lsn },
    /// A position with nothing to write (an idle server, a transaction of
    /// other tables, DDL, a transaction marked `skip_replication`).
    Idle(Lsn),
}

/// How often an idle server sends a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which the connection counts as lost.
const SILENCE: Duration = Duration::from_secs(15);
/// MariaDB's `LOG_EVENT_SKIP_REPLICATION_F`: written by a session with
/// `skip_replication = 1`.
const SKIP_REPLICATION: u16 = 0x8000;
/// MariaDB's GTID event.
const MARIADB_GTID: u8 = 162;

/// Records of one transaction handed over at once, at most.
pub const PART: usize = 5_000;

/// The transaction being read.
#[derive(Default)]
struct Open {
    records: Vec<Record>,
    gtid: Option<String>,
    skip: bool,
    /// Records made in it (the next `seq`).
    seq: u32,
    /// The position its records carry: where it began, plus one — beyond
    /// the end of every transaction before it, and at most its own end
    /// (known only at its XID), so a sink that stored either skips it on a
    /// replay and one that stored neither applies it.
    commit: Lsn,
    /// Parts of it were handed over already.
    parted: bool,
}

impl Open {
    /// A transaction whose first event is the one of `h` (ending at
    /// `end`).
    fn at(end: &Position, size: u32, gtid: Option<String>, skip: bool) -> Open {
        let start = end.pos.saturating_sub(u64::from(size));
        Open {
            gtid,
            skip,
            commit: Position {
                file: end.file.clone(),
                pos: start,
            }
            .lsn()
            .map_or(Lsn(0), |l| Lsn(l.0 + 1)),
            ..Open::default()
        }
    }
}

/// Reads the binlog from `from` until the channel closes (`Ok`) or the
/// stream fails.
pub async fn read(
    cfg: SourceConfig,
    server_id: u32,
    from: Position,
    shapes: Vec<Shape>,
    out: mpsc::Sender<Item>,
) -> Result<(), SourceError> {
    let mut shapes: HashMap<String, Shape> = shapes.into_iter().map(|s| (s.name(), s)).collect();
    // Shapes are read again on a session of their own.
    let mut catalog = super::connect(&cfg.url).await?;
    let mut conn = super::connect(&cfg.url).await?;
    let mariadb = super::is_mariadb(&mut conn).await?;
    if mariadb {
        // GTID events as they are (not rewritten as BEGIN).
        conn.query_drop("SET @mariadb_slave_capability = 4").await?;
    }
    let period_ns = HEARTBEAT.as_nanos() as u64;
    conn.query_drop(format!(
        "SET @master_heartbeat_period = {period_ns}, @source_heartbeat_period = {period_ns}"
    ))
    .await?;
    let request = mysql_async::BinlogStreamRequest::new(server_id)
        .with_filename(from.file.as_bytes())
        .with_pos(from.pos);
    let mut stream = conn.get_binlog_stream(request).await?;
    tracing::info!(slot = %cfg.slot, server_id, from = %from, "reading the binlog");
    let mut file = from.file.clone();
    let mut open: Option<Open> = None;
    loop {
        let ev = match tokio::time::timeout(SILENCE, stream.next()).await {
            Ok(Some(ev)) => ev?,
            Ok(None) => return Err(SourceError::Ended("the binlog stream ended")),
            Err(_) => {
                return Err(SourceError::Ended(
                    "the binlog stream was silent past its heartbeats",
                ))
            }
        };
        let h = ev.header();
        let at = |file: &str| Position {
            file: file.to_string(),
            pos: u64::from(h.log_pos()),
        };
        if h.event_type_raw() == MARIADB_GTID {
            let d = ev.data();
            let seq = d
                .get(0..8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
            let domain = d
                .get(8..12)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
            open = Some(Open::at(
                &at(&file),
                h.event_size(),
                Some(format!("{domain}-{}-{seq}", h.server_id())),
                h.flags_raw() & SKIP_REPLICATION != 0,
            ));
            continue;
        }
        let Some(data) = ev.read_data().map_err(|e| undecodable(&file, &e))? else {
            continue;
        };
        let mut ended: Option<Item> = None;
        match data {
            EventData::RotateEvent(r) => {
                file = clean_file_name(r.name_raw());
            }
            EventData::GtidEvent(g) => {
                let sid = g.sid();
                let uuid = format!(
                    "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                    sid[0], sid[1], sid[2], sid[3], sid[4], sid[5], sid[6], sid[7], sid[8], sid[9],
                    sid[10], sid[11], sid[12], sid[13], sid[14], sid[15]
                );
                open = Some(Open::at(
                    &at(&file),
                    h.event_size(),
                    Some(format!("{uuid}:{}", g.gno())),
                    false,
                ));
            }
            EventData::QueryEvent(q) => {
                let sql = q.query();
                match classify(&sql) {
                    Statement::Begin => {
                        if open.is_none() {
                            open = Some(Open::at(
                                &at(&file),
                                h.event_size(),
                                None,
                                h.flags_raw() & SKIP_REPLICATION != 0,
                            ));
                        }
                    }
                    // Only changes that could not be rolled back (tables
                    // of non-transactional engines) are logged before a
                    // ROLLBACK: they happened, as with COMMIT.
                    Statement::Commit | Statement::Rollback => {
                        ended = Some(finish(open.take(), at(&file), h.timestamp()));
                    }
                    Statement::Xa => {
                        return Err(SourceError::Invalid(format!(
                            "binlog {}: an XA transaction ({}): two-phase transactions are not read; commit without XA on the monolith, or leave these tables out of CDC",
                            at(&file),
                            sql.chars().take(60).collect::<String>()
                        )));
                    }
                    // Inside a transaction (a savepoint …) or alone (a
                    // grant …): nothing to carry.
                    Statement::Other => {
                        if open.is_none() {
                            ended = Some(Item::Idle(lsn(&at(&file))?));
                        }
                    }
                    kind @ (Statement::Ddl | Statement::Truncate) => {
                        // The tables it names are read again; their shapes
                        // (or, truncated, the truncation) go in the stream
                        // at the statement's place: each sink carries the
                        // change between the rows before and after it.
                        let schema = q.schema().into_owned();
                        let mut named =
                            reload_named(&mut catalog, &mut shapes, &schema, &sql).await?;
                        // A column's default in the record is the one the
                        // statement gave the rows already there, if any.
                        let added = added_defaults(&sql);
                        for s in &mut named {
                            for c in &mut s.columns {
                                c.default = added
                                    .iter()
                                    .find(|(n, _)| n.eq_ignore_ascii_case(&c.name))
                                    .map(|(_, d)| d.clone());
                            }
                        }
                        open = None;
                        let end = lsn(&at(&file))?;
                        let ts_ms = i64::from(h.timestamp()) * 1000;
                        let records: Vec<Record> = named
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                let at = crate::source::shape::At {
                                    prefix: &cfg.name,
                                    db: &s.table.schema,
                                    commit_lsn: end,
                                    seq: i as u32,
                                    ts_ms,
                                };
                                if kind == Statement::Truncate {
                                    truncate(s, &at, h.server_id(), &file)
                                } else {
                                    s.record("ALTER", &at)
                                }
                            })
                            .collect();
                        ended = Some(if records.is_empty() {
                            Item::Idle(end)
                        } else {
                            Item::Tx {
                                records,
                                end,
                                ts_ms,
                                parted: false,
                            }
                        });
                    }
                }
            }
            EventData::XidEvent(_) => {
                ended = Some(finish(open.take(), at(&file), h.timestamp()));
            }
            EventData::HeartbeatEvent if open.is_none() => {
                ended = Some(Item::Idle(lsn(&at(&file))?));
            }
            EventData::RowsEvent(rows) => {
                let Some(tme) = stream.get_tme(rows.table_id()) else {
                    return Err(SourceError::Invalid(format!(
                        "binlog {}: a rows event for table id {} without its table map",
                        at(&file),
                        rows.table_id()
                    )));
                };
                let name = format!("{}.{}", tme.database_name(), tme.table_name());
                if tme.table_name() == super::sink::OFFSETS {
                    // Written by a sink into the monolith (reverse sync):
                    // the whole transaction is a service's change coming
                    // back, not one to send out again.
                    open.get_or_insert_with(|| Open::at(&at(&file), h.event_size(), None, true))
                        .skip = true;
                    continue;
                }
                let Some(shape) = shapes.get(&name) else {
                    continue;
                };
                let tx =
                    open.get_or_insert_with(|| Open::at(&at(&file), h.event_size(), None, false));
                if tx.skip {
                    continue;
                }
                let op = match &rows {
                    RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => {
                        Op::Create
                    }
                    RowsEventData::UpdateRowsEvent(_)
                    | RowsEventData::UpdateRowsEventV1(_)
                    | RowsEventData::PartialUpdateRowsEvent(_) => Op::Update,
                    RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => {
                        Op::Delete
                    }
                };
                let mut decoded = Vec::new();
                let mut columns: Option<Vec<(String, MyType)>> = None;
                for r in rows.rows(tme) {
                    let (before, after) = r.map_err(|e| undecodable(&file, &e))?;
                    if columns.is_none() {
                        columns = after.as_ref().or(before.as_ref()).map(super::rows::columns);
                    }
                    decoded.push((
                        before.map(values).transpose()?,
                        after.map(values).transpose()?,
                    ));
                }
                // The rows' own columns (the binlog names them): a row
                // written before a schema change is read by its shape then.
                let columns = columns.unwrap_or_default();
                let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
                let shape = if names.iter().all(|n| n.starts_with('@'))
                    && names.len() == shape.columns.len()
                {
                    shape.clone()
                } else {
                    shape
                        .project(&names, |i| columns[i].1.clone())
                        .ok_or_else(|| {
                            SourceError::Invalid(format!(
                                "binlog {}: rows of {name} without its primary-key columns ({})",
                                at(&file),
                                names.join(", ")
                            ))
                        })?
                };
                let mut shape = shape;
                for (i, ty) in members(tme) {
                    if let Some(c) = shape.columns.get_mut(i) {
                        c.ty = ty;
                    }
                }
                let shape = &shape;
                let pos = at(&file);
                for (i, (before, after)) in decoded.into_iter().enumerate() {
                    let src = Source {
                        name: &cfg.name,
                        server_id: h.server_id(),
                        file: &pos.file,
                        pos: pos.pos.saturating_sub(u64::from(h.event_size())),
                        row: i as u32,
                        gtid: tx.gtid.as_deref(),
                        thread: None,
                        ts_ms: i64::from(h.timestamp()) * 1000,
                        snapshot: false,
                    };
                    // An update that changes the key: a delete of the old
                    // key, then a create (as Debezium does), so no target
                    // keeps the old row.
                    let rekeyed = op == Op::Update
                        && matches!((&before, &after), (Some(b), Some(a))
                            if shape.key.iter().any(|&k| b.get(k) != a.get(k)));
                    let steps: Vec<Step<'_>> = if rekeyed {
                        vec![
                            (Op::Delete, before.as_deref(), None),
                            (Op::Create, None, after.as_deref()),
                        ]
                    } else {
                        vec![(op, before.as_deref(), after.as_deref())]
                    };
                    for (op, b, a) in steps {
                        let made = records(
                            shape,
                            op,
                            b,
                            a,
                            From::Binlog,
                            &src,
                            (tx.commit, tx.seq),
                            &cfg.format,
                        )
                        .map_err(|e| SourceError::Invalid(format!("binlog {pos}: {e}")))?;
                        tx.seq += made.len() as u32;
                        tx.records.extend(made);
                    }
                    if tx.records.len() >= PART {
                        tx.parted = true;
                        let part = Item::Part {
                            records: std::mem::take(&mut tx.records),
                            commit: tx.commit,
                        };
                        if out.send(part).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(item) = ended {
            if let Item::Tx { records, end, .. } = &item {
                tracing::debug!(records = records.len(), end = %end, "binlog transaction");
            }
            if out.send(item).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// An event this reader cannot decode.
fn undecodable(file: &str, e: &std::io::Error) -> SourceError {
    SourceError::Invalid(format!("binlog {file}: an event that cannot be read: {e}"))
}

fn lsn(p: &Position) -> Result<Lsn, SourceError> {
    p.lsn()
        .ok_or_else(|| SourceError::Invalid(format!("binlog file {} has no number", p.file)))
}

/// The item a transaction ends with.
fn finish(open: Option<Open>, end: Position, ts: u32) -> Item {
    let end_lsn = end.lsn().unwrap_or_default();
    match open {
        Some(o) if !o.skip && (o.parted || !o.records.is_empty()) => Item::Tx {
            records: o.records,
            end: end_lsn,
            ts_ms: i64::from(ts) * 1000,
            parted: o.parted,
        },
        _ => Item::Idle(end_lsn),
    }
}

/// Reads again the shapes of captured tables that `sql` (run in database
/// `schema`) names; returns them (every one named, changed or not: a
/// statement replayed after a restart finds the shape already current
/// here, but a sink may not have it).
async fn reload_named(
    conn: &mut mysql_async::Conn,
    shapes: &mut HashMap<String, Shape>,
    schema: &str,
    sql: &str,
) -> Result<Vec<Shape>, SourceError> {
    let mut out = Vec::new();
    let named: Vec<String> = shapes
        .values()
        .filter(|s| names(sql, schema, &s.table.schema, &s.table.table))
        .map(Shape::name)
        .collect();
    for name in named {
        let Some(table) = shapes.get(&name).map(|s| s.table.clone()) else {
            continue;
        };
        match columns::load(conn, &table).await {
            Ok(fresh) => {
                tracing::info!(table = %name, "schema change on the monolith: the table's shape is read again");
                out.push(fresh.clone());
                shapes.insert(name, fresh);
            }
            // Dropped or renamed away: its rows, if any come, name the problem.
            Err(SourceError::Invalid(e)) => {
                tracing::warn!(table = %name, error = %e, "a captured table changed")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
