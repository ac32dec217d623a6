//! The initial snapshot, consistent with the slot.

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
    /// The rows the snapshot expects to read (the tables' estimates).
    Expected(u64),
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

/// Creates the slot with an exported snapshot, reads every table in that
/// snapshot into `out` (as COPY text where the receiver takes it, else as
/// records, op `r`), samples `cfg.check_rows` rows of each in the same
/// snapshot, then starts streaming from the slot's consistent point.
/// Returns the stream, the consistent point and the sample.
pub async fn snapshot(
    cfg: &SourceConfig,
    out: mpsc::Sender<SnapshotItem>,
) -> Result<(Stream, Lsn, Sample), SourceError> {
    let mut client = ReplicationClient::connect_gated(cfg.replication()?).await?;
    let rows = client
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT \"{}\" LOGICAL pgoutput (SNAPSHOT 'export')",
            cfg.slot.replace('"', "")
        ))
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
    let snapshot_name = text(2);
    out.send(SnapshotItem::Begun(consistent))
        .await
        .map_err(|_| SourceError::ConsumerGone)?;

    let mut conn = connect(cfg).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "SET TRANSACTION SNAPSHOT '{}'",
        snapshot_name.replace('\'', "")
    ))
    .execute(&mut *tx)
    .await?;
    // The text forms every conversion reads (SET LOCAL: this transaction only).
    for (k, v) in super::SESSION_SETTINGS {
        sqlx::query(&format!("SET LOCAL {k} = '{v}'"))
            .execute(&mut *tx)
            .await?;
    }
    let catalog = Catalog::load(&mut tx).await?;
    // For progress: PostgreSQL's estimates (exact after ANALYZE; -1, never
    // analyzed, counts as unknown).
    let names: Vec<String> = cfg.tables.iter().map(|t| t.to_string()).collect();
    let expected: Option<f64> = sqlx::query_scalar(
        "SELECT sum(GREATEST(c.reltuples, 0))::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = ANY($1)",
    )
    .bind(&names)
    .fetch_one(&mut *tx)
    .await?;
    out.send(SnapshotItem::Expected(expected.unwrap_or(0.0) as u64))
        .await
        .map_err(|_| SourceError::ConsumerGone)?;
    let mut sample = Sample::default();
    let db = cfg.db();
    let now = crate::now_ms();
    let last_table = cfg.tables.len().saturating_sub(1);
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
        let table = described.table;
        let quote = |i: &str| format!("\"{}\"", i.replace('"', "\"\""));
        // Straight as COPY text where every target takes it.
        if copy_table(&mut tx, t, typed, &out).await? {
            sample_table(&mut tx, cfg, t, &table, &mut sample).await?;
            out.send(SnapshotItem::TableDone(t.to_string()))
                .await
                .map_err(|_| SourceError::ConsumerGone)?;
            continue;
        }
        let list: Vec<String> = table.rel.columns.iter().map(|c| quote(&c.name)).collect();
        // COPY's text format is the columns' output functions, exactly what
        // pgoutput sends while streaming: one parser for both paths.
        let sql = format!(
            "COPY {}.{} ({}) TO STDOUT",
            quote(&t.schema),
            quote(&t.table),
            list.join(", ")
        );
        let width = table.rel.columns.len();
        let mut batch = Vec::with_capacity(SNAPSHOT_BATCH);
        let mut pending: Option<Vec<Col>> = None;
        let emit = |vals: Vec<Col>, last: bool, batch: &mut Vec<Record>| {
            let info = SourceInfo {
                name: &cfg.name,
                db: &db,
                tx_id: None,
                lsn: Some(consistent),
                last_commit_lsn: None,
                ts_ms: now,
                snapshot: if last && ti == last_table {
                    "last"
                } else {
                    "true"
                },
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
                    &info,
                    None,
                    now,
                )),
                commit_lsn: Lsn(0),
                seq: 0,
                exact: (!exact.is_empty()).then_some(exact),
                schemas: table.schemas.clone(),
            });
        };
        {
            use futures::TryStreamExt;
            let mut copy = tx.copy_out_raw(&sql).await?;
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
        sample_table(&mut tx, cfg, t, &table, &mut sample).await?;
        out.send(SnapshotItem::TableDone(t.to_string()))
            .await
            .map_err(|_| SourceError::ConsumerGone)?;
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

/// Offers a table as COPY text; when the receiver takes it, streams its
/// rows in chunks. Whether it was taken (else it goes as records).
async fn copy_table(
    conn: &mut PgConnection,
    t: &strangler_config::TableName,
    columns: Vec<(String, String)>,
    out: &mpsc::Sender<SnapshotItem>,
) -> Result<bool, SourceError> {
    let gone = |_| SourceError::ConsumerGone;
    let (answer, answered) = oneshot::channel();
    out.send(SnapshotItem::Table {
        table: t.to_string(),
        columns,
        answer,
    })
    .await
    .map_err(gone)?;
    let Some(columns) = answered.await.ok().flatten() else {
        return Ok(false);
    };
    let (chunks, taken) = mpsc::channel(4);
    let (done, finished) = oneshot::channel();
    out.send(SnapshotItem::Copy {
        table: t.to_string(),
        columns: columns.clone(),
        chunks: taken,
        done,
    })
    .await
    .map_err(gone)?;
    let quote = |i: &str| format!("\"{}\"", i.replace('"', "\"\""));
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let sql = format!(
        "COPY {}.{} ({}) TO STDOUT",
        quote(&t.schema),
        quote(&t.table),
        list.join(", ")
    );
    {
        use futures::TryStreamExt;
        let mut copy = conn.copy_out_raw(&sql).await?;
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
