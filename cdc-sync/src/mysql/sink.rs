//! Applying a service's changes back into a MySQL/MariaDB monolith
//! (reverse sync, `strangler cdc reverse` when `[cdc.source] kind =
//! "mysql"`): the [`Destination`] of a pipeline whose source is the
//! service's PostgreSQL.
//!
//! ```text
//!  batch of whole transactions ─ one MySQL transaction:
//!    c/r/u → INSERT … ON DUPLICATE KEY UPDATE (mapped columns)
//!    d     → DELETE … WHERE key
//!    strangler_cdc_offsets(sink, slot) = the batch's end position
//! ```
//!
//! No echo: every transaction the sink writes also writes its offset row
//! in the monolith's `strangler_cdc_offsets`, and the forward binlog reader
//! drops any transaction that touches that table ([`OFFSETS`],
//! `binlog.rs`) — on MySQL and MariaDB alike, without privileges. Values
//! are turned into the MySQL column's input as the PostgreSQL sinks turn
//! them into PostgreSQL's: the record's exact text, or the Debezium value
//! read back by the column's type.

use mysql_async::prelude::Queryable;
use mysql_async::{TxOpts, Value as My};
use serde_json::{Map, Value};
use strangler_config::TableMapping;

use super::columns::{self, ident, quoted, MyType, Shape};
use crate::event::{Record, UNAVAILABLE};
use crate::lsn::Lsn;
use crate::pipeline::{Destination, PipelineError, Progress, StatusReporter};
use crate::sink::SinkError;
use crate::types::{self, text, EventFormat, Kind};

/// The bookkeeping table a sink keeps in the monolith (and the marker the
/// forward reader skips transactions by).
pub const OFFSETS: &str = "strangler_cdc_offsets";

/// A sink into a MySQL database.
pub struct MySqlSink {
    pub name: String,
    slot: String,
    conn: mysql_async::Conn,
    tables: Vec<(TableMapping, Shape)>,
    position: Lsn,
    snapshot_done: bool,
    format: EventFormat,
}

fn err(sink: &str, e: mysql_async::Error) -> SinkError {
    SinkError::MySql {
        sink: sink.to_string(),
        source: e,
    }
}

