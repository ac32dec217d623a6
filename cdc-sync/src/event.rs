//! Debezium change events, exactly as Debezium's PostgreSQL connector
//! writes them with the JSON converter and schemas disabled:
//!
//! ```text
//! topic  <topic_prefix>.<schema>.<table>
//! key    {"id": 42}                          (replica-identity columns)
//! value  {"before", "after", "source": {version, connector, name, ts_ms,
//!         snapshot, db, sequence, schema, table, txId, lsn, xmin},
//!         "op": c|u|d|r|t, "ts_ms", "transaction": {id, total_order,
//!         data_collection_order}}
//!        null after every delete (tombstone, same key)
//! ```
//!
//! Values follow Debezium's default type mapping (`time.precision.mode =
//! adaptive_time_microseconds`, `decimal.handling.mode = string`,
//! `binary.handling.mode = base64`): integers and floats are numbers,
//! `date` is days since the epoch, `timestamp` microseconds since the
//! epoch, `timestamptz` an ISO-8601 string in UTC, `time` microseconds of
//! the day, `numeric` a string, `bytea` base64, JSON a string.

use serde_json::{json, Map, Value};

use crate::lsn::Lsn;
use crate::pgoutput::{Relation, Value as Col};

/// What unchanged TOASTed values are replaced by.
pub const UNAVAILABLE: &str = "__debezium_unavailable_value";
/// `source.version`.
pub const VERSION: &str = concat!("strangler-cdc-", env!("CARGO_PKG_VERSION"));

/// One record for a topic: a change event or a tombstone.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    /// `schema.table` of the source.
    pub table: String,
    /// The key (replica-identity columns); `None` for truncate.
    pub key: Option<Value>,
    /// The envelope; `None` for a tombstone.
    pub value: Option<Value>,
    /// Commit position of the transaction (`Lsn(0)` during the snapshot).
    pub commit_lsn: Lsn,
}

/// The `op` of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// What the envelope's `source` block says about where an event came from.
#[derive(Debug, Clone)]
pub struct SourceInfo<'a> {
    /// The logical name (`topic_prefix`).
    pub name: &'a str,
    pub db: &'a str,
    pub tx_id: Option<u32>,
    pub lsn: Option<Lsn>,
    /// The last commit LSN before this one (for `sequence`).
    pub last_commit_lsn: Option<Lsn>,
    /// Commit time, ms since the epoch.
    pub ts_ms: i64,
    /// `"true"`, `"last"` or `"false"`.
    pub snapshot: &'a str,
}

/// Position of an event within its transaction.
#[derive(Debug, Clone, Copy)]
pub struct TxOrder {
    pub total: u64,
    pub in_table: u64,
}

/// Builds the envelope.
#[allow(clippy::too_many_arguments)]
pub fn envelope(
    op: Op,
    before: Option<Value>,
    after: Option<Value>,
    rel: &Relation,
    src: &SourceInfo<'_>,
    order: Option<TxOrder>,
    now_ms: i64,
) -> Value {
    let seq = json!([
        src.last_commit_lsn.map(|l| l.0.to_string()),
        src.lsn.map(|l| l.0.to_string())
    ])
    .to_string();
    json!({
        "before": before,
        "after": after,
        "source": {
            "version": VERSION,
            "connector": "postgresql",
            "name": src.name,
            "ts_ms": src.ts_ms,
            "snapshot": src.snapshot,
            "db": src.db,
            "sequence": seq,
            "schema": rel.schema,
            "table": rel.table,
            "txId": src.tx_id,
            "lsn": src.lsn.map(|l| l.0),
            "xmin": Value::Null,
        },
        "op": op.code(),
        "ts_ms": now_ms,
        "transaction": match (src.tx_id, src.lsn, order) {
            (Some(tx), Some(lsn), Some(o)) => json!({
                "id": format!("{tx}:{}", lsn.0),
                "total_order": o.total,
                "data_collection_order": o.in_table,
            }),
            _ => Value::Null,
        },
    })
}

/// A row as Debezium's `before`/`after`: column name → converted value.
pub fn row(rel: &Relation, values: &[Col]) -> Value {
    let mut m = Map::with_capacity(values.len());
    for (c, v) in rel.columns.iter().zip(values) {
        m.insert(c.name.clone(), convert(c.type_oid, v));
    }
    Value::Object(m)
}

