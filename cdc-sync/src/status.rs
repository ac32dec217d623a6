//! Where CDC reports its progress: the state store (for the router's
//! lag-aware comparison, promotion gates and `strangler status`), the
//! metrics, and the post-snapshot check of every sink.
//!
//! Reporting never blocks the pipeline: positions are coalesced in memory
//! and a background task writes the newest of each every 200 ms.
//!
//! Every position is stored under its stream ([`StreamKey`]: the source
//! cluster's system identifier, the slot, the direction), so positions of
//! two clusters are never compared. The cluster is what the source reports
//! when it connects; a Kafka sink worker, which never connects to the
//! source, takes it from the source's published position.

use std::time::Duration;

use strangler_config::CdcSink;
use strangler_state::lag::{Direction, StreamKey};
use strangler_state::store::StateStore;

use serde_json::json;

use crate::lsn::Lsn;
use crate::pipeline::StatusReporter;
use crate::source::{self, SourceConfig, SourceError};

/// Reports CDC positions to the state store (for the router's lag-aware
/// comparison and `strangler status`).
pub struct StoreStatus {
    store: Option<StateStore>,
    metrics: Option<std::sync::Arc<crate::metrics::CdcMetrics>>,
    /// Positions waiting to be written: reporting never blocks the pipeline
    /// (a busy state store must not stall replication); a background task
    /// writes the newest value of each every 200 ms.
    pending: std::sync::Arc<std::sync::Mutex<Pending>>,
    /// What the post-snapshot check compares, and its running checks.
    check: Option<CheckPlan>,
    checks: std::sync::Mutex<Vec<tokio::task::JoinHandle<usize>>>,
    /// The stream reported on; its cluster is known once the source
    /// reports it (or a published position names it).
    stream: std::sync::Arc<std::sync::Mutex<StreamKey>>,
}

/// The sinks a post-snapshot check compares with the source.
#[derive(Clone)]
pub struct CheckPlan {
    source_url: String,
    /// (name, database URL, mappings)
    sinks: Vec<(String, String, Vec<strangler_config::TableMapping>)>,
    /// How long a sink may take to apply the snapshot (Kafka: consumers lag).
    settle: Duration,
}

impl CheckPlan {
    pub fn new(
        source_url: &str,
        sinks: &[&CdcSink],
        urls: &[String],
        settle: Duration,
    ) -> CheckPlan {
        CheckPlan {
            source_url: source_url.to_string(),
            sinks: sinks
                .iter()
                .zip(urls)
                .map(|(s, u)| (s.name.clone(), u.clone(), s.tables.clone()))
                .collect(),
            settle,
        }
    }
}

#[derive(Default)]
struct Pending {
    source: Option<i64>,
    /// (sink, source table, target table) → position
    applied: std::collections::HashMap<(String, String, String), i64>,
    published: Option<i64>,
    partitions: std::collections::HashMap<PartitionKey, (i64, bool)>,
    /// Partitions that exist, recorded at position 0 unless reported.
    seeds: std::collections::HashSet<PartitionKey>,
}

/// (sink, source table, target table, topic, partition) → (position, caught up)
type PartitionKey = (String, String, String, String, i32);

