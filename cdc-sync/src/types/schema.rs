//! Kafka Connect schemas, for `schemas_enable = true`: what the JSON
//! converter writes beside every key and value (`{schema, payload}`), with
//! Debezium's semantic type names.

use serde_json::{json, Map, Value};

use super::{BinaryHandling, DecimalHandling, EventFormat, IntervalHandling, Kind, TimePrecision};

fn named(ty: &str, name: &str) -> Value {
    json!({ "type": ty, "name": name, "version": 1 })
}

/// The schema of one column's values.
pub fn field(kind: &Kind, fmt: &EventFormat) -> Value {
    let adaptive = fmt.time == TimePrecision::Adaptive;
    match kind {
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Int16 => json!({ "type": "int16" }),
        Kind::Int32 => json!({ "type": "int32" }),
        Kind::Int64 => json!({ "type": "int64" }),
        Kind::Float32 => json!({ "type": "float" }),
        Kind::Float64 => json!({ "type": "double" }),
        Kind::Numeric { precision, scale } => match (fmt.decimal, scale) {
            (DecimalHandling::String, _) => json!({ "type": "string" }),
            (DecimalHandling::Double, _) => json!({ "type": "double" }),
            (DecimalHandling::Precise, Some(scale)) => {
                let mut params = Map::new();
                params.insert("scale".into(), Value::String(scale.to_string()));
                if let Some(p) = precision {
                    params.insert(
                        "connect.decimal.precision".into(),
                        Value::String(p.to_string()),
                    );
                }
                json!({ "type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                        "version": 1, "parameters": params })
            }
            (DecimalHandling::Precise, None) => json!({
                "type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "version": 1,
                "doc": "Variable scaled decimal",
                "fields": [
                    { "type": "int32", "optional": false, "field": "scale" },
                    { "type": "bytes", "optional": false, "field": "value" },
                ],
            }),
        },
        Kind::Bytea => match fmt.binary {
            BinaryHandling::Bytes => json!({ "type": "bytes" }),
            BinaryHandling::Base64 | BinaryHandling::Hex => json!({ "type": "string" }),
        },
        Kind::Date if adaptive => named("int32", "io.debezium.time.Date"),
        Kind::Date => named("int32", "org.apache.kafka.connect.data.Date"),
        Kind::Time(p) if adaptive && *p <= 3 => named("int32", "io.debezium.time.Time"),
        Kind::Time(_) if adaptive => named("int64", "io.debezium.time.MicroTime"),
        Kind::Time(_) => named("int32", "org.apache.kafka.connect.data.Time"),
        Kind::TimeTz => named("string", "io.debezium.time.ZonedTime"),
        Kind::Timestamp(p) if adaptive && *p <= 3 => named("int64", "io.debezium.time.Timestamp"),
        Kind::Timestamp(_) if adaptive => named("int64", "io.debezium.time.MicroTimestamp"),
        Kind::Timestamp(_) => named("int64", "org.apache.kafka.connect.data.Timestamp"),
        Kind::TimestampTz => named("string", "io.debezium.time.ZonedTimestamp"),
        Kind::Interval => match fmt.interval {
            IntervalHandling::Numeric => named("int64", "io.debezium.time.MicroDuration"),
            IntervalHandling::String => named("string", "io.debezium.time.Interval"),
        },
        Kind::Uuid => named("string", "io.debezium.data.Uuid"),
        Kind::Json | Kind::Jsonb => named("string", "io.debezium.data.Json"),
        Kind::Enum => named("string", "io.debezium.data.Enum"),
        Kind::Text => json!({ "type": "string" }),
        Kind::Array(elem) => {
            let mut items = field(elem, fmt);
            if let Value::Object(m) = &mut items {
                m.insert("optional".into(), Value::Bool(true));
            }
            json!({ "type": "array", "items": items })
        }
    }
}

/// A struct of columns: (name, kind, optional).
pub fn row(name: &str, columns: &[(&str, &Kind, bool)], fmt: &EventFormat) -> Value {
    let fields: Vec<Value> = columns
        .iter()
        .map(|(col, kind, optional)| {
            let mut f = field(kind, fmt);
            if let Value::Object(m) = &mut f {
                m.insert("optional".into(), Value::Bool(*optional));
                m.insert("field".into(), Value::String((*col).to_string()));
            }
            f
        })
        .collect();
    json!({ "type": "struct", "fields": fields, "optional": false, "name": name })
}

/// The schema of Debezium's envelope around `value` (the row struct).
pub fn envelope(topic: &str, value: &Value) -> Value {
    let optional_row = |field: &str| {
        let mut v = value.clone();
        if let Value::Object(m) = &mut v {
            m.insert("optional".into(), Value::Bool(true));
            m.insert("field".into(), Value::String(field.into()));
        }
        v
    };
    let s = |field: &str, optional: bool| json!({ "type": "string", "optional": optional, "field": field });
    let i = |field: &str, optional: bool| json!({ "type": "int64", "optional": optional, "field": field });
    json!({
        "type": "struct",
        "name": format!("{topic}.Envelope"),
        "version": 1,
        "optional": false,
        "fields": [
            optional_row("before"),
            optional_row("after"),
            {
                "type": "struct", "name": "io.debezium.connector.postgresql.Source",
                "optional": false, "field": "source",
                "fields": [
                    s("version", false), s("connector", false), s("name", false),
                    i("ts_ms", false),
                    { "type": "string", "optional": true, "name": "io.debezium.data.Enum",
                      "version": 1, "parameters": { "allowed": "true,last,false,incremental" },
                      "default": "false", "field": "snapshot" },
                    s("db", false), s("sequence", true), s("schema", false), s("table", false),
                    i("txId", true), i("lsn", true), i("xmin", true),
                ],
            },
            s("op", false),
            i("ts_ms", true),
            {
                "type": "struct", "name": "event.block", "version": 1, "optional": true,
                "field": "transaction",
                "fields": [
                    s("id", false), i("total_order", false), i("data_collection_order", false),
                ],
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_names_follow_the_options() {
        let d = EventFormat::default();
        assert_eq!(
            field(&Kind::Timestamp(6), &d)["name"],
            "io.debezium.time.MicroTimestamp"
        );
        assert_eq!(
            field(&Kind::Timestamp(3), &d)["name"],
            "io.debezium.time.Timestamp"
        );
        let fixed = Kind::Numeric {
            precision: Some(10),
            scale: Some(2),
        };
        assert_eq!(field(&fixed, &d)["parameters"]["scale"], "2");
        let connect = EventFormat {
            time: TimePrecision::Connect,
            ..d
        };
        assert_eq!(
            field(&Kind::Date, &connect)["name"],
            "org.apache.kafka.connect.data.Date"
        );
        let row = row("p.public.t.Value", &[("id", &Kind::Int32, false)], &d);
        assert_eq!(
            row["fields"][0],
            json!({"type": "int32", "optional": false, "field": "id"})
        );
        assert_eq!(envelope("p.public.t", &row)["fields"][1]["field"], "after");
    }
}
