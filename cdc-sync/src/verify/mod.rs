//! `strangler cdc verify`: does the target hold what the source holds,
//! after mapping?
//!
//! Like reladiff: the source's keys are cut into chunks of [`CHUNK`] rows;
//! each chunk's rows are hashed on both sides (`md5` over the mapped
//! columns as text, in key order); only chunks whose count or hash differ
//! are compared row by row, and the differing keys are reported.

mod sample;

use std::collections::BTreeMap;

pub use sqlx::PgConnection;
use sqlx::Row;
use strangler_config::TableMapping;

use crate::sink::TargetTable;

pub use sample::{
    check as check_sample, check_sink, read as read_sample, Sample, SampleReport, SampledTable,
};

/// A session for comparing: the source's pinned settings (UTC, ISO dates,
/// …), so both sides write values as text alike.
pub async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    use sqlx::Connection;
    let mut c = PgConnection::connect(url).await?;
    for (k, v) in crate::source::SESSION_SETTINGS {
        sqlx::query(&format!("SET {k} = '{v}'"))
            .execute(&mut c)
            .await?;
    }
    Ok(c)
}

/// Rows per chunk.
pub const CHUNK: i64 = 10_000;

/// One differing row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowDiff {
    /// Key values (as text), in key order.
    pub key: Vec<String>,
    /// `missing` (in the target), `extra` (only in the target) or `differs`.
    pub kind: &'static str,
}

/// The outcome for one mapped table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableReport {
    pub source: String,
    pub target: String,
    pub source_rows: i64,
    pub target_rows: i64,
    pub chunks: usize,
    pub differing_chunks: usize,
    pub differences: Vec<RowDiff>,
}

struct Side<'a> {
    table: String,
    key: Vec<String>,
    key_types: Vec<String>,
    cols: Vec<String>,
    conn: &'a mut PgConnection,
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Side<'_> {
    fn key_list(&self) -> String {
        self.key.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ")
    }
    fn row_text(&self) -> String {
        let cols: Vec<String> = self
            .cols
            .iter()
            .map(|c| format!("{}::text", q(c)))
            .collect();
        format!("md5(ROW({})::text)", cols.join(", "))
    }
    /// `(k1, k2) >= ($1::t1, $2::t2)` for a bound at parameter offset `at`.
    fn bound(&self, op: &str, at: usize) -> String {
        let params: Vec<String> = self
            .key_types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}", at + i))
            .collect();
        format!("({}) {op} ({})", self.key_list(), params.join(", "))
    }
    fn range(&self, lo: Option<&Vec<String>>, hi: Option<&Vec<String>>) -> (String, Vec<String>) {
        let mut conds = Vec::new();
        let mut params = Vec::new();
        if let Some(lo) = lo {
            conds.push(self.bound(">=", params.len() + 1));
            params.extend(lo.iter().cloned());
        }
        if let Some(hi) = hi {
            conds.push(self.bound("<", params.len() + 1));
            params.extend(hi.iter().cloned());
        }
        (
            if conds.is_empty() {
                "true".to_string()
            } else {
                conds.join(" AND ")
            },
            params,
        )
    }
    async fn chunk_hash(
        &mut self,
        lo: Option<&Vec<String>>,
        hi: Option<&Vec<String>>,
    ) -> Result<(i64, String), sqlx::Error> {
        let (cond, params) = self.range(lo, hi);
        let sql = format!(
            "SELECT count(*), COALESCE(md5(string_agg({}, '' ORDER BY {})), '') FROM {} WHERE {cond}",
            self.row_text(),
            self.key_list(),
            self.table
        );
        let mut query = sqlx::query(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let r = query.fetch_one(&mut *self.conn).await?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }
    async fn rows(
        &mut self,
        lo: Option<&Vec<String>>,
        hi: Option<&Vec<String>>,
    ) -> Result<BTreeMap<Vec<String>, String>, sqlx::Error> {
        let (cond, params) = self.range(lo, hi);
        let keys: Vec<String> = self.key.iter().map(|k| format!("{}::text", q(k))).collect();
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {cond}",
            keys.join(", "),
            self.row_text(),
            self.table
        );
        let mut query = sqlx::query(&sql);
        for p in &params {
            query = query.bind(p);
        }
        let mut out = BTreeMap::new();
        for r in query.fetch_all(&mut *self.conn).await? {
            let key: Vec<String> = (0..self.key.len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .map(|v| v.unwrap_or_default())
                })
                .collect::<Result<_, _>>()?;
            out.insert(key, r.try_get(self.key.len())?);
        }
        Ok(out)
    }
}

