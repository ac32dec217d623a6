//! The MySQL source's pipeline: snapshot when needed, then the binlog
//! reader's transactions written to the destination in batches, each
//! durable with its position before the next position is relied on.
//!
//! ```text
//!  binlog::read (task) ── Item::Tx / Item::Idle ──▶ channel (4) ──▶ batch of whole
//!   from the oldest position the destinations         transactions (≤ BATCH records)
//!   hold (or the snapshot's)                          ──▶ Destination::write(through)
//! ```
//!
//! There is no slot to confirm: each destination keeps its position with
//! what it wrote (sinks: with their rows; Kafka: in the state store, once
//! the broker acknowledged), and [`Destination::resume_position`] says
//! where to read again from.

use std::future::Future;
use std::time::{Duration, Instant};

use strangler_config::SourceKind;
use tokio::sync::mpsc;

use super::binlog::{self, Item};
use super::columns;
use super::position::Position;
use crate::lsn::Lsn;
use crate::pipeline::{Destination, PipelineError, Progress, Start, StatusReporter, BATCH};
use crate::source::{SourceConfig, SourceError};

/// Runs the MySQL pipeline until `shutdown` completes (or a fatal error).
pub async fn run(
    cfg: &SourceConfig,
    target: &mut dyn Destination,
    start: Start,
    status: &dyn StatusReporter,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress, PipelineError> {
    let SourceKind::MySql { server_id } = cfg.kind else {
        return Err(SourceError::Invalid("not a MySQL source".into()).into());
    };
    let mut conn = super::connect(&cfg.url).await?;
    super::check_server(&mut conn).await?;
    status
        .source_cluster(&super::server_identity(&mut conn).await?)
        .await;
    let mut shapes = Vec::with_capacity(cfg.tables.len());
    for t in &cfg.tables {
        shapes.push(columns::load(&mut conn, t).await?);
    }
    let mut progress = Progress::default();
    let resume = match start {
        Start::Again => None,
        _ => target.resume_position().await?,
    };
    let from = match (start, resume) {
        (Start::Never, None) => {
            // Never snapshot: from now on, recorded at once so a restart
            // resumes here.
            let now = super::current_position(&mut conn).await?;
            let lsn = position_lsn(&now)?;
            target.write(&[], lsn, true, &mut progress, status).await?;
            target.confirmed(lsn, true, &cfg.slot, status).await;
            progress.confirmed = lsn;
            now
        }
        (_, Some(lsn)) => {
            let files = super::binlog_files(&mut conn).await?;
            let Some(p) = Position::of(lsn, &files) else {
                return Err(SourceError::Invalid(format!(
                    "the binlog the destinations stopped at (file number {}, offset {}) is no longer on the server (purged: see binlog_expire_logs_seconds / expire_logs_days); the way back: `strangler cdc snapshot` copies the tables again, then `strangler cdc verify` lists rows deleted meanwhile",
                    lsn.0 >> 32,
                    lsn.0 & 0xffff_ffff
                ))
                .into());
            };
            if start == Start::Initial && target.snapshot_unfinished() {
                // A sink added beside streaming ones: the snapshot is its
                // alone (the others keep their positions and read the
                // binlog from where they are, deletes included); it skips
                // what the binlog brings up to its snapshot.
                tracing::info!(slot = %cfg.slot, "a sink without a snapshot beside streaming ones: snapshotting for it alone");
                super::snapshot::take(
                    cfg,
                    &shapes,
                    target,
                    status,
                    &mut progress,
                    &mut on_progress,
                    false,
                )
                .await?;
            }
            progress.confirmed = lsn;
            p
        }
        (_, None) => {
            super::snapshot::take(
                cfg,
                &shapes,
                target,
                status,
                &mut progress,
                &mut on_progress,
                true,
            )
            .await?
        }
    };
    drop(conn);
    let (tx, mut rx) = mpsc::channel::<Item>(4);
    let reader = tokio::spawn(binlog::read(cfg.clone(), server_id, from, shapes, tx));
    let result = stream(
        cfg,
        target,
        status,
        &mut rx,
        shutdown,
        &mut progress,
        &mut on_progress,
    )
    .await;
    reader.abort();
    match result {
        // The reader stopped: its error is the cause.
        Ok(false) => match reader.await {
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(())) => Err(SourceError::Ended("the binlog reader stopped").into()),
            Err(e) if e.is_cancelled() => {
                Err(SourceError::Ended("the binlog reader stopped").into())
            }
            Err(e) => Err(SourceError::Invalid(format!("the binlog reader failed: {e}")).into()),
        },
        Ok(true) => Ok(progress),
        Err(e) => Err(e),
    }
}

