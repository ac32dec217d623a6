//! One MySQL value → Debezium MySQL connector's representation (the
//! `before`/`after` field) and, where the sink could not read that back
//! exactly by the target column's kind, the PostgreSQL input text it writes
//! instead ([`crate::event::Record::exact`], as for PostgreSQL sources).
//!
//! Values come two ways: the snapshot reads them with a query (the binary
//! protocol, the session in UTC), the binlog carries them as rows events (a
//! `TIMESTAMP` as epoch seconds, an `ENUM` as its index, a `SET` as a bit
//! mask). Both meet in one conversion per column type:
//!
//! | MySQL | Debezium (defaults) | exact text |
//! |---|---|---|
//! | integers | number (`BIGINT UNSIGNED` past 2^63 wraps, as `long` mode does) | past 2^63 |
//! | `FLOAT`, `DOUBLE` | number | |
//! | `DECIMAL(p,s)` | `Decimal`: base64 unscaled, or string / double per `decimal_handling` | always |
//! | `DATE` | days since the epoch (`io.debezium.time.Date`) | |
//! | `DATETIME(0-3)` / `(4-6)` | epoch ms (`Timestamp`) / µs (`MicroTimestamp`) | always |
//! | `TIMESTAMP` | ISO-8601 in UTC (`ZonedTimestamp`) | always |
//! | `TIME` | µs (`MicroTime`) | |
//! | `YEAR` | number (`Year`) | |
//! | `ENUM`, `SET` | the member names (`Enum`, `EnumSet`) | |
//! | `BIT(1)` / `BIT(n)` | boolean / bytes little-endian (`Bits`) | |
//! | text, `JSON` | string | |
//! | binary, spatial | bytes per `binary_handling` | |
//!
//! Zero dates (`0000-00-00`) are null, as Debezium makes them.

use base64::Engine;
use mysql_async::Value as My;
use serde_json::{json, Value};

use super::columns::{Column, MyType};
use crate::types::text::{days_from_civil, write_iso_timestamp};
use crate::types::{decimal, BinaryHandling, DecimalHandling, EventFormat};

/// A converted value: Debezium's representation, and the PostgreSQL input
/// text when that representation is not exact.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub value: Value,
    pub exact: Option<String>,
}

fn plain(value: Value) -> Converted {
    Converted { value, exact: None }
}

const DAY_MICROS: i64 = 86_400_000_000;

/// Where a value was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// A rows event: `TIMESTAMP` as epoch seconds, `ENUM` as its index,
    /// `SET` as a bit mask, text in the column's character set.
    Binlog,
    /// A query (the snapshot, verify): the binary protocol's values,
    /// `TIMESTAMP` in the session's UTC, `ENUM`/`SET` by name, text in
    /// UTF-8 (text forms are read too).
    Query,
}