async fn key_types(
    conn: &mut PgConnection,
    table: &str,
    key: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    let mut out = Vec::new();
    for k in key {
        let t: String = sqlx::query_scalar("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2")
            .bind(table)
            .bind(k)
            .fetch_one(&mut *conn)
            .await?;
        out.push(t);
    }
    Ok(out)
}

/// Compares one mapped table. `progress(done, total)` is called per chunk.
pub async fn table(
    source: &mut PgConnection,
    target: &mut PgConnection,
    target_table: &TargetTable,
    mut progress: impl FnMut(usize, usize),
) -> Result<TableReport, sqlx::Error> {
    let m: &TableMapping = &target_table.mapping;
    let inverse: BTreeMap<&str, &str> = m
        .rename
        .iter()
        .map(|(s, t)| (t.as_str(), s.as_str()))
        .collect();
    let src_name = |t: &str| inverse.get(t).copied().unwrap_or(t).to_string();
    // Target columns that have a source column (not excluded), in target order.
    let source_cols: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .bind(format!("{}.{}", q(&m.source.schema), q(&m.source.table)))
    .fetch_all(&mut *source)
    .await?;
    let pairs: Vec<(String, String)> = target_table
        .columns
        .keys()
        .map(|t| (src_name(t), t.clone()))
        .filter(|(s, _)| source_cols.contains(s) && !m.exclude.contains(s))
        .collect();
    let src_table = format!("{}.{}", q(&m.source.schema), q(&m.source.table));
    let dst_table = format!("{}.{}", q(&m.target.schema), q(&m.target.table));
    let key_dst = target_table.primary_key.clone();
    let key_src: Vec<String> = key_dst.iter().map(|k| src_name(k)).collect();
    let src_key_types = key_types(source, &src_table, &key_src).await?;
    let dst_key_types = key_types(target, &dst_table, &key_dst).await?;
    let mut s = Side {
        table: src_table,
        key: key_src,
        key_types: src_key_types,
        cols: pairs.iter().map(|p| p.0.clone()).collect(),
        conn: source,
    };
    let mut t = Side {
        table: dst_table,
        key: key_dst,
        key_types: dst_key_types,
        cols: pairs.iter().map(|p| p.1.clone()).collect(),
        conn: target,
    };

    // Chunk boundaries from the source's keys.
    let keys: Vec<String> = s.key.iter().map(|k| format!("{}::text", q(k))).collect();
    let sql = format!(
        "SELECT {} FROM (SELECT {}, row_number() OVER (ORDER BY {}) AS rn FROM {}) x WHERE rn % {CHUNK} = 1 AND rn > 1 ORDER BY {}",
        keys.join(", "),
        s.key_list(),
        s.key_list(),
        s.table,
        s.key_list()
    );
    let bounds: Vec<Vec<String>> = sqlx::query(&sql)
        .fetch_all(&mut *s.conn)
        .await?
        .iter()
        .map(|r| {
            (0..s.key.len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .map(|v| v.unwrap_or_default())
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    let mut edges: Vec<Option<&Vec<String>>> = vec![None];
    edges.extend(bounds.iter().map(Some));
    edges.push(None);
    let chunks = edges.len() - 1;
    let mut report = TableReport {
        source: m.source.to_string(),
        target: m.target.to_string(),
        source_rows: 0,
        target_rows: 0,
        chunks,
        differing_chunks: 0,
        differences: Vec::new(),
    };
    for i in 0..chunks {
        let (lo, hi) = (edges[i], edges[i + 1]);
        let (sn, sh) = s.chunk_hash(lo, hi).await?;
        let (tn, th) = t.chunk_hash(lo, hi).await?;
        report.source_rows += sn;
        report.target_rows += tn;
        if sn != tn || sh != th {
            report.differing_chunks += 1;
            let (a, b) = (s.rows(lo, hi).await?, t.rows(lo, hi).await?);
            for (k, h) in &a {
                match b.get(k) {
                    None => report.differences.push(RowDiff {
                        key: k.clone(),
                        kind: "missing",
                    }),
                    Some(h2) if h2 != h => report.differences.push(RowDiff {
                        key: k.clone(),
                        kind: "differs",
                    }),
                    Some(_) => {}
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                report.differences.push(RowDiff {
                    key: k.clone(),
                    kind: "extra",
                });
            }
        }
        progress(i + 1, chunks);
    }
    Ok(report)
}
