//! The initial snapshot, consistent with the slot: tables, and page ranges
//! of big ones (TID range scans), copied by several source connections at
//! once, each joining the slot's exported snapshot.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use pgwire_replication::ReplicationClient;
use serde_json::Map;
use sqlx::{Connection, PgConnection};
use tokio::sync::{mpsc, oneshot};

use super::{connect, stream::Stream, SourceConfig, SourceError};
use crate::event::{self, Op, Record, SourceInfo, Table};
use crate::lsn::Lsn;
use crate::pgoutput::Value as Col;
use crate::types::{text, Catalog};
use crate::verify::{self, Sample};

/// Records per batch handed over during the snapshot.
pub const SNAPSHOT_BATCH: usize = 5_000;

/// Bytes of COPY text per chunk handed over.
const COPY_CHUNK: usize = 256 << 10;

/// What the snapshot hands over.
#[derive(Debug)]
pub enum SnapshotItem {
    /// The slot exists, consistent at this position: until the snapshot is
    /// complete the slot stays there, so a crash can resume it.
    Begun(Lsn),
    /// The rows the snapshot expects to read, per table (`schema.table`;
    /// PostgreSQL's estimates, 0 when unknown).
    Expected(Vec<(String, u64)>),
    /// Every row of the table was handed over (the items before this one).
    TableDone(String),
    /// Rows as records (op `r`).
    Records(Vec<Record>),
    /// A table about to be read, with its columns and their types
    /// (`format_type`): the receiver answers which columns it takes as
    /// COPY text straight into its targets, or `None` for records.
    Table {
        table: String,
        columns: Vec<(String, String)>,
        answer: oneshot::Sender<Option<Vec<String>>>,
    },
    /// The table's rows as COPY text of `columns`, chunk by chunk until
    /// `chunks` closes; `done` says whether they were taken (`false`: the
    /// target refused them, and the table follows again as records).
    Copy {
        table: String,
        columns: Vec<String>,
        chunks: mpsc::Receiver<Bytes>,
        done: oneshot::Sender<bool>,
    },
}

/// The command creating `slot` on a server of `version`
/// (`server_version_num`): from PostgreSQL 17 a failover slot, which a
/// standby synchronizes (`sync_replication_slots`) so that it survives a
/// failover of the primary; older servers lose it with the primary, which
/// the pipeline then reports as a lost slot.
fn create_slot(slot: &str, version: u32) -> String {
    let failover = if version >= 170_000 {
        ", FAILOVER true"
    } else {
        ""
    };
    format!(
        "CREATE_REPLICATION_SLOT \"{}\" LOGICAL pgoutput (SNAPSHOT 'export'{failover})",
        slot.replace('"', "")
    )
}

