//! A table's shape as a schema-change record, in the stream.
//!
//! pgoutput describes a relation (a `Relation` message) before the first
//! change that uses it in a session and again after its shape changed, in
//! the transaction of that change. The stream turns the first description
//! of each table in a session, and every one that differs from the last,
//! into a record placed before the change: Debezium's schema-change event
//! (`tableChanges` with the table's columns) on `<prefix>.schema-changes`.
//! A sink compares it with the shape it stored last (`sink/evolve.rs`),
//! so a change made while `cdc run` was down is carried too; renames are
//! told apart from drop + add by the column's `attnum` (`position`).

use serde_json::{json, Value};
use sqlx::{PgConnection, Row};

use crate::event::{Record, VERSION};
use crate::lsn::Lsn;
use crate::pgoutput::Relation;

/// The topic of the schema-change events of `prefix`.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}.schema-changes")
}

/// The columns of `rel` as Debezium's `tableChanges[].table.columns`: the
/// type expression of each is the one pgoutput sent (the shape at that
/// point of the stream); `position` (`attnum`) and `optional` are read from
/// the catalog by name (no position for a column renamed or retyped again
/// since: a sink then takes a new name for a new column, and never drops
/// by name alone).
pub async fn columns(conn: &mut PgConnection, rel: &Relation) -> Result<Vec<Value>, sqlx::Error> {
    let oids: Vec<i64> = rel.columns.iter().map(|c| i64::from(c.type_oid)).collect();
    let mods: Vec<i32> = rel.columns.iter().map(|c| c.type_mod).collect();
    let names: Vec<&str> = rel.columns.iter().map(|c| c.name.as_str()).collect();
    let rows = sqlx::query(
        "SELECT format_type(x.o::oid, x.m), a.attnum::int8, a.attnotnull, format_type(a.atttypid, a.atttypmod), \
                CASE WHEN a.atthasmissing THEN a.attmissingval::text END \
         FROM unnest($1::int8[], $2::int4[], $3::text[]) WITH ORDINALITY AS x(o, m, n, i) \
         LEFT JOIN pg_attribute a ON a.attrelid = $4::int8::oid AND a.attname = x.n AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY x.i",
    )
    .bind(&oids)
    .bind(&mods)
    .bind(&names)
    .bind(i64::from(rel.oid))
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (c, r) in rel.columns.iter().zip(&rows) {
        let expr: String = r.try_get(0)?;
        // The catalog is today's, the relation the stream's: a column whose
        // type differs there (changed again since) has no known attnum.
        let now: Option<String> = r.try_get(3)?;
        let position: Option<i64> = r
            .try_get::<Option<i64>, _>(1)?
            .filter(|_| now.as_deref() == Some(expr.as_str()));
        let not_null: Option<bool> = r.try_get(2)?;
        // What the rows already there read for a column added with a
        // default (PostgreSQL keeps it as the column's "missing value",
        // also after the default is dropped again), as a string literal:
        // a sink adds the column with it (`sink/evolve.rs`).
        let missing: Option<String> = r.try_get(4)?;
        let default = missing
            .as_deref()
            .and_then(crate::types::text::parse_array)
            .and_then(|items| match items.into_iter().next() {
                Some(crate::types::text::Element::Value(v)) => {
                    Some(format!("'{}'", v.replace('\'', "''")))
                }
                _ => None,
            });
        let type_name = expr.split('(').next().unwrap_or(&expr).trim().to_string();
        out.push(json!({
            "name": c.name,
            "typeName": type_name,
            "typeExpression": expr,
            "position": position,
            "optional": !not_null.unwrap_or(false),
            "key": c.key,
            "defaultValueExpression": default,
        }));
    }
    Ok(out)
}

/// Where and when a schema-change record was read.
pub struct At<'a> {
    pub prefix: &'a str,
    pub db: &'a str,
    pub commit_lsn: Lsn,
    pub seq: u32,
    pub ts_ms: i64,
}

/// The schema-change record of `rel` with `columns`: `ALTER` (the shape
/// may or may not differ from the one before; `CREATE` is the snapshot's).
pub fn record(rel: &Relation, columns: Vec<Value>, at: &At<'_>) -> Record {
    let keys: Vec<&str> = rel
        .columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.as_str())
        .collect();
    build(
        "postgresql",
        (&rel.schema, &rel.table),
        &keys,
        columns,
        "ALTER",
        at,
    )
}

/// The `attnum` of each column of `table` (`schema.table`).
pub async fn positions(
    conn: &mut PgConnection,
    table: &str,
) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let rows = sqlx::query(
        "SELECT a.attname::text, a.attnum::int8 FROM pg_attribute a \
         WHERE a.attrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The shape a snapshot copies `table` (`schema.table`) with: its columns,
/// their `format_type` and `attnum` (the sinks' baseline).
pub fn snapshot_record(
    table: &str,
    columns: &[(String, String)],
    positions: &std::collections::HashMap<String, i64>,
    at: &At<'_>,
) -> Record {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let columns = columns
        .iter()
        .map(|(n, ty)| {
            json!({
                "name": n,
                "typeName": ty.split('(').next().unwrap_or(ty).trim(),
                "typeExpression": ty,
                "position": positions.get(n),
            })
        })
        .collect();
    build("postgresql", (schema, name), &[], columns, "CREATE", at)
}

/// A schema-change record of `connector` (`postgresql`, `mysql`): `kind`
/// is `CREATE` (a snapshot's baseline) or `ALTER`.
pub(crate) fn build(
    connector: &str,
    (schema, table): (&str, &str),
    keys: &[&str],
    columns: Vec<Value>,
    kind: &str,
    at: &At<'_>,
) -> Record {
    let value = json!({
        "source": {
            "version": VERSION,
            "connector": connector,
            "name": at.prefix,
            "ts_ms": at.ts_ms,
            "db": at.db,
            "schema": schema,
            "table": table,
            "lsn": at.commit_lsn.0,
        },
        "ts_ms": crate::now_ms(),
        "databaseName": at.db,
        "schemaName": schema,
        "ddl": Value::Null,
        "tableChanges": [{
            "type": kind,
            "id": format!("\"{}\".\"{schema}\".\"{table}\"", at.db),
            "table": {
                "primaryKeyColumnNames": keys,
                "columns": columns,
            },
        }],
    });
    Record {
        topic: topic(at.prefix),
        table: format!("{schema}.{table}"),
        key: Some(json!({ "databaseName": at.db, "schemaName": schema, "tableName": table })),
        value: Some(value),
        commit_lsn: at.commit_lsn,
        seq: at.seq,
        exact: None,
        schemas: None,
        shape: None,
    }
}

/// The columns of a schema-change record (`None` for any other record).
pub fn of(r: &Record) -> Option<&Vec<Value>> {
    r.value
        .as_ref()?
        .get("tableChanges")?
        .get(0)?
        .get("table")?
        .get("columns")?
        .as_array()
}

/// Whether two descriptions of a table differ in what a sink sees.
pub fn differs(a: &Relation, b: &Relation) -> bool {
    a.columns.len() != b.columns.len()
        || a.columns
            .iter()
            .zip(&b.columns)
            .any(|(x, y)| x.name != y.name || x.type_oid != y.type_oid || x.type_mod != y.type_mod)
}
