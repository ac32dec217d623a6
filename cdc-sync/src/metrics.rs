//! Prometheus metrics of `strangler cdc run --metrics ADDR`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::pipeline::Progress;
use prometheus::{Encoder, IntCounter, IntGauge, IntGaugeVec, Registry, TextEncoder};

/// The pipeline's counters, as Prometheus sees them.
pub struct CdcMetrics {
    registry: Registry,
    snapshot_rows: IntCounter,
    snapshot_expected: IntGauge,
    /// Per table (`table` label): rows read, the estimate, done (0/1).
    snapshot_table_rows: IntGaugeVec,
    snapshot_table_expected: IntGaugeVec,
    snapshot_table_done: IntGaugeVec,
    behind_source: prometheus::Gauge,
    transactions: IntCounter,
    events: IntCounter,
    rows_applied: IntCounter,
    dead_letters: IntCounter,
    published: IntCounter,
    confirmed: IntGauge,
    source: IntGauge,
    lag: IntGauge,
    check_rows: IntGauge,
    retries: prometheus::IntCounterVec,
    check_differences: IntGauge,
    /// 1 while this process is the active `cdc run` (0: standby), 1 while
    /// the slot is lost, the WAL the slot holds back.
    active: IntGauge,
    slot_lost: IntGauge,
    retained_wal: IntGauge,
    /// Per sink and source table: what is applied, and how far that is
    /// behind the source's position.
    sink_applied: IntGaugeVec,
    sink_lag: IntGaugeVec,
    /// Per sink and source table: seconds since the source first held a
    /// change the sink has not applied (0 when caught up).
    sink_lag_seconds: prometheus::GaugeVec,
    /// Change events streamed, per source table.
    table_events: prometheus::IntCounterVec,
    /// Rows written, per sink.
    sink_rows: prometheus::IntCounterVec,
    /// The applied positions behind `sink_applied`, to recompute the lag
    /// when the source moves (a stalled sink's lag grows).
    applied_at: std::sync::Mutex<std::collections::HashMap<(String, String), i64>>,
    /// When the source was first seen at each position (every change of
    /// its position, bounded): what lag in seconds is read from.
    source_seen: std::sync::Mutex<std::collections::VecDeque<(i64, std::time::Instant)>>,
    last: std::sync::Mutex<Progress>,
}

/// Source positions remembered for lag in seconds (one per change of the
/// position, polled every 500 ms: over an hour of a busy source).
const SOURCE_SEEN: usize = 8_192;

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c =
        IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("distinct metric {name}: {e}"));
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| unreachable!("distinct metric {name}: {e}"));
    g
}

/// `metric`, registered in `r`.
fn registered<M>(r: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let m = metric.unwrap_or_else(|e| unreachable!("static metric: {e}"));
    r.register(Box::new(m.clone()))
        .unwrap_or_else(|e| unreachable!("distinct metric: {e}"));
    m
}

fn counter_by(r: &Registry, name: &str, help: &str, label: &str) -> prometheus::IntCounterVec {
    registered(
        r,
        prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &[label]),
    )
}

fn by_table(r: &Registry, name: &str, help: &str) -> IntGaugeVec {
    by(r, name, help, "table")
}

fn by_sink_table(r: &Registry, name: &str, help: &str) -> IntGaugeVec {
    by_labels(r, name, help, &["sink", "table"])
}

fn by(r: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    by_labels(r, name, help, &[label])
}

fn by_labels(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(prometheus::Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| unreachable!("distinct metric {name}: {e}"));
    g
}

