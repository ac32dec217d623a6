//! The source side: an idempotent producer, and Kafka as a pipeline
//! destination.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::Value;

use super::{dlq_topic, TransportError};
use crate::event::{Record, EXACT_HEADER, POSITION_HEADER};

/// The source side: an idempotent producer.
pub struct KafkaProducer {
    producer: FutureProducer<super::Watch>,
    admin: AdminClient<super::Watch>,
    partitions: i32,
    client: super::KafkaClient,
    /// Outbox tables (by `schema.table`) routed as events, and the topic
    /// prefix.
    outbox: Vec<(String, strangler_config::Outbox)>,
    prefix: String,
    /// Outbox topics known to exist (created on first use).
    ensured: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The schema-change topic could not be made: its events are dropped.
    shapes_off: std::sync::atomic::AtomicBool,
    /// Per table, the position of its shape's schema-change record, put on
    /// each of its records ([`crate::event::SHAPE_HEADER`]).
    stamps: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// An outbox row as the event it stands for.
struct OutboxEvent {
    topic: String,
    key: Option<String>,
    value: Option<String>,
    id: Option<String>,
    kind: Option<String>,
}

/// The event of an outbox record (Debezium's outbox event router): inserts
/// are events — the service may delete the row right after — and so are
/// the snapshot's reads of rows still in the table (written before the
/// slot existed, or copied again: consumers drop repeats by the `id`
/// header); updates and deletes are not events.
fn outbox_event(o: &strangler_config::Outbox, prefix: &str, r: &Record) -> Option<OutboxEvent> {
    let v = r.value.as_ref()?;
    if !matches!(v.get("op").and_then(Value::as_str), Some("c" | "r")) {
        return None;
    }
    let after = v.get("after")?;
    let text = |col: &str| match after.get(col) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let aggregate = text(&o.aggregate_type).unwrap_or_else(|| "unknown".into());
    Some(OutboxEvent {
        topic: format!("{prefix}.outbox.{aggregate}"),
        key: text(&o.aggregate_id),
        value: text(&o.payload),
        id: text(&o.id),
        kind: text(&o.event_type),
    })
}

impl KafkaProducer {
    /// A producer on plain `brokers` (tests, the demo).
    pub fn new(brokers: &str, partitions: i32) -> Result<KafkaProducer, KafkaError> {
        KafkaProducer::connect(&super::KafkaClient::new(brokers), partitions)
    }