fn position_lsn(p: &Position) -> Result<Lsn, SourceError> {
    p.lsn()
        .ok_or_else(|| SourceError::Invalid(format!("binlog file {} has no number", p.file)))
}

/// Writes what the reader sends until `shutdown` (`Ok(true)`) or the
/// reader stops (`Ok(false)`).
async fn stream(
    cfg: &SourceConfig,
    target: &mut dyn Destination,
    status: &dyn StatusReporter,
    rx: &mut mpsc::Receiver<Item>,
    shutdown: impl Future<Output = ()>,
    progress: &mut Progress,
    on_progress: &mut impl FnMut(&Progress),
) -> Result<bool, PipelineError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut source_conn: Option<mysql_async::Conn> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut reported = Instant::now();
    let mut stored = Instant::now();
    // An item that ended the last batch (a part of a large transaction).
    let mut pending: Option<Item> = None;
    loop {
        let first = match pending.take() {
            Some(item) => item,
            None => {
                let received = tokio::select! {
                    _ = &mut shutdown => return Ok(true),
                    _ = tick.tick() => {
                        report_source(cfg, status, &mut source_conn).await;
                        continue;
                    }
                    item = rx.recv() => item,
                };
                match received {
                    Some(item) => item,
                    None => return Ok(false),
                }
            }
        };
        // A large transaction, part by part: durable (and its position
        // stored) only with its last part.
        match first {
            Item::Part { records, commit } => {
                target
                    .write_part(&records, commit, false, progress, status)
                    .await?;
                progress.count_events(&records);
                on_progress(progress);
                continue;
            }
            Item::Tx {
                records,
                end,
                ts_ms,
                parted: true,
            } => {
                target
                    .write_part(&records, end, true, progress, status)
                    .await?;
                target.confirmed(end, true, &cfg.slot, status).await;
                progress.transactions += 1;
                progress.count_events(&records);
                progress.behind_ms = (crate::now_ms() - ts_ms).max(0) as u64;
                progress.confirmed = progress.confirmed.max(end);
                on_progress(progress);
                continue;
            }
            _ => {}
        }
        let mut records = Vec::new();
        let mut through: Option<Lsn> = None;
        let mut quiet: Option<Lsn> = None;
        let mut transactions = 0u64;
        let mut last_ts = 0i64;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Tx {
                    records: r,
                    end,
                    ts_ms,
                    parted: false,
                } => {
                    records.extend(r);
                    through = Some(end);
                    transactions += 1;
                    last_ts = ts_ms;
                }
                Item::Idle(l) => quiet = Some(l),
                // Written on its own, after this batch.
                large => {
                    pending = Some(large);
                    break;
                }
            }
            if records.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if let Some(end) = through {
            target.write(&records, end, false, progress, status).await?;
            target.confirmed(end, true, &cfg.slot, status).await;
            progress.transactions += transactions;
            progress.count_events(&records);
            progress.behind_ms = (crate::now_ms() - last_ts).max(0) as u64;
            progress.confirmed = progress.confirmed.max(end);
        }
        if let Some(l) = quiet.filter(|l| *l > progress.confirmed) {
            // Nothing to write up to `l`: every table is applied there
            // (reported at most every half second), and now and then the
            // position is stored too, so that quiet tables never leave a
            // destination behind a binlog the server purges.
            if stored.elapsed() > IDLE_STORE {
                target.write(&[], l, false, progress, status).await?;
                progress.confirmed = l;
                stored = Instant::now();
            }
            if reported.elapsed() > Duration::from_millis(500) {
                target.confirmed(l, false, &cfg.slot, status).await;
                reported = Instant::now();
            }
        }
        on_progress(progress);
    }
}

/// How often a position with nothing to write is stored.
const IDLE_STORE: Duration = Duration::from_secs(10);

/// Reports where the source's binlog ends now (for lag); a failure is
/// logged and tried again at the next tick.
async fn report_source(
    cfg: &SourceConfig,
    status: &dyn StatusReporter,
    conn: &mut Option<mysql_async::Conn>,
) {
    if conn.is_none() {
        *conn = super::connect(&cfg.url).await.ok();
    }
    let Some(c) = conn.as_mut() else {
        return;
    };
    match super::current_lsn(c).await {
        Ok(l) => status.source_position(&cfg.slot, l).await,
        Err(e) => {
            tracing::debug!(error = %e, "reading the source's binlog position");
            *conn = None;
        }
    }
}
