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

    /// Copies COPY text rows of `targets` (target columns, in the order of
    /// the text) into `table`'s target; the number of rows. A failure
    /// leaves the target as it was (one statement, or one transaction).
    pub async fn copy_in(
        &mut self,
        table: &str,
        targets: &[String],
        mut chunks: mpsc::Receiver<Bytes>,
        progress: &std::sync::atomic::AtomicU64,
    ) -> Result<u64, SinkError> {
        let Some(t) = self.tables.get(table) else {
            return Ok(0);
        };
        let db = db_err(&self.name);
        let list: Vec<String> = targets.iter().map(|c| quote(c)).collect();
        let list = list.join(", ");
        let empty: bool = sqlx::query(&format!(
            "SELECT NOT EXISTS (SELECT 1 FROM {})",
            t.qualified
        ))
        .fetch_one(&mut self.conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(&db)?;
        let mut tx = self.conn.begin().await.map_err(&db)?;
        let into = if empty {
            t.qualified.clone()
        } else {
            sqlx::query(&format!(
                "CREATE TEMP TABLE strangler_snapshot_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
                t.qualified
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
        if !empty {
            let pk: Vec<String> = t.primary_key.iter().map(|c| quote(c)).collect();
            let set: Vec<String> = targets
                .iter()
                .filter(|c| !t.primary_key.contains(c))
                .map(|c| format!("{q} = EXCLUDED.{q}", q = quote(c)))
                .collect();
            let action = if set.is_empty() {
                "NOTHING".to_string()
            } else {
                format!("UPDATE SET {}", set.join(", "))
            };
            sqlx::query(&format!(
                "INSERT INTO {} ({list}) SELECT {list} FROM strangler_snapshot_stage ON CONFLICT ({}) DO {action}",
                t.qualified,
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
