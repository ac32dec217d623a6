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
//! Values follow Debezium's type mapping under the configured options
//! ([`crate::types`]; the table is `cdc-sync/TYPES.md`). With
//! `schemas_enable` the Kafka transport wraps keys and values in
//! `{schema, payload}` from [`Table::schemas`].

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::lsn::Lsn;
use crate::pgoutput::{Relation, Value as Col};
use crate::types::{self, schema, Catalog, EventFormat, Kind};

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
    /// Position of the event within its transaction (0 in the snapshot):
    /// with `commit_lsn`, a position that only grows along a partition, so
    /// a record published twice (a replay after a fault) is applied once.
    pub seq: u32,
    /// PostgreSQL's text of the columns whose representation cannot be
    /// read back exactly (the row the sink writes: `after`, or the key of
    /// a delete); Kafka carries it in the header [`EXACT_HEADER`].
    pub exact: Option<Map<String, Value>>,
    /// Key and value schemas (`schemas_enable`).
    pub schemas: Option<Arc<Schemas>>,
    /// Through Kafka: the position of the schema-change record of the
    /// table's shape this record has (header [`SHAPE_HEADER`]), so a sink
    /// worker applies that shape first and reads older rows by it.
    pub shape: Option<Lsn>,
}

/// The Kafka header carrying [`Record::shape`].
pub const SHAPE_HEADER: &str = "strangler.shape";

/// The Kafka header carrying [`Record::exact`].
pub const EXACT_HEADER: &str = "strangler.exact";

/// The Kafka header carrying `commit_lsn/seq` of a streamed record.
pub const POSITION_HEADER: &str = "strangler.position";

/// Kafka Connect schemas of a table's keys and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Schemas {
    pub key: Value,
    pub value: Value,
}

/// A captured table: its relation, each column's kind, its topic.
#[derive(Debug, Clone)]
pub struct Table {
    pub rel: Relation,
    pub kinds: Vec<Kind>,
    pub topic: String,
    /// `schema.table`.
    pub name: String,
    pub format: EventFormat,
    pub schemas: Option<Arc<Schemas>>,
}

/// The topic of a source table: `<prefix>.<schema>.<table>`.
pub fn topic(prefix: &str, schema: &str, table: &str) -> String {
    format!("{prefix}.{schema}.{table}")
}

impl Table {
    pub fn new(rel: Relation, catalog: &Catalog, prefix: &str, format: EventFormat) -> Table {
        let kinds: Vec<Kind> = rel
            .columns
            .iter()
            .map(|c| catalog.kind(c.type_oid, c.type_mod))
            .collect();
        let topic = topic(prefix, &rel.schema, &rel.table);
        let schemas = format.schemas.then(|| {
            let cols = |keys_only: bool| -> Vec<(&str, &Kind, bool)> {
                rel.columns
                    .iter()
                    .zip(&kinds)
                    .filter(|(c, _)| !keys_only || c.key)
                    .map(|(c, k)| (c.name.as_str(), k, !c.key))
                    .collect()
            };
            let value = schema::row(&format!("{topic}.Value"), &cols(false), &format);
            Arc::new(Schemas {
                key: schema::row(&format!("{topic}.Key"), &cols(true), &format),
                value: schema::envelope(&topic, &value),
            })
        });
        Table {
            name: format!("{}.{}", rel.schema, rel.table),
            rel,
            kinds,
            topic,
            format,
            schemas,
        }
    }

    /// A row as Debezium's `before`/`after`: column name → converted value;
    /// lossy columns' texts go to `exact`.
    pub fn row(&self, values: &[Col], exact: Option<&mut Map<String, Value>>) -> Value {
        Value::Object(self.columns(values, false, exact))
    }

    /// The key of a row: its replica-identity columns.
    pub fn key(&self, values: &[Col], exact: Option<&mut Map<String, Value>>) -> Option<Value> {
        let m = self.columns(values, true, exact);
        (!m.is_empty()).then_some(Value::Object(m))
    }

    fn columns(
        &self,
        values: &[Col],
        keys_only: bool,
        mut exact: Option<&mut Map<String, Value>>,
    ) -> Map<String, Value> {
        let mut m = Map::with_capacity(values.len());
        for ((c, kind), v) in self.rel.columns.iter().zip(&self.kinds).zip(values) {
            if keys_only && !c.key {
                continue;
            }
            let value = match v {
                Col::Null => Value::Null,
                Col::Unchanged => Value::String(UNAVAILABLE.into()),
                Col::Text(t) => {
                    let e = types::encode(kind, t, &self.format);
                    if !e.exact {
                        if let Some(x) = exact.as_deref_mut() {
                            x.insert(c.name.clone(), Value::String(t.clone()));
                        }
                    }
                    e.value
                }
            };
            m.insert(c.name.clone(), value);
        }
        m
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::Column;

    fn t(s: &str) -> Col {
        Col::Text(s.into())
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
                    type_oid: 23,
                    type_mod: -1,
                    key: true,
                },
                Column {
                    name: "title".into(),
                    type_oid: 25,
                    type_mod: -1,
                    key: false,
                },
            ],
        };
        let table = Table::new(
            rel.clone(),
            &crate::types::tests::catalog(),
            "monolith",
            EventFormat::default(),
        );
        assert_eq!(table.topic, "monolith.public.products");
        let after = table.row(&[t("7"), t("Kettle")], None);
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
        assert_eq!(
            table.key(&[t("7"), t("Kettle")], None),
            Some(json!({"id": 7}))
        );
        // Unchanged TOAST values are Debezium's placeholder.
        assert_eq!(
            table.row(&[t("7"), Col::Unchanged], None)["title"],
            json!(UNAVAILABLE)
        );
    }
}
