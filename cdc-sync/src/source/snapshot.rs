//! The initial snapshot, consistent with the slot.

use pgwire_replication::ReplicationClient;
use sqlx::{Connection, Row};
use tokio::sync::mpsc;

use super::{connect, stream::Stream, SourceConfig, SourceError};
use crate::event::{self, Op, Record, SourceInfo};
use crate::lsn::Lsn;
use crate::pgoutput::{Column, Relation, Value as Col};

/// Records per batch handed over during the snapshot.
pub const SNAPSHOT_BATCH: usize = 5_000;

/// Creates the slot with an exported snapshot, reads every table in that
/// snapshot into `out` (op `r`), then starts streaming from the slot's
/// consistent point. Returns the stream and the consistent point.
pub async fn snapshot(
    cfg: &SourceConfig,
    out: mpsc::Sender<Vec<Record>>,
) -> Result<(Stream, Lsn), SourceError> {
    let repl = |e: pgwire_replication::PgWireError| SourceError::Replication(e.to_string());
    let mut client = ReplicationClient::connect_gated(cfg.replication()?)
        .await
        .map_err(repl)?;
    let rows = client
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT \"{}\" LOGICAL pgoutput (SNAPSHOT 'export')",
            cfg.slot.replace('"', "")
        ))
        .await
        .map_err(repl)?;
    let row = rows.first().ok_or_else(|| {
        SourceError::Replication("CREATE_REPLICATION_SLOT returned nothing".into())
    })?;
    let text = |i: usize| {
        row.get(i)
            .and_then(|v| v.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let consistent = Lsn::parse(&text(1))
        .ok_or_else(|| SourceError::Replication("no consistent point".into()))?;
    let snapshot_name = text(2);

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
    let db = cfg.db();
    let now = crate::now_ms();
    let last_table = cfg.tables.len().saturating_sub(1);
    for (ti, t) in cfg.tables.iter().enumerate() {
        let cols = sqlx::query(
            "SELECT a.attname, a.atttypid::int8, COALESCE(a.attnum = ANY(i.indkey), false) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(&t.schema)
        .bind(&t.table)
        .fetch_all(&mut *tx)
        .await?;
        let columns: Vec<Column> = cols
            .iter()
            .map(|r| {
                Ok(Column {
                    name: r.try_get(0)?,
                    type_oid: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                    key: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let rel = Relation {
            oid: 0,
            schema: t.schema.clone(),
            table: t.table.clone(),
            replica_identity: b'd',
            columns,
        };
        let select: Vec<String> = rel
            .columns
            .iter()
            .map(|c| format!("\"{}\"::text", c.name.replace('"', "\"\"")))
            .collect();
        let sql = format!(
            "SELECT {} FROM \"{}\".\"{}\"",
            select.join(", "),
            t.schema,
            t.table
        );
        let topic = format!("{}.{}.{}", cfg.name, t.schema, t.table);
        let table = t.to_string();
        let mut batch = Vec::with_capacity(SNAPSHOT_BATCH);
        {
            use futures::TryStreamExt;
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            let mut pending: Option<Vec<Col>> = None;
            loop {
                let next = rows.try_next().await?;
                // Hold one row back to mark the very last one "last".
                let is_last = next.is_none();
                if let Some(vals) = pending.take() {
                    let snapshot = if is_last && ti == last_table {
                        "last"
                    } else {
                        "true"
                    };
                    let info = SourceInfo {
                        name: &cfg.name,
                        db: &db,
                        tx_id: None,
                        lsn: Some(consistent),
                        last_commit_lsn: None,
                        ts_ms: now,
                        snapshot,
                    };
                    batch.push(Record {
                        topic: topic.clone(),
                        table: table.clone(),
                        key: event::key(&rel, &vals),
                        value: Some(event::envelope(
                            Op::Read,
                            None,
                            Some(event::row(&rel, &vals)),
                            &rel,
                            &info,
                            None,
                            now,
                        )),
                        commit_lsn: Lsn(0),
                    });
                    if batch.len() >= SNAPSHOT_BATCH {
                        out.send(std::mem::take(&mut batch)).await.map_err(|_| {
                            SourceError::Replication("snapshot consumer went away".into())
                        })?;
                    }
                }
                let Some(row) = next else { break };
                let vals: Vec<Col> = (0..rel.columns.len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .map(|v| v.map_or(Col::Null, Col::Text))
                    })
                    .collect::<Result<_, _>>()?;
                pending = Some(vals);
            }
        }
        if !batch.is_empty() {
            out.send(batch)
                .await
                .map_err(|_| SourceError::Replication("snapshot consumer went away".into()))?;
        }
    }
    tx.commit().await?;
    drop(out);
    client.start().await.map_err(repl)?;
    client.wait_started().await.map_err(repl)?;
    Ok((Stream::new(client, cfg.clone()), consistent))
}
