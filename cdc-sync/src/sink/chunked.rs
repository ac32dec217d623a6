//! Where a chunked snapshot (`cdc snapshot --table`) stands in this sink:
//! recorded after the batch with a chunk's rows is committed, read when a
//! pipeline starts so it resumes after the last chunk copied.

use sqlx::Row;

use super::{db_err, Sink, SinkError};
use crate::pipeline::ChunkProgress;

impl Sink {
    /// Records a chunked snapshot's progress of one of this sink's tables.
    pub async fn record_chunk(&mut self, p: &ChunkProgress) -> Result<(), SinkError> {
        if !self.tables.contains_key(&p.table) {
            return Ok(());
        }
        let after = p
            .after
            .as_ref()
            .map(|k| serde_json::Value::from(k.clone()).to_string());
        sqlx::query(
            "INSERT INTO strangler_cdc_chunked_snapshots (sink, slot, source_table, after_key, complete, updated_at) \
             VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (sink, slot, source_table) \
             DO UPDATE SET after_key = excluded.after_key, complete = excluded.complete, updated_at = now()",
        )
        .bind(&self.name)
        .bind(&self.slot)
        .bind(&p.table)
        .bind(after)
        .bind(p.complete)
        .execute(&mut self.conn)
        .await
        .map_err(db_err(&self.name))?;
        Ok(())
    }

    /// Chunked snapshots of this sink not complete: (table, last key).
    pub async fn unfinished_chunks(
        &mut self,
    ) -> Result<Vec<(String, Option<Vec<String>>)>, SinkError> {
        let rows = sqlx::query(
            "SELECT source_table, after_key FROM strangler_cdc_chunked_snapshots \
             WHERE sink = $1 AND slot = $2 AND NOT complete ORDER BY updated_at",
        )
        .bind(&self.name)
        .bind(&self.slot)
        .fetch_all(&mut self.conn)
        .await
        .map_err(db_err(&self.name))?;
        let mut out = Vec::new();
        for r in rows {
            let table: String = r.try_get(0).map_err(db_err(&self.name))?;
            let after: Option<String> = r.try_get(1).map_err(db_err(&self.name))?;
            let after = after.and_then(|a| serde_json::from_str::<Vec<String>>(&a).ok());
            out.push((table, after));
        }
        Ok(out)
    }
}
