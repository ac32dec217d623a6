//! The snapshot of a table as COPY text straight into its target: into an
//! empty table directly, otherwise through a staging table merged with one
//! `INSERT … SELECT … ON CONFLICT`. Only where every copied column has the
//! source's type (the text is then the target type's own input form);
//! anything else goes as records.

use bytes::Bytes;
use sqlx::{Connection, Row};
use tokio::sync::mpsc;

use super::target::quote;
use super::{db_err, Sink, SinkError};

impl Sink {
    /// The source columns a snapshot of `table` can be copied with and the
    /// target column each goes to, or `None` when it must go as records:
    /// a mapped column of another type, or a primary key not copied.
    /// `columns` are the source's, with their types (`format_type`).
    pub fn copy_columns(
        &self,
        table: &str,
        columns: &[(String, String)],
    ) -> Option<Vec<(String, String)>> {
        let t = self.tables.get(table)?;
        let m = &t.mapping;
        let mut pairs = Vec::new();
        for (src, type_name) in columns {
            if m.exclude.iter().any(|e| e == src) {
                continue;
            }
            let dst = m.rename.get(src).unwrap_or(src);
            let Some(col) = t.columns.get(dst) else {
                continue;
            };
            if &col.type_name != type_name {
                return None;
            }
            pairs.push((src.clone(), dst.clone()));
        }
        let copied = |k: &String| pairs.iter().any(|(_, d)| d == k);
        t.primary_key.iter().all(copied).then_some(pairs)
    }

    /// The target column each of `table`'s source `columns` goes to.
    pub fn copy_targets(&self, table: &str, columns: &[String]) -> Vec<String> {
        let rename = self.tables.get(table).map(|t| &t.mapping.rename);
        columns
            .iter()
            .map(|c| rename.and_then(|r| r.get(c)).unwrap_or(c).clone())
            .collect()
    }

    /// A copy of snapshot rows (COPY text of the source `columns`) into
    /// `table`'s target on a connection of its own, so that parts of the
    /// snapshot are copied at once. `direct`: whether the target was empty
    /// when the table's copy began (asked when `None`); every part then
    /// goes straight in — the parts hold disjoint rows.
    pub async fn copy_job(
        &mut self,
        table: &str,
        columns: &[String],
        direct: Option<bool>,
    ) -> Result<Option<CopyJob>, SinkError> {
        let targets = self.copy_targets(table, columns);
        let Some(t) = self.tables.get(table) else {
            return Ok(None);
        };
        let direct = match direct {
            Some(d) => d,
            None => sqlx::query(&format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {})",
                t.qualified
            ))
            .fetch_one(&mut self.conn)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db_err(&self.name))?,
        };
        Ok(Some(CopyJob {
            sink: self.name.clone(),
            url: self.url.clone(),
            qualified: t.qualified.clone(),
            primary_key: t.primary_key.clone(),
            targets,
            direct,
        }))
    }
}

/// One part of a table's snapshot copied into its target, owned so that
/// it runs beside the others ([`Sink::copy_job`]).
pub struct CopyJob {
    sink: String,
    url: String,
    qualified: String,
    primary_key: Vec<String>,
    /// Target columns, in the order of the COPY text.
    targets: Vec<String>,
    direct: bool,
}

impl CopyJob {
    /// Whether the rows go straight into the target table.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Copies the rows of `chunks` (until it closes), counting them in
    /// `progress` as they go; the number of rows. Straight into the table
    /// when `direct`, otherwise through a staging table merged with one
    /// `INSERT … SELECT … ON CONFLICT`. A failure leaves the target as it
    /// was (one transaction).
    pub async fn run(
        self,
        mut chunks: mpsc::Receiver<Bytes>,
        progress: &std::sync::atomic::AtomicU64,
    ) -> Result<u64, SinkError> {
        let db = db_err(&self.sink);
        let mut conn = super::session(&self.sink, &self.url).await?;
        let list: Vec<String> = self.targets.iter().map(|c| quote(c)).collect();
        let list = list.join(", ");
        let mut tx = conn.begin().await.map_err(&db)?;
        let into = if self.direct {
            self.qualified.clone()
        } else {
            sqlx::query(&format!(
                "CREATE TEMP TABLE strangler_snapshot_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
                self.qualified
            ))
            .execute(&mut *tx)
            .await
            .map_err(&db)?;
            "strangler_snapshot_stage".to_string()
        };
        let mut rows = 0u64;
        {
            let mut copy = tx
                .copy_in_raw(&format!("COPY {into} ({list}) FROM STDIN"))
                .await
                .map_err(&db)?;
            while let Some(chunk) = chunks.recv().await {
                // One line per row: newlines inside values are escaped.
                let n = chunk.iter().filter(|b| **b == b'\n').count() as u64;
                rows += n;
                progress.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                if let Err(e) = copy.send(chunk).await {
                    let _ = copy.abort("the target failed").await;
                    return Err(db(e));
                }
            }
            copy.finish().await.map_err(&db)?;
        }
        if !self.direct {
            let pk: Vec<String> = self.primary_key.iter().map(|c| quote(c)).collect();
            let set: Vec<String> = self
                .targets
                .iter()
                .filter(|c| !self.primary_key.contains(c))
                .map(|c| format!("{q} = EXCLUDED.{q}", q = quote(c)))
                .collect();
            let action = if set.is_empty() {
                "NOTHING".to_string()
            } else {
                format!("UPDATE SET {}", set.join(", "))
            };
            sqlx::query(&format!(
                "INSERT INTO {} ({list}) SELECT {list} FROM strangler_snapshot_stage ON CONFLICT ({}) DO {action}",
                self.qualified,
                pk.join(", ")
            ))
            .execute(&mut *tx)
            .await
            .map_err(&db)?;
        }
        tx.commit().await.map_err(&db)?;
        Ok(rows)
    }
}
