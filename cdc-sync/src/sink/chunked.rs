//! Where a chunked snapshot (`cdc snapshot --table`) stands in this sink:
//! recorded after the batch with a chunk's rows is committed, read when a
//! pipeline starts so it resumes after the last chunk copied.
//!
//! The initial snapshot records here too: where its slot was consistent
//! and each table once all its rows are committed. Interrupted, it resumes
//! from the slot (still at that point: nothing is confirmed before the
//! snapshot completes) — finished tables are kept, the others become
//! chunked snapshots from their start, copied while the stream replays
//! everything since the consistent point.

use sqlx::{Connection, Row};

use super::{db_err, Sink, SinkError};
use crate::lsn::Lsn;
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

    /// The initial snapshot began with a slot consistent at `lsn`: nothing
    /// of an earlier one counts.
    pub async fn snapshot_begun(&mut self, lsn: Lsn) -> Result<(), SinkError> {
        sqlx::query(
            "INSERT INTO strangler_cdc_offsets (sink, slot, lsn, snapshot_done, snapshot_lsn, updated_at) \
             VALUES ($1, $2, 0, false, $3, now()) ON CONFLICT (sink, slot) DO UPDATE SET \
             lsn = 0, snapshot_done = false, snapshot_lsn = excluded.snapshot_lsn, updated_at = now()",
        )
        .bind(&self.name)
        .bind(&self.slot)
        .bind(lsn.as_i64())
        .execute(&mut self.conn)
        .await
        .map_err(db_err(&self.name))?;
        Ok(())
    }

    /// Every row of `table` in the initial snapshot is committed here.
    pub async fn snapshot_table_done(&mut self, table: &str) -> Result<(), SinkError> {
        self.record_chunk(&ChunkProgress {
            table: table.to_string(),
            after: None,
            complete: true,
        })
        .await
    }

    /// This sink's tables an interrupted initial snapshot has not finished,
    /// if it began at `consistent` (else `None`: it cannot resume there).
    pub async fn snapshot_unfinished_tables(
        &mut self,
        consistent: Lsn,
    ) -> Result<Option<Vec<String>>, SinkError> {
        if self.snapshot_done {
            return Ok(Some(Vec::new()));
        }
        let began: Option<i64> = sqlx::query_scalar(
            "SELECT snapshot_lsn FROM strangler_cdc_offsets WHERE sink = $1 AND slot = $2",
        )
        .bind(&self.name)
        .bind(&self.slot)
        .fetch_optional(&mut self.conn)
        .await
        .map_err(db_err(&self.name))?;
        if consistent.0 == 0 || began != Some(consistent.as_i64()) {
            return Ok(None);
        }
        let done: Vec<String> = sqlx::query_scalar(
            "SELECT source_table FROM strangler_cdc_chunked_snapshots WHERE sink = $1 AND slot = $2 AND complete",
        )
        .bind(&self.name)
        .bind(&self.slot)
        .fetch_all(&mut self.conn)
        .await
        .map_err(db_err(&self.name))?;
        let mut unfinished: Vec<String> = self
            .tables
            .keys()
            .filter(|t| !done.contains(t))
            .cloned()
            .collect();
        unfinished.sort();
        Ok(Some(unfinished))
    }

    /// Resumes an interrupted initial snapshot (see the module): complete
    /// at `consistent`, `unfinished` tables (those of every sink) recorded
    /// as chunked snapshots of this sink's — from their start, or where a
    /// chunked copy of them already stands.
    pub async fn resume_snapshot(
        &mut self,
        consistent: Lsn,
        unfinished: &[String],
    ) -> Result<(), SinkError> {
        let name = self.name.clone();
        let mut tx = self.conn.begin().await.map_err(db_err(&name))?;
        for table in unfinished.iter().filter(|t| self.tables.contains_key(*t)) {
            sqlx::query(
                "INSERT INTO strangler_cdc_chunked_snapshots (sink, slot, source_table, after_key, complete, updated_at) \
                 VALUES ($1, $2, $3, NULL, false, now()) ON CONFLICT (sink, slot, source_table) \
                 DO UPDATE SET after_key = NULL, complete = false, updated_at = now() \
                 WHERE strangler_cdc_chunked_snapshots.complete",
            )
            .bind(&name)
            .bind(&self.slot)
            .bind(table)
            .execute(&mut *tx)
            .await
            .map_err(db_err(&name))?;
        }
        if self.snapshot_done {
            // Finished before: its position stays.
            tx.commit().await.map_err(db_err(&name))?;
            return Ok(());
        }
        sqlx::query(
            "UPDATE strangler_cdc_offsets SET snapshot_done = true, lsn = $3, updated_at = now() WHERE sink = $1 AND slot = $2",
        )
        .bind(&name)
        .bind(&self.slot)
        .bind(consistent.as_i64())
        .execute(&mut *tx)
        .await
        .map_err(db_err(&name))?;
        tx.commit().await.map_err(db_err(&name))?;
        self.snapshot_done = true;
        self.position = consistent;
        Ok(())
    }
}