/// Converts `v` of column `c`; an error names what could not be read.
pub fn convert(c: &Column, v: &My, from: From, fmt: &EventFormat) -> Result<Converted, String> {
    if matches!(v, My::NULL) {
        return Ok(plain(Value::Null));
    }
    let bad = || format!("column {} ({}): cannot read {v:?}", c.name, c.column_type);
    Ok(match &c.ty {
        MyType::Int { bits, unsigned } => {
            let n: i128 = match v {
                My::Int(i) => i128::from(*i),
                My::UInt(u) => i128::from(*u),
                My::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?,
                _ => return Err(bad()),
            };
            // Without signedness metadata the binlog reads an unsigned
            // value as signed: put it back in range.
            let n = if *unsigned && n < 0 {
                n + (1i128 << bits)
            } else {
                n
            };
            match i64::try_from(n) {
                Ok(i) => plain(json!(i)),
                Err(_) => Converted {
                    value: json!(n as i64),
                    exact: Some(n.to_string()),
                },
            }
        }
        MyType::Float | MyType::Double => {
            let f: f64 = match v {
                // An f32 by its shortest text, not its binary expansion.
                My::Float(f) => f.to_string().parse().map_err(|_| bad())?,
                My::Double(d) => *d,
                My::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?,
                My::Int(i) => *i as f64,
                _ => return Err(bad()),
            };
            plain(json!(f))
        }
        MyType::Decimal { scale, .. } => {
            let text = text_of(v).ok_or_else(bad)?;
            let value = match fmt.decimal {
                DecimalHandling::Precise => {
                    let (bytes, s) = decimal::to_unscaled(&text).ok_or_else(bad)?;
                    // The column's scale, as Kafka Connect's Decimal has it.
                    let bytes = if s == *scale {
                        bytes
                    } else {
                        let padded = pad_scale(&text, *scale).ok_or_else(bad)?;
                        decimal::to_unscaled(&padded).ok_or_else(bad)?.0
                    };
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                DecimalHandling::String => json!(text),
                DecimalHandling::Double => json!(text.parse::<f64>().map_err(|_| bad())?),
            };
            Converted {
                value,
                exact: Some(text),
            }
        }
        MyType::Text { encoding } => match v {
            // The binlog has the column's own bytes; the snapshot's text
            // comes in the session's character set (UTF-8).
            My::Bytes(b) => match (encoding, from) {
                (Some(e), From::Binlog) => plain(json!(e.decode_without_bom_handling(b).0)),
                _ => plain(json!(String::from_utf8_lossy(b))),
            },
            other => plain(json!(text_of(other).ok_or_else(bad)?)),
        },
        MyType::Json => match v {
            My::Bytes(b) => plain(json!(String::from_utf8_lossy(b))),
            _ => return Err(bad()),
        },
        MyType::Binary { pad } => match v {
            // BINARY(n) in the binlog: without its trailing zero bytes.
            My::Bytes(b) => match pad {
                Some(n) if b.len() < *n => {
                    let mut full = b.clone();
                    full.resize(*n, 0);
                    plain(bytes(&full, fmt))
                }
                _ => plain(bytes(b, fmt)),
            },
            _ => return Err(bad()),
        },
        MyType::Date => match date_time(v).ok_or_else(bad)? {
            None => plain(Value::Null),
            Some((days, _)) => plain(json!(days)),
        },
        MyType::DateTime { fsp } => match date_time(v).ok_or_else(bad)? {
            None => plain(Value::Null),
            Some((days, micros)) => {
                let us = days * DAY_MICROS + micros;
                Converted {
                    value: if *fsp <= 3 {
                        json!(us.div_euclid(1000))
                    } else {
                        json!(us)
                    },
                    exact: Some(crate::types::text::write_timestamp(us)),
                }
            }
        },
        MyType::Timestamp { .. } => {
            let us = match v {
                // The binlog: seconds since the epoch (and microseconds).
                My::Bytes(b) if from == From::Binlog => {
                    let s = std::str::from_utf8(b).map_err(|_| bad())?;
                    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
                    let sec: i64 = sec.parse().map_err(|_| bad())?;
                    let frac: i64 = format!("{frac:0<6}")[..6].parse().map_err(|_| bad())?;
                    (sec != 0 || frac != 0).then_some(sec * 1_000_000 + frac)
                }
                // The snapshot: its text in UTC.
                _ => date_time(v)
                    .ok_or_else(bad)?
                    .map(|(days, micros)| days * DAY_MICROS + micros),
            };
            match us {
                None => plain(Value::Null),
                Some(us) => Converted {
                    value: json!(write_iso_timestamp(us)),
                    exact: Some(crate::types::text::write_timestamptz(us)),
                },
            }
        }
        MyType::Time { .. } => plain(json!(time_micros(v).ok_or_else(bad)?)),
        MyType::Year => {
            let y: i64 = match v {
                My::Int(i) => *i,
                My::UInt(u) => *u as i64,
                My::Bytes(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?,
                _ => return Err(bad()),
            };
            // The binlog writes YEAR 0000 as 1900 + 0 (1900 is no YEAR).
            plain(json!(if y == 1900 { 0 } else { y }))
        }
        MyType::Enum(members) => match v {
            My::Int(i) => plain(json!(member(members, *i).ok_or_else(bad)?)),
            My::UInt(u) => plain(json!(member(members, *u as i64).ok_or_else(bad)?)),
            My::Bytes(b) => plain(json!(String::from_utf8_lossy(b))),
            _ => return Err(bad()),
        },
        MyType::Set(members) => match v {
            My::Bytes(b) if from == From::Binlog => {
                let names: Vec<&str> = members
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| b.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0))
                    .map(|(_, m)| m.as_str())
                    .collect();
                plain(json!(names.join(",")))
            }
            My::Bytes(b) => plain(json!(String::from_utf8_lossy(b))),
            My::Int(i) => plain(json!(set_names(members, *i as u64))),
            My::UInt(u) => plain(json!(set_names(members, *u))),
            _ => return Err(bad()),
        },
        MyType::Bit(n) => {
            let b = match v {
                My::Bytes(b) => b.clone(),
                My::Int(i) => i.to_be_bytes().to_vec(),
                My::UInt(u) => u.to_be_bytes().to_vec(),
                _ => return Err(bad()),
            };
            if *n == 1 {
                plain(json!(b.iter().any(|x| *x != 0)))
            } else {
                // Big-endian as stored; Debezium's Bits is little-endian.
                let len = (*n as usize).div_ceil(8);
                let mut le: Vec<u8> = b.iter().rev().take(len).copied().collect();
                le.resize(len, 0);
                plain(bytes(&le, fmt))
            }
        }
    })
}

