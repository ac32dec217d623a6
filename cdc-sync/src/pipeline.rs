//! Source → transport → sinks, with the slot confirmed only past what every
//! sink has committed.
//!
//! ```text
//!   slot ──pgoutput──▶ Stream ──▶ reader: batch of whole transactions (≤ 5000 records),
//!    ▲                             or a large one in parts of 5000 (decoded one at a time)
//!    │                                   │ channel (2 batches: back-pressure)
//!    │ confirm(durable)                  ▼
//!    └──── reader ◀── durable position ── writer: Destination::write / write_part
//!                                          (rows + offset in one target transaction)
//!   Idle(wal_end) / Skipped(end_lsn), nothing pending ──▶ durable at once (heartbeat)
//! ```
//!
//! The reader decodes the next batch while the writer's is in the target.
//! The reader confirms on the slot what the writer made durable (between
//! batches; when the stream is idle, at the next keepalive, and at the
//! end).
//!
//! Which position is confirmed when: the slot's `confirmed_flush_lsn` is
//! advanced to a transaction's end only after every sink has committed that
//! transaction together with its offset. A crash before that replays the
//! transaction; each sink skips what its offset already covers. So nothing
//! is lost and nothing is applied twice in effect.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::event::Record;
pub use crate::incremental::ChunkProgress;
use crate::lsn::Lsn;
use crate::sink::{CopyJob, SinkError};
use crate::source::{self, Item, Large, SnapshotItem, SourceConfig, SourceError, Stream};
use crate::transport::kafka::TransportError;

/// Where the pipeline hands its batches: the embedded sinks
/// ([`crate::sink::Sinks`]) or Kafka ([`crate::transport::kafka::KafkaDestination`]).
///
/// Contract: [`Destination::write`] returns only when the batch is durable
/// there (committed in every sink together with its offset; acknowledged
/// by the broker) — only then may the slot move past it. Delivery is
/// at-least-once: after a crash or a retry a batch may be written again, so
/// a destination must make repeats harmless (offsets stored with the rows,
/// upserts).
#[async_trait::async_trait]
pub trait Destination: Send {
    /// Whether a complete snapshot still has to be written here.
    fn snapshot_unfinished(&self) -> bool;
    /// Sinks added to a running migration (no bookkeeping yet, beside
    /// sinks that stream): each gets its tables copied in chunks from the
    /// slot's `confirmed` position while the stream goes on — the others
    /// are not copied again, the slot is kept. Returns their names.
    async fn adopt_new_sinks(&mut self, _confirmed: Lsn) -> Result<Vec<String>, PipelineError> {
        Ok(Vec::new())
    }
    /// The newest source position taken from the slot, when this
    /// destination took anything from it (a complete snapshot, streamed
    /// changes): with the slot gone, what came after it is lost.
    fn taken_from_slot(&self) -> Option<Lsn> {
        None
    }
    /// Where a source without a slot (MySQL's binlog) reads again from:
    /// the oldest position this destination has durably taken, `None`
    /// when it has none (nothing taken yet: snapshot).
    async fn resume_position(&mut self) -> Result<Option<Lsn>, PipelineError> {
        Ok(None)
    }
    /// A new snapshot replaces everything: forget stored positions.
    async fn reset(&mut self) -> Result<(), PipelineError> {
        Ok(())
    }
    /// Writes whole source transactions ending at `through` (`Lsn(0)`
    /// inside the snapshot) durably; `snapshot_complete` marks the end of
    /// the snapshot.
    async fn write(
        &mut self,
        batch: &[Record],
        through: Lsn,
        snapshot_complete: bool,
        progress: &mut Progress,
        status: &dyn StatusReporter,
    ) -> Result<(), PipelineError>;
    /// Starts writing whole source transactions ending at `through` as
    /// [`Destination::write`] does and returns what completes once they
    /// are durable, so that the next batches start meanwhile (they complete
    /// in order; the slot moves past each only then). `None`: this
    /// destination writes one batch at a time, through `write` (the
    /// default).
    async fn start_write(
        &mut self,
        _batch: &[Record],
        _through: Lsn,
        _progress: &mut Progress,
    ) -> Result<Option<Pending>, PipelineError> {
        Ok(None)
    }
    /// Writes one part of a large source transaction ending at `through`
    /// (parts come in order; `last` is the final call, possibly with no
    /// records). Durable only with the last part; the slot is confirmed
    /// after it. By default each part is written as a batch.
    async fn write_part(
        &mut self,
        part: &[Record],
        through: Lsn,
        last: bool,
        progress: &mut Progress,
        status: &dyn StatusReporter,
    ) -> Result<(), PipelineError> {
        if part.is_empty() && last {
            return Ok(());
        }
        self.write(part, through, false, progress, status).await
    }
    /// The shape a snapshot table is copied with, as a schema-change
    /// record (`source/shape.rs`), before its rows: the baseline its schema
    /// changes are told from (embedded sinks store it; Kafka publishes it
    /// for the sink workers). The default does nothing.
    async fn snapshot_shape(&mut self, _shape: &Record) -> Result<(), PipelineError> {
        Ok(())
    }
    /// Which of a snapshot table's source columns (name, `format_type`)
    /// this destination takes as COPY text straight into its targets, or
    /// `None` for records (the default).
    async fn copy_columns(
        &mut self,
        _table: &str,
        _columns: &[(String, String)],
    ) -> Result<Option<Vec<String>>, PipelineError> {
        Ok(None)
    }
    /// A copy of part of a snapshot table (COPY text of `columns`) into
    /// its target on a connection of its own ([`CopyJob`]); `direct` as
    /// decided for the table's first part (`None`: decide). Only called
    /// after [`Destination::copy_columns`] named those columns.
    async fn copy_job(
        &mut self,
        table: &str,
        _columns: &[String],
        _direct: Option<bool>,
    ) -> Result<CopyJob, PipelineError> {
        Err(SourceError::Invalid(format!("{table}: this destination takes no COPY text")).into())
    }
    /// The initial snapshot began with a new slot consistent at `lsn`.
    async fn snapshot_begun(&mut self, _lsn: Lsn) -> Result<(), PipelineError> {
        Ok(())
    }
    /// Every row of `table` in the initial snapshot is durable here.
    async fn snapshot_table_done(&mut self, _table: &str) -> Result<(), PipelineError> {
        Ok(())
    }
    /// The tables an interrupted initial snapshot has not finished, when it
    /// can be resumed from a slot still at `consistent` (it began there and
    /// recorded its tables); `None`: it must start over. By default it
    /// always starts over.
    async fn snapshot_unfinished_tables(
        &mut self,
        _consistent: Lsn,
    ) -> Result<Option<Vec<String>>, PipelineError> {
        Ok(None)
    }
    /// Resumes an interrupted initial snapshot: the snapshot counts as
    /// complete at `consistent`, and the tables it had not finished are
    /// recorded as chunked snapshots from their start, copied while
    /// streaming from `consistent` (their applied position is not reported
    /// until then).
    async fn resume_snapshot(&mut self, _consistent: Lsn) -> Result<(), PipelineError> {
        Err(SourceError::Invalid("this destination cannot resume a snapshot".into()).into())
    }
    /// Records where a chunked snapshot stands (after the batch with its
    /// rows is durable). By default nothing is kept: no resume.
    async fn chunk_progress(&mut self, _p: &ChunkProgress) -> Result<(), PipelineError> {
        Ok(())
    }
    /// Chunked snapshots recorded as unfinished: (table, last key copied).
    async fn chunked_in_progress(
        &mut self,
    ) -> Result<Vec<(String, Option<Vec<String>>)>, PipelineError> {
        Ok(Vec::new())
    }
    /// The slot was confirmed at `lsn`; `wrote` says whether a batch ended
    /// there (else it was an idle or skipped position).
    async fn confirmed(
        &mut self,
        _lsn: Lsn,
        _wrote: bool,
        _slot: &str,
        _status: &dyn StatusReporter,
    ) {
    }
}

