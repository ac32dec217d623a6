//! From an event to SQL on the target: rename, exclude, upsert, delete,
//! truncate. Every value is turned back into PostgreSQL's input text — the
//! record's exact text where the event's representation is lossy, else
//! [`crate::types::decode`] by the target column's kind — bound as text and
//! cast to the target column's type.

use serde_json::{Map, Value};
use sqlx::PgConnection;

use super::target::{quote, TargetTable};
use crate::event::{Record, UNAVAILABLE};
use crate::types;

/// A statement with its text parameters.
pub struct Mapped {
    pub sql: String,
    pub params: Vec<Option<String>>,
}

impl Mapped {
    pub async fn execute(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut q = sqlx::query(&self.sql);
        for p in &self.params {
            q = q.bind(p);
        }
        q.execute(conn).await.map(|_| ())
    }
}

/// `$n` cast to `type_name`.
fn cast(n: usize, type_name: &str) -> String {
    cast_expr(&format!("${n}"), type_name)
}

/// A text expression cast to `type_name`.
fn cast_expr(p: &str, type_name: &str) -> String {
    format!("{p}::{type_name}")
}

/// A mapped column: (target column, the value's input text).
type Col<'a> = (&'a str, Option<String>);

/// Maps `row` (source column → value) to target columns and their input
/// texts, skipping excluded columns, columns the target lacks, and
/// unavailable (TOAST) values.
fn mapped_columns<'a>(
    t: &'a TargetTable,
    row: &'a Map<String, Value>,
    exact: Option<&Map<String, Value>>,
) -> Result<Vec<Col<'a>>, String> {
    let m = &t.mapping;
    let mut out = Vec::with_capacity(row.len());
    for (src, v) in row {
        if m.exclude.iter().any(|e| e == src) || v.as_str() == Some(UNAVAILABLE) {
            continue;
        }
        let dst = m.rename.get(src).map_or(src.as_str(), String::as_str);
        let Some(col) = t.columns.get(dst) else {
            continue;
        };
        let text = match exact.and_then(|x| x.get(src)) {
            Some(x) => x.as_str().map(str::to_string),
            None => types::decode(&col.kind, v, &t.format)
                .map_err(|e| format!("column {src} → {}.{dst}: {e}", t.qualified))?,
        };
        out.push((col.name.as_str(), text));
    }
    Ok(out)
}

/// The statement for one record (`None` when it writes nothing here).
pub fn statement(t: &TargetTable, r: &Record) -> Result<Option<Mapped>, String> {
    let Some(value) = r.value.as_ref() else {
        return Ok(None);
    };
    let exact = r.exact.as_ref();
    Ok(match value.get("op").and_then(Value::as_str) {
        Some("c" | "r" | "u") => {
            let Some(row) = value.get("after").and_then(Value::as_object) else {
                return Ok(None);
            };
            let cols = mapped_columns(t, row, exact)?;
            if cols.is_empty() {
                return Ok(None);
            }
            let names: Vec<String> = cols.iter().map(|(c, _)| quote(c)).collect();
            let exprs: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, (c, _))| cast(i + 1, &t.columns[*c].type_name))
                .collect();
            let pk: Vec<String> = t.primary_key.iter().map(|c| quote(c)).collect();
            let updates: Vec<String> = cols
                .iter()
                .filter(|(c, _)| !t.primary_key.iter().any(|k| k == c))
                .map(|(c, _)| format!("{0} = EXCLUDED.{0}", quote(c)))
                .collect();
            let conflict = if updates.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", updates.join(", "))
            };
            Some(Mapped {
                sql: format!(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {conflict}",
                    t.qualified,
                    names.join(", "),
                    exprs.join(", "),
                    pk.join(", ")
                ),
                params: cols.into_iter().map(|(_, v)| v).collect(),
            })
        }
        Some("d") => {
            let Some(key) = r.key.as_ref().and_then(Value::as_object) else {
                return Ok(None);
            };
            let cols = mapped_columns(t, key, exact)?;
            if cols.is_empty() {
                return Ok(None);
            }
            let conds: Vec<String> = cols
                .iter()
                .enumerate()
                .map(|(i, (c, _))| {
                    format!("{} = {}", quote(c), cast(i + 1, &t.columns[*c].type_name))
                })
                .collect();
            Some(Mapped {
                sql: format!("DELETE FROM {} WHERE {}", t.qualified, conds.join(" AND ")),
                params: cols.into_iter().map(|(_, v)| v).collect(),
            })
        }
        Some("t") => Some(Mapped {
            sql: format!("TRUNCATE {}", t.qualified),
            params: Vec::new(),
        }),
        _ => None,
    })
}

/// What a record does to the target, for batching consecutive records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Upsert of these target columns.
    Upsert(Vec<String>),
    Delete,
    Truncate,
    Nothing,
}