impl CdcMetrics {
    /// The metrics of the pipeline reading `slot` of the source `source`
    /// (`topic_prefix`): every series carries both as labels.
    pub fn new(slot: &str, source: &str) -> Arc<CdcMetrics> {
        let labels = [("slot", slot), ("source", source)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = Registry::new_custom(None, Some(labels))
            .unwrap_or_else(|e| unreachable!("static labels: {e}"));
        CdcMetrics::zeroed(Arc::new(CdcMetrics {
            snapshot_rows: counter(
                &r,
                "strangler_cdc_snapshot_rows_total",
                "Rows read by the initial snapshot.",
            ),
            snapshot_expected: gauge(
                &r,
                "strangler_cdc_snapshot_rows_expected",
                "Rows the snapshot expects to read (the tables' estimates; 0: unknown).",
            ),
            snapshot_table_rows: by_table(
                &r,
                "strangler_cdc_snapshot_table_rows",
                "Rows of a table read by the snapshot so far.",
            ),
            snapshot_table_expected: by_table(
                &r,
                "strangler_cdc_snapshot_table_rows_expected",
                "Rows of a table the snapshot expects (PostgreSQL's estimate; 0: unknown).",
            ),
            snapshot_table_done: by_table(
                &r,
                "strangler_cdc_snapshot_table_done",
                "1 once every row of the table's snapshot is durable in the destination.",
            ),
            behind_source: {
                let g = prometheus::Gauge::new(
                    "strangler_cdc_behind_source_seconds",
                    "Now minus the source commit time of the last event written (0 when caught up).",
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}"));
                r.register(Box::new(g.clone()))
                    .unwrap_or_else(|e| unreachable!("distinct metric: {e}"));
                g
            },
            transactions: counter(
                &r,
                "strangler_cdc_transactions_total",
                "Source transactions streamed.",
            ),
            events: counter(
                &r,
                "strangler_cdc_events_total",
                "Change events streamed (tombstones included).",
            ),
            rows_applied: counter(
                &r,
                "strangler_cdc_rows_applied_total",
                "Rows written to sinks.",
            ),
            dead_letters: counter(
                &r,
                "strangler_cdc_dead_letters_total",
                "Events set aside as dead letters.",
            ),
            published: counter(
                &r,
                "strangler_cdc_published_total",
                "Records acknowledged by Kafka.",
            ),
            confirmed: gauge(
                &r,
                "strangler_cdc_confirmed_lsn",
                "The slot's confirmed position (bytes).",
            ),
            source: gauge(
                &r,
                "strangler_cdc_source_lsn",
                "The source's current WAL position (bytes).",
            ),
            lag: gauge(
                &r,
                "strangler_cdc_lag_bytes",
                "Source position minus the confirmed position.",
            ),
            check_rows: gauge(
                &r,
                "strangler_cdc_snapshot_check_rows",
                "Rows compared with the sinks by the last post-snapshot check.",
            ),
            check_differences: gauge(
                &r,
                "strangler_cdc_snapshot_check_differences",
                "Rows that differed in the last post-snapshot check (alert when > 0).",
            ),
            retries: counter_by(
                &r,
                "strangler_cdc_retries_total",
                "Reconnections after a retryable error, by part (pipeline, source, sink).",
                "part",
            ),
            active: gauge(
                &r,
                "strangler_cdc_active",
                "1 while this process is the slot's active cdc run, 0 while it stands by.",
            ),
            slot_lost: gauge(
                &r,
                "strangler_cdc_slot_lost",
                "1 while the slot is gone although the destinations took changes from it (run `strangler cdc snapshot`).",
            ),
            retained_wal: gauge(
                &r,
                "strangler_cdc_slot_retained_wal_bytes",
                "WAL the source keeps for the slot: its current position minus the slot's restart position.",
            ),
            sink_applied: by_sink_table(
                &r,
                "strangler_cdc_sink_applied_lsn",
                "The last source position a sink applied of a table (bytes).",
            ),
            sink_lag: by_sink_table(
                &r,
                "strangler_cdc_sink_lag_bytes",
                "How far a sink's table is behind the source's current position (bytes).",
            ),
            sink_lag_seconds: registered(
                &r,
                prometheus::GaugeVec::new(
                    prometheus::Opts::new(
                        "strangler_cdc_sink_lag_seconds",
                        "How long the source has held a change a sink has not applied to a table (0 when caught up).",
                    ),
                    &["sink", "table"],
                ),
            ),
            table_events: counter_by(
                &r,
                "strangler_cdc_table_events_total",
                "Change events streamed, by source table.",
                "table",
            ),
            sink_rows: counter_by(
                &r,
                "strangler_cdc_sink_rows_applied_total",
                "Rows written to a sink.",
                "sink",
            ),
            applied_at: std::sync::Mutex::new(std::collections::HashMap::new()),
            source_seen: std::sync::Mutex::new(std::collections::VecDeque::new()),
            registry: r,
            last: std::sync::Mutex::new(Progress::default()),
        }))
    }

    /// Creates the series that only move on events at 0 (alerts and
    /// dashboards see them from the start).
    fn zeroed(self: Arc<Self>) -> Arc<Self> {
        for part in ["pipeline", "source", "sink"] {
            self.retries.with_label_values(&[part]);
        }
        self
    }

    /// Adds what changed since the last call.
    pub fn update(&self, p: &Progress) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.snapshot_rows
            .inc_by(p.snapshot_rows.saturating_sub(last.snapshot_rows));
        self.transactions
            .inc_by(p.transactions.saturating_sub(last.transactions));
        self.events.inc_by(p.events.saturating_sub(last.events));
        for (table, n) in &p.table_events {
            let before = last.table_events.get(table).copied().unwrap_or(0);
            self.table_events
                .with_label_values(&[table])
                .inc_by(n.saturating_sub(before));
        }
        for (sink, n) in &p.sink_rows {
            let before = last.sink_rows.get(sink).copied().unwrap_or(0);
            self.sink_rows
                .with_label_values(&[sink])
                .inc_by(n.saturating_sub(before));
        }
        self.rows_applied
            .inc_by(p.rows_applied.saturating_sub(last.rows_applied));
        self.dead_letters
            .inc_by(p.dead_letters.saturating_sub(last.dead_letters));
        self.published
            .inc_by(p.published.saturating_sub(last.published));
        self.confirmed.set(p.confirmed.as_i64());
        self.snapshot_expected
            .set(i64::try_from(p.snapshot_expected).unwrap_or(i64::MAX));
        for (table, t) in &p.snapshot_tables {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.snapshot_table_rows
                .with_label_values(&[table])
                .set(n(t.rows));
            self.snapshot_table_expected
                .with_label_values(&[table])
                .set(n(t.expected));
            self.snapshot_table_done
                .with_label_values(&[table])
                .set(i64::from(t.done));
        }
        self.behind_source.set(p.behind_ms as f64 / 1000.0);
        self.lag
            .set((self.source.get() - p.confirmed.as_i64()).max(0));
        *last = p.clone();
    }

