//! Debezium's representation → PostgreSQL input text, by the target
//! column's kind: the sink's way back.

use base64::Engine;
use serde_json::Value;

use super::text::{self, Element};
use super::{decimal, BinaryHandling, DecimalHandling, EventFormat, Kind};

/// The text to bind for one value (`None` for NULL), or why it cannot be
/// read.
pub fn decode(kind: &Kind, v: &Value, fmt: &EventFormat) -> Result<Option<String>, String> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(kind, n)?,
        Value::String(s) => string(kind, s, fmt)?,
        Value::Array(items) => match kind {
            Kind::Array(elem) => text::write_array(&elements(elem, items, fmt)?),
            _ => v.to_string(),
        },
        Value::Object(m) => match (m.get("scale"), m.get("value")) {
            // io.debezium.data.VariableScaleDecimal
            (Some(Value::Number(scale)), Some(Value::String(b)))
                if matches!(kind, Kind::Numeric { .. }) =>
            {
                let scale = scale
                    .as_u64()
                    .and_then(|s| u32::try_from(s).ok())
                    .ok_or("a VariableScaleDecimal with a bad scale")?;
                decimal::from_unscaled(&base64_bytes(b)?, scale)
            }
            _ => v.to_string(),
        },
    }))
}

fn elements(elem: &Kind, items: &[Value], fmt: &EventFormat) -> Result<Vec<Element>, String> {
    items
        .iter()
        .map(|item| {
            Ok(match item {
                Value::Array(inner) => Element::Array(elements(elem, inner, fmt)?),
                other => decode(elem, other, fmt)?.map_or(Element::Null, Element::Value),
            })
        })
        .collect()
}

fn base64_bytes(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("not base64 ({e}): {s:?}"))
}

fn number(kind: &Kind, n: &serde_json::Number) -> Result<String, String> {
    let int = || {
        n.as_i64()
            .ok_or_else(|| format!("{n} is not a whole number of days or microseconds"))
    };
    Ok(match kind {
        Kind::Date => match int()? {
            d if d == i64::from(i32::MAX) => "infinity".into(),
            d if d == i64::from(i32::MIN) => "-infinity".into(),
            d => text::write_date(d),
        },
        Kind::Time(_) => text::write_time(int()?),
        Kind::Timestamp(_) | Kind::TimestampTz => match int()? {
            i64::MAX => "infinity".into(),
            i64::MIN => "-infinity".into(),
            us if matches!(kind, Kind::TimestampTz) => text::write_timestamptz(us),
            us => text::write_timestamp(us),
        },
        Kind::Interval => format!("{} microseconds", int()?),
        _ => n.to_string(),
    })
}