impl StoreStatus {
    /// Reports on the stream of `slot` in `direction` (its cluster comes
    /// from the source, see [`StatusReporter::source_cluster`]).
    pub fn new(
        store: Option<StateStore>,
        metrics: Option<std::sync::Arc<crate::metrics::CdcMetrics>>,
        slot: &str,
        direction: Direction,
    ) -> StoreStatus {
        let pending = std::sync::Arc::new(std::sync::Mutex::new(Pending::default()));
        let stream = std::sync::Arc::new(std::sync::Mutex::new(StreamKey {
            cluster: String::new(),
            slot: slot.to_string(),
            direction,
        }));
        if let Some(store) = store.clone() {
            let weak = std::sync::Arc::downgrade(&pending);
            let stream = stream.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let Some(p) = weak.upgrade() else { break };
                    let Some(key) = known_stream(&store, &stream).await else {
                        // Positions wait (coalesced) until their cluster is known.
                        continue;
                    };
                    let batch = std::mem::take(&mut *lock(&p));
                    drop(p);
                    write(&store, &key, batch).await;
                }
            });
        }
        StoreStatus {
            store,
            metrics,
            pending,
            check: None,
            checks: std::sync::Mutex::new(Vec::new()),
            stream,
        }
    }

    /// Checks every sink against a sample of the snapshot once it is taken.
    pub fn with_check(mut self, plan: CheckPlan) -> StoreStatus {
        self.check = Some(plan);
        self
    }

    /// Waits for the post-snapshot checks started so far: rows that differ.
    pub async fn finish_checks(&self) -> usize {
        let tasks = std::mem::take(
            &mut *self
                .checks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut differing = 0;
        for t in tasks {
            differing += t.await.unwrap_or(0);
        }
        differing
    }

    fn with(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut lock(&self.pending));
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The stream with its cluster, once known: reported by the source, or
/// (a Kafka sink worker) named by the slot's published position.
async fn known_stream(
    store: &StateStore,
    stream: &std::sync::Mutex<StreamKey>,
) -> Option<StreamKey> {
    let key = lock(stream).clone();
    if !key.cluster.is_empty() {
        return Some(key);
    }
    let (cluster, _) = store.published(&key.slot).await.ok().flatten()?;
    let mut s = lock(stream);
    s.cluster = cluster;
    Some(s.clone())
}

/// Writes the newest positions of one round.
async fn write(store: &StateStore, key: &StreamKey, batch: Pending) {
    if let Some(lsn) = batch.source {
        if let Err(e) = store.report_source_position(key, lsn).await {
            tracing::debug!(error = %e, "cannot report the source position");
        }
    }
    for ((sink, source, target), lsn) in batch.applied {
        if let Err(e) = store
            .report_applied_position(key, &sink, (&source, &target), lsn)
            .await
        {
            tracing::debug!(error = %e, "cannot report an applied position");
        }
    }
    // Before any position: a round that reports one partition caught up
    // also holds back the table on the partitions nobody reported yet.
    for (sink, source, target, topic, partition) in batch.seeds {
        if let Err(e) = store
            .seed_partition(key, &sink, (&source, &target), (&topic, partition))
            .await
        {
            tracing::debug!(error = %e, "cannot record a partition");
        }
    }
    for ((sink, source, target, topic, partition), at) in batch.partitions {
        if let Err(e) = store
            .report_partition(key, &sink, (&source, &target), (&topic, partition), at)
            .await
        {
            tracing::debug!(error = %e, "cannot report a partition's position");
        }
    }
    if let Some(lsn) = batch.published {
        if let Err(e) = store.report_published(key, lsn).await {
            tracing::debug!(error = %e, "cannot report the published position");
        }
    }
}

fn keep_max<K: std::hash::Hash + Eq>(m: &mut std::collections::HashMap<K, i64>, k: K, v: i64) {
    let e = m.entry(k).or_insert(v);
    *e = (*e).max(v);
}

#[async_trait::async_trait]
impl StatusReporter for StoreStatus {
    async fn source_cluster(&self, cluster: &str) {
        lock(&self.stream).cluster = cluster.to_string();
    }
    async fn source_position(&self, _slot: &str, lsn: Lsn) {
        if let Some(m) = &self.metrics {
            m.source_position(lsn.as_i64());
        }
        self.with(|p| p.source = Some(p.source.unwrap_or(0).max(lsn.as_i64())));
    }
    async fn applied(&self, sink: &str, (source, target): (&str, &str), lsn: Lsn) {
        if let Some(m) = &self.metrics {
            m.applied(sink, source, lsn.as_i64());
        }
        self.with(|p| {
            keep_max(
                &mut p.applied,
                (sink.to_string(), source.to_string(), target.to_string()),
                lsn.as_i64(),
            )
        });
    }
    async fn partition_applied(
        &self,
        sink: &str,
        (source, target): (&str, &str),
        (topic, partition): (&str, i32),
        lsn: Lsn,
        caught_up: bool,
    ) {
        self.with(|p| {
            p.partitions.insert(
                (
                    sink.to_string(),
                    source.to_string(),
                    target.to_string(),
                    topic.to_string(),
                    partition,
                ),
                (lsn.as_i64(), caught_up),
            );
        });
    }
    async fn partitions_exist(
        &self,
        sink: &str,
        (source, target): (&str, &str),
        topic: &str,
        partitions: i32,
    ) {
        self.with(|p| {
            p.seeds.extend((0..partitions).map(|partition| {
                (
                    sink.to_string(),
                    source.to_string(),
                    target.to_string(),
                    topic.to_string(),
                    partition,
                )
            }))
        });
    }
    async fn published(&self, _slot: &str, lsn: Lsn) {
        self.with(|p| p.published = Some(p.published.unwrap_or(0).max(lsn.as_i64())));
    }
    async fn published_position(&self, slot: &str) -> Option<Lsn> {
        match &self.store {
            Some(s) => s
                .published(slot)
                .await
                .ok()
                .flatten()
                .map(|(_, l)| Lsn::from_i64(l)),
            None => None,
        }
    }
    async fn snapshot_complete(&self, slot: &str) {
        if let Some(s) = &self.store {
            if let Err(e) = s.mark_cdc_snapshot(slot).await {
                tracing::warn!(error = %e, "cannot record the completed snapshot; the next start snapshots again");
            }
        }
    }
    async fn role(&self, _slot: &str, active: bool) {
        if let Some(m) = &self.metrics {
            m.role(active);
        }
    }
    async fn slot_lost(&self, _slot: &str, lost: bool) {
        if let Some(m) = &self.metrics {
            m.slot_lost(lost);
        }
    }
    async fn retained_wal(&self, _slot: &str, bytes: u64) {
        if let Some(m) = &self.metrics {
            m.retained_wal(bytes);
        }
    }
    async fn retried(&self, slot: &str, part: &str, error: &str) {
        if let Some(m) = &self.metrics {
            m.retried(part);
        }
        if let Some(s) = &self.store {
            if let Err(e) = s.record_cdc_reconnect(slot, part, error).await {
                tracing::debug!(error = %e, "cannot record the reconnect in the state store");
            }
        }
    }
    async fn snapshot_sampled(&self, slot: &str, sample: crate::verify::Sample) {
        let Some(plan) = self.check.clone() else {
            return;
        };
        let sample = std::sync::Arc::new(sample);
        for (sink, url, mappings) in plan.sinks {
            let (sample, slot, source_url, metrics) = (
                sample.clone(),
                slot.to_string(),
                plan.source_url.clone(),
                self.metrics.clone(),
            );
            let task = tokio::spawn(async move {
                let reports = crate::verify::check_sink(
                    &source_url,
                    &slot,
                    &sink,
                    &url,
                    &mappings,
                    &sample,
                    plan.settle,
                )
                .await;
                let reports = match reports {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(sink, error = %e, "the post-snapshot check could not run");
                        return 0;
                    }
                };
                let checked: usize = reports.iter().map(|r| r.checked).sum();
                let differing: usize = reports.iter().map(|r| r.differences.len()).sum();
                if let Some(m) = &metrics {
                    m.snapshot_check(checked, differing);
                }
                for r in reports.iter().filter(|r| !r.differences.is_empty()) {
                    let keys: Vec<String> = r
                        .differences
                        .iter()
                        .take(10)
                        .map(|d| format!("{} {:?}", d.kind, d.key))
                        .collect();
                    tracing::error!(
                        sink, source = %r.source, target = %r.target, differing = r.differences.len(), checked = r.checked,
                        "SNAPSHOT CHECK FAILED: rows in the sink differ from the source's snapshot ({}); run `strangler cdc verify`",
                        keys.join(", ")
                    );
                }
                if differing == 0 {
                    tracing::info!(
                        sink,
                        checked,
                        "post-snapshot check: every sampled row is identical"
                    );
                }
                differing
            });
            self.checks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(task);
        }
    }
}

