//! The sink side: consumer-group workers applying records to a sink.

use std::future::Future;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::{KafkaProducer, TransportError};
use crate::event::{Record, EXACT_HEADER, POSITION_HEADER};
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
    (position, shape): (Option<&[u8]>, Option<&[u8]>),
) -> Record {
    let (commit_lsn, seq) = position
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.split_once('/'))
        .and_then(|(l, s)| Some((Lsn(l.parse().ok()?), s.parse().ok()?)))
        .unwrap_or((Lsn(0), 0));
    let shape = shape
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .map(Lsn);
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
        commit_lsn,
        seq,
        exact: exact
            .and_then(|x| serde_json::from_slice::<Value>(x).ok())
            .and_then(|x| match x {
                Value::Object(m) => Some(m),
                _ => None,
            }),
        schemas: None,
        shape,
    }
}

/// A header of a message.
fn header<'m, M: Message>(m: &'m M, name: &str) -> Option<&'m [u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// A consumed message as a record with where it came from.
pub(super) fn consumed<M: Message>(m: &M) -> super::offsets::ConsumedRecord {
    (
        record_of(
            m.topic(),
            m.key(),
            m.payload(),
            header(m, EXACT_HEADER),
            (
                header(m, POSITION_HEADER),
                header(m, crate::event::SHAPE_HEADER),
            ),
        ),
        m.topic().to_string(),
        m.partition(),
        m.offset(),
    )
}

/// Errors the client reports while it reconnects to the broker by itself.
fn passing(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    matches!(
        e,
        KafkaError::MessageConsumption(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::RequestTimedOut
                | C::OperationTimedOut
        )
    )
}

/// Publishes the sink's unpublished dead letters to the dead-letter topic,
/// then marks them (at least once: a crash in between publishes again).
async fn publish_dead_letters(
    sink: &mut Sink,
    dlq: Option<(&KafkaProducer, &str)>,
) -> Result<(), TransportError> {
    let Some((producer, prefix)) = dlq else {
        return Ok(());
    };
    let pending = sink.unpublished_dead_letters().await?;
    if pending.is_empty() {
        return Ok(());
    }
    for (_, topic, key, value, reason) in &pending {
        producer
            .dead_letter(
                prefix,
                &sink.name,
                topic,
                key.as_deref(),
                value.as_deref(),
                reason,
            )
            .await?;
    }
    let ids: Vec<i64> = pending.iter().map(|d| d.0).collect();
    sink.mark_dead_letters_published(&ids).await?;
    Ok(())
}

/// The source table a topic carries (`prefix.schema.table`) and the table
/// `sink` writes it to.
fn tables_of<'a>(sink: &Sink, topic: &'a str) -> (&'a str, String) {
    let source = topic.split_once('.').map_or(topic, |x| x.1);
    (
        source,
        sink.target_of(source).unwrap_or_else(|| source.to_string()),
    )
}

/// Reports each assigned partition: caught up (the next offset stored with
/// the rows is the high watermark) means everything the source published
/// is applied;
/// otherwise the commit position of the last record applied there.
async fn report_partitions(
    consumer: &StreamConsumer<Rebalances>,
    offsets: &super::offsets::PartitionOffsets,
    sink: &Sink,
    status: &dyn crate::pipeline::StatusReporter,
    slot: &str,
) {
    // Read the published position first: whatever the watermarks say
    // afterwards covers at least what it names.
    let published = status.published_position(slot).await;
    let Ok(assigned) = consumer.assignment() else {
        return;
    };
    // Everything read off the (non-Send) client before the first await.
    let reports: Vec<(String, i32, Lsn, bool)> = {
        let applied: std::collections::HashMap<(&str, i32), Lsn> =
            offsets.positions().map(|(t, p, l)| ((t, p), l)).collect();
        assigned
            .elements()
            .iter()
            .map(|e| {
                let (topic, partition) = (e.topic(), e.partition());
                // What the database holds, not the consumer's position: a
                // record received but dropped (a batch another worker beat,
                // a gap sought back) is past the position, not applied.
                let stored = offsets.next_offset(topic, partition);
                let high = watermarks(consumer, topic, partition);
                let caught_up =
                    matches!((stored, high), (Some(s), Some(h)) if s >= h) || high == Some(0);
                let lsn = match (caught_up, published) {
                    (true, Some(p)) => p,
                    _ => applied.get(&(topic, partition)).copied().unwrap_or(Lsn(0)),
                };
                (topic.to_string(), partition, lsn, caught_up)
            })
            .collect()
    };
    for (topic, partition, lsn, caught_up) in &reports {
        let (source, target) = tables_of(sink, topic);
        status
            .partition_applied(
                &sink.name,
                (source, &target),
                (topic, *partition),
                *lsn,
                *caught_up,
            )
            .await;
    }
}