impl MySqlSink {
    /// Connects to `url`, prepares the offsets table, reads the target
    /// tables of `tables` and the position stored for `slot`.
    pub async fn connect(
        name: &str,
        url: &str,
        slot: &str,
        tables: &[TableMapping],
        format: EventFormat,
    ) -> Result<MySqlSink, SinkError> {
        let mut conn = super::connect(url).await.map_err(|e| match e {
            crate::source::SourceError::MySql(e) => err(name, e),
            other => SinkError::Schema {
                sink: name.to_string(),
                message: other.to_string(),
            },
        })?;
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {OFFSETS} (sink VARCHAR(190) NOT NULL, slot VARCHAR(190) NOT NULL, \
             lsn BIGINT NOT NULL, snapshot_done BOOLEAN NOT NULL DEFAULT FALSE, \
             updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (sink, slot)) ENGINE=InnoDB"
        ))
        .await
        .map_err(|e| err(name, e))?;
        let stored: Option<(i64, bool)> = conn
            .exec_first(
                format!("SELECT lsn, snapshot_done FROM {OFFSETS} WHERE sink = ? AND slot = ?"),
                (name, slot),
            )
            .await
            .map_err(|e| err(name, e))?;
        let mut shapes = Vec::with_capacity(tables.len());
        for m in tables {
            let shape =
                columns::load(&mut conn, &m.target)
                    .await
                    .map_err(|e| SinkError::Schema {
                        sink: name.to_string(),
                        message: format!("target {}: {e}", m.target),
                    })?;
            shapes.push((m.clone(), shape));
        }
        Ok(MySqlSink {
            name: name.to_string(),
            slot: slot.to_string(),
            conn,
            tables: shapes,
            position: stored.map_or(Lsn(0), |(l, _)| Lsn::from_i64(l)),
            snapshot_done: stored.is_some_and(|(_, d)| d),
            format,
        })
    }

    /// Applies `batch` and stores `through` in one transaction.
    async fn apply(
        &mut self,
        batch: &[Record],
        through: Lsn,
        snapshot_complete: bool,
    ) -> Result<u64, SinkError> {
        let name = self.name.clone();
        let mut statements: Vec<(String, Vec<My>)> = Vec::new();
        for r in batch {
            if r.commit_lsn.0 > 0 && r.commit_lsn <= self.position {
                continue;
            }
            let Some(value) = &r.value else { continue };
            if crate::source::shape::of(r).is_some() {
                continue;
            }
            let Some((m, shape)) = self
                .tables
                .iter()
                .find(|(m, _)| m.source.to_string() == r.table)
            else {
                continue;
            };
            let op = value.get("op").and_then(Value::as_str).unwrap_or("");
            let statement = match op {
                "c" | "r" | "u" => value
                    .get("after")
                    .and_then(Value::as_object)
                    .map(|row| upsert(m, shape, row, r.exact.as_ref(), &self.format))
                    .transpose(),
                "d" => r
                    .key
                    .as_ref()
                    .and_then(Value::as_object)
                    .map(|key| delete(m, shape, key, r.exact.as_ref(), &self.format))
                    .transpose(),
                // Inside the transaction (TRUNCATE would commit it).
                "t" => Ok(Some((
                    format!("DELETE FROM {}", quoted(&m.target)),
                    Vec::new(),
                ))),
                _ => Ok(None),
            }
            .map_err(|message| SinkError::Schema {
                sink: name.clone(),
                message: format!("{} → {}: {message}", m.source, m.target),
            })?;
            statements.extend(statement);
        }
        let rows = statements.len() as u64;
        let mut tx = self
            .conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| err(&name, e))?;
        // The position first: the monolith's binlog reader meets the
        // marker (a row of this table) before any row of the transaction,
        // and drops the whole transaction, whatever its size.
        let lsn = through.max(self.position);
        let done = self.snapshot_done || snapshot_complete;
        tx.exec_drop(
            format!(
                "INSERT INTO {OFFSETS} (sink, slot, lsn, snapshot_done) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE lsn = VALUES(lsn), snapshot_done = VALUES(snapshot_done), updated_at = CURRENT_TIMESTAMP(6)"
            ),
            (&self.name, &self.slot, lsn.as_i64(), done),
        )
        .await
        .map_err(|e| err(&name, e))?;
        for (sql, params) in statements {
            tx.exec_drop(&sql, params)
                .await
                .map_err(|e| err(&name, e))?;
        }
        tx.commit().await.map_err(|e| err(&name, e))?;
        self.position = lsn;
        self.snapshot_done = done;
        Ok(rows)
    }
}

/// Target column → its MySQL input value, for each mapped column of `row`
/// the target has.
fn mapped(
    m: &TableMapping,
    shape: &Shape,
    row: &Map<String, Value>,
    exact: Option<&Map<String, Value>>,
    fmt: &EventFormat,
) -> Result<Vec<(String, My)>, String> {
    let mut out = Vec::with_capacity(row.len());
    for (src, v) in row {
        if m.exclude.iter().any(|e| e == src) || v.as_str() == Some(UNAVAILABLE) {
            continue;
        }
        let dst = m.rename.get(src).map_or(src.as_str(), String::as_str);
        let Some(col) = shape.columns.iter().find(|c| c.name == dst) else {
            continue;
        };
        let exact = exact.and_then(|x| x.get(src)).and_then(Value::as_str);
        out.push((
            dst.to_string(),
            value(&col.ty, v, exact, fmt).map_err(|e| format!("column {dst}: {e}"))?,
        ));
    }
    Ok(out)
}

