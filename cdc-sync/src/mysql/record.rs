//! Rows of a MySQL table → Debezium MySQL connector's change events:
//!
//! ```text
//! topic  <topic_prefix>.<database>.<table>
//! key    {"id": 42}                              (primary-key columns)
//! value  {"before", "after", "source": {version, connector: "mysql", name,
//!         ts_ms, snapshot, db, sequence, table, server_id, gtid, file, pos,
//!         row, thread, query}, "op": c|u|d|r, "ts_ms", "transaction"}
//!        null after every delete (tombstone, same key)
//! ```

use mysql_async::Value as My;
use serde_json::{json, Map, Value};

use super::columns::Shape;
use super::value::{convert, From};
use crate::event::{topic, Op, Record, VERSION};
use crate::lsn::Lsn;
use crate::types::EventFormat;

/// Where a row came from: the envelope's `source` block.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// `topic_prefix`.
    pub name: &'a str,
    pub server_id: u32,
    pub file: &'a str,
    /// Where the event (the snapshot: the binlog position it is consistent
    /// with) is.
    pub pos: u64,
    /// The row's index within its rows event.
    pub row: u32,
    pub gtid: Option<&'a str>,
    pub thread: Option<u32>,
    /// When the change was made, ms since the epoch (0 in the snapshot).
    pub ts_ms: i64,
    pub snapshot: bool,
}

/// A row converted: Debezium's object and the exact texts.
fn row(
    shape: &Shape,
    values: &[My],
    from: From,
    fmt: &EventFormat,
    mut exact: Option<&mut Map<String, Value>>,
    keys_only: bool,
) -> Result<Value, String> {
    if values.len() != shape.columns.len() {
        return Err(format!(
            "{}: a row of {} columns, but the table has {}",
            shape.name(),
            values.len(),
            shape.columns.len()
        ));
    }
    let mut m = Map::new();
    for (i, (c, v)) in shape.columns.iter().zip(values).enumerate() {
        if keys_only && !shape.key.contains(&i) {
            continue;
        }
        let conv = convert(c, v, from, fmt)?;
        if let (Some(x), Some(e)) = (exact.as_deref_mut(), conv.exact) {
            x.insert(c.name.clone(), Value::String(e));
        }
        m.insert(c.name.clone(), conv.value);
    }
    Ok(Value::Object(m))
}

/// The change events of one row (a delete is followed by its tombstone),
/// numbered from `commit.1` within the transaction ending at `commit.0`.
#[allow(clippy::too_many_arguments)]
pub fn records(
    shape: &Shape,
    op: Op,
    before: Option<&[My]>,
    after: Option<&[My]>,
    from: From,
    src: &Source<'_>,
    commit: (Lsn, u32),
    fmt: &EventFormat,
) -> Result<Vec<Record>, String> {
    let mut exact = Map::new();
    let before_v = match before {
        Some(b) => row(shape, b, from, fmt, None, false)?,
        None => Value::Null,
    };
    // The row the sink writes: `after`, or the key of a delete.
    let after_v = match after {
        Some(a) => row(shape, a, from, fmt, Some(&mut exact), false)?,
        None => Value::Null,
    };
    let key_row = after.or(before).unwrap_or(&[]);
    let key = row(
        shape,
        key_row,
        from,
        fmt,
        after.is_none().then_some(&mut exact),
        true,
    )?;
    let value = json!({
        "before": before_v,
        "after": after_v,
        "source": {
            "version": VERSION,
            "connector": "mysql",
            "name": src.name,
            "ts_ms": src.ts_ms,
            "snapshot": if src.snapshot { "true" } else { "false" },
            "db": shape.table.schema,
            "sequence": Value::Null,
            "table": shape.table.table,
            "server_id": src.server_id,
            "gtid": src.gtid,
            "file": src.file,
            "pos": src.pos,
            "row": src.row,
            "thread": src.thread,
            "query": Value::Null,
        },
        "op": op.code(),
        "ts_ms": crate::now_ms(),
        "transaction": Value::Null,
    });
    let t = topic(src.name, &shape.table.schema, &shape.table.table);
    let record = Record {
        topic: t.clone(),
        table: shape.name(),
        key: Some(key.clone()),
        value: Some(value),
        commit_lsn: commit.0,
        seq: commit.1,
        exact: (!exact.is_empty()).then_some(exact),
        schemas: None,
        shape: None,
    };
    let mut out = vec![record];
    if op == Op::Delete {
        out.push(Record {
            topic: t,
            table: shape.name(),
            key: Some(key),
            value: None,
            commit_lsn: commit.0,
            seq: commit.1 + 1,
            exact: None,
            schemas: None,
            shape: None,
        });
    }
    Ok(out)
}