/// Records per sink transaction, at most.
pub const BATCH: usize = 5_000;

/// Errors of a pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl PipelineError {
    /// Whether running the pipeline again (reconnecting everything) may
    /// succeed; see each part's `is_retryable`.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Source(e) => e.is_retryable(),
            PipelineError::Sink(e) => e.is_retryable(),
            PipelineError::Transport(e) => e.is_retryable(),
        }
    }
}

/// Where progress is reported (the state store, for the router and
/// `strangler status`).
#[async_trait::async_trait]
pub trait StatusReporter: Send + Sync {
    /// The source's cluster (its system identifier): every position
    /// reported afterwards belongs to that cluster's WAL.
    async fn source_cluster(&self, _cluster: &str) {}
    /// The source's current WAL position.
    async fn source_position(&self, slot: &str, lsn: Lsn);
    /// What a sink has applied of a source table; `tables` is (source
    /// table, target table).
    async fn applied(&self, sink: &str, tables: (&str, &str), lsn: Lsn);
    /// A complete snapshot of `slot` was taken (Kafka: published).
    async fn snapshot_complete(&self, _slot: &str) {}
    /// Rows the snapshot read, for the check against every sink
    /// ([`crate::verify::check_sample`]); called after `snapshot_complete`.
    async fn snapshot_sampled(&self, _slot: &str, _sample: crate::verify::Sample) {}
    /// Kafka: everything up to `lsn` is acknowledged by the broker.
    async fn published(&self, _slot: &str, _lsn: Lsn) {}
    /// A part (`pipeline`, `source`, `sink`) failed with a retryable error
    /// and is being reconnected.
    async fn retried(&self, _slot: &str, _part: &str, _error: &str) {}
    /// Kafka: what a sink worker applied on one partition of `table`'s
    /// topic (everything published when `caught_up`).
    async fn partition_applied(
        &self,
        _sink: &str,
        _tables: (&str, &str),
        _partition: (&str, i32),
        _lsn: Lsn,
        _caught_up: bool,
    ) {
    }
    /// Kafka: `table`'s topic has partitions `0..partitions`. One that no
    /// worker has reported yet counts as applied nowhere (position 0), so
    /// it holds the table back until its worker reports it — a table is as
    /// far as its slowest partition, including one whose worker died
    /// before it ever reported.
    async fn partitions_exist(
        &self,
        _sink: &str,
        _tables: (&str, &str),
        _topic: &str,
        _partitions: i32,
    ) {
    }
    /// This process is the slot's active `cdc run` (`true`) or a standby
    /// (`run/lease.rs`).
    async fn role(&self, _slot: &str, _active: bool) {}
    /// The slot is lost (`true`, [`crate::source::SourceError::SlotLost`])
    /// or there again.
    async fn slot_lost(&self, _slot: &str, _lost: bool) {}
    /// The WAL the server keeps for the slot (current position minus the
    /// slot's restart position).
    async fn retained_wal(&self, _slot: &str, _bytes: u64) {}
    /// Kafka: the position last reported by [`StatusReporter::published`].
    async fn published_position(&self, _slot: &str) -> Option<Lsn> {
        None
    }
}

