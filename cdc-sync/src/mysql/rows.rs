//! A rows event's rows as values the conversion reads (`value.rs`), with
//! the columns the binlog names.

use mysql_async::binlog::value::BinlogValue;
use mysql_async::Value as My;

use super::columns::MyType;
use crate::event::Op;
use crate::source::SourceError;

/// One change of a row: its op, before and after.
pub type Step<'a> = (Op, Option<&'a [My]>, Option<&'a [My]>);

/// A row's columns: name (`@n` without full metadata) and the type its
/// binlog value has. The same for every row of a rows event: read once.
pub fn columns(row: &mysql_async::binlog::row::BinlogRow) -> Vec<(String, MyType)> {
    row.columns_ref()
        .iter()
        .map(|c| (c.name_str().into_owned(), binlog_type(c)))
        .collect()
}

/// A row's values.
pub fn values(row: mysql_async::binlog::row::BinlogRow) -> Result<Vec<My>, SourceError> {
    let vals: Vec<My> = row
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
    Ok(vals)
}

/// How a column's binlog value reads when the shape no longer has the
/// column (dropped or renamed since the row was written).
pub fn binlog_type(c: &mysql_async::Column) -> MyType {
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
        _ if c.character_set() == 63 => MyType::Binary { pad: None },
        // A decimal's text, an enum's index, a string's bytes (latin1's
        // collations 5, 8, 15, 31, 47, 48, 49, 94).
        _ => MyType::Text {
            encoding: matches!(c.character_set(), 5 | 8 | 15 | 31 | 47 | 48 | 49 | 94)
                .then(|| super::columns::encoding("latin1"))
                .flatten(),
        },
    }
}

/// The member lists of a table map's `ENUM` and `SET` columns, by column
/// index, as the binlog wrote them (full row metadata): a row is read by
/// the members its table had then, not by today's.
pub fn members(tme: &mysql_async::binlog::events::TableMapEvent<'_>) -> Vec<(usize, MyType)> {
    use mysql_async::binlog::events::OptionalMetadataField as F;
    use mysql_async::consts::ColumnType as T;
    let mut enums: Vec<Vec<String>> = Vec::new();
    let mut sets: Vec<Vec<String>> = Vec::new();
    for field in tme.iter_optional_meta().flatten() {
        match field {
            F::EnumStrValue(v) => {
                for e in v.iter_values().flatten() {
                    enums.push(e.values().iter().map(|m| m.value().into_owned()).collect());
                }
            }
            F::SetStrValue(v) => {
                for e in v.iter_values().flatten() {
                    sets.push(e.values().iter().map(|m| m.value().into_owned()).collect());
                }
            }
            _ => {}
        }
    }
    // Names written in a character set other than UTF-8 are not read here:
    // those columns keep the members `information_schema` gave.
    let readable = |m: &Vec<String>| !m.iter().any(|x| x.contains('\u{fffd}'));
    let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
    let mut out = Vec::new();
    for i in 0..tme.columns_count() as usize {
        match tme.get_column_type(i) {
            Ok(Some(T::MYSQL_TYPE_ENUM)) => {
                if let Some(m) = enums.next().filter(readable) {
                    out.push((i, MyType::Enum(m)));
                }
            }
            Ok(Some(T::MYSQL_TYPE_SET)) => {
                if let Some(m) = sets.next().filter(readable) {
                    out.push((i, MyType::Set(m)));
                }
            }
            _ => {}
        }
    }
    out
}