    /// This process became the slot's active run (or a standby).
    pub fn role(&self, active: bool) {
        self.active.set(i64::from(active));
    }

    pub fn slot_lost(&self, lost: bool) {
        self.slot_lost.set(i64::from(lost));
    }

    pub fn retained_wal(&self, bytes: u64) {
        self.retained_wal
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A sink applied `table` through `lsn`: its position and lag.
    pub fn applied(&self, sink: &str, table: &str, lsn: i64) {
        self.sink_applied.with_label_values(&[sink, table]).set(lsn);
        self.sink_lag
            .with_label_values(&[sink, table])
            .set((self.source.get() - lsn).max(0));
        self.sink_lag_seconds
            .with_label_values(&[sink, table])
            .set(self.seconds_behind(lsn));
        self.applied_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((sink.to_string(), table.to_string()), lsn);
    }

    /// A part was reconnected after a retryable error.
    pub fn retried(&self, part: &str) {
        self.retries.with_label_values(&[part]).inc();
    }

    /// The outcome of a post-snapshot check of one sink (added up over sinks).
    pub fn snapshot_check(&self, checked: usize, differing: usize) {
        self.check_rows
            .add(i64::try_from(checked).unwrap_or(i64::MAX));
        self.check_differences
            .add(i64::try_from(differing).unwrap_or(i64::MAX));
    }

    pub fn source_position(&self, lsn: i64) {
        self.source.set(lsn);
        self.lag.set((lsn - self.confirmed.get()).max(0));
        {
            let mut seen = self
                .source_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.back().is_none_or(|(at, _)| *at < lsn) {
                seen.push_back((lsn, std::time::Instant::now()));
                if seen.len() > SOURCE_SEEN {
                    seen.pop_front();
                }
            }
        }
        let applied = self
            .applied_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((sink, table), at) in applied.iter() {
            self.sink_lag
                .with_label_values(&[sink, table])
                .set((lsn - at).max(0));
            self.sink_lag_seconds
                .with_label_values(&[sink, table])
                .set(self.seconds_behind(*at));
        }
    }

    /// Seconds since the source first held a position past `applied`
    /// (0 when it holds none): Debezium's "behind source", per sink and
    /// table, at the resolution of the source position's polling.
    fn seconds_behind(&self, applied: i64) -> f64 {
        let seen = self
            .source_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first_after = seen.partition_point(|(lsn, _)| *lsn <= applied);
        seen.get(first_after)
            .map_or(0.0, |(_, at)| at.elapsed().as_secs_f64())
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Whether the process is fit to be counted on: `Err(why)` while the
    /// slot is lost (nothing can be streamed until `cdc snapshot`).
    pub fn readiness(&self) -> Result<&'static str, &'static str> {
        if self.slot_lost.get() == 1 {
            return Err(
                "the slot is lost: run `strangler cdc snapshot` (see `strangler cdc status`)",
            );
        }
        Ok(if self.active.get() == 1 {
            "active"
        } else {
            "standby"
        })
    }

    /// Serves `GET /metrics`, `/livez` (the process runs) and `/readyz`
    /// (200 naming `active` or `standby`; 503 with why) on `addr` in the
    /// background.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("--metrics {addr}: {e}")))?;
        let me = self.clone();
        let ready = self.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let me = me.clone();
                    async move { me.render() }
                }),
            )
            .route("/livez", axum::routing::get(|| async { "ok\n" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let me = ready.clone();
                    async move {
                        match me.readiness() {
                            Ok(state) => (axum::http::StatusCode::OK, format!("ready: {state}\n")),
                            Err(why) => (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                format!("not ready: {why}\n"),
                            ),
                        }
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::TableProgress;

    #[test]
    fn lag_in_seconds_counts_from_the_first_change_a_sink_lacks() {
        let m = CdcMetrics::new("strangler", "shop");
        m.source_position(100);
        m.applied("svc", "public.t", 100);
        assert_eq!(m.seconds_behind(100), 0.0, "caught up");
        m.source_position(200);
        std::thread::sleep(std::time::Duration::from_millis(300));
        m.source_position(300);
        let behind = m.seconds_behind(100);
        assert!((0.3..5.0).contains(&behind), "since 200 appeared: {behind}");
        assert!(m.seconds_behind(200) < behind, "since 300 appeared");
        assert_eq!(m.seconds_behind(300), 0.0);
        let mut p = Progress::default();
        p.table_events.insert("public.t".into(), 5);
        m.update(&p);
        p.table_events.insert("public.t".into(), 7);
        p.count_applied("svc", 4);
        m.update(&p);
        p.count_applied("svc", 2);
        m.update(&p);
        let text = m.render();
        assert!(
            text.lines()
                .any(|l| l.starts_with("strangler_cdc_table_events_total")
                    && l.contains("table=\"public.t\"")
                    && l.ends_with(" 7")),
            "{text}"
        );
        assert!(text.contains("strangler_cdc_sink_lag_seconds"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("strangler_cdc_sink_rows_applied_total")
                    && l.contains("sink=\"svc\"")
                    && l.ends_with(" 6")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn probes_say_alive_and_whether_the_slot_can_be_streamed() {
        let m = CdcMetrics::new("strangler", "shop");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        m.serve(([127, 0, 0, 1], port).into()).await.expect("serve");
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        assert!(get("/livez").await.starts_with("HTTP/1.1 200"));
        let r = get("/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("ready: standby"),
            "{r}"
        );
        m.active.set(1);
        assert!(get("/readyz").await.contains("ready: active"));
        m.slot_lost.set(1);
        let r = get("/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 503") && r.contains("cdc snapshot"),
            "{r}"
        );
    }

    #[test]
    fn snapshot_progress_is_shown_per_table() {
        let m = CdcMetrics::new("strangler", "shop");
        let mut p = Progress::default();
        p.snapshot_tables.insert(
            "public.items".into(),
            TableProgress {
                rows: 1500,
                expected: 4000,
                done: false,
            },
        );
        p.snapshot_tables.insert(
            "public.users".into(),
            TableProgress {
                rows: 20,
                expected: 20,
                done: true,
            },
        );
        m.update(&p);
        let text = m.render();
        // Labels in any order: the slot and source (on every series) and the table.
        let value = |name: &str, table: &str| {
            text.lines().find_map(|l| {
                let (labels, v) = l.strip_prefix(name)?.strip_prefix('{')?.split_once("} ")?;
                let mut set: Vec<&str> = labels.split(',').collect();
                set.sort_unstable();
                let table = format!("table=\"{table}\"");
                (set == ["slot=\"strangler\"", "source=\"shop\"", table.as_str()])
                    .then(|| v.to_string())
            })
        };
        for (name, table, want) in [
            ("strangler_cdc_snapshot_table_rows", "public.items", "1500"),
            (
                "strangler_cdc_snapshot_table_rows_expected",
                "public.items",
                "4000",
            ),
            ("strangler_cdc_snapshot_table_done", "public.items", "0"),
            ("strangler_cdc_snapshot_table_done", "public.users", "1"),
        ] {
            assert_eq!(
                value(name, table).as_deref(),
                Some(want),
                "{name} {table} in\n{text}"
            );
        }
    }
}