/// The key of a row: its replica-identity columns.
pub fn key(rel: &Relation, values: &[Col]) -> Option<Value> {
    let mut m = Map::new();
    for (c, v) in rel.columns.iter().zip(values) {
        if c.key {
            m.insert(c.name.clone(), convert(c.type_oid, v));
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// Converts one text-format value by its type OID.
pub fn convert(type_oid: u32, v: &Col) -> Value {
    let text = match v {
        Col::Null => return Value::Null,
        Col::Unchanged => return Value::String(UNAVAILABLE.into()),
        Col::Text(t) => t.as_str(),
    };
    let number = |t: &str| {
        t.parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(t.into()))
    };
    match type_oid {
        16 => Value::Bool(text == "t"),
        20 | 21 | 23 | 26 => number(text),
        700 | 701 => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.into()), Value::Number),
        1082 => days_since_epoch(text).map_or_else(|| Value::String(text.into()), Value::from),
        1114 => micros_since_epoch(text).map_or_else(|| Value::String(text.into()), Value::from),
        1184 => Value::String(iso_utc(text)),
        1083 => time_micros(text).map_or_else(|| Value::String(text.into()), Value::from),
        17 => Value::String(bytea_base64(text)),
        _ => Value::String(text.into()),
    }
}

/// `YYYY-MM-DD` → days since 1970-01-01.
fn days_since_epoch(d: &str) -> Option<i64> {
    let mut parts = d.get(..10)?.split('-');
    let (y, m, day): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `HH:MM:SS[.ffffff]` → microseconds.
fn time_micros(t: &str) -> Option<i64> {
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    let mut p = hms.split(':');
    let (h, m, s): (i64, i64, i64) = (
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    );
    let frac: String = frac.chars().take_while(char::is_ascii_digit).collect();
    let micros = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").get(..6)?.parse().ok()?
    };
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` → microseconds since the epoch.
fn micros_since_epoch(ts: &str) -> Option<i64> {
    let (d, t) = ts.split_once(' ')?;
    Some(days_since_epoch(d)? * 86_400_000_000 + time_micros(t)?)
}

/// `2024-01-01 00:00:37.5+00` (the session runs in UTC) → `2024-01-01T00:00:37.5Z`.
fn iso_utc(ts: &str) -> String {
    let body = ts.strip_suffix("+00").unwrap_or(ts);
    format!("{}Z", body.replacen(' ', "T", 1))
}

/// `\x0a0b` → base64.
fn bytea_base64(t: &str) -> String {
    use base64::Engine;
    let hex = t.strip_prefix("\\x").unwrap_or(t);
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::Column;

    fn t(s: &str) -> Col {
        Col::Text(s.into())
    }

    #[test]
    fn converts_like_debezium() {
        assert_eq!(convert(23, &t("42")), json!(42));
        assert_eq!(convert(16, &t("t")), json!(true));
        assert_eq!(convert(1700, &t("12.50")), json!("12.50"));
        assert_eq!(convert(701, &t("1.5")), json!(1.5));
        assert_eq!(convert(1082, &t("2024-01-02")), json!(19724));
        assert_eq!(convert(1082, &t("1969-12-31")), json!(-1));
        assert_eq!(convert(1114, &t("1970-01-01 00:00:01.5")), json!(1_500_000));
        assert_eq!(
            convert(1184, &t("2024-01-01 00:00:37.123456+00")),
            json!("2024-01-01T00:00:37.123456Z")
        );
        assert_eq!(convert(1083, &t("01:00:00")), json!(3_600_000_000i64));
        assert_eq!(convert(17, &t("\\x68656c6c6f")), json!("aGVsbG8="));
        assert_eq!(convert(25, &Col::Unchanged), json!(UNAVAILABLE));
        assert_eq!(convert(25, &Col::Null), Value::Null);
    }

    #[test]
    fn envelope_has_debeziums_fields() {
        let rel = Relation {
            oid: 1,
            schema: "public".into(),
            table: "products".into(),
            replica_identity: b'd',
            columns: vec![
                Column {
                    name: "id".into(),
                    type_oid: 20,
                    key: true,
                },
                Column {
                    name: "title".into(),
                    type_oid: 25,
                    key: false,
                },
            ],
        };
        let after = row(&rel, &[t("7"), t("Kettle")]);
        let src = SourceInfo {
            name: "monolith",
            db: "shop",
            tx_id: Some(555),
            lsn: Some(Lsn(24_023_128)),
            last_commit_lsn: Some(Lsn(24_023_119)),
            ts_ms: 1_700_000_000_000,
            snapshot: "false",
        };
        let v = envelope(
            Op::Create,
            None,
            Some(after),
            &rel,
            &src,
            Some(TxOrder {
                total: 1,
                in_table: 1,
            }),
            1_700_000_000_100,
        );
        assert_eq!(v["op"], "c");
        assert_eq!(v["after"], json!({"id": 7, "title": "Kettle"}));
        assert_eq!(v["before"], Value::Null);
        let s = &v["source"];
        for field in [
            "version",
            "connector",
            "name",
            "ts_ms",
            "snapshot",
            "db",
            "sequence",
            "schema",
            "table",
            "txId",
            "lsn",
            "xmin",
        ] {
            assert!(s.get(field).is_some(), "source.{field}");
        }
        assert_eq!(s["sequence"], "[\"24023119\",\"24023128\"]");
        assert_eq!(v["transaction"]["id"], "555:24023128");
        assert_eq!(key(&rel, &[t("7"), t("Kettle")]), Some(json!({"id": 7})));
    }
}