/// Where a sink's snapshots stand: whether the initial one is complete,
/// and per table copied (by it, or by a chunked snapshot) or being copied
/// in chunks (with the last key copied and when).
async fn snapshot_progress(
    conn: &mut sqlx::PgConnection,
    sink: &str,
    slot: &str,
) -> serde_json::Value {
    let done: Option<bool> = sqlx::query_scalar(
        "SELECT snapshot_done FROM strangler_cdc_offsets WHERE sink = $1 AND slot = $2",
    )
    .bind(sink)
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .ok()
    .flatten();
    let tables: Vec<(String, Option<String>, bool, String)> = sqlx::query_as(
        "SELECT source_table, after_key, complete, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         FROM strangler_cdc_chunked_snapshots WHERE sink = $1 AND slot = $2 ORDER BY source_table",
    )
    .bind(sink)
    .bind(slot)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    json!({
        "complete": done,
        "tables": tables.iter().map(|(t, after, complete, at)| json!({
            "table": t,
            "state": if *complete { "copied" } else { "copying" },
            "after_key": after.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok()),
            "updated_at": at,
        })).collect::<Vec<_>>(),
    })
}

/// What `strangler cdc status` shows: the slot (position, lag, confirmed
/// bytes per second over one second) and per sink its applied position,
/// lag and last post-snapshot check. `sinks`: name and database URL (or
/// why there is none).
pub async fn report(
    cfg: &SourceConfig,
    sinks: &[(String, Result<String, String>)],
) -> Result<serde_json::Value, SourceError> {
    if cfg.kind.is_mysql() {
        return report_mysql(cfg, sinks).await;
    }
    let mut conn = source::connect(cfg).await?;
    let current = source::current_lsn(&mut conn).await?;
    let slot = source::slot_state(&mut conn, &cfg.slot).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let slot_later = source::slot_state(&mut conn, &cfg.slot).await?;
    let lag_bytes = slot
        .as_ref()
        .map(|s| current.0.saturating_sub(s.confirmed.0));
    let rate = match (&slot, &slot_later) {
        (Some(a), Some(b)) => b.confirmed.0.saturating_sub(a.confirmed.0),
        _ => 0,
    };
    let out_sinks = sink_reports(cfg, sinks, current).await;
    let (holder, standbys) = crate::run::lease::holder(&mut conn, &cfg.slot).await?;
    let retained = source::retained_wal(&mut conn, &cfg.slot).await?;
    // Gone after a sink took changes from it: never silently snapshotted
    // again (`SourceError::SlotLost`).
    let lost = slot.as_ref().is_none_or(|s| s.invalidated)
        && out_sinks.iter().any(|s| !s["applied"].is_null());
    Ok(json!({
        "slot": cfg.slot,
        "exists": slot.is_some(),
        "invalidated": slot.as_ref().is_some_and(|s| s.invalidated),
        "lost": lost,
        "retained_wal_bytes": retained,
        "lease": {
            "active": holder.map(|(name, client, pid)| json!({"application_name": name, "client": client, "pid": pid})),
            "standbys": standbys,
        },
        "active": slot.as_ref().is_some_and(|s| s.active),
        "source_lsn": current.to_string(),
        "confirmed": slot.as_ref().map(|s| s.confirmed.to_string()),
        "lag_bytes": lag_bytes,
        "confirmed_bytes_per_second": rate,
        "sinks": out_sinks,
    }))
}