fn member(members: &[String], index: i64) -> Option<String> {
    match index {
        0 => Some(String::new()),
        i => members.get(usize::try_from(i - 1).ok()?).cloned(),
    }
}

fn set_names(members: &[String], mask: u64) -> String {
    members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 64 && mask & (1 << i) != 0)
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn bytes(b: &[u8], fmt: &EventFormat) -> Value {
    match fmt.binary {
        BinaryHandling::Bytes | BinaryHandling::Base64 => {
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
        BinaryHandling::Hex => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

fn text_of(v: &My) -> Option<String> {
    Some(match v {
        My::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        My::Int(i) => i.to_string(),
        My::UInt(u) => u.to_string(),
        My::Float(f) => f.to_string(),
        My::Double(d) => d.to_string(),
        _ => return None,
    })
}

/// `12.3` at scale 3 → `12.300`.
fn pad_scale(text: &str, scale: u32) -> Option<String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > scale as usize {
        return None;
    }
    Some(if scale == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac:0<width$}", width = scale as usize)
    })
}

/// A date or date-time as (days since the epoch, µs into the day); `None`
/// for MySQL's zero date.
fn date_time(v: &My) -> Option<Option<(i64, i64)>> {
    let (y, mo, d, h, mi, s, us) = match v {
        My::Date(y, mo, d, h, mi, s, us) => (
            i64::from(*y),
            i64::from(*mo),
            i64::from(*d),
            i64::from(*h),
            i64::from(*mi),
            i64::from(*s),
            i64::from(*us),
        ),
        My::Bytes(b) => {
            let t = std::str::from_utf8(b).ok()?;
            let (date, time) = t.split_once(' ').unwrap_or((t, "00:00:00"));
            let mut p = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
            let (y, mo, d) = (p.next()??, p.next()??, p.next()??);
            let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
            let mut q = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
            let (h, mi, s) = (q.next()??, q.next()??, q.next()??);
            let us: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
            (y, mo, d, h, mi, s, us)
        }
        _ => return None,
    };
    if y == 0 && mo == 0 && d == 0 {
        return Some(None);
    }
    // A partial zero date (2024-00-00) is not a day either.
    if mo == 0 || d == 0 {
        return Some(None);
    }
    Some(Some((
        days_from_civil(y, mo, d),
        ((h * 60 + mi) * 60 + s) * 1_000_000 + us,
    )))
}

