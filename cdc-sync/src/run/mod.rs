//! Running CDC until told to stop, through the faults that pass: the
//! pipeline (embedded sinks, or the Kafka source side) and Kafka sink
//! workers, each reconnected after a retryable error with the backoff of
//! [`strangler_state::retry`].
//!
//! ```text
//!  attempt: connect sinks ─ pipeline::run / kafka::consume ─▶ Ok: shutdown asked, done
//!     ▲                                                     └▶ Err(e)
//!     └── e.is_retryable(): log, StatusReporter::retried, wait (100 ms … 10 s, jitter)
//!         otherwise: returned (a missing table, a target that does not fit, bad credentials)
//! ```
//!
//! Why this is safe: every attempt starts from what is durable — the slot
//! replays from its confirmed position, each sink skips what its stored
//! offset covers, a sink worker resumes from the offsets stored with its
//! rows — so a retry neither loses nor applies twice.

mod in_one_process;
pub mod lease;

pub use in_one_process::{kafka, Finished, KafkaPlan, KafkaRunError};

use std::future::Future;
use std::time::{Duration, Instant};

use strangler_config::TableMapping;

use crate::pipeline::{self, PipelineError, Progress, Start, StatusReporter};
use crate::sink::{Sink, Sinks};
use crate::source::SourceConfig;
use crate::transport::kafka::{self, Consumed, KafkaDestination, KafkaProducer, TransportError};
use strangler_state::store::StateStore;

/// A sink to connect (again) on every attempt.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    /// The target database.
    pub url: String,
    pub tables: Vec<TableMapping>,
    /// Connections it applies through (embedded; see `sink/lanes.rs`).
    pub connections: usize,
}

impl SinkSpec {
    async fn connect(&self, cfg: &SourceConfig) -> Result<Sink, crate::sink::SinkError> {
        Sink::connect(&self.name, &self.url, &cfg.slot, &self.tables)
            .await?
            .with_format(cfg.format)
            .with_connections(self.connections.max(1))
            .await
    }
}

/// An attempt that ran this long had recovered: the next failure starts
/// the backoff from its first step again.
const HEALTHY: Duration = Duration::from_secs(60);

/// Where one runner is in its backoff.
struct Backoff {
    what: &'static str,
    slot: String,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    tries: u32,
    /// `cdc snapshot`: its shutdown is "once the snapshot is taken", so a
    /// retry waits regardless (else a fault would end it as a success).
    patient: bool,
}

impl Backoff {
    fn new(what: &'static str, slot: &str) -> Backoff {
        Backoff {
            what,
            slot: slot.to_string(),
            delays: Box::new(strangler_state::retry::delays()),
            tries: 0,
            patient: false,
        }
    }

    fn patient(mut self, patient: bool) -> Backoff {
        self.patient = patient;
        self
    }

    /// After a retryable failure of an attempt that began at `began`: logs
    /// it, reports it, waits. `false` when `shutdown` came first.
    async fn wait<S: Future<Output = ()>>(
        &mut self,
        began: Instant,
        error: &(dyn std::fmt::Display + Sync),
        status: &dyn StatusReporter,
        shutdown: &mut std::pin::Pin<&mut S>,
    ) -> bool {
        if began.elapsed() > HEALTHY {
            self.delays = Box::new(strangler_state::retry::delays());
        }
        self.tries += 1;
        let wait = self.delays.next().unwrap_or(Duration::from_secs(10));
        tracing::warn!(
            part = self.what, error = %error, retry = self.tries, wait_ms = wait.as_millis() as u64,
            "CDC failed with a retryable error; reconnecting"
        );
        status
            .retried(&self.slot, self.what, &error.to_string())
            .await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = shutdown.as_mut(), if !self.patient => false,
        }
    }
}

/// Runs `attempt` while the lease holds: a lost lease cancels it wherever
/// it is — the snapshot included — as a crash would (what is durable
/// stays: sinks commit with their positions, the slot moves only past
/// them), and the runner stands by again.
async fn while_leased<T>(
    lease: &mut lease::Lease,
    attempt: impl Future<Output = Result<T, PipelineError>>,
) -> Result<T, PipelineError> {
    tokio::select! {
        r = attempt => r,
        e = lease.lost() => {
            tracing::warn!(error = %e, "this cdc run lost the slot's lease: stopping, then standing by");
            Err(e.into())
        }
    }
}