/// After the group's assignment changed: new partitions resume at the
/// offsets stored with the rows, not at the group's committed ones (a
/// restored target, a commit that never reached the broker), and every
/// partition of the topics is recorded.
async fn reassigned(
    consumer: &StreamConsumer<Rebalances>,
    topics: &[String],
    offsets: &mut super::offsets::PartitionOffsets,
    sink: &mut Sink,
    status: &dyn crate::pipeline::StatusReporter,
) -> Result<(), TransportError> {
    offsets.forget();
    resume_assigned(consumer, offsets, sink).await?;
    record_partitions(consumer, topics, sink, status).await;
    Ok(())
}

/// Records every partition of the subscribed topics (the broker's
/// metadata): one that no worker has reported yet holds its table back, so
/// a worker idle on its own partitions cannot report the table caught up
/// while another worker's partition was never reported (that worker died
/// first, or is still starting).
async fn record_partitions(
    consumer: &StreamConsumer<Rebalances>,
    topics: &[String],
    sink: &Sink,
    status: &dyn crate::pipeline::StatusReporter,
) {
    for topic in topics {
        let fetch = || {
            consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
        };
        let partitions = blocking(fetch);
        match partitions {
            Ok(n) if n > 0 => {
                let (source, target) = tables_of(sink, topic);
                status
                    .partitions_exist(
                        &sink.name,
                        (source, &target),
                        topic,
                        i32::try_from(n).unwrap_or(i32::MAX),
                    )
                    .await;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(topic, error = %e, "cannot read a topic's partitions"),
        }
    }
}

/// Where to seek a partition that was read from past its stored offset.
/// First the stored offset itself; when the broker answers from past it
/// again (a broker may answer a fetch inside a record batch with the next
/// batch), farther back each time — records below the stored offset are
/// skipped — and from the start as a last resort. A gap that survives
/// that means the records are gone.
#[derive(Default)]
struct Seeking(std::collections::HashMap<(String, i32), u32>);

impl Seeking {
    const BACK: [i64; 4] = [0, 1_000, 100_000, i64::MAX];

    fn back_to(&mut self, (topic, partition): (&str, i32), resume: i64) -> Option<i64> {
        let tries = self.0.entry((topic.to_string(), partition)).or_default();
        let back = *Self::BACK.get(*tries as usize)?;
        *tries += 1;
        Some(resume.saturating_sub(back).max(0))
    }

    /// Partitions read again from at or before their stored offset.
    fn closed(&mut self, batch: &[super::offsets::ConsumedRecord]) {
        if !self.0.is_empty() {
            self.0
                .retain(|(t, p), _| !batch.iter().any(|(_, bt, bp, _)| bt == t && bp == p));
        }
    }
}

/// Seeks every assigned partition that has offsets stored with the rows to
/// them.
async fn resume_assigned(
    consumer: &StreamConsumer<Rebalances>,
    offsets: &mut super::offsets::PartitionOffsets,
    sink: &mut Sink,
) -> Result<(), TransportError> {
    let assigned: Vec<(String, i32)> = consumer
        .assignment()?
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    for (topic, partition) in assigned {
        let stored = offsets.stored_next(sink, &topic, partition).await?;
        if let Some(next) = stored {
            match seek(consumer, &topic, partition, next) {
                Ok(()) => tracing::info!(
                    topic,
                    partition,
                    offset = next,
                    "partition assigned: resuming at the offset stored with the rows"
                ),
                // Not fetching yet: the first batch's gap check seeks it.
                Err(e) => {
                    tracing::info!(topic, partition, error = %e, "cannot seek a newly assigned partition yet")
                }
            }
        }
    }
    Ok(())
}

/// Moves the consumer of a partition to `offset`.
fn seek(
    consumer: &StreamConsumer<Rebalances>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), TransportError> {
    let go = || {
        consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        )
    };
    blocking(go)?;
    Ok(())
}

