//! A sink applying through several connections (`connections` of a
//! `[[cdc.sinks]]`): "lanes". Lane 0 is the sink's own connection; every
//! lane writes under its own replication origin.
//!
//! ```text
//!  batch ─▶ segments, cut at every source transaction with a TRUNCATE
//!            │
//!            ├─ a segment: each record to lane hash(table, key) % N, the
//!            │   lanes apply at once, each storing the segment's position
//!            │   with its rows; the next segment starts when all committed
//!            └─ a TRUNCATE's transaction: lane 0 alone
//! ```
//!
//! Why this is exact: which lane applies a record depends only on the
//! record (its table and key), never on how records were grouped into
//! batches, and each lane stores with its rows the position it has applied
//! through (`strangler_cdc_offsets` for lane 0, `strangler_cdc_lane_offsets`
//! for the others). After a crash between two lanes' commits the slot
//! replays from before both; each lane skips what its own position covers
//! and applies the rest — every record once, one key's changes in order.
//! A TRUNCATE waits for every lane, and every lane waits for it. Large
//! transactions and the snapshot go through lane 0 alone, as with one
//! connection.
//!
//! What changes with more than one: a source transaction reaches the target
//! as one transaction per lane, so a reader can see part of it for a
//! moment, and foreign keys between target tables can fail (a child row
//! applied before its parent on another lane). When the number of lanes
//! changes, every lane starts again from the lowest stored position: rows
//! since then are applied again (in order, so the end state is right).

use sqlx::{Connection, PgConnection};

use super::apply::{apply_rows, store_lsn};
use super::{db_err, Applied, Sink, SinkError};
use crate::event::Record;
use crate::lsn::Lsn;

pub(super) const LANES_TABLE: &str = "CREATE TABLE IF NOT EXISTS strangler_cdc_lane_offsets (
    sink TEXT NOT NULL,
    slot TEXT NOT NULL,
    lane INT NOT NULL,
    lsn BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, slot, lane))";

/// A connection of a sink beyond its first, and what it has applied.
pub(super) struct Lane {
    pub(super) conn: PgConnection,
    pub(super) position: Lsn,
}