/// A table's truncation as Debezium's `op: "t"` event (no key, no rows).
pub fn truncate(
    s: &Shape,
    at: &crate::source::shape::At<'_>,
    server_id: u32,
    file: &str,
) -> Record {
    let value = serde_json::json!({
        "before": null,
        "after": null,
        "source": {
            "version": crate::event::VERSION,
            "connector": "mysql",
            "name": at.prefix,
            "ts_ms": at.ts_ms,
            "snapshot": "false",
            "db": s.table.schema,
            "sequence": null,
            "table": s.table.table,
            "server_id": server_id,
            "gtid": null,
            "file": file,
            "pos": at.commit_lsn.0 & 0xffff_ffff,
            "row": 0,
            "thread": null,
            "query": null,
        },
        "op": Op::Truncate.code(),
        "ts_ms": crate::now_ms(),
        "transaction": null,
    });
    Record {
        topic: crate::event::topic(at.prefix, &s.table.schema, &s.table.table),
        table: s.name(),
        key: None,
        value: Some(value),
        commit_lsn: at.commit_lsn,
        seq: at.seq,
        exact: None,
        schemas: None,
        shape: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::columns::{Column, MyType};
    use strangler_config::TableName;

    #[test]
    fn a_delete_has_debeziums_mysql_source_block_and_a_tombstone() {
        let shape = Shape {
            table: TableName {
                schema: "shop".into(),
                table: "orders".into(),
            },
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: MyType::Int {
                        bits: 32,
                        unsigned: false,
                    },
                    column_type: "int(11)".into(),
                    nullable: false,
                    default: None,
                },
                Column {
                    name: "total".into(),
                    ty: MyType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    column_type: "decimal(10,2)".into(),
                    nullable: true,
                    default: None,
                },
            ],
            key: vec![0],
        };
        let before = [My::Int(7), My::Bytes(b"12.34".to_vec())];
        let src = Source {
            name: "monolith",
            server_id: 1,
            file: "mysql-bin.000003",
            pos: 1234,
            row: 0,
            gtid: Some("0-1-42"),
            thread: None,
            ts_ms: 1_700_000_000_000,
            snapshot: false,
        };
        let rs = records(
            &shape,
            Op::Delete,
            Some(&before),
            None,
            From::Binlog,
            &src,
            (Lsn(3 << 32 | 1300), 1),
            &EventFormat::default(),
        )
        .expect("records");
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].topic, "monolith.shop.orders");
        assert_eq!(rs[0].key, Some(json!({"id": 7})));
        let v = rs[0].value.as_ref().expect("value");
        assert_eq!(v["op"], "d");
        assert_eq!(v["after"], Value::Null);
        assert_eq!(v["before"], json!({"id": 7, "total": "BNI="}));
        let s = &v["source"];
        assert_eq!(s["connector"], "mysql");
        assert_eq!(s["file"], "mysql-bin.000003");
        assert_eq!(s["pos"], 1234);
        assert_eq!(s["gtid"], "0-1-42");
        assert_eq!(s["db"], "shop");
        assert_eq!(s["table"], "orders");
        assert_eq!(s["server_id"], 1);
        assert_eq!(rs[1].value, None);
        assert_eq!(rs[1].key, rs[0].key);
    }
}
