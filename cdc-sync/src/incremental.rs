//! Chunked snapshots while streaming (`strangler cdc snapshot --table T`):
//! the reader's side of [`crate::source::chunk`]. A request arrives in the
//! stream; for each chunk the low watermark, the chunk read and the high
//! watermark are written before the reader goes on; between the two
//! watermarks the stream's changes to the table win (their keys are
//! dropped from the chunk); at the high watermark the rest of the chunk
//! joins the batch as op `r` records at that position.
//!
//! Resumable: once a batch with a chunk's rows is durable, the destination
//! records the table and the chunk's last key ([`ChunkProgress`]); a
//! restarted pipeline resumes there (the chunk in flight is read again).

use std::collections::{HashSet, VecDeque};

use sqlx::PgConnection;
use strangler_config::TableName;

use crate::event::Record;
use crate::lsn::Lsn;
use crate::source::chunk::{self, Described};
use crate::source::{self, SourceConfig, SourceError};
use crate::types::Catalog;

/// Where a chunked snapshot stands, recorded by the destination once the
/// batch carrying it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkProgress {
    /// `schema.table`.
    pub table: String,
    /// Key texts of the last row copied (`None`: nothing yet).
    pub after: Option<Vec<String>>,
    pub complete: bool,
}

/// The table being copied.
struct Current {
    table: TableName,
    described: Described,
    /// Key texts of the last row read.
    last: Option<Vec<String>>,
    chunk: String,
    rows: Vec<(String, Record)>,
    /// Between the chunk's low and high watermarks.
    window: bool,
    /// Keys of the table changed by the stream inside the window.
    seen: HashSet<String>,
    copied: u64,
}

/// Chunked snapshots requested and in progress.
pub(crate) struct Incremental {
    cfg: SourceConfig,
    conn: Option<PgConnection>,
    waiting: VecDeque<(TableName, Option<Vec<String>>)>,
    current: Option<Current>,
    chunks: u64,
    /// Unique to this run: watermarks replayed from an earlier run never
    /// match a chunk of this one.
    run: String,
}

impl Incremental {
    pub(crate) fn new(cfg: &SourceConfig) -> Incremental {
        Incremental {
            cfg: cfg.clone(),
            conn: None,
            waiting: VecDeque::new(),
            current: None,
            chunks: 0,
            run: format!("{}.{}", std::process::id(), crate::now_ms()),
        }
    }

    async fn conn(&mut self) -> Result<&mut PgConnection, SourceError> {
        if self.conn.is_none() {
            self.conn = Some(source::connect(&self.cfg).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| SourceError::Invalid("no source session".into()))
    }

    /// A request in the stream: copy `table` after the ones before it.
    /// The progress to record (so a restart before its first chunk still
    /// copies it); `None` for a table the source does not capture.
    pub(crate) async fn request(
        &mut self,
        table: &str,
    ) -> Result<Option<ChunkProgress>, SourceError> {
        if !self.enqueue(table, None).await? {
            tracing::warn!(
                table,
                "chunked snapshot requested for a table the source does not capture; ignored"
            );
            return Ok(None);
        }
        tracing::info!(table, "chunked snapshot requested");
        Ok(Some(ChunkProgress {
            table: table.to_string(),
            after: None,
            complete: false,
        }))
    }

    /// A chunked snapshot a destination recorded as unfinished: go on
    /// after `after`.
    pub(crate) async fn resume(
        &mut self,
        table: &str,
        after: Option<Vec<String>>,
    ) -> Result<(), SourceError> {
        tracing::info!(table, after = ?after, "chunked snapshot resumed");
        self.enqueue(table, after).await?;
        Ok(())
    }

    /// Queues a captured table (starting it when nothing is being
    /// copied); whether the source captures it.
    async fn enqueue(
        &mut self,
        table: &str,
        after: Option<Vec<String>>,
    ) -> Result<bool, SourceError> {
        let Some(t) = self.cfg.tables.iter().find(|t| t.to_string() == table) else {
            return Ok(false);
        };
        self.waiting.push_back((t.clone(), after));
        if self.current.is_none() {
            self.next_table().await?;
        }
        Ok(true)
    }

    async fn next_table(&mut self) -> Result<(), SourceError> {
        let Some((table, after)) = self.waiting.pop_front() else {
            return Ok(());
        };
        let cfg = self.cfg.clone();
        let conn = self.conn().await?;
        let catalog = Catalog::load(&mut *conn).await?;
        let described = chunk::describe(conn, &cfg, &catalog, &table).await?;
        self.current = Some(Current {
            table,
            described,
            last: after,
            chunk: String::new(),
            rows: Vec::new(),
            window: false,
            seen: HashSet::new(),
            copied: 0,
        });
        self.next_chunk().await
    }

    /// Low watermark, read, high watermark.
    async fn next_chunk(&mut self) -> Result<(), SourceError> {
        self.chunks += 1;
        let n = format!("{}-{}", self.run, self.chunks);
        let cfg = self.cfg.clone();
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        let conn = self.conn().await?;
        chunk::watermark(conn, &cfg.slot, false, &n).await?;
        let read = chunk::read(conn, &cfg, &cur.described, cur.last.as_deref()).await?;
        chunk::watermark(conn, &cfg.slot, true, &n).await?;
        tracing::info!(
            table = %cur.table,
            chunk = %n,
            rows = read.records.len(),
            after = ?cur.last,
            "chunk read"
        );
        cur.chunk = n;
        cur.rows = read.records;
        if read.last.is_some() {
            cur.last = read.last;
        }
        cur.window = false;
        cur.seen.clear();
        self.current = Some(cur);
        Ok(())
    }

    /// Records the stream delivered: inside a window, their keys win.
    pub(crate) fn saw(&mut self, records: &[Record]) {
        let Some(cur) = self.current.as_mut().filter(|c| c.window) else {
            return;
        };
        let name = cur.described.table.name.as_str();
        for r in records.iter().filter(|r| r.table == name) {
            if let Some(k) = &r.key {
                cur.seen.insert(k.to_string());
            }
        }
    }

    /// A watermark: at the current chunk's high one, the chunk's rows the
    /// stream did not change, at `lsn`, with the progress to record once
    /// they are durable; then the next chunk is read.
    pub(crate) async fn watermark(
        &mut self,
        high: bool,
        chunk: &str,
        lsn: Lsn,
    ) -> Result<(Vec<Record>, Option<ChunkProgress>), SourceError> {
        let chunk_rows = self.cfg.chunk_rows.max(1);
        let Some(cur) = self.current.as_mut().filter(|c| c.chunk == chunk) else {
            return Ok((Vec::new(), None));
        };
        if !high {
            cur.window = true;
            return Ok((Vec::new(), None));
        }
        let read = std::mem::take(&mut cur.rows);
        let full = read.len() >= chunk_rows;
        let progress = ChunkProgress {
            table: cur.table.to_string(),
            after: cur.last.clone(),
            complete: !full,
        };
        let seen = std::mem::take(&mut cur.seen);
        let out: Vec<Record> = read
            .into_iter()
            .filter(|(k, _)| !seen.contains(k))
            .enumerate()
            .map(|(i, (_, mut r))| {
                r.commit_lsn = lsn;
                r.seq = i as u32;
                r
            })
            .collect();
        cur.copied += out.len() as u64;
        if full {
            self.next_chunk().await?;
        } else {
            tracing::info!(
                table = %cur.table,
                rows = cur.copied,
                changed_during_the_last_chunk = seen.len(),
                "chunked snapshot complete"
            );
            self.current = None;
            self.next_table().await?;
        }
        Ok((out, Some(progress)))
    }
}