/// A reporter that reports nothing.
pub struct NoStatus;

#[async_trait::async_trait]
impl StatusReporter for NoStatus {
    async fn source_position(&self, _slot: &str, _lsn: Lsn) {}
    async fn applied(&self, _sink: &str, _tables: (&str, &str), _lsn: Lsn) {}
}

/// A write that becomes durable later ([`Destination::start_write`]).
pub type Pending = std::pin::Pin<Box<dyn Future<Output = Result<(), PipelineError>> + Send>>;

/// Batches written at once by a destination that pipelines
/// ([`Destination::start_write`]).
const IN_FLIGHT: usize = 4;

/// Counters of a run.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub snapshot_rows: u64,
    /// Of those, rows copied as COPY text straight into their target.
    pub snapshot_copied: u64,
    /// Rows the snapshot expects to read (the tables' estimates,
    /// `pg_class.reltuples`); 0 when unknown.
    pub snapshot_expected: u64,
    /// How far behind the source the last batch written was: now minus
    /// its last event's commit time, in ms (Debezium's
    /// `MilliSecondsBehindSource`).
    pub behind_ms: u64,
    pub transactions: u64,
    pub events: u64,
    pub rows_applied: u64,
    pub dead_letters: u64,
    /// Records published (Kafka transport).
    pub published: u64,
    pub confirmed: Lsn,
    /// The snapshot, table by table (`schema.table`).
    pub snapshot_tables: BTreeMap<String, TableProgress>,
    /// Change events streamed, by source table (`schema.table`).
    pub table_events: BTreeMap<String, u64>,
    /// Rows written, by sink.
    pub sink_rows: BTreeMap<String, u64>,
}

/// How far the snapshot of one table got.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableProgress {
    /// Rows read (and, copied straight in, written) so far.
    pub rows: u64,
    /// The table's estimate (`pg_class.reltuples`); 0 when unknown.
    pub expected: u64,
    /// Every row of the table is durable in the destination.
    pub done: bool,
}

fn added(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut t = a.clone();
    for (k, n) in b {
        *t.entry(k.clone()).or_default() += n;
    }
    t
}

impl Progress {
    /// Counts `rows` written by `sink`, in all and by sink.
    pub fn count_applied(&mut self, sink: &str, rows: u64) {
        self.rows_applied += rows;
        match self.sink_rows.get_mut(sink) {
            Some(n) => *n += rows,
            None => {
                self.sink_rows.insert(sink.to_string(), rows);
            }
        }
    }

    /// Counts `records` as streamed events, in all and by table.
    pub fn count_events(&mut self, records: &[crate::event::Record]) {
        self.events += records.len() as u64;
        for r in records {
            match self.table_events.get_mut(&r.table) {
                Some(n) => *n += 1,
                None => {
                    self.table_events.insert(r.table.clone(), 1);
                }
            }
        }
    }

    /// Counters of two runs added up (the later run's confirmed position).
    pub fn plus(&self, o: &Progress) -> Progress {
        Progress {
            snapshot_rows: self.snapshot_rows + o.snapshot_rows,
            snapshot_copied: self.snapshot_copied + o.snapshot_copied,
            snapshot_expected: self.snapshot_expected.max(o.snapshot_expected),
            behind_ms: o.behind_ms,
            transactions: self.transactions + o.transactions,
            events: self.events + o.events,
            rows_applied: self.rows_applied + o.rows_applied,
            dead_letters: self.dead_letters + o.dead_letters,
            published: self.published + o.published,
            confirmed: self.confirmed.max(o.confirmed),
            // A later snapshot replaces an earlier one's tables.
            snapshot_tables: if o.snapshot_tables.is_empty() {
                self.snapshot_tables.clone()
            } else {
                o.snapshot_tables.clone()
            },
            table_events: added(&self.table_events, &o.table_events),
            sink_rows: added(&self.sink_rows, &o.sink_rows),
        }
    }
}

