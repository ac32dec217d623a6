//! A sink worker's side of schema changes: every streamed record carries
//! the position of its table's shape (header `strangler.shape`, put on by
//! the
//! producer, which has the shape's record acknowledged before it sends any
//! row that names it). A worker that meets a shape it has not applied
//! reads `<prefix>.schema-changes` (every partition, no group) up to it and
//! carries each change to its targets (`sink/evolve.rs`) before the rows;
//! a row of an older shape (a partition behind the others) has its
//! columns renamed to the current shape's by their `attnum`. Rows whose
//! shape is applied cost nothing: no request to the broker.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::offsets::ConsumedRecord;
use super::TransportError;
use crate::sink::Sink;

/// A shape: each column's name and `attnum` (when known).
type Shape = Vec<(String, Option<i64>)>;

pub(super) struct Shapes {
    consumer: BaseConsumer,
    topic: String,
    /// The next offset to read per partition.
    next: HashMap<i32, i64>,
    /// Per table, the shapes read, by position.
    history: HashMap<String, BTreeMap<u64, Shape>>,
    /// Per table, the position of the shape applied to the target.
    applied: HashMap<String, u64>,
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn shape_of(columns: &[Value]) -> Shape {
    columns
        .iter()
        .filter_map(|c| {
            Some((
                c.get("name")?.as_str()?.to_string(),
                c.get("position").and_then(Value::as_i64),
            ))
        })
        .collect()
}

impl Shapes {
    pub fn new(client: &super::KafkaClient, prefix: &str) -> Result<Shapes, TransportError> {
        let mut cfg = client.config();
        // Assigned, never committed: the group is only a name.
        cfg.set("group.id", "strangler-schema-changes")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        client.apply_properties(&mut cfg);
        Ok(Shapes {
            consumer: cfg.create()?,
            topic: crate::source::shape::topic(prefix),
            next: HashMap::new(),
            history: HashMap::new(),
            applied: HashMap::new(),
        })
    }

    /// Before `batch` is applied: the shapes its rows have, applied to the
    /// targets; rows of an older shape renamed to the current one.
    pub async fn before(
        &mut self,
        sink: &mut Sink,
        batch: &mut [ConsumedRecord],
    ) -> Result<(), TransportError> {
        // Each shape the batch's rows have that was not read yet.
        let mut behind: Vec<(String, u64)> = batch
            .iter()
            .filter_map(|(r, ..)| Some((r.table.as_str(), r.shape?.0)))
            .filter(|(t, at)| {
                sink.maps(t) && !self.history.get(*t).is_some_and(|h| h.contains_key(at))
            })
            .map(|(t, at)| (t.to_string(), at))
            .collect();
        behind.sort_unstable();
        behind.dedup();
        if !behind.is_empty() {
            self.catch_up(sink, &behind).await?;
        }
        for (r, ..) in batch.iter_mut() {
            let (Some(at), Some(now)) = (r.shape, self.applied.get(&r.table)) else {
                continue;
            };
            if at.0 < *now {
                if let Some(h) = self.history.get(&r.table) {
                    if let (Some(old), Some(new)) = (h.get(&at.0), h.get(now)) {
                        rename_to(r, old, new);
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads the topic until every `(table, position)` shape is read,
    /// applying the changes of the sink's tables on the way.
    async fn catch_up(
        &mut self,
        sink: &mut Sink,
        behind: &[(String, u64)],
    ) -> Result<(), TransportError> {
        let found = |s: &Shapes| {
            behind
                .iter()
                .all(|(t, at)| s.history.get(t).is_some_and(|h| h.contains_key(at)))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !found(self) {
            let ends = blocking(|| self.ends())?;
            let mut read = Vec::new();
            while ends
                .iter()
                .any(|(p, high)| self.next.get(p).copied().unwrap_or(0) < *high)
            {
                if Instant::now() > deadline {
                    return Err(TransportError::Schema(format!(
                        "{}: the schema changes of {behind:?} could not be read within 30 s",
                        self.topic
                    )));
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
            if read.is_empty() {
                // At the end of every partition, and a shape is missing: not
                // readable yet, or gone (retention). Tried again after a
                // pause, and said.
                return Err(TransportError::Schema(format!(
                    "{}: the schema changes of {behind:?} are not there (deleted by retention? keep that topic without limits)",
                    self.topic
                )));
            }
            for r in &read {
                let Some(columns) = crate::source::shape::of(r) else {
                    continue;
                };
                self.history
                    .entry(r.table.clone())
                    .or_default()
                    .insert(r.commit_lsn.0, shape_of(columns));
                if sink.maps(&r.table)
                    && self
                        .applied
                        .get(&r.table)
                        .is_none_or(|a| *a < r.commit_lsn.0)
                {
                    sink.evolve_record(r).await?;
                    self.applied.insert(r.table.clone(), r.commit_lsn.0);
                }
            }
        }
        Ok(())
    }

    /// Each partition's high watermark; partitions are assigned from
    /// their first offset kept.
    fn ends(&mut self) -> Result<Vec<(i32, i64)>, TransportError> {
        let timeout = Duration::from_secs(10);
        let metadata = self.consumer.fetch_metadata(Some(&self.topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut ends = Vec::new();
        let mut assign = false;
        for p in partitions {
            let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, timeout)?;
            let next = self.next.entry(p).or_insert(-1);
            if *next < low {
                *next = low;
                assign = true;
            }
            ends.push((p, high));
        }
        if assign {
            let mut list = TopicPartitionList::new();
            for (p, at) in &self.next {
                list.add_partition_offset(&self.topic, *p, Offset::Offset(*at))?;
            }
            self.consumer.assign(&list)?;
        }
        Ok(ends)
    }
}

/// Renames the columns of `r` (a row of shape `old`) to their names in
/// `new`, column by column through their `attnum`.
fn rename_to(r: &mut crate::event::Record, old: &Shape, new: &Shape) {
    let renames: HashMap<&str, &str> = old
        .iter()
        .filter_map(|(name, at)| {
            let at = (*at)?;
            let (now, _) = new.iter().find(|(_, p)| *p == Some(at))?;
            (now != name).then_some((name.as_str(), now.as_str()))
        })
        .collect();
    if renames.is_empty() {
        return;
    }
    let fix = |m: &mut serde_json::Map<String, Value>| {
        let moved: Vec<(String, Value)> = renames
            .iter()
            .filter_map(|(from, to)| m.remove(*from).map(|v| (to.to_string(), v)))
            .collect();
        m.extend(moved);
    };
    if let Some(v) = r.value.as_mut() {
        for side in ["before", "after"] {
            if let Some(Value::Object(m)) = v.get_mut(side) {
                fix(m);
            }
        }
    }
    if let Some(Value::Object(k)) = r.key.as_mut() {
        fix(k);
    }
    if let Some(x) = r.exact.as_mut() {
        fix(x);
    }
}