/// The partition's high watermark, asked of the broker (a cached one may
/// predate what was just published).
fn watermarks(consumer: &StreamConsumer<Rebalances>, topic: &str, partition: i32) -> Option<i64> {
    let fetch = || {
        consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(2))
            .ok()
            .map(|(_, high)| high)
    };
    blocking(fetch)
}

/// Runs a blocking call of the client (it waits for the broker) without
/// stalling the runtime's other tasks where the runtime allows.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Notes every change of the group's assignment, so the worker reads the
/// stored offsets of the partitions it (re)gets from the database.
struct Rebalances(Arc<AtomicBool>, super::client::Refusals);

impl ClientContext for Rebalances {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::client::watch_error(&self.1, &error, reason);
    }
}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, _r: &Rebalance<'_>) {
        self.0.store(true, Ordering::SeqCst);
    }
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
    client: &super::KafkaClient,
    prefix: &str,
    topics: &[String],
    sink: &mut Sink,
    dlq: Option<(&KafkaProducer, &str)>,
    status: &dyn crate::pipeline::StatusReporter,
    slot: &str,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Consumed),
) -> Result<Consumed, TransportError> {
    let rebalanced = Arc::new(AtomicBool::new(false));
    let mut cfg = client.config();
    cfg.set("group.id", client.group_of(&sink.name))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // A worker that dies hands its partitions over within ~10 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000");
    client.apply_properties(&mut cfg);
    let consumer: StreamConsumer<Rebalances> =
        cfg.create_with_context(Rebalances(rebalanced.clone(), client.refusals.clone()))?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    // Dead letters a crash left unpublished (committed, not yet sent).
    publish_dead_letters(sink, dlq).await?;
    let mut shapes = super::shapes::Shapes::new(client, prefix)?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut progress = Consumed::default();
    let mut unreachable = false;
    let mut offsets = super::offsets::PartitionOffsets::default();
    let mut seeking = Seeking::default();
    loop {
        if rebalanced.swap(false, Ordering::SeqCst) {
            reassigned(&consumer, topics, &mut offsets, sink, status).await?;
        }
        let first = tokio::select! {
            _ = &mut shutdown => break,
            m = tokio::time::timeout(Duration::from_millis(500), consumer.recv()) => match m {
                Ok(Ok(m)) => {
                    if std::mem::take(&mut unreachable) {
                        tracing::info!("Kafka broker reachable again");
                    }
                    m
                }
                Ok(Err(e)) if passing(&e) => {
                    // librdkafka reconnects by itself (with its own
                    // backoff): keep this member of the group (a new one
                    // would wait out the old one's session before getting
                    // any partition) and wait in `recv` for the broker.
                    if !std::mem::replace(&mut unreachable, true) {
                        tracing::warn!(error = %e, "Kafka broker unreachable; the consumer reconnects by itself");
                    }
                    continue;
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {
                    // Idle: report every assigned partition, caught up or not.
                    report_partitions(&consumer, &offsets, sink, status, slot).await;
                    continue;
                }
            },
        };
        let mut batch = vec![consumed(&first)];
        while batch.len() < 5_000 {
            match tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await {
                Ok(Ok(m)) => batch.push(consumed(&m)),
                Ok(Err(e)) if passing(&e) => break,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => break,
            }
        }
        if rebalanced.swap(false, Ordering::SeqCst) {
            reassigned(&consumer, topics, &mut offsets, sink, status).await?;
        }
        // The database says where each partition resumes: a partition read
        // from past it goes back there, its records here are dropped.
        let gaps = offsets.gaps(sink, &batch).await?;
        for (topic, partition, resume) in &gaps {
            let first = batch
                .iter()
                .find(|(_, t, p, _)| t == topic && p == partition)
                .map_or(0, |b| b.3);
            let at = seeking.back_to((topic, *partition), *resume).ok_or_else(|| {
                TransportError::Gap(format!(
                    "{topic}[{partition}]: the broker no longer has offset {resume}, the next one this sink must apply (deleted by retention?)"
                ))
            })?;
            tracing::warn!(
                topic,
                partition,
                resume,
                first,
                seek = at,
                "read from past the offset stored with the rows; seeking back"
            );
            seek(&consumer, topic, *partition, at)?;
        }
        if !gaps.is_empty() {
            batch.retain(|(_, t, p, _)| !gaps.iter().any(|(gt, gp, _)| gt == t && gp == p));
        }
        seeking.closed(&batch);
        if batch.is_empty() {
            continue;
        }
        shapes.before(sink, &mut batch).await?;
        let applied = match offsets.apply(sink, &batch).await {
            Ok(a) => a,
            Err(e) if super::offsets::moved_on(&e) => {
                // Another worker applied some of these first (the group
                // moved a partition): nothing of this batch was kept. Go on
                // from what the database stores — the same member, no new
                // rebalance; a partition still ours is sought back there.
                tracing::info!(error = %e, "batch dropped; resuming from the stored offsets");
                offsets.forget();
                resume_assigned(&consumer, &mut offsets, sink).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if applied.dead_letters > 0 {
            publish_dead_letters(sink, dlq).await?;
        }
        // Applied positions while busy: per partition, the last record's
        // commit position (a table is as far as its slowest partition).
        let mut seen: Vec<(&str, i32)> =
            batch.iter().map(|(_, t, p, _)| (t.as_str(), *p)).collect();
        seen.sort_unstable();
        seen.dedup();
        for (topic, partition, lsn) in offsets.positions() {
            if seen.contains(&(topic, partition)) {
                let (source, target) = tables_of(sink, topic);
                status
                    .partition_applied(
                        &sink.name,
                        (source, &target),
                        (topic, partition),
                        lsn,
                        false,
                    )
                    .await;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_sought_at_the_stored_offset_then_farther_back_then_given_up() {
        let mut s = Seeking::default();
        let p = ("shop.public.t", 1);
        assert_eq!(s.back_to(p, 5_000), Some(5_000));
        assert_eq!(s.back_to(p, 5_000), Some(4_000));
        assert_eq!(s.back_to(p, 5_000), Some(0), "never before the start");
        assert_eq!(s.back_to(p, 5_000), Some(0));
        assert_eq!(s.back_to(p, 5_000), None, "the records are gone");
        // Read again from at or before the stored offset: closed, a later
        // gap starts over.
        s.closed(&[(
            crate::event::Record {
                topic: "shop.public.t".into(),
                table: "public.t".into(),
                key: None,
                value: None,
                commit_lsn: Lsn(0),
                seq: 0,
                exact: None,
                schemas: None,
                shape: None,
            },
            "shop.public.t".into(),
            1,
            4_990,
        )]);
        assert_eq!(s.back_to(p, 9_000), Some(9_000));
    }
}
