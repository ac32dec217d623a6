//! A sink worker's reader of `<prefix>.schema-changes`: the schema changes
//! the source published, carried to the worker's targets
//! (`sink/evolve.rs`) before the rows that follow them.
//!
//! Every partition is read from its start without a group (each worker of
//! a sink reads all of it; the shape stored with the sink's bookkeeping
//! makes one of them apply each change and the others, and older shapes,
//! pass over it). Before each batch the worker looks whether the topic
//! grew (one watermark request); a row naming a column its target lacks
//! makes it wait a little for the change describing it, since the change
//! and the rows were published together but may become readable in either
//! order. A column still unknown then is one the target never had: warned
//! about once, not copied.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::ConsumedRecord;
use super::TransportError;
use crate::sink::Sink;

/// How long a row naming an unknown column waits for its schema change.
const WAIT: Duration = Duration::from_secs(10);

pub(super) struct Shapes {
    consumer: BaseConsumer,
    topic: String,
    /// The next offset to read per assigned partition.
    next: HashMap<i32, i64>,
    /// The topic's partitions, and when they were looked up (the topic is
    /// made with the first change: looked for again every few seconds
    /// until then, every minute after).
    partitions: Vec<i32>,
    looked: Option<Instant>,
    /// Columns reported as not copied.
    warned: HashSet<(String, String)>,
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Shapes {
    pub fn new(client: &super::KafkaClient, prefix: &str) -> Result<Shapes, TransportError> {
        let mut cfg = client.config();
        // Assigned, never committed: the group is only a name.
        cfg.set("group.id", "strangler-schema-changes")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        client.apply_properties(&mut cfg);
        Ok(Shapes {
            consumer: cfg.create()?,
            topic: crate::source::shape::topic(prefix),
            next: HashMap::new(),
            partitions: Vec::new(),
            looked: None,
            warned: HashSet::new(),
        })
    }

    /// Applies to `sink` what the topic holds beyond what was read; with
    /// `until`, keeps reading (up to [`WAIT`]) until it says true.
    async fn catch_up(
        &mut self,
        sink: &mut Sink,
        mut until: impl FnMut(&Sink) -> bool,
    ) -> Result<(), TransportError> {
        let deadline = Instant::now() + WAIT;
        loop {
            let ends = blocking(|| self.ends())?;
            let mut read = Vec::new();
            while ends
                .iter()
                .any(|(p, high)| self.next.get(p).copied().unwrap_or(0) < *high)
            {
                if Instant::now() > deadline {
                    break;
                }
                match blocking(|| self.consumer.poll(Duration::from_millis(200))) {
                    Some(Ok(m)) => {
                        self.next.insert(m.partition(), m.offset() + 1);
                        read.push(super::consumer::consumed(&m).0);
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => {}
                }
            }
            for r in &read {
                sink.evolve_record(r).await?;
            }
            if until(sink) || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Each partition's high watermark; partitions not read yet are
    /// assigned from their start.
    fn ends(&mut self) -> Result<Vec<(i32, i64)>, TransportError> {
        let timeout = Duration::from_secs(10);
        let stale = match self.looked {
            None => true,
            Some(at) if self.partitions.is_empty() => at.elapsed() > Duration::from_secs(3),
            Some(at) => at.elapsed() > Duration::from_secs(60),
        };
        if stale {
            let metadata = self.consumer.fetch_metadata(Some(&self.topic), timeout)?;
            self.partitions = metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            self.looked = Some(Instant::now());
        }
        let partitions = self.partitions.clone();
        if partitions.iter().any(|p| !self.next.contains_key(p)) {
            let mut list = TopicPartitionList::new();
            for p in &partitions {
                let at = self
                    .next
                    .get(p)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                list.add_partition_offset(&self.topic, *p, at)?;
                self.next.entry(*p).or_insert(0);
            }
            self.consumer.assign(&list)?;
        }
        partitions
            .into_iter()
            .map(|p| {
                let (_, high) = self.consumer.fetch_watermarks(&self.topic, p, timeout)?;
                Ok((p, high))
            })
            .collect()
    }

    /// Before `batch` is applied: the schema changes published so far, and
    /// those its rows need.
    pub async fn before(
        &mut self,
        sink: &mut Sink,
        batch: &[ConsumedRecord],
    ) -> Result<(), TransportError> {
        let unknown = |sink: &Sink| -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = batch
                .iter()
                .flat_map(|(r, ..)| {
                    sink.unknown_columns(r)
                        .into_iter()
                        .map(|c| (r.table.clone(), c))
                })
                .collect();
            out.sort();
            out.dedup();
            out
        };
        self.catch_up(sink, |_| true).await?;
        let missing: Vec<(String, String)> = unknown(sink)
            .into_iter()
            .filter(|k| !self.warned.contains(k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.catch_up(sink, |s| unknown(s).iter().all(|k| !missing.contains(k)))
            .await?;
        for (table, column) in unknown(sink) {
            if self.warned.insert((table.clone(), column.clone())) {
                tracing::warn!(
                    sink = %sink.name,
                    table,
                    column,
                    "a source column the target lacks is not copied: add it to the target or to the mapping's `exclude`"
                );
            }
        }
        Ok(())
    }
}