fn upsert(
    m: &TableMapping,
    shape: &Shape,
    row: &Map<String, Value>,
    exact: Option<&Map<String, Value>>,
    fmt: &EventFormat,
) -> Result<(String, Vec<My>), String> {
    let cols = mapped(m, shape, row, exact, fmt)?;
    let names: Vec<String> = cols.iter().map(|(n, _)| ident(n)).collect();
    let updates: Vec<String> = names.iter().map(|n| format!("{n} = VALUES({n})")).collect();
    Ok((
        format!(
            "INSERT INTO {} ({}) VALUES ({}) ON DUPLICATE KEY UPDATE {}",
            quoted(&m.target),
            names.join(", "),
            vec!["?"; names.len()].join(", "),
            updates.join(", ")
        ),
        cols.into_iter().map(|(_, v)| v).collect(),
    ))
}

fn delete(
    m: &TableMapping,
    shape: &Shape,
    key: &Map<String, Value>,
    exact: Option<&Map<String, Value>>,
    fmt: &EventFormat,
) -> Result<(String, Vec<My>), String> {
    let cols = mapped(m, shape, key, exact, fmt)?;
    // Every column of the monolith's key, or the delete could match rows
    // it is not about.
    let missing: Vec<&str> = shape
        .key
        .iter()
        .map(|&k| shape.columns[k].name.as_str())
        .filter(|k| !cols.iter().any(|(n, _)| n == k))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "a delete whose key does not cover the target's primary key (missing {}): map the service's key columns to them",
            missing.join(", ")
        ));
    }
    let cols: Vec<(String, My)> = cols
        .into_iter()
        .filter(|(n, _)| shape.key.iter().any(|&k| shape.columns[k].name == *n))
        .collect();
    let cond: Vec<String> = cols
        .iter()
        .map(|(n, _)| format!("{} = ?", ident(n)))
        .collect();
    Ok((
        format!(
            "DELETE FROM {} WHERE {}",
            quoted(&m.target),
            cond.join(" AND ")
        ),
        cols.into_iter().map(|(_, v)| v).collect(),
    ))
}

/// One value as the MySQL column's input: the PostgreSQL text the record
/// carries (exact) or its Debezium value read back by the column's type,
/// then what MySQL reads differently (booleans, bytes, time zones).
fn value(ty: &MyType, v: &Value, exact: Option<&str>, fmt: &EventFormat) -> Result<My, String> {
    if v.is_null() {
        return Ok(My::NULL);
    }
    if let Value::Bool(b) = v {
        return Ok(My::Int(i64::from(*b)));
    }
    let kind = match ty {
        MyType::Int { .. } | MyType::Year => Kind::Int64,
        MyType::Float => Kind::Float32,
        MyType::Double => Kind::Float64,
        MyType::Decimal { precision, scale } => Kind::Numeric {
            precision: Some(*precision),
            scale: Some(*scale),
        },
        MyType::Date => Kind::Date,
        MyType::DateTime { fsp } => Kind::Timestamp(*fsp),
        MyType::Timestamp { .. } => Kind::TimestampTz,
        MyType::Time { .. } => Kind::Time(6),
        MyType::Binary { .. } | MyType::Bit(_) => Kind::Bytea,
        MyType::Text { .. } | MyType::Enum(_) | MyType::Set(_) | MyType::Json => Kind::Text,
    };
    let t = match exact {
        Some(e) => e.to_string(),
        None => match types::decode(&kind, v, fmt)? {
            Some(t) => t,
            None => return Ok(My::NULL),
        },
    };
    Ok(match ty {
        MyType::Binary { .. } => My::Bytes(text::parse_bytea(&t).unwrap_or_else(|| t.into_bytes())),
        // Debezium's Bits are little-endian; MySQL's BIT big-endian.
        MyType::Bit(_) => {
            let mut b = text::parse_bytea(&t).unwrap_or_else(|| t.into_bytes());
            b.reverse();
            My::Bytes(b)
        }
        MyType::Timestamp { .. } | MyType::DateTime { .. } => {
            // PostgreSQL's text may carry an offset (timestamptz): the
            // sink's session is in UTC.
            let us = match text::parse_timestamptz(&t).or_else(|| text::parse_timestamp(&t)) {
                Some(text::Infinite::Finite(us)) => us,
                _ => return Err(format!("{t:?} is no MySQL date-time")),
            };
            My::Bytes(mysql_datetime(us).into_bytes())
        }
        MyType::Int { .. } if t == "t" || t == "true" => My::Int(1),
        MyType::Int { .. } if t == "f" || t == "false" => My::Int(0),
        _ => My::Bytes(t.into_bytes()),
    })
}

