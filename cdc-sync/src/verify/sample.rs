//! The check right after a snapshot: a sample of each table, read inside
//! the snapshot's own transaction (so it is exactly what was copied), is
//! compared with every sink.
//!
//! ```text
//!  snapshot tx ─ COPY every table ─ sample ≤ N rows per table (as text) ─ commit
//!                                         │ Sample (via StatusReporter::snapshot_sampled)
//!                                         ▼
//!  per sink, per table: target row (mapped columns, ::text) by the sampled keys
//!      = snapshot row ─────────────────────────────▶ ok
//!      ≠ : = the source's row now (streaming moved it) ▶ ok
//!      ≠ : ask again every 500 ms until the deadline ─▶ reported (missing / differs)
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, Row};
use strangler_config::{TableMapping, TableName};

use super::{key_types, q, RowDiff};
use crate::sink::TargetTable;

/// Rows of one table as the snapshot read them (`col::text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledTable {
    pub table: TableName,
    pub columns: Vec<String>,
    /// Positions of the primary-key columns in `columns`.
    pub key: Vec<usize>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// What the snapshot sampled, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub tables: Vec<SampledTable>,
}

/// The outcome for one mapped table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SampleReport {
    pub source: String,
    pub target: String,
    pub checked: usize,
    pub differences: Vec<RowDiff>,
}

