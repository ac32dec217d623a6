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
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::Value as My;
use tokio::sync::mpsc;

use super::columns::{self, MyType, Shape};
use super::position::{clean_file_name, Position};
use super::record::{records, Source};
use super::value::From;
use crate::event::{Op, Record};
use crate::lsn::Lsn;
use crate::source::{SourceConfig, SourceError};

/// What the reader hands the pipeline.
#[derive(Debug)]
pub enum Item {
    /// A transaction touching captured tables, ending at `end`, committed
    /// at `ts_ms`.
    Tx {
        records: Vec<Record>,
        end: Lsn,
        ts_ms: i64,
    },
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

/// The transaction being read.
#[derive(Default)]
struct Open {
    records: Vec<Record>,
    gtid: Option<String>,
    skip: bool,
    /// Rows seen in it (`source.row` counts within a rows event).
    seq: u32,
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
            open = Some(Open {
                gtid: Some(format!("{domain}-{}-{seq}", h.server_id())),
                skip: h.flags_raw() & SKIP_REPLICATION != 0,
                ..Open::default()
            });
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
                open = Some(Open {
                    gtid: Some(format!("{uuid}:{}", g.gno())),
                    ..Open::default()
                });
            }
            EventData::QueryEvent(q) => {
                let sql = q.query();
                let verb = sql.trim_start().get(..6).unwrap_or("").to_ascii_uppercase();
                if verb.starts_with("BEGIN") {
                    if open.is_none() {
                        open = Some(Open {
                            skip: h.flags_raw() & SKIP_REPLICATION != 0,
                            ..Open::default()
                        });
                    }
                } else if verb == "COMMIT" {
                    ended = Some(finish(open.take(), at(&file), h.timestamp()));
                } else {
                    // DDL (or a statement logged as such): the tables it
                    // names are read again before their next rows.
                    let schema = q.schema().into_owned();
                    let changed = reload_named(&mut catalog, &mut shapes, &schema, &sql).await?;
                    open = None;
                    let end = lsn(&at(&file))?;
                    ended = Some(if changed.is_empty() {
                        Item::Idle(end)
                    } else {
                        // The tables' shapes as records at the statement's
                        // place in the stream: each sink carries the change
                        // between the rows before and after it.
                        let records = changed
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                s.record(
                                    "ALTER",
                                    &crate::source::shape::At {
                                        prefix: &cfg.name,
                                        db: &s.table.schema,
                                        commit_lsn: end,
                                        seq: i as u32,
                                        ts_ms: i64::from(h.timestamp()) * 1000,
                                    },
                                )
                            })
                            .collect();
                        Item::Tx {
                            records,
                            end,
                            ts_ms: i64::from(h.timestamp()) * 1000,
                        }
                    });
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
                    open.get_or_insert_with(Open::default).skip = true;
                    continue;
                }
                let Some(shape) = shapes.get(&name) else {
                    continue;
                };
                let tx = open.get_or_insert_with(Open::default);
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
                    let (b, a) = (
                        before.map(values).transpose()?,
                        after.map(values).transpose()?,
                    );
                    if columns.is_none() {
                        columns = a.as_ref().or(b.as_ref()).map(|(_, c)| c.clone());
                    }
                    decoded.push((b.map(|(v, _)| v), a.map(|(v, _)| v)));
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
                    let made = records(
                        shape,
                        op,
                        before.as_deref(),
                        after.as_deref(),
                        From::Binlog,
                        &src,
                        (Lsn(0), tx.seq),
                        &cfg.format,
                    )
                    .map_err(|e| SourceError::Invalid(format!("binlog {pos}: {e}")))?;
                    tx.seq += made.len() as u32;
                    tx.records.extend(made);
                }
            }
            _ => {}
        }
        if let Some(item) = ended {
            if let Item::Tx { records, end, .. } = &item {
                tracing::debug!(records = records.len(), end = %end, "binlog transaction");
            }
            let item = match item {
                Item::Tx {
                    mut records,
                    end,
                    ts_ms,
                } => {
                    for r in &mut records {
                        r.commit_lsn = end;
                    }
                    Item::Tx {
                        records,
                        end,
                        ts_ms,
                    }
                }
                idle => idle,
            };
            if out.send(item).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// A row's values and its columns: name (`@n` without full metadata)
/// and the type its binlog value has.
type Values = (Vec<My>, Vec<(String, MyType)>);

fn values(row: mysql_async::binlog::row::BinlogRow) -> Result<Values, SourceError> {
    let names = row
        .columns_ref()
        .iter()
        .map(|c| (c.name_str().into_owned(), binlog_type(c)))
        .collect();
    let vals = row
        .unwrap()
        .into_iter()
        .map(|v| match v {
            BinlogValue::Value(v) => Ok(v),
            BinlogValue::Jsonb(j) => serde_json::Value::try_from(j)
                .map(|j| My::Bytes(j.to_string().into_bytes()))
                .map_err(|e| SourceError::Invalid(format!("a JSON value in the binlog: {e}"))),
            BinlogValue::JsonDiff(_) => Err(SourceError::Invalid(
                "the binlog has a partial JSON update: set binlog_row_value_options = '' on the server so rows are logged whole".into(),
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok((vals, names))
}

/// How a column's binlog value reads when the shape no longer has the
/// column (dropped or renamed since the row was written).
fn binlog_type(c: &mysql_async::Column) -> MyType {
    use mysql_async::consts::ColumnType as T;
    match c.column_type() {
        T::MYSQL_TYPE_TINY
        | T::MYSQL_TYPE_SHORT
        | T::MYSQL_TYPE_INT24
        | T::MYSQL_TYPE_LONG
        | T::MYSQL_TYPE_LONGLONG => MyType::Int {
            bits: 64,
            unsigned: c
                .flags()
                .contains(mysql_async::consts::ColumnFlags::UNSIGNED_FLAG),
        },
        T::MYSQL_TYPE_FLOAT => MyType::Float,
        T::MYSQL_TYPE_DOUBLE => MyType::Double,
        T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => MyType::Date,
        T::MYSQL_TYPE_DATETIME | T::MYSQL_TYPE_DATETIME2 => MyType::DateTime { fsp: 6 },
        T::MYSQL_TYPE_TIMESTAMP | T::MYSQL_TYPE_TIMESTAMP2 => MyType::Timestamp { fsp: 6 },
        T::MYSQL_TYPE_TIME | T::MYSQL_TYPE_TIME2 => MyType::Time { fsp: 6 },
        T::MYSQL_TYPE_YEAR => MyType::Year,
        T::MYSQL_TYPE_JSON => MyType::Json,
        T::MYSQL_TYPE_BIT => MyType::Bit(64),
        // 63: the binary character set.
        _ if c.character_set() == 63 => MyType::Binary,
        // A decimal's text, an enum's index, a string's bytes.
        _ => MyType::Text {
            latin1: c.character_set() == 8,
        },
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
        Some(o) if !o.skip && !o.records.is_empty() => Item::Tx {
            records: o.records,
            end: end_lsn,
            ts_ms: i64::from(ts) * 1000,
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
    let lower = sql.to_ascii_lowercase();
    let named: Vec<String> = shapes
        .values()
        .filter(|s| {
            let t = s.table.table.to_ascii_lowercase();
            lower.contains(&t)
                && (s.table.schema == schema
                    || lower.contains(&s.table.schema.to_ascii_lowercase()))
        })
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
