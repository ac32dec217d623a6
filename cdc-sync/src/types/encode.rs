//! PostgreSQL text → Debezium's representation.

use base64::Engine;
use serde_json::{json, Value};

use super::text::{self, Element, Infinite, DAY_MICROS};
use super::TimePrecision;
use super::{decimal, BinaryHandling, DecimalHandling, EventFormat, IntervalHandling, Kind};

/// One converted value.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub value: Value,
    /// Whether [`super::decode`] gives back exactly the text it came from;
    /// when not, the record carries the text too.
    pub exact: bool,
}

fn exact(value: Value) -> Encoded {
    Encoded { value, exact: true }
}

fn lossy(value: Value) -> Encoded {
    Encoded {
        value,
        exact: false,
    }
}

/// A text that did not parse as its type: carried as it is (the sink
/// writes the text back, PostgreSQL judges it).
fn unparsed(t: &str) -> Encoded {
    lossy(Value::String(t.to_string()))
}

/// `NaN`, `Infinity`, `-Infinity`: strings, as Jackson writes non-finite
/// doubles.
fn special_float(t: &str) -> Option<Value> {
    matches!(t, "NaN" | "Infinity" | "-Infinity").then(|| Value::String(t.to_string()))
}

/// A float written as its shortest decimal (`1.1`, not `1.100000023841858`).
fn float_number(shortest: &str) -> Option<Value> {
    shortest
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// Converts one value, written by PostgreSQL's output function for a column
/// of `kind`, to its event representation.
pub fn encode(kind: &Kind, t: &str, fmt: &EventFormat) -> Encoded {
    match kind {
        Kind::Bool => match t {
            "t" => exact(Value::Bool(true)),
            "f" => exact(Value::Bool(false)),
            _ => unparsed(t),
        },
        Kind::Int16 | Kind::Int32 | Kind::Int64 => t
            .parse::<i64>()
            .map_or_else(|_| unparsed(t), |n| exact(Value::from(n))),
        Kind::Float32 => special_float(t)
            .or_else(|| float_number(&t.parse::<f32>().ok()?.to_string()))
            .map_or_else(|| unparsed(t), exact),
        Kind::Float64 => special_float(t)
            .or_else(|| float_number(&t.parse::<f64>().ok()?.to_string()))
            .map_or_else(|| unparsed(t), exact),
        Kind::Numeric { scale, .. } => numeric(*scale, t, fmt.decimal),
        Kind::Bytea => match text::parse_bytea(t) {
            Some(b) => exact(Value::String(match fmt.binary {
                BinaryHandling::Bytes | BinaryHandling::Base64 => {
                    base64::engine::general_purpose::STANDARD.encode(b)
                }
                BinaryHandling::Hex => t.trim_start_matches("\\x").to_string(),
            })),
            None => unparsed(t),
        },
        Kind::Date => match text::parse_date(t) {
            Some(Infinite::Finite(d)) => exact(Value::from(d)),
            Some(Infinite::Plus) => exact(Value::from(i32::MAX)),
            Some(Infinite::Minus) => exact(Value::from(i32::MIN)),
            None => unparsed(t),
        },
        Kind::Time(p) => match text::parse_time(t) {
            Some(us) => time_value(us, *p, fmt.time),
            None => unparsed(t),
        },
        Kind::TimeTz => match text::parse_timetz(t) {
            // Debezium's ZonedTime is in UTC: the offset is lost.
            Some((us, offset)) => lossy(Value::String(format!(
                "{}Z",
                text::write_time((us - offset * 1_000_000).rem_euclid(DAY_MICROS))
            ))),
            None => unparsed(t),
        },
        Kind::Timestamp(p) => match text::parse_timestamp(t) {
            Some(Infinite::Finite(us)) => time_value(us, *p, fmt.time),
            // As PostgreSQL's JDBC driver and Debezium: the extremes of a long.
            Some(Infinite::Plus) => exact(Value::from(i64::MAX)),
            Some(Infinite::Minus) => exact(Value::from(i64::MIN)),
            None => unparsed(t),
        },
        Kind::TimestampTz => match text::parse_timestamptz(t) {
            Some(Infinite::Finite(us)) => exact(Value::String(text::write_iso_timestamp(us))),
            Some(_) => exact(Value::String(t.to_string())),
            None => unparsed(t),
        },
        Kind::Interval => match text::parse_interval(t) {
            Some(iv) => match fmt.interval {
                IntervalHandling::Numeric => lossy(Value::from(text::interval_micros(iv))),
                IntervalHandling::String => exact(Value::String(text::write_iso_interval(iv))),
            },
            None => unparsed(t),
        },
        Kind::Uuid | Kind::Json | Kind::Jsonb | Kind::Enum | Kind::Text => {
            exact(Value::String(t.to_string()))
        }
        Kind::Array(elem) => match text::parse_array(t) {
            Some(items) => {
                let mut all_exact = true;
                let value = array(elem, &items, fmt, &mut all_exact);
                Encoded {
                    value,
                    exact: all_exact,
                }
            }
            None => unparsed(t),
        },
    }
}

fn array(elem: &Kind, items: &[Element], fmt: &EventFormat, all_exact: &mut bool) -> Value {
    Value::Array(
        items
            .iter()
            .map(|e| match e {
                Element::Null => Value::Null,
                Element::Array(inner) => array(elem, inner, fmt, all_exact),
                Element::Value(v) => {
                    let enc = encode(elem, v, fmt);
                    *all_exact &= enc.exact;
                    enc.value
                }
            })
            .collect(),
    )
}

/// `time`/`timestamp` microseconds under `time.precision.mode`. The sink
/// reads numbers as microseconds, so millisecond forms are marked lossy.
fn time_value(us: i64, precision: u8, mode: TimePrecision) -> Encoded {
    match mode {
        TimePrecision::Adaptive if precision > 3 => exact(Value::from(us)),
        _ => lossy(Value::from(us.div_euclid(1000))),
    }
}

fn numeric(scale: Option<u32>, t: &str, mode: DecimalHandling) -> Encoded {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match mode {
        DecimalHandling::String => exact(Value::String(t.to_string())),
        DecimalHandling::Double => lossy(
            special_float(t)
                .or_else(|| float_number(&t.parse::<f64>().ok()?.to_string()))
                .unwrap_or_else(|| Value::String(t.to_string())),
        ),
        // NaN and ±Infinity have no Decimal: null, with the text beside it.
        DecimalHandling::Precise => match decimal::to_unscaled(t) {
            None => lossy(Value::Null),
            // The scale is in the schema only: the sink needs the text.
            Some((bytes, _)) if scale.is_some() => lossy(Value::String(b64(&bytes))),
            Some((bytes, s)) => exact(json!({ "scale": s, "value": b64(&bytes) })),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(kind: Kind, t: &str) -> (Value, bool) {
        let e = encode(&kind, t, &EventFormat::default());
        (e.value, e.exact)
    }

    #[test]
    fn debeziums_defaults() {
        assert_eq!(enc(Kind::Bool, "t"), (json!(true), true));
        assert_eq!(enc(Kind::Bool, "f"), (json!(false), true));
        assert_eq!(
            enc(Kind::Int64, "-9223372036854775808"),
            (json!(i64::MIN), true)
        );
        assert_eq!(enc(Kind::Float32, "1.1"), (json!(1.1), true));
        assert_eq!(enc(Kind::Float64, "NaN"), (json!("NaN"), true));
        assert_eq!(
            enc(
                Kind::Numeric {
                    precision: None,
                    scale: None
                },
                "12.340"
            ),
            (json!({"scale": 3, "value": "MDQ="}), true)
        );
        assert_eq!(
            enc(
                Kind::Numeric {
                    precision: Some(10),
                    scale: Some(2)
                },
                "12.34"
            ),
            (json!("BNI="), false)
        );
        assert_eq!(
            enc(
                Kind::Numeric {
                    precision: None,
                    scale: None
                },
                "NaN"
            ),
            (Value::Null, false)
        );
        assert_eq!(enc(Kind::Bytea, "\\x68656c6c6f"), (json!("aGVsbG8="), true));
        assert_eq!(enc(Kind::Date, "1969-12-31"), (json!(-1), true));
        assert_eq!(enc(Kind::Date, "infinity"), (json!(i32::MAX), true));
        assert_eq!(
            enc(Kind::Time(6), "01:00:00"),
            (json!(3_600_000_000i64), true)
        );
        assert_eq!(enc(Kind::Time(3), "01:00:00.5"), (json!(3_600_500), false));
        assert_eq!(
            enc(Kind::TimeTz, "10:00:00+02"),
            (json!("08:00:00Z"), false)
        );
        assert_eq!(
            enc(Kind::Timestamp(6), "1970-01-01 00:00:01.5"),
            (json!(1_500_000), true)
        );
        assert_eq!(
            enc(Kind::Timestamp(6), "-infinity"),
            (json!(i64::MIN), true)
        );
        assert_eq!(
            enc(Kind::TimestampTz, "0001-01-01 00:00:00+00 BC"),
            (json!("0000-01-01T00:00:00Z"), true)
        );
        assert_eq!(
            enc(Kind::TimestampTz, "infinity"),
            (json!("infinity"), true)
        );
        assert_eq!(
            enc(Kind::Interval, "1 day"),
            (json!(86_400_000_000i64), false)
        );
        assert_eq!(
            enc(Kind::Array(Box::new(Kind::Int32)), "{{1,NULL},{3,4}}"),
            (json!([[1, null], [3, 4]]), true)
        );
        assert_eq!(
            enc(Kind::Array(Box::new(Kind::Text)), "[0:0]={a}"),
            (json!("[0:0]={a}"), false)
        );
    }

    #[test]
    fn options_change_the_representation() {
        let fmt = EventFormat {
            decimal: DecimalHandling::String,
            interval: IntervalHandling::String,
            binary: BinaryHandling::Hex,
            time: TimePrecision::Connect,
            schemas: false,
        };
        let e = |k: Kind, t: &str| encode(&k, t, &fmt);
        assert_eq!(
            e(
                Kind::Numeric {
                    precision: None,
                    scale: None
                },
                "NaN"
            )
            .value,
            json!("NaN")
        );
        assert_eq!(
            e(Kind::Interval, "1 mon -00:00:01").value,
            json!("P0Y1M0DT0H0M-1S")
        );
        assert!(e(Kind::Interval, "1 mon").exact);
        assert_eq!(e(Kind::Bytea, "\\x0aff").value, json!("0aff"));
        assert_eq!(e(Kind::Time(6), "00:00:01.000001").value, json!(1000));
        assert!(!e(Kind::Time(6), "00:00:01").exact);
    }
}