/// The lane (of `n`) that applies `r`: by table and key, with a hash that
/// never changes between versions (FNV-1a).
fn lane_of(r: &Record, n: usize) -> usize {
    let Some(key) = r.key.as_ref() else {
        return 0;
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in r
        .table
        .bytes()
        .chain(std::iter::once(0))
        .chain(key.to_string().bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n as u64) as usize
}

fn is_truncate(r: &Record) -> bool {
    r.value
        .as_ref()
        .and_then(|v| v.get("op"))
        .and_then(|o| o.as_str())
        == Some("t")
}

/// Stores the position lane `lane` (≥ 1) has applied through.
pub(super) async fn store_lane(
    conn: &mut PgConnection,
    sink: &str,
    slot: &str,
    lane: usize,
    through: Lsn,
) -> Result<(), SinkError> {
    sqlx::query(
        "INSERT INTO strangler_cdc_lane_offsets (sink, slot, lane, lsn, updated_at) VALUES ($1, $2, $3, $4, now()) \
         ON CONFLICT (sink, slot, lane) DO UPDATE SET lsn = excluded.lsn, updated_at = now()",
    )
    .bind(sink)
    .bind(slot)
    .bind(lane as i32)
    .bind(through.as_i64())
    .execute(conn)
    .await
    .map_err(db_err(sink))?;
    Ok(())
}

/// Replaces the stored rows of the sink's lanes with `lanes` rows (lanes
/// 1..=`lanes`), each at `at`.
async fn rewrite_lanes(
    conn: &mut PgConnection,
    sink: &str,
    slot: &str,
    lanes: usize,
    at: Lsn,
) -> Result<(), SinkError> {
    sqlx::query("DELETE FROM strangler_cdc_lane_offsets WHERE sink = $1 AND slot = $2")
        .bind(sink)
        .bind(slot)
        .execute(&mut *conn)
        .await
        .map_err(db_err(sink))?;
    for lane in 1..=lanes {
        store_lane(conn, sink, slot, lane, at).await?;
    }
    Ok(())
}

impl Sink {
    /// Applies through `n` connections (1: the sink's own only). Reads each
    /// lane's stored position; when the number of lanes changed since they
    /// were stored, every lane starts from the lowest (see the module).
    pub async fn with_connections(mut self, n: usize) -> Result<Sink, SinkError> {
        let name = self.name.clone();
        let stored: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT lane, lsn FROM strangler_cdc_lane_offsets WHERE sink = $1 AND slot = $2 ORDER BY lane",
        )
        .bind(&name)
        .bind(&self.slot)
        .fetch_all(&mut self.conn)
        .await
        .map_err(db_err(&name))?;
        let same_lanes = stored.len() == n - 1
            && stored
                .iter()
                .enumerate()
                .all(|(i, (l, _))| *l as usize == i + 1);
        let positions: Vec<Lsn> = if same_lanes {
            stored.iter().map(|(_, l)| Lsn::from_i64(*l)).collect()
        } else {
            // No rows: one connection before, which applied everything
            // through its position, whatever lane a row belongs to now.
            // Other rows: the number of lanes changed, so rows move between
            // lanes: all start from the lowest. Every lane has its row from
            // now on (see `reset`), so a missing one is never guessed.
            let lowest = stored
                .iter()
                .map(|(_, l)| Lsn::from_i64(*l))
                .chain([self.position])
                .min()
                .unwrap_or(self.position);
            if !stored.is_empty() {
                tracing::warn!(
                    sink = %name,
                    lanes = n,
                    from = %lowest,
                    "the sink's number of connections changed: every connection applies again from the lowest stored position"
                );
            }
            let mut tx = self.conn.begin().await.map_err(db_err(&name))?;
            if lowest < self.position {
                store_lsn(&mut tx, &name, &self.slot, lowest, self.snapshot_done).await?;
            }
            rewrite_lanes(&mut tx, &name, &self.slot, n - 1, lowest).await?;
            tx.commit().await.map_err(db_err(&name))?;
            self.position = lowest;
            vec![lowest; n - 1]
        };
        for position in positions {
            let conn = super::session(&name, &self.url).await?;
            self.lanes.push(Lane { conn, position });
        }
        Ok(self)
    }

    /// A new snapshot: every lane has applied nothing of the new stream.
    /// Lanes keep a row (at 0) so a restart never takes a missing row for
    /// "one connection before".
    pub(super) async fn reset_lanes(&mut self) -> Result<(), SinkError> {
        let name = self.name.clone();
        let mut tx = self.conn.begin().await.map_err(db_err(&name))?;
        rewrite_lanes(&mut tx, &name, &self.slot, self.lanes.len(), Lsn(0)).await?;
        tx.commit().await.map_err(db_err(&name))?;
        for lane in &mut self.lanes {
            lane.position = Lsn(0);
        }
        Ok(())
    }

    /// [`Sink::apply`] of stream records through every lane (see the
    /// module); `mine` are this sink's records.
    pub(super) async fn apply_lanes(
        &mut self,
        mine: &[&Record],
        through: Lsn,
    ) -> Result<Applied, SinkError> {
        let mut applied = Applied::default();
        // Source transactions are consecutive runs of one commit position.
        let mut segment = 0;
        let mut i = 0;
        while i < mine.len() {
            let lsn = mine[i].commit_lsn;
            let end = mine[i..]
                .iter()
                .position(|r| r.commit_lsn != lsn)
                .map_or(mine.len(), |j| i + j);
            if mine[i..end].iter().any(|r| is_truncate(r)) {
                if segment < i {
                    let upto = mine[i - 1].commit_lsn;
                    applied.add(&self.apply_parallel(&mine[segment..i], upto).await?);
                }
                let upto = if end == mine.len() { through } else { lsn };
                applied.add(&self.apply_serial(&mine[i..end], upto).await?);
                segment = end;
            }
            i = end;
        }
        if segment < mine.len() || mine.is_empty() {
            applied.add(&self.apply_parallel(&mine[segment..], through).await?);
        }
        Ok(applied)
    }

    /// One source transaction (with a TRUNCATE) on lane 0 alone.
    async fn apply_serial(&mut self, records: &[&Record], upto: Lsn) -> Result<Applied, SinkError> {
        let fresh: Vec<&Record> = records
            .iter()
            .copied()
            .filter(|r| r.commit_lsn > self.position)
            .collect();
        let skipped = (records.len() - fresh.len()) as u64;
        if fresh.is_empty() && upto <= self.position {
            return Ok(Applied {
                skipped,
                ..Applied::default()
            });
        }
        let mut tx = self.conn.begin().await.map_err(db_err(&self.name))?;
        let mut applied = apply_rows(
            &mut tx,
            &self.tables,
            &self.name,
            self.publishes_dead_letters,
            &fresh,
        )
        .await?;
        let upto = upto.max(self.position);
        store_lsn(&mut tx, &self.name, &self.slot, upto, self.snapshot_done).await?;
        tx.commit().await.map_err(db_err(&self.name))?;
        self.position = upto;
        applied.skipped = skipped;
        Ok(applied)
    }

    /// Records spread over every lane by key, applied at once; each lane
    /// stores `upto` with its rows.
    async fn apply_parallel(
        &mut self,
        records: &[&Record],
        upto: Lsn,
    ) -> Result<Applied, SinkError> {
        let n = self.lanes.len() + 1;
        let mut split: Vec<Vec<&Record>> = vec![Vec::new(); n];
        let mut skipped = 0;
        for r in records {
            let lane = lane_of(r, n);
            let position = match lane {
                0 => self.position,
                l => self.lanes[l - 1].position,
            };
            if r.commit_lsn > position {
                split[lane].push(r);
            } else {
                skipped += 1;
            }
        }
        let Sink {
            name,
            slot,
            conn,
            tables,
            position,
            snapshot_done,
            publishes_dead_letters,
            lanes,
            ..
        } = self;
        let (name, slot, tables) = (&*name, &*slot, &*tables);
        let (snapshot_done, dlq) = (*snapshot_done, *publishes_dead_letters);
        let mut conns: Vec<(usize, &mut PgConnection, Lsn)> = vec![(0, conn, *position)];
        conns.extend(
            lanes
                .iter_mut()
                .enumerate()
                .map(|(i, l)| (i + 1, &mut l.conn, l.position)),
        );
        let work = conns
            .into_iter()
            .zip(split)
            .map(|((lane, conn, at), rows)| async move {
                if rows.is_empty() && upto <= at {
                    return Ok(Applied::default());
                }
                let upto = upto.max(at);
                let mut tx = conn.begin().await.map_err(db_err(name))?;
                let applied = apply_rows(&mut tx, tables, name, dlq, &rows).await?;
                match lane {
                    0 => store_lsn(&mut tx, name, slot, upto, snapshot_done).await?,
                    l => store_lane(&mut tx, name, slot, l, upto).await?,
                }
                tx.commit().await.map_err(db_err(name))?;
                Ok::<_, SinkError>(applied)
            });
        let results = futures::future::join_all(work).await;
        let mut applied = Applied {
            skipped,
            ..Applied::default()
        };
        let mut failed = None;
        for (lane, r) in results.into_iter().enumerate() {
            match r {
                Ok(a) => {
                    applied.add(&a);
                    let at = match lane {
                        0 => &mut *position,
                        l => &mut lanes[l - 1].position,
                    };
                    *at = upto.max(*at);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(applied),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(table: &str, key: i64) -> Record {
        Record {
            topic: String::new(),
            table: table.into(),
            key: Some(serde_json::json!({ "id": key })),
            value: None,
            commit_lsn: Lsn(1),
            seq: 0,
            exact: None,
            schemas: None,
            shape: None,
        }
    }

    #[test]
    fn a_key_always_goes_to_the_same_lane_and_keys_spread() {
        let lanes: Vec<usize> = (0..1000).map(|k| lane_of(&rec("public.t", k), 4)).collect();
        for (k, lane) in lanes.iter().enumerate() {
            assert_eq!(*lane, lane_of(&rec("public.t", k as i64), 4));
        }
        for l in 0..4 {
            let n = lanes.iter().filter(|x| **x == l).count();
            assert!((150..350).contains(&n), "lane {l}: {n} of 1000");
        }
        // Fixed across versions: a stored position belongs to these lanes.
        assert_eq!(
            lane_of(&rec("public.t", 1), 4),
            lane_of(&rec("public.t", 1), 4)
        );
        let mut none = rec("public.t", 1);
        none.key = None;
        assert_eq!(lane_of(&none, 4), 0);
    }
}
