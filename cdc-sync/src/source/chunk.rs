//! Reading a table in key-range chunks while streaming continues (the
//! incremental snapshot of `strangler cdc snapshot --table T`, after
//! Netflix's DBLog and Debezium's incremental snapshots).
//!
//! Per chunk: a low watermark is written to the WAL (a non-transactional
//! logical message), the chunk is read (`WHERE key > last ORDER BY key
//! LIMIT n`, no long transaction), a high watermark is written. Between
//! the two watermarks the stream's changes to the table win: the
//! pipeline drops the chunk's rows whose keys changed there, and emits
//! the rest as op `r` at the high watermark's place in the stream.

use serde_json::{Map, Value};
use sqlx::{PgConnection, Row};

use super::{SourceConfig, SourceError};
use crate::event::{self, Op, Record, SourceInfo, Table};
use crate::lsn::Lsn;
use crate::pgoutput::{Column, Relation, Value as Col};
use crate::types::{text, Catalog};

/// Prefix of a request in the stream (a transactional logical message
/// whose content is `{"slot": …, "table": "schema.table"}`).
pub const REQUEST_PREFIX: &str = "strangler.snapshot";
/// Prefix of the watermarks (content `low|high:<slot>:<chunk id>`; ids
/// are unique across runs, so a watermark replayed after a restart never
/// matches a new chunk).
pub const WATERMARK_PREFIX: &str = "strangler.watermark";

/// Rows per chunk by default (`[cdc.source] snapshot_chunk_rows`).
pub const CHUNK_ROWS: usize = 2_000;

/// A table's columns as the snapshot reads them, with their types.
pub struct Described {
    pub table: Table,
    /// `format_type` of each column.
    pub types: Vec<String>,
}