/// How the pipeline starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Snapshot when the slot is new or a sink has not finished one; a
    /// slot gone after the destinations took changes from it is an error
    /// ([`SourceError::SlotLost`]), never a silent new snapshot.
    Initial,
    /// `cdc snapshot`: as `Initial`, and a slot that is gone is taken anew
    /// with a new snapshot (the way back from a lost slot).
    Again,
    /// Never snapshot: create the slot if missing and stream from now on
    /// (a lost slot is an error as with `Initial`).
    Never,
}

/// Runs the pipeline until `shutdown` completes (or a fatal error).
/// `on_progress` is called after every batch.
pub async fn run(
    cfg: &SourceConfig,
    target: &mut dyn Destination,
    start: Start,
    status: &dyn StatusReporter,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress, PipelineError> {
    if cfg.kind.is_mysql() {
        return crate::mysql::run::run(cfg, target, start, status, shutdown, on_progress).await;
    }
    let mut progress = Progress::default();
    let mut stream = open(cfg, target, start, status, &mut progress, &mut on_progress).await?;
    // The source's position is read beside the apply loop, never by it: a
    // stalled sink must show as a growing lag, not as a frozen "caught up".
    let report = report_source_positions(cfg, status);
    let mut report = std::pin::pin!(report);
    // Reading and decoding overlap with writing: the reader gathers the
    // next batch while the writer's batch is in the target. What the
    // writer made durable goes back to the reader, which confirms it.
    let durable = AtomicU64::new(progress.confirmed.0);
    let (tx, rx) = mpsc::channel::<Work>(2);
    let mut chunks = crate::incremental::Incremental::new(cfg);
    for (table, after) in target.chunked_in_progress().await? {
        chunks.resume(&table, after).await?;
    }
    let read = read(&mut stream, &mut chunks, tx, &durable, shutdown);
    let write = write(
        rx,
        target,
        &durable,
        &cfg.slot,
        status,
        &mut progress,
        &mut on_progress,
    );
    tokio::select! {
        r = async { futures::try_join!(read, write) } => { r?; }
        _ = &mut report => unreachable!("the position reporter never ends"),
    }
    stream.confirm(progress.confirmed);
    stream.shutdown().await;
    Ok(progress)
}

/// What the reader hands the writer.
enum Work {
    /// Whole transactions (`through`: the end of the last), and a position
    /// with nothing to write (idle, or a transaction of ours) to confirm.
    Batch {
        records: Vec<Record>,
        transactions: u64,
        through: Option<Lsn>,
        quiet: Option<Lsn>,
        /// A chunked snapshot's progress, recorded once the batch is durable.
        chunked: Option<ChunkProgress>,
    },
    /// A part of a large transaction ending at `end`; `last` ends it.
    Part {
        records: Vec<Record>,
        end: Lsn,
        last: bool,
    },
}

/// Reads the stream into batches (and large transactions into parts) until
/// `shutdown`; confirms on the slot whatever the writer made durable.
async fn read(
    stream: &mut Stream,
    chunks: &mut crate::incremental::Incremental,
    tx: mpsc::Sender<Work>,
    durable: &AtomicU64,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PipelineError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut confirmed = Lsn(durable.load(Ordering::Acquire));
    let send = |w| async { tx.send(w).await.is_ok() };
    loop {
        let d = Lsn(durable.load(Ordering::Acquire));
        if d > confirmed {
            stream.confirm(d);
            confirmed = d;
        }
        let first = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            item = tokio::time::timeout(Duration::from_millis(500), stream.next()) => match item {
                Ok(item) => item?,
                Err(_) => continue,
            },
        };
        let mut records: Vec<Record> = Vec::new();
        let mut transactions = 0;
        let mut through: Option<Lsn> = None;
        let mut quiet: Option<Lsn> = None;
        let mut large: Option<Large> = None;
        let mut chunked: Option<ChunkProgress> = None;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Tx(t) => {
                    transactions += 1;
                    through = Some(t.end_lsn);
                    chunks.saw(&t.records);
                    records.extend(t.records);
                }
                Item::Skipped(l) | Item::Idle(l) => quiet = Some(l),
                Item::SnapshotRequest { table, end_lsn } => {
                    quiet = Some(end_lsn);
                    if let Some(p) = chunks.request(&table).await? {
                        chunked = chunked.or(Some(p));
                    }
                }
                Item::Watermark { high, chunk, lsn } => {
                    let (rows, progress) = chunks.watermark(high, &chunk, lsn).await?;
                    if rows.is_empty() {
                        quiet = Some(lsn);
                    } else {
                        through = Some(lsn);
                        records.extend(rows);
                    }
                    if progress.is_some() {
                        chunked = progress;
                        // Recorded with this batch: end it here.
                        break;
                    }
                }
                // Written after what came before it.
                Item::Large(l) => {
                    large = Some(l);
                    break;
                }
            }
            // Gather what is already there, up to a batch.
            if records.len() < BATCH {
                if let Some(item) = stream.next().now_or_never() {
                    next = Some(item?);
                }
            }
        }
        if (through.is_some() || quiet.is_some())
            && !send(Work::Batch {
                records,
                transactions,
                through,
                quiet,
                chunked,
            })
            .await
        {
            return Ok(());
        }
        if let Some(mut l) = large {
            let started = Instant::now();
            let mut events = 0;
            // One part decoded while the one before is written: at most
            // the channel's parts in memory.
            while let Some(part) = stream.part(&mut l).await? {
                events += part.len();
                chunks.saw(&part);
                let w = Work::Part {
                    records: part,
                    end: l.end_lsn,
                    last: false,
                };
                if !send(w).await {
                    return Ok(());
                }
            }
            let w = Work::Part {
                records: Vec::new(),
                end: l.end_lsn,
                last: true,
            };
            if !send(w).await {
                return Ok(());
            }
            tracing::info!(
                xid = l.xid,
                events,
                seconds = started.elapsed().as_secs_f64(),
                "a large source transaction was read in parts"
            );
        }
    }
}