fn string(kind: &Kind, s: &str, fmt: &EventFormat) -> Result<String, String> {
    Ok(match kind {
        Kind::Bytea => {
            let bytes = match fmt.binary {
                BinaryHandling::Hex => text::parse_bytea(&format!("\\x{s}"))
                    .ok_or_else(|| format!("not hex: {s:?}"))?,
                BinaryHandling::Bytes | BinaryHandling::Base64 => base64_bytes(s)?,
            };
            text::write_bytea(&bytes)
        }
        Kind::TimestampTz if s != "infinity" && s != "-infinity" => {
            match text::parse_iso_timestamp(s) {
                Some(us) => text::write_timestamptz(us),
                None => s.to_string(),
            }
        }
        // org.apache.kafka.connect.data.Decimal without a schema: the
        // target's declared scale is the only one there is.
        Kind::Numeric { scale, .. } if fmt.decimal == DecimalHandling::Precise => match scale {
            Some(scale) => decimal::from_unscaled(&base64_bytes(s)?, *scale),
            None => {
                return Err(format!(
                    "a precise decimal ({s:?}) for a numeric column without a declared scale"
                ))
            }
        },
        _ => s.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::encode;
    use serde_json::json;

    /// Every exact representation decodes to the text it was made from.
    #[test]
    fn exact_encodings_decode_to_the_same_text() {
        let fmts = [
            EventFormat::default(),
            EventFormat {
                decimal: DecimalHandling::String,
                interval: crate::types::IntervalHandling::String,
                binary: BinaryHandling::Hex,
                ..EventFormat::default()
            },
            EventFormat {
                binary: BinaryHandling::Base64,
                ..EventFormat::default()
            },
        ];
        let cases: Vec<(Kind, &str)> = vec![
            (Kind::Bool, "t"),
            (Kind::Int16, "-32768"),
            (Kind::Int64, "9223372036854775807"),
            (Kind::Float32, "3.4028235e+38"),
            (Kind::Float64, "-1.7976931348623157e+308"),
            (Kind::Float64, "-Infinity"),
            (
                Kind::Numeric {
                    precision: None,
                    scale: None,
                },
                "-12.340",
            ),
            (
                Kind::Numeric {
                    precision: None,
                    scale: None,
                },
                "0",
            ),
            (Kind::Bytea, "\\x00ff0a"),
            (Kind::Date, "0001-01-01 BC"),
            (Kind::Date, "-infinity"),
            (Kind::Date, "10000-01-01"),
            (Kind::Time(6), "23:59:59.999999"),
            (Kind::Timestamp(6), "0001-01-01 00:00:00 BC"),
            (Kind::Timestamp(6), "infinity"),
            (Kind::TimestampTz, "100000-01-01 23:59:59.999999+00"),
            (Kind::TimestampTz, "4713-01-01 00:00:00+00 BC"),
            (Kind::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            (
                Kind::Array(Box::new(Kind::Text)),
                r#"{"a,b","c\"d",NULL,""}"#,
            ),
            (Kind::Array(Box::new(Kind::Bytea)), r#"{"\\x00",NULL}"#),
            (Kind::Array(Box::new(Kind::Int32)), "{{1,2},{3,4}}"),
        ];
        for fmt in &fmts {
            for (kind, t) in &cases {
                let e = encode(kind, t, fmt);
                assert!(e.exact, "{kind:?} {t} should be exact");
                let back = decode(kind, &e.value, fmt)
                    .expect("decodes")
                    .expect("not null");
                // Floats: the same number; the rest: the same text once
                // re-read as an array (quoting differs) or verbatim.
                match kind {
                    Kind::Float32 | Kind::Float64 => {
                        assert_eq!(back.parse::<f64>().ok(), t.parse::<f64>().ok(), "{t}")
                    }
                    Kind::Array(_) => assert_eq!(text::parse_array(&back), text::parse_array(t)),
                    Kind::Bool => assert_eq!(back, "true"),
                    _ => assert_eq!(back, *t, "{kind:?} under {fmt:?}"),
                }
            }
        }
    }

    #[test]
    fn values_past_an_i64_of_microseconds_travel_as_text() {
        let e = encode(
            &Kind::TimestampTz,
            "294276-12-31 23:59:59.999999+00",
            &EventFormat::default(),
        );
        assert!(!e.exact);
        assert_eq!(e.value, json!("294276-12-31 23:59:59.999999+00"));
    }

    #[test]
    fn interval_strings_are_postgres_input() {
        let fmt = EventFormat {
            interval: crate::types::IntervalHandling::String,
            ..EventFormat::default()
        };
        let e = encode(&Kind::Interval, "-1 days", &fmt);
        assert_eq!(e.value, json!("P0Y0M-1DT0H0M0S"));
        assert_eq!(
            decode(&Kind::Interval, &e.value, &fmt),
            Ok(Some("P0Y0M-1DT0H0M0S".into()))
        );
    }

    #[test]
    fn precise_decimal_needs_a_scale() {
        let fmt = EventFormat::default();
        let fixed = Kind::Numeric {
            precision: Some(10),
            scale: Some(2),
        };
        assert_eq!(
            decode(&fixed, &json!("BNI="), &fmt),
            Ok(Some("12.34".into()))
        );
        assert!(decode(
            &Kind::Numeric {
                precision: None,
                scale: None
            },
            &json!("BNI="),
            &fmt
        )
        .is_err());
    }
}