/// Reads up to `n` rows of `table` spread over it, inside the caller's
/// transaction: Bernoulli sampling when the table is large, else all rows
/// in random order.
pub async fn read(
    conn: &mut PgConnection,
    table: &TableName,
    columns: &[String],
    key: Vec<usize>,
    n: u32,
) -> Result<SampledTable, sqlx::Error> {
    let name = format!("{}.{}", q(&table.schema), q(&table.table));
    let estimate: f64 =
        sqlx::query_scalar("SELECT reltuples::float8 FROM pg_class WHERE oid = $1::regclass")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await?;
    let list: Vec<String> = columns.iter().map(|c| format!("{}::text", q(c))).collect();
    let from = if estimate > f64::from(n) * 10.0 {
        let pct = (f64::from(n) * 3.0 / estimate * 100.0).min(100.0);
        format!("{name} TABLESAMPLE BERNOULLI ({pct})")
    } else {
        format!("{name} ORDER BY random()")
    };
    let sql = format!("SELECT {} FROM {from} LIMIT {n}", list.join(", "));
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            (0..columns.len())
                .map(|i| r.try_get::<Option<String>, _>(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    Ok(SampledTable {
        table: table.clone(),
        columns: columns.to_vec(),
        key,
        rows,
    })
}

/// Mapped rows of one side by key: `SELECT key::text…, col::text… WHERE
/// (key) IN (the keys)`.
async fn fetch(
    conn: &mut PgConnection,
    table: &TableName,
    key: &[String],
    key_types: &[String],
    cols: &[String],
    keys: &[Vec<String>],
) -> Result<HashMap<Vec<String>, Vec<Option<String>>>, sqlx::Error> {
    let name = format!("{}.{}", q(&table.schema), q(&table.table));
    let key_list: Vec<String> = key.iter().map(|k| q(k)).collect();
    let select: Vec<String> = key
        .iter()
        .chain(cols)
        .map(|c| format!("{}::text", q(c)))
        .collect();
    let casts: Vec<String> = key_types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("u.k{i}::{t}"))
        .collect();
    let params: Vec<String> = (1..=key.len()).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (0..key.len()).map(|i| format!("k{i}")).collect();
    let sql = format!(
        "SELECT {} FROM {name} WHERE ({}) IN (SELECT {} FROM UNNEST({}) AS u({}))",
        select.join(", "),
        key_list.join(", "),
        casts.join(", "),
        params.join(", "),
        aliases.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for i in 0..key.len() {
        query = query.bind(keys.iter().map(|k| k[i].clone()).collect::<Vec<_>>());
    }
    let mut out = HashMap::new();
    for r in query.fetch_all(&mut *conn).await? {
        let vals: Vec<Option<String>> = (0..key.len() + cols.len())
            .map(|i| r.try_get::<Option<String>, _>(i))
            .collect::<Result<_, _>>()?;
        let k = vals[..key.len()]
            .iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect();
        out.insert(k, vals[key.len()..].to_vec());
    }
    Ok(out)
}

/// Compares the sampled rows of `sample` with the target of `t`, waiting up
/// to `settle` for a sink that is still applying.
pub async fn check(
    source: &mut PgConnection,
    target: &mut PgConnection,
    t: &TargetTable,
    sample: &SampledTable,
    settle: Duration,
) -> Result<SampleReport, sqlx::Error> {
    let m = &t.mapping;
    let dst = |src: &str| m.rename.get(src).map_or(src, String::as_str).to_string();
    // (source column position, source name, target name) of the compared columns.
    let compared: Vec<(usize, String, String)> = sample
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !m.exclude.contains(c) && t.columns.contains_key(&dst(c)))
        .map(|(i, c)| (i, c.clone(), dst(c)))
        .collect();
    let src_key: Vec<String> = sample
        .key
        .iter()
        .map(|i| sample.columns[*i].clone())
        .collect();
    let dst_key: Vec<String> = src_key.iter().map(|k| dst(k)).collect();
    let src_name = format!("{}.{}", q(&m.source.schema), q(&m.source.table));
    let dst_name = format!("{}.{}", q(&m.target.schema), q(&m.target.table));
    let src_key_types = key_types(source, &src_name, &src_key).await?;
    let dst_key_types = key_types(target, &dst_name, &dst_key).await?;
    let src_cols: Vec<String> = compared.iter().map(|c| c.1.clone()).collect();
    let dst_cols: Vec<String> = compared.iter().map(|c| c.2.clone()).collect();
    let expected: HashMap<Vec<String>, Vec<Option<String>>> = sample
        .rows
        .iter()
        .map(|r| {
            (
                sample
                    .key
                    .iter()
                    .map(|i| r[*i].clone().unwrap_or_default())
                    .collect(),
                compared.iter().map(|c| r[c.0].clone()).collect(),
            )
        })
        .collect();
    let mut pending: Vec<Vec<String>> = expected.keys().cloned().collect();
    let mut last: HashMap<Vec<String>, &'static str> = HashMap::new();
    let deadline = Instant::now() + settle;
    loop {
        let got = fetch(
            target,
            &m.target,
            &dst_key,
            &dst_key_types,
            &dst_cols,
            &pending,
        )
        .await?;
        let now = fetch(
            source,
            &m.source,
            &src_key,
            &src_key_types,
            &src_cols,
            &pending,
        )
        .await?;
        pending.retain(|k| {
            let row = got.get(k);
            let ok = row == expected.get(k)
                || (row.is_some() && row == now.get(k))
                || (row.is_none() && !now.contains_key(k));
            if !ok {
                last.insert(k.clone(), if row.is_none() { "missing" } else { "differs" });
            }
            !ok
        });
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pending.sort();
    Ok(SampleReport {
        source: m.source.to_string(),
        target: m.target.to_string(),
        checked: expected.len(),
        differences: pending
            .into_iter()
            .map(|k| {
                let kind = last.get(&k).copied().unwrap_or("differs");
                RowDiff { key: k, kind }
            })
            .collect(),
    })
}

/// Runs the check of `sample` against sink `sink` (all its mappings whose
/// source was sampled) and records the outcome in the sink's database
/// (`strangler_cdc_checks`, shown by `strangler cdc status`).
pub async fn check_sink(
    source_url: &str,
    slot: &str,
    sink: &str,
    sink_url: &str,
    mappings: &[TableMapping],
    sample: &Sample,
    settle: Duration,
) -> Result<Vec<SampleReport>, sqlx::Error> {
    let mut source = super::connect(source_url).await?;
    let mut target = super::connect(sink_url).await?;
    let mut reports = Vec::new();
    for m in mappings {
        let Some(s) = sample.tables.iter().find(|s| s.table == m.source) else {
            continue;
        };
        let t = TargetTable::load_for_verify(&mut target, m).await?;
        reports.push(check(&mut source, &mut target, &t, s, settle).await?);
    }
    let checked: usize = reports.iter().map(|r| r.checked).sum();
    let differing: usize = reports.iter().map(|r| r.differences.len()).sum();
    sqlx::query(crate::sink::CHECKS_TABLE)
        .execute(&mut target)
        .await?;
    sqlx::query(
        "INSERT INTO strangler_cdc_checks (sink, slot, rows_checked, rows_differing, report, at) \
         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (sink, slot) DO UPDATE SET \
         rows_checked = excluded.rows_checked, rows_differing = excluded.rows_differing, \
         report = excluded.report, at = now()",
    )
    .bind(sink)
    .bind(slot)
    .bind(i64::try_from(checked).unwrap_or(i64::MAX))
    .bind(i64::try_from(differing).unwrap_or(i64::MAX))
    .bind(serde_json::to_string(&reports).unwrap_or_default())
    .execute(&mut target)
    .await?;
    Ok(reports)
}