/// A batch handed to a pipelining destination, not yet durable.
struct InFlight {
    durable: Pending,
    /// Where the slot may move once it is.
    confirm: Option<Lsn>,
    wrote: bool,
    chunked: Option<ChunkProgress>,
    /// Its last event's commit time, for [`Progress::behind_ms`].
    last_commit_ms: Option<i64>,
}

/// Writes what the reader hands over, durably, in order; publishes each
/// durable position for the reader to confirm. A destination that
/// pipelines has up to [`IN_FLIGHT`] batches being written at once; each
/// counts as durable only once it and every batch before it are.
async fn write(
    mut rx: mpsc::Receiver<Work>,
    target: &mut dyn Destination,
    durable: &AtomicU64,
    slot: &str,
    status: &dyn StatusReporter,
    progress: &mut Progress,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<(), PipelineError> {
    let mut in_flight: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    loop {
        let room = in_flight.len() < IN_FLIGHT;
        let work = match in_flight.front_mut() {
            Some(front) => {
                tokio::select! {
                    biased;
                    done = &mut front.durable => {
                        done?;
                        if let Some(f) = in_flight.pop_front() {
                            landed(target, durable, slot, status, progress, f).await?;
                            on_progress(progress);
                        }
                        continue;
                    }
                    work = rx.recv(), if room => work,
                }
            }
            None => rx.recv().await,
        };
        let Some(work) = work else { break };
        let (confirm, wrote) = match work {
            Work::Batch {
                records,
                transactions,
                through,
                quiet,
                chunked,
            } => {
                progress.transactions += transactions;
                progress.count_events(&records);
                let started = match through {
                    Some(end) => target.start_write(&records, end, progress).await?,
                    None => None,
                };
                if started.is_some() || !in_flight.is_empty() {
                    // In order behind what is in flight (a quiet position
                    // too: it must not be confirmed before them).
                    in_flight.push_back(InFlight {
                        durable: started.unwrap_or_else(|| Box::pin(async { Ok(()) })),
                        confirm: through.max(quiet),
                        wrote: through.is_some(),
                        chunked,
                        last_commit_ms: last_commit_ms(&records),
                    });
                    continue;
                }
                if let Some(end) = through {
                    target.write(&records, end, false, progress, status).await?;
                    progress.behind_ms = behind(&records);
                } else {
                    // Nothing to write: caught up.
                    progress.behind_ms = 0;
                }
                if let Some(c) = &chunked {
                    // After the rows: at least once (a chunk read again
                    // after a crash is read between new watermarks).
                    target.chunk_progress(c).await?;
                }
                // Everything handed over is committed in every sink.
                (through.max(quiet), through.is_some())
            }
            Work::Part { records, end, last } => {
                // Behind every batch in flight.
                while let Some(f) = in_flight.pop_front() {
                    let mut f = f;
                    (&mut f.durable).await?;
                    landed(target, durable, slot, status, progress, f).await?;
                }
                progress.count_events(&records);
                target
                    .write_part(&records, end, last, progress, status)
                    .await?;
                if !records.is_empty() {
                    progress.behind_ms = behind(&records);
                }
                if !last {
                    on_progress(progress);
                    continue;
                }
                progress.transactions += 1;
                (Some(end), true)
            }
        };
        if let Some(c) = confirm.filter(|c| *c > progress.confirmed) {
            durable.store(c.0, Ordering::Release);
            progress.confirmed = c;
            target.confirmed(c, wrote, slot, status).await;
        }
        on_progress(progress);
    }
    // The reader stopped: what is in flight still lands.
    while let Some(mut f) = in_flight.pop_front() {
        (&mut f.durable).await?;
        landed(target, durable, slot, status, progress, f).await?;
    }
    on_progress(progress);
    Ok(())
}

/// A batch in flight is durable (and every one before it): record its
/// chunk's progress and let the slot move past it.
async fn landed(
    target: &mut dyn Destination,
    durable: &AtomicU64,
    slot: &str,
    status: &dyn StatusReporter,
    progress: &mut Progress,
    f: InFlight,
) -> Result<(), PipelineError> {
    progress.behind_ms = f
        .last_commit_ms
        .map_or(0, |ts| crate::now_ms().saturating_sub(ts).max(0) as u64);
    if let Some(c) = &f.chunked {
        target.chunk_progress(c).await?;
    }
    if let Some(c) = f.confirm.filter(|c| *c > progress.confirmed) {
        durable.store(c.0, Ordering::Release);
        progress.confirmed = c;
        target.confirmed(c, f.wrote, slot, status).await;
    }
    Ok(())
}

/// The commit time (`source.ts_ms`) of the last event of `records`.
fn last_commit_ms(records: &[Record]) -> Option<i64> {
    records
        .iter()
        .rev()
        .find_map(|r| r.value.as_ref()?.get("source")?.get("ts_ms")?.as_i64())
}

/// Now minus the commit time (`source.ts_ms`) of the last event written.
fn behind(records: &[Record]) -> u64 {
    last_commit_ms(records).map_or(0, |ts| crate::now_ms().saturating_sub(ts).max(0) as u64)
}

/// Reports the source's current WAL position every 500 ms, reconnecting
/// when its session breaks; never returns.
async fn report_source_positions(cfg: &SourceConfig, status: &dyn StatusReporter) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut conn = None;
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        if conn.is_none() {
            conn = source::connect(cfg).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match source::current_lsn(c).await {
                Ok(lsn) => status.source_position(&cfg.slot, lsn).await,
                Err(_) => conn = None,
            }
        }
        // The WAL the slot holds back, every 5 s (the alert on it).
        ticks += 1;
        if let (Some(c), true) = (conn.as_mut(), ticks % 10 == 1) {
            match source::retained_wal(c, &cfg.slot).await {
                Ok(Some(bytes)) => status.retained_wal(&cfg.slot, bytes).await,
                Ok(None) => {}
                Err(_) => conn = None,
            }
        }
    }
}