/// Runs the embedded pipeline until `shutdown`: source → `sinks`, each
/// reconnected after a retryable error. `on_progress` sees counters added
/// up over attempts.
pub async fn embedded(
    cfg: &SourceConfig,
    sinks: &[SinkSpec],
    start: Start,
    status: &dyn StatusReporter,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress, PipelineError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut total = Progress::default();
    let mut backoff = Backoff::new("pipeline", &cfg.slot).patient(start == Start::Again);
    loop {
        let Some(mut lease) =
            lease::acquire(cfg, status, &mut shutdown, start == Start::Again).await?
        else {
            return Ok(total);
        };
        let began = Instant::now();
        let mut last = Progress::default();
        let attempt = async {
            if let [spec] = sinks {
                if crate::mysql::sink::is_mysql_url(&spec.url) {
                    // Reverse sync into a MySQL monolith.
                    let mut sink = crate::mysql::sink::MySqlSink::connect(
                        &spec.name,
                        &spec.url,
                        &cfg.slot,
                        &spec.tables,
                        cfg.format,
                    )
                    .await?;
                    return pipeline::run(cfg, &mut sink, start, status, &mut shutdown, |p| {
                        last = p.clone();
                        on_progress(&total.plus(p));
                    })
                    .await;
                }
            }
            let mut connected = Vec::with_capacity(sinks.len());
            for s in sinks {
                connected.push(s.connect(cfg).await?);
            }
            pipeline::run(
                cfg,
                &mut Sinks(&mut connected),
                start,
                status,
                &mut shutdown,
                |p| {
                    last = p.clone();
                    on_progress(&total.plus(p));
                },
            )
            .await
        };
        let result = while_leased(&mut lease, attempt).await;
        drop(lease);
        total = total.plus(&last);
        match result {
            Ok(_) => return Ok(total),
            Err(e) if e.is_retryable() => {
                if !backoff.wait(began, &e, status, &mut shutdown).await {
                    return Ok(total);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the Kafka source side until `shutdown`: source → `producer`,
/// reconnected after a retryable error. `store` keeps whether a complete
/// snapshot was published and where an unfinished one stands (without one,
/// every start snapshots again).
pub async fn kafka_source(
    cfg: &SourceConfig,
    producer: &KafkaProducer,
    store: Option<&StateStore>,
    start: Start,
    status: &dyn StatusReporter,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Progress, PipelineError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut target = KafkaDestination {
        producer,
        snapshot_done: false,
        store,
        slot: cfg.slot.clone(),
        tables: cfg.tables.iter().map(|t| t.to_string()).collect(),
    };
    let mut total = Progress::default();
    let mut backoff = Backoff::new("source", &cfg.slot).patient(start == Start::Again);
    loop {
        let Some(mut lease) =
            lease::acquire(cfg, status, &mut shutdown, start == Start::Again).await?
        else {
            return Ok(total);
        };
        let began = Instant::now();
        let mut last = Progress::default();
        let attempt = async {
            if let (Some(s), false) = (store, target.snapshot_done) {
                target.snapshot_done = s
                    .cdc_snapshot_done(&cfg.slot)
                    .await
                    .map_err(TransportError::from)?;
            }
            pipeline::run(cfg, &mut target, start, status, &mut shutdown, |p| {
                last = p.clone();
                on_progress(&total.plus(p));
            })
            .await
        };
        let result = while_leased(&mut lease, attempt).await;
        drop(lease);
        total = total.plus(&last);
        let result = result.map_err(|e| match e {
            PipelineError::Transport(t) => PipelineError::Transport(producer.judge(t)),
            e => e,
        });
        match result {
            Ok(_) => return Ok(total),
            Err(e) if e.is_retryable() => {
                if !backoff.wait(began, &e, status, &mut shutdown).await {
                    return Ok(total);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs one Kafka sink worker until `shutdown`, reconnected after a
/// retryable error (its offsets are stored with its rows: nothing is
/// applied twice).
#[allow(clippy::too_many_arguments)]
pub async fn kafka_sink(
    cfg: &SourceConfig,
    client: &kafka::KafkaClient,
    topics: &[String],
    sink: &SinkSpec,
    dlq: Option<(&KafkaProducer, &str)>,
    status: &dyn StatusReporter,
    shutdown: impl Future<Output = ()>,
) -> Result<Consumed, TransportError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut total = Consumed::default();
    let mut backoff = Backoff::new("sink", &cfg.slot);
    loop {
        let began = Instant::now();
        let mut last = Consumed::default();
        let result = async {
            let mut connected = sink.connect(cfg).await?;
            if dlq.is_some() {
                connected = connected.publishing_dead_letters();
            }
            kafka::consume(
                client,
                &cfg.name,
                topics,
                &mut connected,
                dlq,
                status,
                &cfg.slot,
                &mut shutdown,
                |c| last = c.clone(),
            )
            .await
        }
        .await;
        total = total.plus(&last);
        match result.map_err(|e| client.judge(e)) {
            Ok(_) => return Ok(total),
            Err(e) if e.is_retryable() => {
                if !backoff.wait(began, &e, status, &mut shutdown).await {
                    return Ok(total);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