/// The shape of a record and its mapped values (upsert: the row; delete:
/// the key in primary-key order), or why a value cannot be read.
pub fn shape(t: &TargetTable, r: &Record) -> Result<(Shape, Vec<Option<String>>), String> {
    let nothing = Ok((Shape::Nothing, Vec::new()));
    let Some(value) = r.value.as_ref() else {
        return nothing;
    };
    let exact = r.exact.as_ref();
    match value.get("op").and_then(Value::as_str) {
        Some("c" | "r" | "u") => match value.get("after").and_then(Value::as_object) {
            Some(row) => {
                let cols = mapped_columns(t, row, exact)?;
                if cols.is_empty() {
                    return nothing;
                }
                let names = cols.iter().map(|(c, _)| c.to_string()).collect();
                Ok((
                    Shape::Upsert(names),
                    cols.into_iter().map(|(_, v)| v).collect(),
                ))
            }
            None => nothing,
        },
        Some("d") => match r.key.as_ref().and_then(Value::as_object) {
            Some(key) => {
                let mut cols = mapped_columns(t, key, exact)?;
                let vals = t
                    .primary_key
                    .iter()
                    .map(|k| {
                        cols.iter_mut()
                            .find(|(c, _)| c == k)
                            .and_then(|(_, v)| v.take())
                    })
                    .collect();
                Ok((Shape::Delete, vals))
            }
            None => nothing,
        },
        Some("t") => Ok((Shape::Truncate, Vec::new())),
        _ => nothing,
    }
}

/// A statement over column arrays: many rows, one round trip, one
/// prepared statement per shape.
pub struct Batch {
    pub sql: String,
    /// Column-major: one text array per column.
    pub columns: Vec<Vec<Option<String>>>,
}

impl Batch {
    pub async fn execute(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut q = sqlx::query(&self.sql);
        for c in &self.columns {
            q = q.bind(c);
        }
        q.execute(conn).await.map(|_| ())
    }
}

fn transpose(rows: Vec<Vec<Option<String>>>, width: usize) -> Vec<Vec<Option<String>>> {
    let mut cols = vec![Vec::with_capacity(rows.len()); width];
    for row in rows {
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
    }
    cols
}

/// Keeps the last row per key (a batch statement may touch a row once).
fn last_per_key(rows: Vec<Vec<Option<String>>>, key_idx: &[usize]) -> Vec<Vec<Option<String>>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Vec<Option<String>>> = rows
        .into_iter()
        .rev()
        .filter(|r| {
            seen.insert(
                key_idx
                    .iter()
                    .map(|i| r.get(*i).cloned().flatten())
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    out.reverse();
    out
}

/// One upsert of many rows with the same columns.
pub fn upsert_batch(t: &TargetTable, cols: &[String], rows: Vec<Vec<Option<String>>>) -> Batch {
    let key_idx: Vec<usize> = t
        .primary_key
        .iter()
        .filter_map(|k| cols.iter().position(|c| c == k))
        .collect();
    let rows = last_per_key(rows, &key_idx);
    let names: Vec<String> = cols.iter().map(|c| quote(c)).collect();
    let arrays: Vec<String> = (1..=cols.len()).map(|i| format!("${i}::text[]")).collect();
    let exprs: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| cast_expr(&format!("u.c{i}"), &t.columns[c].type_name))
        .collect();
    let aliases: Vec<String> = (0..cols.len()).map(|i| format!("c{i}")).collect();
    let pk: Vec<String> = t.primary_key.iter().map(|c| quote(c)).collect();
    let updates: Vec<String> = cols
        .iter()
        .filter(|c| !t.primary_key.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote(c)))
        .collect();
    let conflict = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    Batch {
        sql: format!(
            "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({}) ON CONFLICT ({}) {conflict}",
            t.qualified,
            names.join(", "),
            exprs.join(", "),
            arrays.join(", "),
            aliases.join(", "),
            pk.join(", ")
        ),
        columns: transpose(rows, cols.len()),
    }
}

/// One delete of many keys.
pub fn delete_batch(t: &TargetTable, keys: Vec<Vec<Option<String>>>) -> Batch {
    let n = t.primary_key.len();
    let arrays: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let exprs: Vec<String> = t
        .primary_key
        .iter()
        .enumerate()
        .map(|(i, k)| cast_expr(&format!("u.k{i}"), &t.columns[k].type_name))
        .collect();
    let pk: Vec<String> = t.primary_key.iter().map(|c| quote(c)).collect();
    Batch {
        sql: format!(
            "DELETE FROM {} WHERE ({}) IN (SELECT {} FROM UNNEST({}) AS u({}))",
            t.qualified,
            pk.join(", "),
            exprs.join(", "),
            arrays.join(", "),
            aliases.join(", ")
        ),
        columns: transpose(keys, n),
    }
}