/// A `TIME` as signed microseconds.
fn time_micros(v: &My) -> Option<i64> {
    match v {
        My::Time(neg, days, h, m, s, us) => {
            let t =
                ((i64::from(*days) * 24 + i64::from(*h)) * 60 + i64::from(*m)) * 60 + i64::from(*s);
            let t = t * 1_000_000 + i64::from(*us);
            Some(if *neg { -t } else { t })
        }
        My::Bytes(b) => {
            let t = std::str::from_utf8(b).ok()?;
            let (neg, t) = match t.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, t),
            };
            let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
            let mut q = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
            let (h, m, s) = (q.next()??, q.next()??, q.next()??);
            let us: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
            let t = ((h * 60 + m) * 60 + s) * 1_000_000 + us;
            Some(if neg { -t } else { t })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: MyType) -> Column {
        Column {
            name: "c".into(),
            ty,
            column_type: "t".into(),
            nullable: true,
            default: None,
        }
    }

    /// As the snapshot reads it.
    fn text(ty: MyType, t: &str) -> Converted {
        let v = My::Bytes(t.as_bytes().to_vec());
        convert(&col(ty), &v, From::Query, &EventFormat::default()).expect("converts")
    }

    /// As the binlog carries it.
    fn bin(ty: MyType, v: My) -> Converted {
        convert(&col(ty), &v, From::Binlog, &EventFormat::default()).expect("converts")
    }

    #[test]
    fn snapshot_text_and_binlog_values_agree() {
        // DATETIME(3): epoch ms either way.
        let dt = MyType::DateTime { fsp: 3 };
        let a = text(dt.clone(), "2024-02-29 13:37:03.250");
        assert_eq!(a, bin(dt, My::Date(2024, 2, 29, 13, 37, 3, 250_000)));
        assert_eq!(a.value, json!(1_709_213_823_250i64));
        assert_eq!(a.exact.as_deref(), Some("2024-02-29 13:37:03.25"));
        // TIMESTAMP: epoch seconds in the binlog, UTC text in the snapshot.
        let ts = MyType::Timestamp { fsp: 0 };
        let a = text(ts.clone(), "2018-06-20 13:37:03");
        assert_eq!(a, bin(ts, My::Bytes(b"1529501823".to_vec())));
        assert_eq!(a.value, json!("2018-06-20T13:37:03Z"));
        // ENUM: index or name.
        let e = MyType::Enum(vec!["new".into(), "paid".into()]);
        assert_eq!(bin(e.clone(), My::Int(2)).value, json!("paid"));
        assert_eq!(text(e, "paid").value, json!("paid"));
        // SET: bit mask or names.
        let s = MyType::Set(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(bin(s.clone(), My::Bytes(vec![0b101])).value, json!("a,c"));
        assert_eq!(text(s, "a,c").value, json!("a,c"));
        // DATE: days since the epoch.
        assert_eq!(text(MyType::Date, "1970-01-02").value, json!(1));
        assert_eq!(
            bin(MyType::Date, My::Date(1970, 1, 2, 0, 0, 0, 0)).value,
            json!(1)
        );
        // YEAR 0000: 1900 + 0 in the binlog.
        assert_eq!(
            bin(MyType::Year, My::Bytes(b"1900".to_vec())).value,
            json!(0)
        );
        assert_eq!(text(MyType::Year, "0000").value, json!(0));
        // TIME: signed microseconds past 24 hours.
        let t = MyType::Time { fsp: 0 };
        assert_eq!(
            text(t.clone(), "-838:59:59").value,
            json!(-3_020_399_000_000i64)
        );
        assert_eq!(
            bin(t, My::Time(true, 34, 22, 59, 59, 0)).value,
            json!(-3_020_399_000_000i64)
        );
    }

    #[test]
    fn zero_dates_are_null_and_unsigned_values_are_in_range() {
        assert_eq!(text(MyType::Date, "0000-00-00").value, Value::Null);
        let u8_ = MyType::Int {
            bits: 8,
            unsigned: true,
        };
        assert_eq!(bin(u8_, My::Int(-1)).value, json!(255));
        let u64_ = MyType::Int {
            bits: 64,
            unsigned: true,
        };
        let big = bin(u64_, My::UInt(u64::MAX));
        assert_eq!(big.value, json!(-1));
        assert_eq!(big.exact.as_deref(), Some("18446744073709551615"));
    }

    #[test]
    fn binlog_bytes_are_read_in_the_columns_character_set_and_length() {
        let cp1252 = MyType::Text {
            encoding: crate::mysql::columns::encoding("latin1"),
        };
        // 0x80 is the euro sign in MySQL's latin1 (Windows-1252).
        assert_eq!(
            bin(cp1252.clone(), My::Bytes(vec![b'5', 0x80])).value,
            json!("5€")
        );
        assert_eq!(text(cp1252, "5€").value, json!("5€"));
        let b16 = MyType::Binary { pad: Some(4) };
        assert_eq!(
            bin(b16.clone(), My::Bytes(vec![1, 2])).value,
            json!("AQIAAA==")
        );
        assert_eq!(
            convert(
                &col(b16),
                &My::Bytes(vec![1, 2, 0, 0]),
                From::Query,
                &EventFormat::default()
            )
            .expect("converts")
            .value,
            json!("AQIAAA==")
        );
    }

    #[test]
    fn decimals_carry_the_columns_scale() {
        let d = MyType::Decimal {
            precision: 10,
            scale: 2,
        };
        let c = text(d, "12.34");
        assert_eq!(c.value, json!("BNI="));
        assert_eq!(c.exact.as_deref(), Some("12.34"));
        assert_eq!(pad_scale("12.3", 3).as_deref(), Some("12.300"));
    }
}
