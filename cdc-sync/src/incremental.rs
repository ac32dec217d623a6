//! Chunked snapshots while streaming (`strangler cdc snapshot --table T`):
//! the reader's side of [`crate::source::chunk`]. A request arrives in the
//! stream; for each chunk the low watermark, the chunk read and the high
//! watermark are written before the reader goes on; between the two
//! watermarks the stream's changes to the table win (their keys are
//! dropped from the chunk); at the high watermark the rest of the chunk
//! joins the batch as op `r` records at that position.
//!
//! Not yet resumable: a restart forgets a chunked snapshot in progress
//! (request it again; rows already copied are upserted again).

use std::collections::{HashSet, VecDeque};

use sqlx::PgConnection;
use strangler_config::TableName;

use crate::event::Record;
use crate::lsn::Lsn;
use crate::source::chunk::{self, Described, CHUNK_ROWS};
use crate::source::{self, SourceConfig, SourceError};
use crate::types::Catalog;

/// The table being copied.
struct Current {
    table: TableName,
    described: Described,
    /// Key texts of the last row read.
    last: Option<Vec<String>>,
    chunk: u64,
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
    waiting: VecDeque<TableName>,
    current: Option<Current>,
    chunks: u64,
}

impl Incremental {
    pub(crate) fn new(cfg: &SourceConfig) -> Incremental {
        Incremental {
            cfg: cfg.clone(),
            conn: None,
            waiting: VecDeque::new(),
            current: None,
            chunks: 0,
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
    pub(crate) async fn request(&mut self, table: &str) -> Result<(), SourceError> {
        let Some(t) = self.cfg.tables.iter().find(|t| t.to_string() == table) else {
            tracing::warn!(
                table,
                "chunked snapshot requested for a table the source does not capture; ignored"
            );
            return Ok(());
        };
        tracing::info!(table, "chunked snapshot requested");
        self.waiting.push_back(t.clone());
        if self.current.is_none() {
            self.next_table().await?;
        }
        Ok(())
    }

    async fn next_table(&mut self) -> Result<(), SourceError> {
        let Some(table) = self.waiting.pop_front() else {
            return Ok(());
        };
        let cfg = self.cfg.clone();
        let conn = self.conn().await?;
        let catalog = Catalog::load(&mut *conn).await?;
        let described = chunk::describe(conn, &cfg, &catalog, &table).await?;
        self.current = Some(Current {
            table,
            described,
            last: None,
            chunk: 0,
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
        let n = self.chunks;
        let cfg = self.cfg.clone();
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        let conn = self.conn().await?;
        chunk::watermark(conn, &cfg.slot, false, n).await?;
        let read = chunk::read(conn, &cfg, &cur.described, cur.last.as_deref()).await?;
        chunk::watermark(conn, &cfg.slot, true, n).await?;
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
    /// stream did not change, at `lsn`; then the next chunk is read.
    pub(crate) async fn watermark(
        &mut self,
        high: bool,
        chunk: u64,
        lsn: Lsn,
    ) -> Result<Vec<Record>, SourceError> {
        let Some(cur) = self.current.as_mut().filter(|c| c.chunk == chunk) else {
            return Ok(Vec::new());
        };
        if !high {
            cur.window = true;
            return Ok(Vec::new());
        }
        let read = std::mem::take(&mut cur.rows);
        let full = read.len() >= CHUNK_ROWS;
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
        Ok(out)
    }
}