/// Creates the slot with an exported snapshot and reads every table in
/// that snapshot into `out`: as COPY text where the receiver takes it —
/// tables, and page ranges of big ones, read by `cfg.workers` connections
/// at once, each joining the exported snapshot — else as records (op `r`)
/// on this connection. Samples `cfg.check_rows` rows of each table in the
/// same snapshot, then starts streaming from the slot's consistent point.
/// Returns the stream, the consistent point and the sample.
pub async fn snapshot(
    cfg: &SourceConfig,
    out: mpsc::Sender<SnapshotItem>,
) -> Result<(Stream, Lsn, Sample), SourceError> {
    let gone = |_| SourceError::ConsumerGone;
    let mut client = ReplicationClient::connect_gated(cfg.replication()?).await?;
    let version = client.simple_query("SHOW server_version_num").await?;
    let version = version
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_ref())
        .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u32>().ok())
        .unwrap_or(0);
    let rows = client
        .simple_query(&create_slot(&cfg.slot, version))
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| SourceError::Invalid("CREATE_REPLICATION_SLOT returned nothing".into()))?;
    let text = |i: usize| {
        row.get(i)
            .and_then(|v| v.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let consistent = Lsn::parse(&text(1)).ok_or_else(|| {
        SourceError::Invalid("CREATE_REPLICATION_SLOT: no consistent point".into())
    })?;
    // Valid while the replication session stays idle: until the stream
    // starts, after every worker has joined it and finished.
    let snapshot_name = text(2);
    out.send(SnapshotItem::Begun(consistent))
        .await
        .map_err(gone)?;

    let mut conn = connect(cfg).await?;
    let mut tx = conn.begin().await?;
    join_snapshot(&mut tx, &snapshot_name).await?;
    let catalog = Catalog::load(&mut tx).await?;
    // For progress: PostgreSQL's estimates (exact after ANALYZE; -1, never
    // analyzed, counts as unknown).
    let names: Vec<String> = cfg.tables.iter().map(|t| t.to_string()).collect();
    let expected: Vec<(String, f64)> = sqlx::query_as(
        "SELECT n.nspname || '.' || c.relname, GREATEST(c.reltuples, 0)::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    let expected = names
        .iter()
        .map(|t| {
            let n = expected.iter().find(|(e, _)| e == t).map_or(0.0, |e| e.1);
            (t.clone(), n as u64)
        })
        .collect();
    out.send(SnapshotItem::Expected(expected))
        .await
        .map_err(gone)?;
    // Page ranges need TID range scans (PostgreSQL 14).
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut *tx)
        .await?;
    let split = cfg.workers > 1 && version >= 140_000;

    // Every table is described and offered first: the ones the receiver
    // takes as COPY text become parts for the workers, the others are read
    // here as records.
    let mut tables = Vec::new();
    let mut parts = Vec::new();
    let mut as_records = Vec::new();
    for (ti, t) in cfg.tables.iter().enumerate() {
        let described = super::chunk::describe(&mut tx, cfg, &catalog, t).await?;
        let typed: Vec<(String, String)> = described
            .table
            .rel
            .columns
            .iter()
            .map(|c| c.name.clone())
            .zip(described.types)
            .collect();
        tables.push(Arc::new(described.table));
        match offer(t, typed, &out).await? {
            Some(columns) => {
                let pages = if split {
                    Some(pages_of(&mut tx, t).await?)
                } else {
                    None
                };
                parts.extend(Part::split(ti, columns, pages, cfg.workers));
            }
            None => as_records.push(ti),
        }
    }
    // The biggest parts first: the workers end together.
    parts.sort_by_key(|p| std::cmp::Reverse(p.size));
    let mut left = vec![0usize; cfg.tables.len()];
    for p in &parts {
        left[p.table] += 1;
    }
    let shared = Arc::new(Workers {
        cfg: cfg.clone(),
        snapshot: snapshot_name,
        tables: tables.clone(),
        parts: Mutex::new(parts.into()),
        left: Mutex::new(left),
        consistent,
        now: crate::now_ms(),
        out: out.clone(),
    });
    let mut workers = tokio::task::JoinSet::new();
    let n = cfg
        .workers
        .max(1)
        .min(shared.parts.lock().map_or(0, |p| p.len()));
    for _ in 0..n {
        let shared = shared.clone();
        workers.spawn(async move { shared.work().await });
    }

    let last_table = cfg.tables.len().saturating_sub(1);
    let read_records = async {
        for &ti in &as_records {
            let t = &cfg.tables[ti];
            let table = &tables[ti];
            let sql = copy_sql(t, &column_names(table), None);
            let info = Info {
                cfg,
                consistent,
                now: shared.now,
                // The very last row of the snapshot is marked "last".
                last: ti == last_table,
            };
            send_records(&mut tx, &info, t, table, &sql, &out).await?;
            out.send(SnapshotItem::TableDone(t.to_string()))
                .await
                .map_err(gone)?;
        }
        Ok::<_, SourceError>(())
    };
    let join_workers = async {
        while let Some(done) = workers.join_next().await {
            done.map_err(|e| SourceError::Invalid(format!("a snapshot worker failed: {e}")))??;
        }
        Ok::<_, SourceError>(())
    };
    // Either failing ends the snapshot (the other side is dropped).
    tokio::try_join!(read_records, join_workers)?;

    let mut sample = Sample::default();
    for (t, table) in cfg.tables.iter().zip(&tables) {
        sample_table(&mut tx, cfg, t, table, &mut sample).await?;
    }
    tx.commit().await?;
    drop(out);
    client.start().await?;
    client.wait_started().await?;
    Ok((
        Stream::new(client, cfg.clone(), catalog),
        consistent,
        sample,
    ))
}

/// Makes `conn`'s transaction read the exported snapshot `name`, with the
/// text forms every conversion reads (SET LOCAL: this transaction only).
async fn join_snapshot(conn: &mut PgConnection, name: &str) -> Result<(), SourceError> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "SET TRANSACTION SNAPSHOT '{}'",
        name.replace('\'', "")
    ))
    .execute(&mut *conn)
    .await?;
    for (k, v) in super::SESSION_SETTINGS {
        sqlx::query(&format!("SET LOCAL {k} = '{v}'"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The table's size in pages now (the snapshot's rows are within them;
/// the last part is open-ended anyway).
async fn pages_of(
    conn: &mut PgConnection,
    t: &strangler_config::TableName,
) -> Result<u64, SourceError> {
    let pages: i64 = sqlx::query_scalar(
        "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int8 \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(&t.schema)
    .bind(&t.table)
    .fetch_one(&mut *conn)
    .await?;
    Ok(pages.max(0) as u64)
}

/// Pages of a table below which it is copied whole (8 MiB).
const MIN_PART_PAGES: u64 = 1024;

/// What the workers copy: a table, or a range of its pages.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    /// Index into the snapshot's tables.
    table: usize,
    /// The source columns the receiver takes.
    columns: Vec<String>,
    /// `[from, to)` pages (`to` open: to the end); `None`: the whole table.
    pages: Option<(u64, Option<u64>)>,
    /// Pages, for ordering (0: unknown).
    size: u64,
}

impl Part {
    /// A table of `pages` (unknown: `None`) split into up to two parts per
    /// worker of at least [`MIN_PART_PAGES`] each.
    fn split(table: usize, columns: Vec<String>, pages: Option<u64>, workers: usize) -> Vec<Part> {
        let total = pages.unwrap_or(0);
        let n = (total / MIN_PART_PAGES).min(2 * workers as u64).max(1);
        if n == 1 {
            return vec![Part {
                table,
                columns,
                pages: None,
                size: total,
            }];
        }
        let per = total.div_ceil(n);
        (0..n)
            .map(|i| Part {
                table,
                columns: columns.clone(),
                pages: Some((i * per, (i + 1 < n).then_some((i + 1) * per))),
                size: per,
            })
            .collect()
    }
}

/// What the snapshot's workers share.
struct Workers {
    cfg: SourceConfig,
    snapshot: String,
    tables: Vec<Arc<Table>>,
    parts: Mutex<VecDeque<Part>>,
    /// Parts of each table not yet taken by the receiver.
    left: Mutex<Vec<usize>>,
    consistent: Lsn,
    now: i64,
    out: mpsc::Sender<SnapshotItem>,
}

impl Workers {
    fn next_part(&self) -> Option<Part> {
        self.parts.lock().ok()?.pop_front()
    }

    /// One worker: joins the exported snapshot and copies parts until none
    /// is left; the last part of a table marks it done.
    async fn work(&self) -> Result<(), SourceError> {
        let mut conn = connect(&self.cfg).await?;
        let mut tx = conn.begin().await?;
        join_snapshot(&mut tx, &self.snapshot).await?;
        while let Some(part) = self.next_part() {
            let t = &self.cfg.tables[part.table];
            let sql = copy_sql(t, &part.columns, part.pages);
            if !copy_part(&mut tx, t, &part.columns, &sql, &self.out).await? {
                // Refused by the target: these rows as records.
                let table = &self.tables[part.table];
                let sql = copy_sql(t, &column_names(table), part.pages);
                let info = Info {
                    cfg: &self.cfg,
                    consistent: self.consistent,
                    now: self.now,
                    last: false,
                };
                send_records(&mut tx, &info, t, table, &sql, &self.out).await?;
            }
            let table_done = self.left.lock().is_ok_and(|mut left| {
                left[part.table] -= 1;
                left[part.table] == 0
            });
            if table_done {
                self.out
                    .send(SnapshotItem::TableDone(t.to_string()))
                    .await
                    .map_err(|_| SourceError::ConsumerGone)?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

fn quote(i: &str) -> String {
    format!("\"{}\"", i.replace('"', "\"\""))
}

fn column_names(table: &Table) -> Vec<String> {
    table.rel.columns.iter().map(|c| c.name.clone()).collect()
}

/// `COPY … TO STDOUT` of `columns` of a table, or of a range of its pages.
fn copy_sql(
    t: &strangler_config::TableName,
    columns: &[String],
    pages: Option<(u64, Option<u64>)>,
) -> String {
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let list = list.join(", ");
    let name = format!("{}.{}", quote(&t.schema), quote(&t.table));
    match pages {
        None => format!("COPY {name} ({list}) TO STDOUT"),
        Some((from, to)) => {
            let upper = to.map_or(String::new(), |to| format!(" AND ctid < '({to},0)'::tid"));
            format!(
                "COPY (SELECT {list} FROM {name} WHERE ctid >= '({from},0)'::tid{upper}) TO STDOUT"
            )
        }
    }
}

/// How records of the snapshot are stamped.
struct Info<'a> {
    cfg: &'a SourceConfig,
    consistent: Lsn,
    now: i64,
    /// Whether the last row read is the snapshot's last.
    last: bool,
}

/// Reads the rows of `sql` (a COPY of every column of `table`, in order)
/// and sends them as records (op `r`), in batches.
async fn send_records(
    conn: &mut PgConnection,
    info: &Info<'_>,
    t: &strangler_config::TableName,
    table: &Table,
    sql: &str,
    out: &mpsc::Sender<SnapshotItem>,
) -> Result<(), SourceError> {
    let db = info.cfg.db();
    let width = table.rel.columns.len();
    let mut batch = Vec::with_capacity(SNAPSHOT_BATCH);
    let mut pending: Option<Vec<Col>> = None;
    let emit = |vals: Vec<Col>, last: bool, batch: &mut Vec<Record>| {
        let source = SourceInfo {
            name: &info.cfg.name,
            db: &db,
            tx_id: None,
            lsn: Some(info.consistent),
            last_commit_lsn: None,
            ts_ms: info.now,
            snapshot: if last && info.last { "last" } else { "true" },
        };
        let mut exact = Map::new();
        let after = table.row(&vals, Some(&mut exact));
        batch.push(Record {
            topic: table.topic.clone(),
            table: table.name.clone(),
            key: table.key(&vals, None),
            value: Some(event::envelope(
                Op::Read,
                None,
                Some(after),
                &table.rel,
                &source,
                None,
                info.now,
            )),
            commit_lsn: Lsn(0),
            seq: 0,
            exact: (!exact.is_empty()).then_some(exact),
            schemas: table.schemas.clone(),
            shape: None,
        });
    };
    {
        use futures::TryStreamExt;
        // COPY's text format is the columns' output functions, exactly what
        // pgoutput sends while streaming: one parser for both paths.
        let mut copy = conn.copy_out_raw(sql).await?;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = copy.try_next().await?;
            let done = chunk.is_none();
            if let Some(c) = chunk {
                buf.extend_from_slice(&c);
            }
            let mut start = 0;
            while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
                let line = &buf[start..start + nl];
                start += nl + 1;
                let fields = text::parse_copy_line(line)
                    .filter(|f| f.len() == width)
                    .ok_or_else(|| {
                        SourceError::Invalid(format!(
                            "snapshot of {t}: a COPY line that does not parse: {:?}",
                            String::from_utf8_lossy(line)
                        ))
                    })?;
                // Hold one row back to mark the very last one "last".
                if let Some(prev) = pending.take() {
                    emit(prev, false, &mut batch);
                    if batch.len() >= SNAPSHOT_BATCH {
                        out.send(SnapshotItem::Records(std::mem::take(&mut batch)))
                            .await
                            .map_err(|_| SourceError::ConsumerGone)?;
                    }
                }
                pending = Some(
                    fields
                        .into_iter()
                        .map(|f| f.map_or(Col::Null, Col::Text))
                        .collect(),
                );
            }
            buf.drain(..start);
            if done {
                break;
            }
        }
    }
    if let Some(last) = pending.take() {
        emit(last, true, &mut batch);
    }
    if !batch.is_empty() {
        out.send(SnapshotItem::Records(batch))
            .await
            .map_err(|_| SourceError::ConsumerGone)?;
    }
    Ok(())
}

/// Samples `cfg.check_rows` rows of a table for the check after the
/// snapshot.
async fn sample_table(
    conn: &mut PgConnection,
    cfg: &SourceConfig,
    t: &strangler_config::TableName,
    table: &Table,
    sample: &mut Sample,
) -> Result<(), SourceError> {
    if cfg.check_rows == 0 {
        return Ok(());
    }
    let names: Vec<String> = table.rel.columns.iter().map(|c| c.name.clone()).collect();
    let key: Vec<usize> = table
        .rel
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.key)
        .map(|(i, _)| i)
        .collect();
    if !key.is_empty() {
        sample
            .tables
            .push(verify::read_sample(conn, t, &names, key, cfg.check_rows).await?);
    }
    Ok(())
}

/// Offers a table as COPY text: the columns the receiver takes that way,
/// or `None` (records).
async fn offer(
    t: &strangler_config::TableName,
    columns: Vec<(String, String)>,
    out: &mpsc::Sender<SnapshotItem>,
) -> Result<Option<Vec<String>>, SourceError> {
    let (answer, answered) = oneshot::channel();
    out.send(SnapshotItem::Table {
        table: t.to_string(),
        columns,
        answer,
    })
    .await
    .map_err(|_| SourceError::ConsumerGone)?;
    Ok(answered.await.ok().flatten())
}

/// Streams the rows of `sql` (COPY text of `columns`) to the receiver in
/// chunks; whether it took them (else they go as records).
async fn copy_part(
    conn: &mut PgConnection,
    t: &strangler_config::TableName,
    columns: &[String],
    sql: &str,
    out: &mpsc::Sender<SnapshotItem>,
) -> Result<bool, SourceError> {
    let (chunks, taken) = mpsc::channel(4);
    let (done, finished) = oneshot::channel();
    out.send(SnapshotItem::Copy {
        table: t.to_string(),
        columns: columns.to_vec(),
        chunks: taken,
        done,
    })
    .await
    .map_err(|_| SourceError::ConsumerGone)?;
    {
        use futures::TryStreamExt;
        let mut copy = conn.copy_out_raw(sql).await?;
        let mut buf = BytesMut::with_capacity(COPY_CHUNK + (16 << 10));
        // Read to the end even when the receiver stopped taking (the
        // session must finish the COPY to go on).
        let mut open = true;
        while let Some(c) = copy.try_next().await? {
            if !open {
                continue;
            }
            buf.extend_from_slice(&c);
            if buf.len() >= COPY_CHUNK {
                open = chunks.send(buf.split().freeze()).await.is_ok();
            }
        }
        if open && !buf.is_empty() {
            let _ = chunks.send(buf.split().freeze()).await;
        }
    }
    drop(chunks);
    Ok(finished.await.unwrap_or(false))
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_survive_failover_from_postgresql_17() {
        assert_eq!(
            super::create_slot("s", 150_004),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'export')"
        );
        assert_eq!(
            super::create_slot("s", 170_000),
            "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'export', FAILOVER true)"
        );
    }

    use super::*;

    #[test]
    fn big_tables_split_into_page_ranges_that_cover_them() {
        // Small or unknown: whole.
        assert_eq!(Part::split(0, vec![], Some(1500), 2)[0].pages, None);
        assert_eq!(Part::split(0, vec![], None, 2)[0].pages, None);
        // Four parts for two workers, the last one open-ended.
        let parts = Part::split(1, vec!["a".into()], Some(10_000), 2);
        let ranges: Vec<_> = parts.iter().map(|p| p.pages).collect();
        assert_eq!(
            ranges,
            [
                Some((0, Some(2500))),
                Some((2500, Some(5000))),
                Some((5000, Some(7500))),
                Some((7500, None))
            ]
        );
        let t = strangler_config::TableName {
            schema: "public".into(),
            table: "items".into(),
        };
        assert_eq!(
            copy_sql(&t, &["a".into()], Some((2500, Some(5000)))),
            "COPY (SELECT \"a\" FROM \"public\".\"items\" WHERE ctid >= '(2500,0)'::tid AND ctid < '(5000,0)'::tid) TO STDOUT"
        );
        assert_eq!(
            copy_sql(&t, &["a".into()], None),
            "COPY \"public\".\"items\" (\"a\") TO STDOUT"
        );
    }
}