/// Reads a table's columns (name, type, whether in the primary key).
pub async fn describe(
    conn: &mut PgConnection,
    cfg: &SourceConfig,
    catalog: &Catalog,
    t: &strangler_config::TableName,
) -> Result<Described, SourceError> {
    let cols = sqlx::query(
        "SELECT a.attname, a.atttypid::int8, a.atttypmod, COALESCE(a.attnum = ANY(i.indkey), false), format_type(a.atttypid, a.atttypmod) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
         WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(&t.schema)
    .bind(&t.table)
    .fetch_all(&mut *conn)
    .await?;
    if cols.is_empty() {
        return Err(SourceError::Invalid(format!("table {t} does not exist")));
    }
    let mut columns = Vec::new();
    let mut types = Vec::new();
    for r in &cols {
        columns.push(Column {
            name: r.try_get(0)?,
            type_oid: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            type_mod: r.try_get(2)?,
            key: r.try_get(3)?,
        });
        types.push(r.try_get(4)?);
    }
    let table = Table::new(
        Relation {
            oid: 0,
            schema: t.schema.clone(),
            table: t.table.clone(),
            replica_identity: b'd',
            columns,
        },
        catalog,
        &cfg.name,
        cfg.format,
    );
    Ok(Described { table, types })
}

fn quote(i: &str) -> String {
    format!("\"{}\"", i.replace('"', "\"\""))
}

fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Writes a watermark into the WAL (outside any transaction, so it is in
/// the stream at once).
pub async fn watermark(
    conn: &mut PgConnection,
    slot: &str,
    high: bool,
    chunk: &str,
) -> Result<(), SourceError> {
    let content = format!("{}:{slot}:{chunk}", if high { "high" } else { "low" });
    sqlx::query("SELECT pg_logical_emit_message(false, $1, $2)")
        .bind(WATERMARK_PREFIX)
        .bind(content)
        .execute(conn)
        .await?;
    Ok(())
}

/// Asks the pipeline reading `slot` to copy `table` in chunks: a request
/// in the WAL, read in commit order like any change.
pub async fn request(
    conn: &mut PgConnection,
    slot: &str,
    table: &strangler_config::TableName,
) -> Result<(), SourceError> {
    let content = serde_json::json!({"slot": slot, "table": table.to_string()}).to_string();
    sqlx::query("SELECT pg_logical_emit_message(true, $1, $2)")
        .bind(REQUEST_PREFIX)
        .bind(content)
        .execute(conn)
        .await?;
    Ok(())
}

/// A watermark's content: (high, slot, chunk id).
pub fn parse_watermark(content: &[u8]) -> Option<(bool, String, String)> {
    let s = std::str::from_utf8(content).ok()?;
    let (kind, rest) = s.split_once(':')?;
    let (slot, chunk) = rest.rsplit_once(':')?;
    let high = match kind {
        "low" => false,
        "high" => true,
        _ => return None,
    };
    (!chunk.is_empty()).then(|| (high, slot.to_string(), chunk.to_string()))
}

/// One chunk read: its records (op `r`, in key order, their keys as JSON
/// text) and the key columns' texts of its last row.
pub struct Chunk {
    pub records: Vec<(String, Record)>,
    pub last: Option<Vec<String>>,
}

/// Reads up to `cfg.chunk_rows` rows with a key after `after` (the key
/// columns' texts), in key order, as op `r` records.
pub async fn read(
    conn: &mut PgConnection,
    cfg: &SourceConfig,
    d: &Described,
    after: Option<&[String]>,
) -> Result<Chunk, SourceError> {
    use futures::TryStreamExt;
    let t = &d.table;
    let key: Vec<usize> = (0..t.rel.columns.len())
        .filter(|i| t.rel.columns[*i].key)
        .collect();
    if key.is_empty() {
        return Err(SourceError::Invalid(format!(
            "{}: a table without a primary key cannot be copied in chunks",
            t.name
        )));
    }
    let cols: Vec<String> = t.rel.columns.iter().map(|c| quote(&c.name)).collect();
    let key_cols: Vec<String> = key.iter().map(|i| quote(&t.rel.columns[*i].name)).collect();
    let filter = match after {
        Some(last) => format!(
            "WHERE ({}) > ({})",
            key_cols.join(", "),
            key.iter()
                .zip(last)
                .map(|(i, v)| format!("{}::{}", literal(v), d.types[*i]))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    let sql = format!(
        "COPY (SELECT {} FROM {}.{} {filter} ORDER BY {} LIMIT {}) TO STDOUT",
        cols.join(", "),
        quote(&t.rel.schema),
        quote(&t.rel.table),
        key_cols.join(", "),
        cfg.chunk_rows.max(1)
    );
    let db = cfg.db();
    let now = crate::now_ms();
    let info = SourceInfo {
        name: &cfg.name,
        db: &db,
        tx_id: None,
        lsn: None,
        last_commit_lsn: None,
        ts_ms: now,
        snapshot: "incremental",
    };
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for (k, v) in super::SESSION_SETTINGS {
        sqlx::query(&format!("SET LOCAL {k} = '{v}'"))
            .execute(&mut *tx)
            .await?;
    }
    let mut records = Vec::new();
    let mut last = None;
    {
        let mut copy = tx.copy_out_raw(&sql).await?;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(c) = copy.try_next().await? {
            buf.extend_from_slice(&c);
        }
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let fields = text::parse_copy_line(line)
                .filter(|f| f.len() == t.rel.columns.len())
                .ok_or_else(|| {
                    SourceError::Invalid(format!(
                        "chunk of {}: a COPY line that does not parse",
                        t.name
                    ))
                })?;
            last = Some(
                key.iter()
                    .map(|i| fields[*i].clone().unwrap_or_default())
                    .collect(),
            );
            let vals: Vec<Col> = fields
                .into_iter()
                .map(|f| f.map_or(Col::Null, Col::Text))
                .collect();
            let mut exact = Map::new();
            let after = t.row(&vals, Some(&mut exact));
            let k = t.key(&vals, None);
            let key_text = k.as_ref().map(Value::to_string).unwrap_or_default();
            records.push((
                key_text,
                Record {
                    topic: t.topic.clone(),
                    table: t.name.clone(),
                    key: k,
                    value: Some(event::envelope(
                        Op::Read,
                        None,
                        Some(after),
                        &t.rel,
                        &info,
                        None,
                        now,
                    )),
                    commit_lsn: Lsn(0),
                    seq: 0,
                    exact: (!exact.is_empty()).then_some(exact),
                    schemas: t.schemas.clone(),
                    shape: None,
                },
            ));
        }
    }
    tx.commit().await?;
    Ok(Chunk { records, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_name_their_kind_slot_and_chunk() {
        assert_eq!(
            parse_watermark(b"low:strangler:41.17-3"),
            Some((false, "strangler".into(), "41.17-3".into()))
        );
        assert_eq!(
            parse_watermark(b"high:a:b:12"),
            Some((true, "a:b".into(), "12".into()))
        );
        assert_eq!(parse_watermark(b"middle:s:1"), None);
        assert_eq!(parse_watermark(b"low:s:"), None);
    }
}
