//! Applying records: whole source transactions (or consumed Kafka
//! records) and their offsets in one target transaction; consecutive
//! records of one table and shape as one `UNNEST` statement, redone event
//! by event under savepoints when the batch fails so only the bad event is
//! set aside.

use std::collections::HashMap;

use sqlx::{Connection, PgConnection};

use super::dead_letters::dead_letter;
use super::{
    db_err, evolve, mapping, Applied, Bookkeeping, Position, Sink, SinkError, TargetTable,
};
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
        let snapshot =
            through.0 == 0 || snapshot_complete || records.iter().any(|r| r.commit_lsn.0 == 0);
        // A schema change goes in order with the rows around it, in their
        // transaction: on one connection (lanes pick the batch up after).
        let evolves = records.iter().any(|r| {
            is_shape(r) && r.commit_lsn > self.position && self.tables.contains_key(&r.table)
        });
        if !self.lanes.is_empty() && !snapshot && !evolves {
            // Each connection filters by its own position.
            let mine: Vec<&Record> = records
                .iter()
                .filter(|r| self.tables.contains_key(&r.table) && !self.skips(r) && !is_shape(r))
                .collect();
            let mut applied = self.apply_lanes(&mine, through).await?;
            applied.skipped += (records.len() - mine.len()) as u64;
            return Ok(applied);
        }
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| self.tables.contains_key(&r.table) && !self.skips(r))
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

    /// Carries one schema-change record read from the schema-change topic
    /// to the target of its table (a Kafka sink worker), in a transaction
    /// of its own.
    pub async fn evolve_record(&mut self, r: &Record) -> Result<(), SinkError> {
        let Some(t) = self.tables.get_mut(&r.table) else {
            return Ok(());
        };
        let mut tx = self.conn.begin().await.map_err(db_err(&self.name))?;
        evolve::apply(&mut tx, &self.name, &self.slot, t, r).await?;
        tx.commit().await.map_err(db_err(&self.name))
    }

    /// The shape a snapshot copies a table with (a schema-change record at
    /// the slot's consistent point): the baseline of its schema changes
    /// (`evolve.rs`), or — after an earlier snapshot — the changes since.
    pub async fn note_snapshot_shape(&mut self, shape: &Record) -> Result<(), SinkError> {
        self.evolve_record(shape).await
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
        let mut tx = self.conn.begin().await.map_err(db_err(&self.name))?;
        let applied = apply_in_order(
            &mut tx,
            &mut self.tables,
            (&self.name, &self.slot),
            self.publishes_dead_letters,
            mine,
        )
        .await?;
        match book {
            Bookkeeping::Lsn {
                through,
                snapshot_complete,
            } => {
                let snapshot_done = self.snapshot_done || snapshot_complete;
                store_lsn(&mut tx, &self.name, &self.slot, through, snapshot_done).await?;
                if snapshot_complete {
                    // Every lane starts where the snapshot ends: what a
                    // source replays from before it (a sink added beside
                    // streaming ones, reading from their older position)
                    // is older than what the snapshot wrote.
                    for lane in 1..=self.lanes.len() {
                        super::lanes::store_lane(&mut tx, &self.name, &self.slot, lane, through)
                            .await?;
                    }
                }
                tx.commit().await.map_err(db_err(&self.name))?;
                self.position = through;
                self.snapshot_done = snapshot_done;
                if snapshot_complete {
                    for l in &mut self.lanes {
                        l.position = l.position.max(through);
                    }
                }
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

    /// Applies one part of a large source transaction ending at
    /// `through`, in one target transaction held open from its first part
    /// to its `last`, which stores `through` with the rows and commits: the
    /// target sees the source transaction whole or not at all, while only
    /// one part is ever in memory. A failure in between rolls back every
    /// part (the pipeline reconnects and the slot replays the transaction).
    pub async fn apply_part(
        &mut self,
        records: &[Record],
        through: Lsn,
        last: bool,
    ) -> Result<Applied, SinkError> {
        if through <= self.position {
            // Applied before a restart: the slot replays it.
            return Ok(Applied {
                skipped: records.len() as u64,
                ..Applied::default()
            });
        }
        if !self.in_part {
            sqlx::query("BEGIN")
                .execute(&mut self.conn)
                .await
                .map_err(db_err(&self.name))?;
            self.in_part = true;
        }
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| self.tables.contains_key(&r.table))
            .collect();
        let result = apply_in_order(
            &mut self.conn,
            &mut self.tables,
            (&self.name, &self.slot),
            self.publishes_dead_letters,
            &mine,
        )
        .await;
        let mut applied = match result {
            Ok(a) => a,
            Err(e) => {
                self.abandon_part().await;
                return Err(e);
            }
        };
        applied.skipped = (records.len() - mine.len()) as u64;
        if last {
            let stored = store_lsn(
                &mut self.conn,
                &self.name,
                &self.slot,
                through,
                self.snapshot_done,
            )
            .await;
            let committed = match stored {
                Ok(()) => sqlx::query("COMMIT")
                    .execute(&mut self.conn)
                    .await
                    .map(|_| ())
                    .map_err(db_err(&self.name)),
                Err(e) => Err(e),
            };
            if let Err(e) = committed {
                self.abandon_part().await;
                return Err(e);
            }
            self.in_part = false;
            self.position = through;
        }
        Ok(applied)
    }

    /// Rolls back a transaction held open across parts.
    async fn abandon_part(&mut self) {
        if std::mem::take(&mut self.in_part) {
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        }
    }
}

/// Applies `mine` inside the transaction open on `conn`, schema changes
/// (`evolve.rs`) in their place: the rows before one are written under the
/// old shape, the target is changed, the rows after follow.
async fn apply_in_order(
    conn: &mut PgConnection,
    tables: &mut HashMap<String, TargetTable>,
    (name, slot): (&str, &str),
    publishes_dead_letters: bool,
    mine: &[&Record],
) -> Result<Applied, SinkError> {
    let mut applied = Applied::default();
    let mut rest = mine;
    while !rest.is_empty() {
        let cut = rest.iter().position(|r| is_shape(r)).unwrap_or(rest.len());
        if cut > 0 {
            let a = apply_rows(conn, tables, name, publishes_dead_letters, &rest[..cut]).await?;
            applied.rows += a.rows;
            applied.dead_letters += a.dead_letters;
        }
        if let Some(shape) = rest.get(cut) {
            if let Some(t) = tables.get_mut(&shape.table) {
                evolve::apply(conn, name, slot, t, shape).await?;
            }
        }
        rest = rest.get(cut + 1..).unwrap_or_default();
    }
    Ok(applied)
}

/// Whether `r` is a schema-change record (`source/shape.rs`), not a row.
fn is_shape(r: &Record) -> bool {
    crate::source::shape::of(r).is_some()
}

/// Stores the source position a sink has applied through, with the rows.
pub(super) async fn store_lsn(
    conn: &mut PgConnection,
    sink: &str,
    slot: &str,
    through: Lsn,
    snapshot_done: bool,
) -> Result<(), SinkError> {
    sqlx::query(
        "INSERT INTO strangler_cdc_offsets (sink, slot, lsn, snapshot_done, updated_at) VALUES ($1, $2, $3, $4, now()) \
         ON CONFLICT (sink, slot) DO UPDATE SET lsn = excluded.lsn, snapshot_done = excluded.snapshot_done, updated_at = now()",
    )
    .bind(sink)
    .bind(slot)
    .bind(through.as_i64())
    .bind(snapshot_done)
    .execute(conn)
    .await
    .map_err(db_err(sink))?;
    Ok(())
}

/// Applies `mine` inside the transaction open on `conn`: first as a whole,
/// consecutive records of one table and shape in one statement; on an
/// error again event by event under savepoints, so only the bad event is
/// set aside (dead letter).
pub(super) async fn apply_rows(
    conn: &mut PgConnection,
    tables: &HashMap<String, TargetTable>,
    name: &str,
    publishes_dead_letters: bool,
    mine: &[&Record],
) -> Result<Applied, SinkError> {
    let mut applied = Applied::default();
    let fast = {
        sqlx::query("SAVEPOINT batch")
            .execute(&mut *conn)
            .await
            .map_err(db_err(name))?;
        let mut ok = true;
        let mut i = 0;
        while i < mine.len() && ok {
            let Some(t) = tables.get(&mine[i].table) else {
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
                    mapping::upsert_batch(t, cols, rows).execute(conn).await
                }
                mapping::Shape::Delete => mapping::delete_batch(t, rows).execute(conn).await,
                mapping::Shape::Truncate => match t.statement(mine[i]) {
                    Ok(Some(m)) => m.execute(conn).await,
                    _ => Ok(()),
                },
                mapping::Shape::Nothing => Ok(()),
            };
            match result {
                Ok(()) if shape != mapping::Shape::Nothing => applied.rows += n,
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(sink = %name, error = %e, "batch failed; applying event by event");
                    ok = false;
                }
            }
            i = j;
        }
        ok
    };
    if fast {
        sqlx::query("RELEASE SAVEPOINT batch")
            .execute(&mut *conn)
            .await
            .map_err(db_err(name))?;
        return Ok(applied);
    }
    applied.rows = 0;
    sqlx::query("ROLLBACK TO SAVEPOINT batch")
        .execute(&mut *conn)
        .await
        .map_err(db_err(name))?;
    for r in mine {
        let Some(t) = tables.get(&r.table) else {
            continue;
        };
        let m = match t.statement(r) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(reason) => {
                dead_letter(conn, name, r, &reason, !publishes_dead_letters).await?;
                applied.dead_letters += 1;
                continue;
            }
        };
        sqlx::query("SAVEPOINT one")
            .execute(&mut *conn)
            .await
            .map_err(db_err(name))?;
        match m.execute(conn).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT one")
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err(name))?;
                applied.rows += 1;
            }
            // A fault that passes (deadlock, serialization failure, lost
            // connection) says nothing about the event: the whole batch
            // fails and is retried, never set aside.
            Err(e) if strangler_state::retry::sqlx_retryable(&e) => {
                return Err(db_err(name)(e));
            }
            Err(e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT one")
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err(name))?;
                dead_letter(conn, name, r, &e.to_string(), !publishes_dead_letters).await?;
                applied.dead_letters += 1;
            }
        }
    }
    Ok(applied)
}
