//! From an event to SQL on the target: rename, exclude, upsert, delete,
//! truncate. Values are bound as text and cast to the target column's type
//! (dates and timestamps arrive as Debezium's epoch numbers).

use serde_json::Value;
use sqlx::{PgConnection, Postgres, Transaction};

use super::target::{quote, TargetTable};
use crate::event::{Record, UNAVAILABLE};

/// A statement with its text parameters.
pub struct Mapped {
    pub sql: String,
    pub params: Vec<Option<String>>,
}

impl Mapped {
    pub async fn execute(&self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        let conn: &mut PgConnection = tx;
        let mut q = sqlx::query(&self.sql);
        for p in &self.params {
            q = q.bind(p);
        }
        q.execute(conn).await.map(|_| ())
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// `$n` cast to `type_name`, reading Debezium's numeric encodings of time.
fn cast(n: usize, type_name: &str) -> String {
    let p = format!("${n}");
    let is_int = format!("{p} ~ '^-?[0-9]+$'");
    match type_name {
        "date" => format!("(CASE WHEN {is_int} THEN DATE '1970-01-01' + {p}::int ELSE {p}::date END)"),
        t if t.starts_with("timestamp") && !t.contains("with time zone") => {
            format!("(CASE WHEN {is_int} THEN to_timestamp({p}::float8 / 1e6) AT TIME ZONE 'UTC' ELSE {p}::{t} END)")
        }
        t if t.starts_with("time") && !t.starts_with("timestamp") && !t.contains("with time zone") => {
            format!("(CASE WHEN {is_int} THEN TIME '00:00' + make_interval(secs => {p}::float8 / 1e6) ELSE {p}::{t} END)")
        }
        "bytea" => format!("decode({p}, 'base64')"),
        t => format!("{p}::{t}"),
    }
}

/// Maps `row` (source column → value) to target columns, skipping excluded
/// columns, columns the target lacks, and unavailable (TOAST) values.
fn mapped_columns<'a>(t: &'a TargetTable, row: &'a serde_json::Map<String, Value>) -> Vec<(&'a str, &'a Value)> {
    let m = &t.mapping;
    row.iter()
        .filter(|(src, _)| !m.exclude.iter().any(|e| e == *src))
        .filter(|(_, v)| v.as_str() != Some(UNAVAILABLE))
        .filter_map(|(src, v)| {
            let dst = m.rename.get(src).map_or(src.as_str(), String::as_str);
            t.columns.get(dst).map(|c| (c.name.as_str(), v))
        })
        .collect()
}

pub fn statement(t: &TargetTable, r: &Record) -> Option<Mapped> {
    let value = r.value.as_ref()?;
    match value.get("op").and_then(Value::as_str)? {
        "c" | "r" | "u" => {
            let row = value.get("after")?.as_object()?;
            let cols = mapped_columns(t, row);
            if cols.is_empty() {
                return None;
            }
            let names: Vec<String> = cols.iter().map(|(c, _)| quote(c)).collect();
            let exprs: Vec<String> = cols.iter().enumerate().map(|(i, (c, _))| cast(i + 1, &t.columns[*c].type_name)).collect();
            let pk: Vec<String> = t.primary_key.iter().map(|c| quote(c)).collect();
            let updates: Vec<String> = cols
                .iter()
                .filter(|(c, _)| !t.primary_key.iter().any(|k| k == c))
                .map(|(c, _)| format!("{0} = EXCLUDED.{0}", quote(c)))
                .collect();
            let conflict = if updates.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", updates.join(", ")) };
            Some(Mapped {
                sql: format!(
                    "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {conflict}",
                    t.qualified,
                    names.join(", "),
                    exprs.join(", "),
                    pk.join(", ")
                ),
                params: cols.iter().map(|(_, v)| text(v)).collect(),
            })
        }
        "d" => {
            let key = r.key.as_ref()?.as_object()?;
            let cols = mapped_columns(t, key);
            if cols.is_empty() {
                return None;
            }
            let conds: Vec<String> = cols.iter().enumerate().map(|(i, (c, _))| format!("{} = {}", quote(c), cast(i + 1, &t.columns[*c].type_name))).collect();
            Some(Mapped {
                sql: format!("DELETE FROM {} WHERE {}", t.qualified, conds.join(" AND ")),
                params: cols.iter().map(|(_, v)| text(v)).collect(),
            })
        }
        "t" => Some(Mapped { sql: format!("TRUNCATE {}", t.qualified), params: Vec::new() }),
        _ => None,
    }
}
