//! Applying records: whole source transactions (or consumed Kafka
//! records) and their offsets in one target transaction; consecutive
//! records of one table and shape as one `UNNEST` statement, redone event
//! by event under savepoints when the batch fails so only the bad event is
//! set aside.

use sqlx::Connection;

use super::dead_letters::dead_letter;
use super::{db_err, mapping, Applied, Bookkeeping, Position, Sink, SinkError};
use crate::event::Record;
use crate::lsn::Lsn;

impl Sink {
    /// Applies whole source transactions ending at `through` (snapshot
    /// records carry `Lsn(0)`), and stores `through` with them.
    /// `snapshot_complete` marks the end of the initial snapshot.
    pub async fn apply(
        &mut self,
        records: &[Record],
        through: Lsn,
        snapshot_complete: bool,
    ) -> Result<Applied, SinkError> {
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| self.tables.contains_key(&r.table))
            .filter(|r| r.commit_lsn.0 == 0 || r.commit_lsn > self.position)
            .collect();
        let skipped = (records.len() - mine.len()) as u64;
        let new_position = through.max(self.position);
        if mine.is_empty() && new_position == self.position && !snapshot_complete {
            return Ok(Applied {
                skipped,
                ..Applied::default()
            });
        }
        let mut applied = self
            .apply_inner(
                &mine,
                Bookkeeping::Lsn {
                    through: new_position,
                    snapshot_complete,
                },
            )
            .await?;
        applied.skipped = skipped;
        Ok(applied)
    }

    /// Applies `records` (those of this sink's tables) and stores
    /// `position` with them in one transaction.
    pub async fn apply_with(
        &mut self,
        records: &[&Record],
        position: &dyn Position,
    ) -> Result<Applied, SinkError> {
        let mine: Vec<&Record> = records
            .iter()
            .copied()
            .filter(|r| self.tables.contains_key(&r.table))
            .collect();
        self.apply_inner(&mine, Bookkeeping::Other(position)).await
    }

    /// The sink's connection, for a transport reading its own stored
    /// position (between batches, never inside one).
    pub(crate) fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.conn
    }

    async fn apply_inner(
        &mut self,
        mine: &[&Record],
        book: Bookkeeping<'_>,
    ) -> Result<Applied, SinkError> {
        let mut applied = Applied::default();
        let mut tx = self.conn.begin().await.map_err(db_err(&self.name))?;
        // First try the batch as a whole, consecutive records of one table
        // and shape in one statement; on an error redo it event by event
        // under savepoints so only the bad event is set aside.
        let fast = {
            sqlx::query("SAVEPOINT batch")
                .execute(&mut *tx)
                .await
                .map_err(db_err(&self.name))?;
            let mut ok = true;
            let mut i = 0;
            while i < mine.len() && ok {
                let Some(t) = self.tables.get(&mine[i].table) else {
                    i += 1;
                    continue;
                };
                // A value that cannot be read: the slow path names it.
                let Ok((shape, first)) = mapping::shape(t, mine[i]) else {
                    ok = false;
                    break;
                };
                let mut rows = vec![first];
                let mut j = i + 1;
                while j < mine.len() && mine[j].table == mine[i].table {
                    match mapping::shape(t, mine[j]) {
                        Ok((s2, vals)) if s2 == shape => rows.push(vals),
                        _ => break,
                    }
                    j += 1;
                }
                let n = rows.len() as u64;
                let result = match &shape {
                    mapping::Shape::Upsert(cols) => {
                        mapping::upsert_batch(t, cols, rows).execute(&mut tx).await
                    }
                    mapping::Shape::Delete => mapping::delete_batch(t, rows).execute(&mut tx).await,
                    mapping::Shape::Truncate => match t.statement(mine[i]) {
                        Ok(Some(m)) => m.execute(&mut tx).await,
                        _ => Ok(()),
                    },
                    mapping::Shape::Nothing => Ok(()),
                };
                match result {
                    Ok(()) if shape != mapping::Shape::Nothing => applied.rows += n,
                    Ok(()) => {}
                    Err(e) => {
                        tracing::debug!(sink = %self.name, error = %e, "batch failed; applying event by event");
                        ok = false;
                    }
                }
                i = j;
            }
            ok
        };
        if !fast {
            applied.rows = 0;
            sqlx::query("ROLLBACK TO SAVEPOINT batch")
                .execute(&mut *tx)
                .await
                .map_err(db_err(&self.name))?;
            for r in mine {
                let Some(t) = self.tables.get(&r.table) else {
                    continue;
                };
                let m = match t.statement(r) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(reason) => {
                        dead_letter(
                            &mut tx,
                            &self.name,
                            r,
                            &reason,
                            !self.publishes_dead_letters,
                        )
                        .await?;
                        applied.dead_letters += 1;
                        continue;
                    }
                };
                sqlx::query("SAVEPOINT one")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err(&self.name))?;
                match m.execute(&mut tx).await {
                    Ok(()) => applied.rows += 1,
                    Err(e) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT one")
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err(&self.name))?;
                        dead_letter(
                            &mut tx,
                            &self.name,
                            r,
                            &e.to_string(),
                            !self.publishes_dead_letters,
                        )
                        .await?;
                        applied.dead_letters += 1;
                    }
                }
            }
        }
        match book {
            Bookkeeping::Lsn {
                through,
                snapshot_complete,
            } => {
                let snapshot_done = self.snapshot_done || snapshot_complete;
                sqlx::query(
                    "INSERT INTO strangler_cdc_offsets (sink, slot, lsn, snapshot_done, updated_at) VALUES ($1, $2, $3, $4, now()) \
                     ON CONFLICT (sink, slot) DO UPDATE SET lsn = excluded.lsn, snapshot_done = excluded.snapshot_done, updated_at = now()",
                )
                .bind(&self.name)
                .bind(&self.slot)
                .bind(through.as_i64())
                .bind(snapshot_done)
                .execute(&mut *tx)
                .await
                .map_err(db_err(&self.name))?;
                tx.commit().await.map_err(db_err(&self.name))?;
                self.position = through;
                self.snapshot_done = snapshot_done;
            }
            Bookkeeping::Other(position) => {
                position
                    .store(&self.name, &mut tx)
                    .await
                    .map_err(db_err(&self.name))?;
                tx.commit().await.map_err(db_err(&self.name))?;
            }
        }
        Ok(applied)
    }
}