/// The tables an interrupted initial snapshot still has to copy, when it
/// can resume from the slot at `confirmed`: the destination began it
/// there, and every unfinished table has a primary key to copy it in
/// chunks by.
async fn resumable(
    conn: &mut sqlx::PgConnection,
    target: &mut dyn Destination,
    confirmed: Lsn,
) -> Result<Option<Vec<String>>, PipelineError> {
    let Some(tables) = target.snapshot_unfinished_tables(confirmed).await? else {
        return Ok(None);
    };
    let keyed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE i.indisprimary AND n.nspname || '.' || c.relname = ANY($1)",
    )
    .bind(&tables)
    .fetch_one(&mut *conn)
    .await
    .map_err(SourceError::from)?;
    Ok((keyed == tables.len() as i64).then_some(tables))
}

/// Prepares the source and returns a running stream, after the initial
/// snapshot when one is needed.
async fn open(
    cfg: &SourceConfig,
    target: &mut dyn Destination,
    start: Start,
    status: &dyn StatusReporter,
    progress: &mut Progress,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<Stream, PipelineError> {
    let mut conn = source::connect(cfg).await?;
    status
        .source_cluster(&source::system_identifier(&mut conn).await?)
        .await;
    source::ensure_publication(&mut conn, cfg).await?;
    let mut slot = source::slot_state(&mut conn, &cfg.slot).await?;
    // After a crash the server may not have noticed the old session is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while slot.as_ref().is_some_and(|s| s.active) {
        if Instant::now() > deadline {
            // Someone without the lease reads the slot: wait (retryable),
            // never a crash loop.
            return Err(SourceError::Lease(format!(
                "replication slot {} is in use by a session that holds no lease (another tool, or an older strangler)",
                cfg.slot
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        slot = source::slot_state(&mut conn, &cfg.slot).await?;
    }
    if slot.as_ref().is_some_and(|s| s.invalidated) {
        if start == Start::Again || target.taken_from_slot().is_none() {
            // The way back (or nothing was taken from it yet): a new slot
            // and a new snapshot.
            tracing::warn!(slot = %cfg.slot, "the slot was invalidated by the server: dropping it for a new snapshot");
            source::drop_slot(&mut conn, &cfg.slot).await?;
        }
        slot = None;
    }
    if let (None, Some(applied), false) = (&slot, target.taken_from_slot(), start == Start::Again) {
        status.slot_lost(&cfg.slot, true).await;
        return Err(SourceError::SlotLost {
            slot: cfg.slot.clone(),
            applied,
        }
        .into());
    }
    status.slot_lost(&cfg.slot, false).await;
    if let (Start::Initial, Some(at)) = (start, &slot) {
        let adopted = target.adopt_new_sinks(at.confirmed).await?;
        if !adopted.is_empty() {
            tracing::info!(slot = %cfg.slot, sinks = ?adopted, "new sinks: their tables are copied in chunks while streaming; the other sinks and the slot are kept");
        }
    }
    let unfinished = target.snapshot_unfinished();
    let need_snapshot = match start {
        Start::Initial | Start::Again => slot.is_none() || unfinished,
        Start::Never => slot.is_none(),
    };
    if !need_snapshot {
        return Ok(Stream::start(cfg).await?);
    }
    if let (Start::Initial | Start::Again, Some(at)) = (start, &slot) {
        if let Some(tables) = resumable(&mut conn, target, at.confirmed).await? {
            // Tables done stay; the others are copied in chunks while the
            // stream replays everything since the slot's consistent point.
            tracing::warn!(
                slot = %cfg.slot,
                unfinished = ?tables,
                "resuming an interrupted snapshot: finished tables are kept, the others are copied in chunks while streaming"
            );
            target.resume_snapshot(at.confirmed).await?;
            status.snapshot_complete(&cfg.slot).await;
            progress.confirmed = at.confirmed;
            return Ok(Stream::start(cfg).await?);
        }
    }
    if slot.is_some() {
        // A sink never finished its snapshot and it cannot be resumed: the
        // exported snapshot is gone, so take a new one with a new slot.
        tracing::warn!(slot = %cfg.slot, "a sink has no complete snapshot: recreating the slot and snapshotting again");
        source::drop_slot(&mut conn, &cfg.slot).await?;
    }
    target.reset().await?;
    let (tx, mut rx) = mpsc::channel::<SnapshotItem>(2);
    let read = start != Start::Never;
    let snap = {
        let cfg = cfg.clone();
        tokio::spawn(async move {
            if read {
                source::snapshot(&cfg, tx).await
            } else {
                source::snapshot(
                    &SourceConfig {
                        tables: Vec::new(),
                        ..cfg
                    },
                    tx,
                )
                .await
            }
        })
    };
    // Parts of tables copied at once, each on a connection of its own (the
    // source's workers wait for each part's answer, so every copy has
    // ended when the channel closes).
    let mut copies = tokio::task::JoinSet::new();
    let mut counting: HashMap<u64, (String, Arc<AtomicU64>)> = HashMap::new();
    let mut direct: HashMap<String, bool> = HashMap::new();
    let mut next_copy = 0u64;
    // Where the slot is consistent: the snapshot's shapes are at it.
    let mut consistent = Lsn(0);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(item) = item else { break };
                match item {
                    SnapshotItem::Records(batch) => {
                        progress.snapshot_rows += batch.len() as u64;
                        for r in &batch {
                            progress.snapshot_tables.entry(r.table.clone()).or_default().rows += 1;
                        }
                        target
                            .write(&batch, Lsn(0), false, progress, status)
                            .await?;
                    }
                    SnapshotItem::Table {
                        table,
                        columns,
                        answer,
                    } => {
                        let db = cfg.db();
                        let at = source::shape::At {
                            prefix: &cfg.name,
                            db: &db,
                            commit_lsn: consistent,
                            seq: 0,
                            ts_ms: crate::now_ms(),
                        };
                        let positions = source::shape::positions(&mut conn, &table)
                            .await
                            .map_err(SourceError::from)?;
                        target
                            .snapshot_shape(&source::shape::snapshot_record(
                                &table, &columns, &positions, &at,
                            ))
                            .await?;
                        let _ = answer.send(target.copy_columns(&table, &columns).await?);
                    }
                    SnapshotItem::Expected(tables) => {
                        progress.snapshot_expected = tables.iter().map(|(_, n)| n).sum();
                        for (table, expected) in tables {
                            progress.snapshot_tables.entry(table).or_default().expected = expected;
                        }
                    }
                    SnapshotItem::Begun(lsn) => {
                        consistent = lsn;
                        target.snapshot_begun(lsn).await?
                    }
                    SnapshotItem::TableDone(table) => {
                        target.snapshot_table_done(&table).await?;
                        progress.snapshot_tables.entry(table).or_default().done = true;
                    }
                    SnapshotItem::Copy {
                        table,
                        columns,
                        chunks,
                        done,
                    } => {
                        let job = target
                            .copy_job(&table, &columns, direct.get(&table).copied())
                            .await?;
                        direct.insert(table.clone(), job.direct());
                        // Rows as they go (the bar moves within a big
                        // table); kept only if the part is taken.
                        let seen = Arc::new(AtomicU64::new(0));
                        next_copy += 1;
                        counting.insert(next_copy, (table.clone(), seen.clone()));
                        let id = next_copy;
                        copies.spawn(async move {
                            let copied = job.run(chunks, &seen).await;
                            (id, table, copied, done)
                        });
                    }
                }
                on_progress(progress);
            }
            Some(joined) = copies.join_next() => {
                let (id, table, copied, done) = joined.map_err(|e| {
                    SourceError::Invalid(format!("a snapshot copy task failed: {e}"))
                })?;
                counting.remove(&id);
                match copied {
                    Ok(rows) => {
                        tracing::info!(
                            table,
                            rows,
                            "snapshot rows copied straight into their target"
                        );
                        progress.snapshot_rows += rows;
                        progress.snapshot_copied += rows;
                        progress.snapshot_tables.entry(table).or_default().rows += rows;
                        let _ = done.send(true);
                    }
                    Err(e) if !e.is_retryable() => {
                        // A row the target refuses: as records, each bad
                        // one set aside as a dead letter.
                        tracing::warn!(table, error = %e, "COPY into the target failed; sending those rows as records");
                        let _ = done.send(false);
                    }
                    Err(e) => return Err(e.into()),
                }
                on_progress(progress);
            }
            _ = tick.tick(), if !counting.is_empty() => {
                let mut p = progress.clone();
                for (table, seen) in counting.values() {
                    let n = seen.load(Ordering::Relaxed);
                    p.snapshot_rows += n;
                    p.snapshot_tables.entry(table.clone()).or_default().rows += n;
                }
                on_progress(&p);
            }
        }
    }
    let (stream, consistent, sample) = snap
        .await
        .map_err(|e| SourceError::Invalid(format!("the snapshot task failed: {e}")))??;
    target
        .write(&[], consistent, true, progress, status)
        .await?;
    status.snapshot_complete(&cfg.slot).await;
    if !sample.tables.is_empty() {
        status.snapshot_sampled(&cfg.slot, sample).await;
    }
    stream.confirm(consistent);
    progress.confirmed = consistent;
    on_progress(progress);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    use super::*;

    /// A destination whose writes become durable when the test says.
    #[derive(Default)]
    struct Held {
        acks: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
    }

    #[async_trait::async_trait]
    impl Destination for Held {
        fn snapshot_unfinished(&self) -> bool {
            false
        }
        async fn write(
            &mut self,
            _: &[Record],
            _: Lsn,
            _: bool,
            _: &mut Progress,
            _: &dyn StatusReporter,
        ) -> Result<(), PipelineError> {
            unreachable!("a pipelining destination is written through start_write")
        }
        async fn start_write(
            &mut self,
            _: &[Record],
            _: Lsn,
            _: &mut Progress,
        ) -> Result<Option<Pending>, PipelineError> {
            let (ack, acked) = oneshot::channel();
            self.acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(ack);
            Ok(Some(Box::pin(async move {
                let _ = acked.await;
                Ok(())
            })))
        }
    }

    fn batch(through: u64) -> Work {
        Work::Batch {
            records: Vec::new(),
            transactions: 1,
            through: Some(Lsn(through)),
            quiet: None,
            chunked: None,
        }
    }

    /// Waits (at most 10 s) until `f` holds.
    async fn until(f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "condition not reached");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn batches_in_flight_become_durable_only_in_order() {
        let mut held = Held::default();
        let acks = held.acks.clone();
        let durable = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(8);
        let writer = {
            let durable = durable.clone();
            tokio::spawn(async move {
                let mut progress = Progress::default();
                write(
                    rx,
                    &mut held,
                    &durable,
                    "slot",
                    &NoStatus,
                    &mut progress,
                    &mut |_| {},
                )
                .await
            })
        };
        for lsn in [10, 20, 30, 40, 50, 60] {
            tx.send(batch(lsn))
                .await
                .unwrap_or_else(|_| panic!("writer gone"));
        }
        // At most IN_FLIGHT batches are written at once.
        until(|| acks.lock().map_or(0, |a| a.len()) == IN_FLIGHT).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(acks.lock().map_or(0, |a| a.len()), IN_FLIGHT);
        let ack = |i: usize| {
            let mut a = acks.lock().unwrap_or_else(|e| e.into_inner());
            let (dead, _) = oneshot::channel();
            let _ = std::mem::replace(&mut a[i], dead).send(());
        };
        // The second is acknowledged first: nothing is durable yet.
        ack(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(durable.load(Ordering::Acquire), 0);
        // The first: both are.
        ack(0);
        until(|| durable.load(Ordering::Acquire) == 20).await;
        // Room again: the fifth and sixth are handed over.
        until(|| acks.lock().map_or(0, |a| a.len()) == 6).await;
        for i in 2..6 {
            ack(i);
        }
        until(|| durable.load(Ordering::Acquire) == 60).await;
        drop(tx);
        writer.await.expect("join").expect("writer");
    }
}
