//! Source → transport → sinks, with the slot confirmed only past what every
//! sink has committed.
//!
//! ```text
//!   slot ──pgoutput──▶ Stream ──Tx (whole, in commit order)──▶ batch (≤ 5000 records)
//!                        ▲                                          │
//!                        │ confirm(end_lsn of the last tx)          ▼
//!                        └──────────── after every sink ◀── Sink::apply: rows + offset
//!                                       committed               in one transaction
//!   Idle(wal_end) / Skipped(end_lsn), nothing pending ──▶ confirm at once (heartbeat)
//!   Large tx (> PART messages) ──▶ parts of ≤ PART records, decoded one at
//!                                  a time ──▶ Destination::write_part; confirm after the last
//! ```
//!
//! Which position is confirmed when: the slot's `confirmed_flush_lsn` is
//! advanced to a transaction's end only after every sink has committed that
//! transaction together with its offset. A crash before that replays the
//! transaction; each sink skips what its offset already covers. So nothing
//! is lost and nothing is applied twice in effect.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc;

use crate::event::Record;
use crate::lsn::Lsn;
use crate::sink::SinkError;
use crate::source::{self, Item, Large, SourceConfig, SourceError, Stream};
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

/// Counters of a run.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub snapshot_rows: u64,
    pub transactions: u64,
    pub events: u64,
    pub rows_applied: u64,
    pub dead_letters: u64,
    /// Records published (Kafka transport).
    pub published: u64,
    pub confirmed: Lsn,
}

impl Progress {
    /// Counters of two runs added up (the later run's confirmed position).
    pub fn plus(&self, o: &Progress) -> Progress {
        Progress {
            snapshot_rows: self.snapshot_rows + o.snapshot_rows,
            transactions: self.transactions + o.transactions,
            events: self.events + o.events,
            rows_applied: self.rows_applied + o.rows_applied,
            dead_letters: self.dead_letters + o.dead_letters,
            published: self.published + o.published,
            confirmed: self.confirmed.max(o.confirmed),
        }
    }
}

/// How the pipeline starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Snapshot when the slot is new or a sink has not finished one.
    Initial,
    /// Never snapshot: create the slot if missing and stream from now on.
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
    let mut progress = Progress::default();
    let mut stream = open(cfg, target, start, status, &mut progress, &mut on_progress).await?;
    let mut shutdown = std::pin::pin!(shutdown);
    // The source's position is read beside the apply loop, never by it: a
    // stalled sink must show as a growing lag, not as a frozen "caught up".
    let report = report_source_positions(cfg, status);
    let mut report = std::pin::pin!(report);
    loop {
        let first = tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut report => unreachable!("the position reporter never ends"),
            item = tokio::time::timeout(Duration::from_millis(500), stream.next()) => match item {
                Ok(item) => item?,
                Err(_) => continue,
            },
        };
        let mut batch: Vec<Record> = Vec::new();
        let mut through: Option<Lsn> = None;
        let mut quiet: Option<Lsn> = None;
        let mut large: Option<Large> = None;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Tx(tx) => {
                    progress.transactions += 1;
                    progress.events += tx.records.len() as u64;
                    through = Some(tx.end_lsn);
                    batch.extend(tx.records);
                }
                Item::Skipped(l) | Item::Idle(l) => quiet = Some(l),
                // Written after what came before it.
                Item::Large(l) => {
                    large = Some(l);
                    break;
                }
            }
            // Gather what is already there, up to a batch.
            if batch.len() < BATCH {
                if let Some(item) = stream.next().now_or_never() {
                    next = Some(item?);
                }
            }
        }
        if let Some(end) = through {
            let write = target.write(&batch, end, false, &mut progress, status);
            tokio::select! {
                r = write => r?,
                _ = &mut report => unreachable!("the position reporter never ends"),
            }
        }
        // Everything handed over is committed in every sink.
        let confirm = match (through, quiet) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (Some(a), None) | (None, Some(a)) => Some(a),
            (None, None) => None,
        };
        if let Some(confirm) = confirm.filter(|c| *c > progress.confirmed) {
            stream.confirm(confirm);
            progress.confirmed = confirm;
            target
                .confirmed(confirm, through.is_some(), &cfg.slot, status)
                .await;
        }
        if let Some(mut l) = large {
            let write = write_large(&mut stream, &mut l, target, &mut progress, status);
            tokio::select! {
                r = write => r?,
                _ = &mut report => unreachable!("the position reporter never ends"),
            }
            if l.end_lsn > progress.confirmed {
                stream.confirm(l.end_lsn);
                progress.confirmed = l.end_lsn;
                target.confirmed(l.end_lsn, true, &cfg.slot, status).await;
            }
        }
        on_progress(&progress);
    }
    stream.shutdown().await;
    Ok(progress)
}

/// Writes a large transaction part by part: one part decoded, then
/// written, so only one is ever in memory.
async fn write_large(
    stream: &mut Stream,
    large: &mut Large,
    target: &mut dyn Destination,
    progress: &mut Progress,
    status: &dyn StatusReporter,
) -> Result<(), PipelineError> {
    progress.transactions += 1;
    let started = Instant::now();
    let mut events = 0u64;
    while let Some(part) = stream.part(large).await? {
        events += part.len() as u64;
        progress.events += part.len() as u64;
        target
            .write_part(&part, large.end_lsn, false, progress, status)
            .await?;
    }
    target
        .write_part(&[], large.end_lsn, true, progress, status)
        .await?;
    tracing::info!(
        xid = large.xid,
        events,
        seconds = started.elapsed().as_secs_f64(),
        "a large source transaction was written in parts"
    );
    Ok(())
}

/// Reports the source's current WAL position every 500 ms, reconnecting
/// when its session breaks; never returns.
async fn report_source_positions(cfg: &SourceConfig, status: &dyn StatusReporter) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut conn = None;
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
    }
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
            return Err(SourceError::Invalid(format!(
                "replication slot {} is in use by another session",
                cfg.slot
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        slot = source::slot_state(&mut conn, &cfg.slot).await?;
    }
    let unfinished = target.snapshot_unfinished();
    let need_snapshot = match start {
        Start::Initial => slot.is_none() || unfinished,
        Start::Never => slot.is_none(),
    };
    if !need_snapshot {
        return Ok(Stream::start(cfg).await?);
    }
    if slot.is_some() {
        // A sink never finished its snapshot: the exported snapshot is gone,
        // so take a new one with a new slot.
        tracing::warn!(slot = %cfg.slot, "a sink has no complete snapshot: recreating the slot and snapshotting again");
        source::drop_slot(&mut conn, &cfg.slot).await?;
    }
    target.reset().await?;
    let (tx, mut rx) = mpsc::channel::<Vec<Record>>(2);
    let read = start == Start::Initial;
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
    while let Some(batch) = rx.recv().await {
        progress.snapshot_rows += batch.len() as u64;
        target
            .write(&batch, Lsn(0), false, progress, status)
            .await?;
        on_progress(progress);
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