    /// A producer with the transport's settings (TLS, SASL, properties).
    pub fn connect(
        client: &super::KafkaClient,
        partitions: i32,
    ) -> Result<KafkaProducer, KafkaError> {
        let mut cfg = client.config();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            // The pipeline waits for a batch's acknowledgements before the
            // slot may move: lingering only delays the batch's last
            // request (5 ms: 14k rows/s through tansu; 0: 40k).
            .set("linger.ms", "0")
            .set("compression.type", "lz4")
            // Kafka's Java default: the same key lands in the same partition
            // whichever client produced it.
            .set("partitioner", "murmur2_random");
        client.apply_properties(&mut cfg);
        Ok(KafkaProducer {
            producer: cfg.create_with_context(client.context())?,
            admin: cfg.create_with_context(client.context())?,
            partitions,
            client: client.clone(),
            outbox: Vec::new(),
            prefix: String::new(),
            ensured: std::sync::Mutex::new(std::collections::HashSet::new()),
            shapes_off: std::sync::atomic::AtomicBool::new(false),
            stamps: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Routes inserts into the `outbox` tables as events on
    /// `<prefix>.outbox.<aggregate type>` instead of change events.
    pub fn with_outbox(
        mut self,
        prefix: &str,
        outbox: &[strangler_config::Outbox],
    ) -> KafkaProducer {
        self.outbox = outbox
            .iter()
            .map(|o| (o.table.to_string(), o.clone()))
            .collect();
        self.prefix = prefix.to_string();
        self
    }

    /// `e`, or the brokers' refusal behind it ([`super::KafkaClient::judge`]).
    pub fn judge(&self, e: TransportError) -> TransportError {
        self.client.judge(e)
    }

    /// Creates the topics that do not exist yet. Topics that exist are
    /// left alone, so a principal without the right to create topics (a
    /// managed Kafka whose topics an administrator created) works too.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), KafkaError> {
        let existing: std::collections::HashSet<String> = {
            let client = self.producer.client();
            let fetch = || client.fetch_metadata(None, Duration::from_secs(10));
            let metadata = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(fetch)
                }
                _ => fetch(),
            }?;
            metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.name().to_string())
                .collect()
        };
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .filter(|t| !existing.contains(t.as_str()))
            .map(|t| NewTopic::new(t, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let results = self
            .admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::AdminOp(code))
                        .inspect_err(|_| tracing::error!(topic, ?code, "cannot create topic"))
                }
            }
        }
        Ok(())
    }

    /// Publishes records in order and waits until every one is acknowledged.
    pub async fn publish(&self, records: &[Record]) -> Result<(), TransportError> {
        self.enqueue(records).await?.await
    }

    /// Hands records to the producer in order (they are sent from now on)
    /// and returns what completes once every one is acknowledged: the next
    /// batch can be handed over meanwhile. The idempotent producer keeps
    /// each partition's order across batches.
    pub async fn enqueue(
        &self,
        records: &[Record],
    ) -> Result<
        impl std::future::Future<Output = Result<(), TransportError>> + Send + 'static,
        TransportError,
    > {
        let mut pending = Vec::with_capacity(records.len());
        // Outbox rows become events (or nothing); their topics exist before
        // the first is sent. Without outbox tables no row is looked at.
        let events: Vec<Option<Option<OutboxEvent>>> = if self.outbox.is_empty() {
            Vec::new()
        } else {
            records
                .iter()
                .map(|r| {
                    self.outbox
                        .iter()
                        .find(|(table, _)| *table == r.table)
                        .map(|(_, o)| outbox_event(o, &self.prefix, r))
                })
                .collect()
        };
        let new: Vec<String> = {
            let ensured = self
                .ensured
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Outbox topics are made on first use; the tables' topics exist
            // from the start.
            let mut new: Vec<String> = events
                .iter()
                .flatten()
                .flatten()
                .map(|e| e.topic.clone())
                .filter(|t| !ensured.contains(t))
                .collect();
            new.sort();
            new.dedup();
            new
        };
        if !new.is_empty() {
            self.ensure_topics(&new).await?;
            self.ensured
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(new);
        }
        // The schema-change topic too, but a broker that will not make it
        // (a principal without CreateTopics, topics an administrator makes)
        // costs the schema-change events, said once, not the pipeline.
        let shapes = records
            .iter()
            .find(|r| crate::source::shape::of(r).is_some())
            .map(|r| r.topic.clone());
        let (has_shapes, mut publish_shapes) = (shapes.is_some(), false);
        if let Some(topic) = shapes {
            let known = self
                .ensured
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&topic);
            publish_shapes = known;
            if !known && !self.shapes_off.load(std::sync::atomic::Ordering::Relaxed) {
                match self.ensure_topics(std::slice::from_ref(&topic)).await {
                    Ok(()) => {
                        publish_shapes = true;
                        self.ensured
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(topic);
                    }
                    Err(e) => {
                        self.shapes_off
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(topic, error = %e, "schema-change events are not published: the topic cannot be made (make it, or allow CreateTopics); changes still flow");
                    }
                }
            }
        }
        let mut stamps = self
            .stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (i, r) in records.iter().enumerate() {
            // `None`: a change event; `Some(None)`: an outbox row that is no
            // event (an update, a delete, a read); `Some(Some(e))`: an event.
            let routed = events.get(i).and_then(Option::as_ref);
            if let Some(Some(ev)) = routed {
                let position =
                    (r.commit_lsn.0 > 0).then(|| format!("{}/{}", r.commit_lsn.0, r.seq));
                let mut headers = OwnedHeaders::new();
                for (k, v) in [
                    ("id", &ev.id),
                    ("type", &ev.kind),
                    (POSITION_HEADER, &position),
                ] {
                    if let Some(v) = v {
                        headers = headers.insert(Header {
                            key: k,
                            value: Some(v),
                        });
                    }
                }
                let mut rec: FutureRecord<'_, String, String> =
                    FutureRecord::to(&ev.topic).headers(headers);
                if let Some(k) = ev.key.as_ref() {
                    rec = rec.key(k);
                }
                if let Some(v) = ev.value.as_ref() {
                    rec = rec.payload(v);
                }
                pending.push(self.send_waiting(rec).await?);
                continue;
            }
            let shape = has_shapes && crate::source::shape::of(r).is_some();
            if routed.is_some() || (shape && !publish_shapes) {
                continue;
            }
            let e = encode(r);
            let mut headers = OwnedHeaders::new();
            if let Some(at) = stamps.get(&r.table).filter(|_| !shape) {
                headers = headers.insert(Header {
                    key: crate::event::SHAPE_HEADER,
                    value: Some(at),
                });
            }
            if let Some(x) = e.exact.as_ref() {
                headers = headers.insert(Header {
                    key: EXACT_HEADER,
                    value: Some(x),
                });
            }
            if let Some(p) = e.position.as_ref() {
                headers = headers.insert(Header {
                    key: POSITION_HEADER,
                    value: Some(p),
                });
            }
            let mut rec: FutureRecord<'_, String, String> =
                FutureRecord::to(&r.topic).headers(headers);
            if let Some(k) = e.key.as_ref() {
                rec = rec.key(k);
            }
            if let Some(v) = e.value.as_ref() {
                rec = rec.payload(v);
            }
            if shape {
                // In the broker before any row that names it is sent.
                match self.send_waiting(rec).await?.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(e.into()),
                    Err(_) => return Err(KafkaError::Canceled.into()),
                }
                stamps.insert(r.table.clone(), r.commit_lsn.0.to_string());
                continue;
            }
            pending.push(self.send_waiting(rec).await?);
        }
        *self
            .stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamps;
        Ok(async move {
            for delivered in futures::future::join_all(pending).await {
                match delivered {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(e.into()),
                    Err(_) => return Err(KafkaError::Canceled.into()),
                }
            }
            Ok(())
        })
    }

    /// Hands `rec` to the producer, waiting while its queue is full.
    async fn send_waiting<'a>(
        &self,
        mut rec: FutureRecord<'a, String, String>,
    ) -> Result<rdkafka::producer::DeliveryFuture, TransportError> {
        loop {
            match self.producer.send_result(rec) {
                Ok(delivery) => return Ok(delivery),
                // The producer's queue is full: wait for it to drain.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Publishes a dead letter (the record and why it could not be applied).
    pub async fn dead_letter(
        &self,
        prefix: &str,
        sink: &str,
        topic: &str,
        key: Option<&str>,
        value: Option<&str>,
        reason: &str,
    ) -> Result<(), TransportError> {
        let payload = serde_json::json!({ "sink": sink, "topic": topic, "key": key, "value": value, "reason": reason }).to_string();
        let dlq = dlq_topic(prefix);
        let mut rec: FutureRecord<'_, str, String> = FutureRecord::to(&dlq).payload(&payload);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        self.producer
            .send(rec, Duration::from_secs(0))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }
}

/// A record as bytes on the wire.
struct Encoded {
    key: Option<String>,
    value: Option<String>,
    exact: Option<String>,
    /// `commit_lsn/seq` of a streamed record.
    position: Option<String>,
}

/// Key and value as Kafka Connect's JSON converter writes them: with
/// `schemas_enable`, `{schema, payload}`.
fn encode(r: &Record) -> Encoded {
    let wrap = |schema: Option<&Value>, v: &Value| match schema {
        Some(s) => serde_json::json!({ "schema": s, "payload": v }).to_string(),
        None => v.to_string(),
    };
    let schemas = r.schemas.as_deref();
    Encoded {
        key: r.key.as_ref().map(|k| wrap(schemas.map(|s| &s.key), k)),
        value: r.value.as_ref().map(|v| wrap(schemas.map(|s| &s.value), v)),
        exact: r
            .exact
            .as_ref()
            .map(|x| Value::Object(x.clone()).to_string()),
        position: (r.commit_lsn.0 > 0).then(|| format!("{}/{}", r.commit_lsn.0, r.seq)),
    }
}
