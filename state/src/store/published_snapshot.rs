//! Where a snapshot published to Kafka stands, so that it resumes after a
//! crash instead of starting over (the embedded transport keeps the same
//! with the rows, in each sink's `strangler_cdc_chunked_snapshots`).
//!
//! The initial snapshot records the slot's consistent point when it begins
//! and each table once all its records are acknowledged by the broker;
//! chunked copies (`cdc snapshot --table`, and the unfinished tables of a
//! resumed initial snapshot) record the last key of the last chunk
//! published. A record that is lost only costs a copy again: every row
//! goes out as an upsert (op `r`).

use sqlx::Row;

use super::{now_ms, StateStore, StoreError};

/// A chunked copy recorded as unfinished: the table and the last key
/// published (JSON text, as the pipeline wrote it), `None` from its start.
pub type Unfinished = (String, Option<String>);

impl StateStore {
    /// An initial snapshot of `slot` began, consistent at `lsn`: an earlier
    /// snapshot's completion and tables no longer count.
    pub async fn published_snapshot_begun(&self, slot: &str, lsn: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM strangler_cdc_snapshots WHERE slot = $1")
            .bind(slot)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM strangler_cdc_published_chunks WHERE slot = $1")
            .bind(slot)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO strangler_cdc_published_snapshots (slot, consistent_lsn, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (slot) DO UPDATE SET consistent_lsn = excluded.consistent_lsn, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(slot)
        .bind(lsn)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Where a table's copy stands: the last key published (`None`: from
    /// its start), or complete.
    pub async fn published_chunk(
        &self,
        slot: &str,
        table: &str,
        after: Option<&str>,
        complete: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_published_chunks (slot, source_table, after_key, complete, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (slot, source_table) DO UPDATE SET \
             after_key = excluded.after_key, complete = excluded.complete, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(slot)
        .bind(table)
        .bind(after)
        .bind(i32::from(complete))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Where the initial snapshot of `slot` began (its consistent point),
    /// if one was recorded, and the tables it finished.
    pub async fn published_snapshot(
        &self,
        slot: &str,
    ) -> Result<Option<(i64, Vec<String>)>, StoreError> {
        let began: Option<i64> = sqlx::query_scalar(
            "SELECT consistent_lsn FROM strangler_cdc_published_snapshots WHERE slot = $1",
        )
        .bind(slot)
        .fetch_optional(&self.pool)
        .await?;
        let Some(began) = began else {
            return Ok(None);
        };
        let done: Vec<String> = sqlx::query_scalar(
            "SELECT source_table FROM strangler_cdc_published_chunks WHERE slot = $1 AND complete = 1",
        )
        .bind(slot)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((began, done)))
    }

    /// Chunked copies of `slot` not complete, oldest first.
    pub async fn published_unfinished(&self, slot: &str) -> Result<Vec<Unfinished>, StoreError> {
        let rows = sqlx::query(
            "SELECT source_table, after_key FROM strangler_cdc_published_chunks \
             WHERE slot = $1 AND complete = 0 ORDER BY updated_at_ms, source_table",
        )
        .bind(slot)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Resumes an interrupted initial snapshot of `slot`: `unfinished`
    /// tables become chunked copies from their start (unless one already
    /// stands somewhere), and the snapshot counts as complete.
    pub async fn published_resume(
        &self,
        slot: &str,
        unfinished: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for table in unfinished {
            sqlx::query(
                "INSERT INTO strangler_cdc_published_chunks (slot, source_table, after_key, complete, updated_at_ms) \
                 VALUES ($1, $2, NULL, 0, $3) ON CONFLICT (slot, source_table) DO UPDATE SET \
                 after_key = NULL, complete = 0, updated_at_ms = excluded.updated_at_ms \
                 WHERE strangler_cdc_published_chunks.complete = 1",
            )
            .bind(slot)
            .bind(table)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO strangler_cdc_snapshots (slot, done_at_ms) VALUES ($1, $2) ON CONFLICT (slot) DO UPDATE SET done_at_ms = excluded.done_at_ms",
        )
        .bind(slot)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::temp_store;

    #[tokio::test]
    async fn an_interrupted_published_snapshot_resumes_with_its_unfinished_tables() {
        let (_dir, s) = temp_store().await;
        // An earlier snapshot was complete; a new one begins.
        s.mark_cdc_snapshot("slot").await.unwrap();
        s.published_chunk("slot", "public.old", None, true)
            .await
            .unwrap();
        s.published_snapshot_begun("slot", 42).await.unwrap();
        assert!(
            !s.cdc_snapshot_done("slot").await.unwrap(),
            "the earlier completion no longer counts"
        );
        assert_eq!(
            s.published_snapshot("slot").await.unwrap(),
            Some((42, vec![]))
        );
        s.published_chunk("slot", "public.a", None, true)
            .await
            .unwrap();
        assert_eq!(
            s.published_snapshot("slot").await.unwrap(),
            Some((42, vec!["public.a".to_string()]))
        );
        // Resumed: b and c are copied in chunks; b had a chunked copy of its own.
        s.published_chunk("slot", "public.b", Some("[\"7\"]"), false)
            .await
            .unwrap();
        s.published_resume("slot", &["public.b".into(), "public.c".into()])
            .await
            .unwrap();
        assert!(s.cdc_snapshot_done("slot").await.unwrap());
        let mut left = s.published_unfinished("slot").await.unwrap();
        left.sort();
        assert_eq!(
            left,
            [
                ("public.b".to_string(), Some("[\"7\"]".to_string())),
                ("public.c".to_string(), None)
            ]
        );
        s.published_chunk("slot", "public.c", None, true)
            .await
            .unwrap();
        assert_eq!(s.published_unfinished("slot").await.unwrap().len(), 1);
        // Another slot is apart.
        assert_eq!(s.published_snapshot("other").await.unwrap(), None);
    }
}