/// Microseconds since the epoch as MySQL's `YYYY-MM-DD HH:MM:SS.ffffff`.
fn mysql_datetime(us: i64) -> String {
    let t = text::write_timestamp(us);
    t.strip_suffix(" BC").map_or(t.clone(), str::to_string)
}

/// The embedded sink into the monolith as a pipeline destination.
#[async_trait::async_trait]
impl Destination for MySqlSink {
    fn snapshot_unfinished(&self) -> bool {
        !self.snapshot_done
    }

    fn taken_from_slot(&self) -> Option<Lsn> {
        (self.snapshot_done || self.position.0 > 0).then_some(self.position)
    }

    async fn resume_position(&mut self) -> Result<Option<Lsn>, PipelineError> {
        Ok((self.position.0 > 0).then_some(self.position))
    }

    async fn write(
        &mut self,
        batch: &[Record],
        through: Lsn,
        snapshot_complete: bool,
        progress: &mut Progress,
        status: &dyn StatusReporter,
    ) -> Result<(), PipelineError> {
        let rows = self.apply(batch, through, snapshot_complete).await?;
        progress.count_applied(&self.name, rows);
        if through.0 > 0 {
            for (m, _) in &self.tables {
                status
                    .applied(
                        &self.name,
                        (&m.source.to_string(), &m.target.to_string()),
                        through,
                    )
                    .await;
            }
        }
        Ok(())
    }

    async fn confirmed(&mut self, lsn: Lsn, wrote: bool, _slot: &str, status: &dyn StatusReporter) {
        if !wrote {
            for (m, _) in &self.tables {
                status
                    .applied(
                        &self.name,
                        (&m.source.to_string(), &m.target.to_string()),
                        lsn,
                    )
                    .await;
            }
        }
    }
}

/// Whether `url` names a MySQL database (`mysql://`, `mariadb://`).
pub fn is_mysql_url(url: &str) -> bool {
    url.starts_with("mysql://") || url.starts_with("mariadb://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn postgres_values_become_mysql_input() {
        let fmt = EventFormat::default();
        let ts = MyType::Timestamp { fsp: 6 };
        assert_eq!(
            value(
                &ts,
                &json!("2024-03-01T10:00:00Z"),
                Some("2024-03-01 10:00:00+00"),
                &fmt
            ),
            Ok(My::Bytes(b"2024-03-01 10:00:00".to_vec()))
        );
        let int = MyType::Int {
            bits: 8,
            unsigned: false,
        };
        assert_eq!(value(&int, &json!(true), None, &fmt), Ok(My::Int(1)));
        assert_eq!(
            value(&MyType::Binary { pad: None }, &json!("AP8Q"), None, &fmt),
            Ok(My::Bytes(vec![0, 255, 16]))
        );
        let dec = MyType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(
            value(&dec, &json!("BNI="), None, &fmt),
            Ok(My::Bytes(b"12.34".to_vec()))
        );
        assert_eq!(
            value(&MyType::Date, &json!(19_782), None, &fmt),
            Ok(My::Bytes(b"2024-02-29".to_vec()))
        );
    }
}