/// What each sink has applied (its stored offset), how far behind
/// `current` that is, and its snapshot check and progress.
async fn sink_reports(
    cfg: &SourceConfig,
    sinks: &[(String, Result<String, String>)],
    current: Lsn,
) -> Vec<serde_json::Value> {
    let mut out_sinks = Vec::new();
    for (name, url) in sinks {
        let url = match url {
            Ok(u) => u,
            Err(e) => {
                out_sinks.push(json!({"sink": name, "error": e}));
                continue;
            }
        };
        // A sink database that cannot be read shows as "nothing applied".
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .ok();
        let row: Option<(i64, String, f64)> = match conn.as_mut() {
            Some(c) => sqlx::query_as("SELECT lsn, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), EXTRACT(EPOCH FROM now() - updated_at)::float8 FROM strangler_cdc_offsets WHERE sink = $1 AND slot = $2")
                .bind(name)
                .bind(&cfg.slot)
                .fetch_optional(c)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let check: Option<(i64, i64, String)> = match conn.as_mut() {
            Some(c) => sqlx::query_as("SELECT rows_checked, rows_differing, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM strangler_cdc_checks WHERE sink = $1 AND slot = $2")
                .bind(name)
                .bind(&cfg.slot)
                .fetch_optional(c)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let check =
            check.map(|(n, d, at)| json!({"rows_checked": n, "rows_differing": d, "at": at}));
        let snapshot = match conn.as_mut() {
            Some(c) => snapshot_progress(c, name, &cfg.slot).await,
            None => serde_json::Value::Null,
        };
        out_sinks.push(match row {
            Some((lsn, at, age)) => {
                let behind = current.0.saturating_sub(Lsn::from_i64(lsn).0);
                json!({"sink": name, "applied": Lsn::from_i64(lsn).to_string(), "applied_lsn": Lsn::from_i64(lsn).0, "applied_at": at,
                       "lag_bytes": behind, "lag_seconds": if behind == 0 { 0.0 } else { age },
                       "snapshot_check": check, "snapshot": snapshot})
            }
            None => json!({"sink": name, "applied": null, "snapshot_check": check, "snapshot": snapshot}),
        });
    }
    out_sinks
}

/// `cdc status` of a MySQL source: the binlog's end, the lease (a named
/// lock on the source), each sink's position.
async fn report_mysql(
    cfg: &SourceConfig,
    sinks: &[(String, Result<String, String>)],
) -> Result<serde_json::Value, SourceError> {
    use mysql_async::prelude::Queryable;
    let mut conn = crate::mysql::connect(&cfg.url).await?;
    let at = crate::mysql::current_position(&mut conn).await?;
    let current = at.lsn().unwrap_or_default();
    let out_sinks = sink_reports(cfg, sinks, current).await;
    let name: String = format!("strangler-cdc/{}", cfg.slot)
        .chars()
        .take(64)
        .collect();
    let holder: Option<(u64, String)> = conn
        .exec_first(
            "SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE ID = IS_USED_LOCK(?)",
            (name,),
        )
        .await?;
    let applied: Vec<u64> = out_sinks
        .iter()
        .filter_map(|s| s["applied_lsn"].as_u64())
        .collect();
    let confirmed = applied.iter().min().copied().map(Lsn);
    Ok(json!({
        "slot": cfg.slot,
        "kind": "mysql",
        "exists": true,
        "invalidated": false,
        "lost": false,
        "retained_wal_bytes": null,
        "binlog": {"file": at.file, "pos": at.pos},
        "lease": {
            "active": holder.map(|(id, host)| json!({"application_name": format!("connection {id}"), "client": host, "pid": id})),
            "standbys": 0,
        },
        "active": false,
        "source_lsn": format!("{at}"),
        "confirmed": confirmed.map(|l| l.to_string()),
        "lag_bytes": confirmed.map(|c| current.0.saturating_sub(c.0)),
        "confirmed_bytes_per_second": 0,
        "sinks": out_sinks,
    }))
}
