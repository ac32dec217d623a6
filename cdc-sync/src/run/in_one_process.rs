//! The Kafka transport in one process: the source side publishes, and each
//! sink runs as a member of its consumer group; either side can run alone
//! (`cdc run --source-only | --sinks-only`).

use std::future::Future;
use std::sync::Arc;

use strangler_state::lag::Direction;
use strangler_state::store::StateStore;

use super::{kafka_sink, kafka_source, SinkSpec};
use crate::metrics::CdcMetrics;
use crate::pipeline::{PipelineError, Progress, Start};
use crate::source::SourceConfig;
use crate::status::{CheckPlan, StoreStatus};
use crate::transport::kafka::{dlq_topic, Consumed, KafkaClient, KafkaProducer, TransportError};

/// What to run.
pub struct KafkaPlan {
    /// How to reach Kafka (brokers, group, properties).
    pub kafka: KafkaClient,
    pub prefix: String,
    pub sinks: Vec<SinkSpec>,
    /// Run the source side (publish).
    pub source: bool,
    /// Run the sink workers.
    pub workers: bool,
    pub start: Start,
    pub store: Option<StateStore>,
    pub metrics: Option<Arc<CdcMetrics>>,
    /// The post-snapshot check of the sinks (source side).
    pub check: Option<CheckPlan>,
    /// `[[cdc.outbox]]`: outbox tables published as events.
    pub outbox: Vec<strangler_config::Outbox>,
}

/// How one part ended.
#[derive(Debug)]
pub enum Finished {
    Source {
        progress: Progress,
        /// Sampled rows that differed in the sinks after the snapshot.
        check_differences: usize,
    },
    Sink {
        name: String,
        consumed: Consumed,
    },
}

/// Why a part stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaRunError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("a CDC task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs `plan` until each part's shutdown completes: `source_shutdown` for
/// the source side, a fresh `worker_shutdown()` for each sink worker.
pub async fn kafka<W, WF>(
    cfg: &SourceConfig,
    plan: KafkaPlan,
    source_shutdown: impl Future<Output = ()> + Send + 'static,
    worker_shutdown: W,
) -> Result<Vec<Finished>, KafkaRunError>
where
    W: Fn() -> WF,
    WF: Future<Output = ()> + Send + 'static,
{
    let producer = Arc::new(
        KafkaProducer::connect(&plan.kafka, 3)
            .map_err(TransportError::from)?
            .with_outbox(&plan.prefix, &plan.outbox),
    );
    let topic =
        |s: &strangler_config::TableName| crate::event::topic(&plan.prefix, &s.schema, &s.table);
    let mut topics: Vec<String> = cfg.tables.iter().map(topic).collect();
    topics.push(dlq_topic(&plan.prefix));
    producer
        .ensure_topics(&topics)
        .await
        .map_err(|e| producer.judge(e.into()))?;
    let mut tasks: Vec<tokio::task::JoinHandle<Result<Finished, KafkaRunError>>> = Vec::new();
    if plan.source {
        let (producer, cfg, metrics) = (producer.clone(), cfg.clone(), plan.metrics.clone());
        let store = plan.store.clone();
        let mut status = StoreStatus::new(
            plan.store.clone(),
            metrics.clone(),
            &cfg.slot,
            Direction::Forward,
        );
        if let Some(check) = plan.check.clone() {
            status = status.with_check(check);
        }
        let start = plan.start;
        tasks.push(tokio::spawn(async move {
            let progress = kafka_source(
                &cfg,
                &producer,
                store.as_ref(),
                start,
                &status,
                source_shutdown,
                |p| {
                    if let Some(m) = &metrics {
                        m.update(p);
                    }
                },
            )
            .await?;
            Ok(Finished::Source {
                progress,
                check_differences: status.finish_checks().await,
            })
        }));
    }
    if plan.workers {
        for spec in plan.sinks {
            let topics: Vec<String> = spec.tables.iter().map(|m| topic(&m.source)).collect();
            let (producer, kafka, prefix) =
                (producer.clone(), plan.kafka.clone(), plan.prefix.clone());
            let (cfg, shutdown) = (cfg.clone(), worker_shutdown());
            let status = StoreStatus::new(
                plan.store.clone(),
                plan.metrics.clone(),
                &cfg.slot,
                Direction::Forward,
            );
            tasks.push(tokio::spawn(async move {
                let consumed = kafka_sink(
                    &cfg,
                    &kafka,
                    &topics,
                    &spec,
                    Some((&producer, &prefix)),
                    &status,
                    shutdown,
                )
                .await?;
                Ok(Finished::Sink {
                    name: spec.name,
                    consumed,
                })
            }));
        }
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}
