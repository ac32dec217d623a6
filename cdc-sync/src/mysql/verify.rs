//! `strangler cdc verify` for a MySQL source: does the target hold what
//! the monolith holds, after mapping and conversion?
//!
//! The two sides share no hash function or text form, so each source row
//! is converted exactly as the sink converts it (the same text the sink
//! binds for each mapped column), and the target compares, in chunks of
//! [`crate::verify::CHUNK`] rows in key order:
//!
//! ```text
//!  MySQL: SELECT mapped columns ORDER BY key LIMIT CHUNK (after the last key)
//!    → per column, the text the sink would write
//!  PostgreSQL: unnest(those texts) LEFT JOIN target ON key
//!    → per row: missing | differs (column by column, IS NOT DISTINCT FROM
//!      the text cast to the column's type) | equal
//!  then: target keys not among the source's → extra
//! ```

use std::collections::{BTreeMap, HashSet};

use mysql_async::prelude::Queryable;
use sqlx::{PgConnection, Row};

use super::columns::{ident, quoted, Shape};
use super::value::{convert, From};
use crate::sink::TargetTable;
use crate::source::SourceError;
use crate::types::{decode, EventFormat};
use crate::verify::{RowDiff, TableReport, CHUNK};

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Compares `shape` on the source with `target`.
pub async fn table(
    src: &mut mysql_async::Conn,
    shape: &Shape,
    dst: &mut PgConnection,
    target: &TargetTable,
    fmt: &EventFormat,
    mut progress: impl FnMut(usize, usize),
) -> Result<TableReport, SourceError> {
    let m = &target.mapping;
    let inverse: BTreeMap<&str, &str> = m
        .rename
        .iter()
        .map(|(s, t)| (t.as_str(), s.as_str()))
        .collect();
    // (source column index, target column) of every mapped column.
    let pairs: Vec<(usize, &crate::sink::TargetColumn)> = target
        .columns
        .values()
        .filter_map(|t| {
            let s = inverse.get(t.name.as_str()).copied().unwrap_or(&t.name);
            if m.exclude.iter().any(|x| x == s) {
                return None;
            }
            shape
                .columns
                .iter()
                .position(|c| c.name == s)
                .map(|i| (i, t))
        })
        .collect();
    let key_at: Vec<usize> = target
        .primary_key
        .iter()
        .map(|k| {
            pairs.iter().position(|(_, t)| t.name == *k).ok_or_else(|| {
                SourceError::Invalid(format!(
                    "verify {} → {}: the target's key column {k} has no source column",
                    m.source, m.target
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let src_key: Vec<String> = shape
        .key
        .iter()
        .map(|&i| ident(&shape.columns[i].name))
        .collect();
    let cols: Vec<String> = shape.columns.iter().map(|c| ident(&c.name)).collect();
    let source_rows: i64 = src
        .query_first(format!("SELECT COUNT(*) FROM {}", quoted(&shape.table)))
        .await?
        .unwrap_or(0);
    let target_rows: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}", target.qualified))
            .fetch_one(&mut *dst)
            .await?;
    let total = (source_rows.max(0) as usize)
        .div_ceil(CHUNK as usize)
        .max(1);
    // unnest($1::text[], …) AS s(v0, …, ord) joined to the target on its key.
    let aliases: Vec<String> = (0..pairs.len()).map(|i| format!("v{i}")).collect();
    let cast = |i: usize| format!("s.v{i}::{}", pairs[i].1.type_name);
    let same: Vec<String> = (0..pairs.len())
        .map(|i| format!("t.{} IS NOT DISTINCT FROM {}", q(&pairs[i].1.name), cast(i)))
        .collect();
    let join: Vec<String> = key_at
        .iter()
        .map(|&i| format!("t.{} = {}", q(&pairs[i].1.name), cast(i)))
        .collect();
    let key_text: Vec<String> = key_at
        .iter()
        .map(|&i| format!("({})::text", cast(i)))
        .collect();
    let compare = format!(
        "SELECT t.{first} IS NOT NULL, ({same}), ARRAY[{keys}] FROM unnest({params}) WITH ORDINALITY AS s({aliases}, ord) \
         LEFT JOIN {table} t ON {join} ORDER BY s.ord",
        first = q(&pairs[key_at[0]].1.name),
        same = same.join(" AND "),
        keys = key_text.join(", "),
        params = (1..=pairs.len()).map(|i| format!("${i}::text[]")).collect::<Vec<_>>().join(", "),
        aliases = aliases.join(", "),
        table = target.qualified,
        join = join.join(" AND "),
    );
    let mut differences = Vec::new();
    let mut differing_chunks = 0;
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut after: Option<Vec<mysql_async::Value>> = None;
    let mut chunks = 0;
    loop {
        let (cond, params) = match &after {
            None => (String::new(), Vec::new()),
            Some(k) => (
                format!(
                    "WHERE ({}) > ({})",
                    src_key.join(", "),
                    vec!["?"; k.len()].join(", ")
                ),
                k.clone(),
            ),
        };
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY {} LIMIT {CHUNK}",
            cols.join(", "),
            quoted(&shape.table),
            src_key.join(", ")
        );
        let rows: Vec<mysql_async::Row> = src.exec(sql, params).await?;
        if rows.is_empty() {
            break;
        }
        chunks += 1;
        let mut columns: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(rows.len()); pairs.len()];
        let mut last = None;
        for row in rows {
            let vals = row.unwrap();
            for (j, (i, t)) in pairs.iter().enumerate() {
                let c = &shape.columns[*i];
                let conv = convert(c, &vals[*i], From::Query, fmt)
                    .map_err(|e| SourceError::Invalid(format!("verify {}: {e}", m.source)))?;
                let text = match conv.exact {
                    Some(e) => Some(e),
                    None => decode(&t.kind, &conv.value, fmt).map_err(|e| {
                        SourceError::Invalid(format!("verify {}: column {}: {e}", m.source, c.name))
                    })?,
                };
                columns[j].push(text);
            }
            last = Some(
                shape
                    .key
                    .iter()
                    .map(|&i| vals[i].clone())
                    .collect::<Vec<_>>(),
            );
        }
        after = last;
        let mut query = sqlx::query(&compare);
        for c in &columns {
            query = query.bind(c);
        }
        let mut differ = false;
        for r in query.fetch_all(&mut *dst).await? {
            let present: bool = r.try_get(0)?;
            let equal: Option<bool> = r.try_get(1)?;
            let key: Vec<String> = r.try_get(2)?;
            if !present {
                differences.push(RowDiff {
                    key: key.clone(),
                    kind: "missing",
                });
                differ = true;
            } else if equal != Some(true) {
                differences.push(RowDiff {
                    key: key.clone(),
                    kind: "differs",
                });
                differ = true;
            }
            seen.insert(key);
        }
        if differ {
            differing_chunks += 1;
        }
        progress(chunks, total);
    }
    // Rows only in the target.
    let present = seen.len() - differences.iter().filter(|d| d.kind == "missing").count();
    if (target_rows.max(0) as usize) > present {
        let keys: Vec<String> = target
            .primary_key
            .iter()
            .map(|k| format!("{}::text", q(k)))
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT ARRAY[{}] FROM {}",
            keys.join(", "),
            target.qualified
        ))
        .fetch_all(&mut *dst)
        .await?;
        for r in rows {
            let key: Vec<String> = r.try_get(0)?;
            if !seen.contains(&key) {
                differences.push(RowDiff { key, kind: "extra" });
            }
        }
    }
    Ok(TableReport {
        source: m.source.to_string(),
        target: m.target.to_string(),
        source_rows,
        target_rows,
        chunks,
        differing_chunks,
        differences,
    })
}
