//! The sink side: consumer-group workers applying records to a sink.

use std::future::Future;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::{KafkaProducer, TransportError};
use crate::event::{Record, EXACT_HEADER};
use crate::lsn::Lsn;
use crate::sink::Sink;

/// The payload of a JSON-converter message, with or without its schema.
fn payload_of(bytes: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    match v {
        Value::Object(mut m)
            if m.len() == 2 && m.contains_key("schema") && m.contains_key("payload") =>
        {
            m.remove("payload")
        }
        other => Some(other),
    }
}

/// A record read back from a topic.
fn record_of(
    topic: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    exact: Option<&[u8]>,
) -> Record {
    let value: Option<Value> = payload.and_then(payload_of);
    let table = value
        .as_ref()
        .and_then(|v| {
            Some(format!(
                "{}.{}",
                v["source"]["schema"].as_str()?,
                v["source"]["table"].as_str()?
            ))
        })
        .unwrap_or_else(|| topic.split_once('.').map_or(topic, |x| x.1).to_string());
    Record {
        topic: topic.to_string(),
        table,
        key: key.and_then(payload_of),
        value,
        commit_lsn: Lsn(0),
        exact: exact
            .and_then(|x| serde_json::from_slice::<Value>(x).ok())
            .and_then(|x| match x {
                Value::Object(m) => Some(m),
                _ => None,
            }),
        schemas: None,
    }
}

/// The `strangler.exact` header of a message.
fn exact_header<M: Message>(m: &M) -> Option<&[u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == EXACT_HEADER)
        .and_then(|h| h.value)
}

/// Progress of a sink worker.
#[derive(Debug, Default, Clone)]
pub struct Consumed {
    pub messages: u64,
    pub rows: u64,
    pub skipped: u64,
    pub dead_letters: u64,
}

impl Consumed {
    /// Counters of two runs added up.
    pub fn plus(&self, o: &Consumed) -> Consumed {
        Consumed {
            messages: self.messages + o.messages,
            rows: self.rows + o.rows,
            skipped: self.skipped + o.skipped,
            dead_letters: self.dead_letters + o.dead_letters,
        }
    }
}

/// Runs one sink as a member of the consumer group `strangler-<sink>` until
/// `shutdown` completes. Dead letters also go to `<prefix>.dlq` through `dlq`.
///
/// Applied positions for the router's lag view: when the worker has nothing
/// left to read it has applied everything the source published, so it
/// reports the source's published position (`status.published_position`)
/// for each of its tables.
#[allow(clippy::too_many_arguments)]
pub async fn consume(
    brokers: &str,
    topics: &[String],
    sink: &mut Sink,
    dlq: Option<(&KafkaProducer, &str)>,
    status: &dyn crate::pipeline::StatusReporter,
    slot: &str,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Consumed),
) -> Result<Consumed, TransportError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("strangler-{}", sink.name))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut progress = Consumed::default();
    let mut offsets = super::offsets::PartitionOffsets::default();
    loop {
        let first = tokio::select! {
            _ = &mut shutdown => break,
            m = tokio::time::timeout(Duration::from_millis(500), consumer.recv()) => match m {
                Ok(m) => m?,
                Err(_) => {
                    // Nothing left to read: everything published is applied.
                    if let Some(p) = status.published_position(slot).await {
                        let tables: Vec<String> = sink.source_tables().map(str::to_string).collect();
                        for t in tables {
                            status.applied(&sink.name, &t, p).await;
                        }
                    }
                    continue;
                }
            },
        };
        let mut batch = vec![(
            record_of(
                first.topic(),
                first.key(),
                first.payload(),
                exact_header(&first),
            ),
            first.topic().to_string(),
            first.partition(),
            first.offset(),
        )];
        while batch.len() < 5_000 {
            match tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await {
                Ok(Ok(m)) => batch.push((
                    record_of(m.topic(), m.key(), m.payload(), exact_header(&m)),
                    m.topic().to_string(),
                    m.partition(),
                    m.offset(),
                )),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        let before = sink.dead_letter_count();
        let applied = offsets.apply(sink, &batch).await?;
        if applied.dead_letters > 0 {
            if let Some((producer, prefix)) = dlq {
                for d in sink.dead_letters_since(before).await? {
                    producer
                        .dead_letter(
                            prefix,
                            &sink.name,
                            &d.0,
                            d.1.as_deref(),
                            d.2.as_deref(),
                            &d.3,
                        )
                        .await?;
                }
            }
        }
        // Applied positions while busy: the newest change of each table.
        let mut newest: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for (r, ..) in &batch {
            if let Some(lsn) = r.value.as_ref().and_then(|v| v["source"]["lsn"].as_u64()) {
                let e = newest.entry(r.table.as_str()).or_insert(0);
                *e = (*e).max(lsn);
            }
        }
        for (table, lsn) in newest {
            status.applied(&sink.name, table, Lsn(lsn)).await;
        }
        // The rows and their offsets are committed: tell the group.
        let mut tpl = TopicPartitionList::new();
        let mut next: std::collections::HashMap<(String, i32), i64> =
            std::collections::HashMap::new();
        for (_, t, p, o) in &batch {
            let e = next.entry((t.clone(), *p)).or_insert(0);
            *e = (*e).max(o + 1);
        }
        for ((t, p), o) in next {
            tpl.add_partition_offset(&t, p, Offset::Offset(o))?;
        }
        consumer.commit(&tpl, CommitMode::Async)?;
        progress.messages += batch.len() as u64;
        progress.rows += applied.rows;
        progress.skipped += applied.skipped;
        progress.dead_letters += applied.dead_letters;
        on_progress(&progress);
    }
    Ok(progress)
}
