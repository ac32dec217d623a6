//! Prometheus metrics of `strangler cdc run --metrics ADDR`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::pipeline::Progress;
use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

/// The pipeline's counters, as Prometheus sees them.
pub struct CdcMetrics {
    registry: Registry,
    snapshot_rows: IntCounter,
    snapshot_expected: IntGauge,
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
    last: std::sync::Mutex<Progress>,
}

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

impl CdcMetrics {
    pub fn new() -> Arc<CdcMetrics> {
        let r = Registry::new();
        Arc::new(CdcMetrics {
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
            retries: {
                let c = prometheus::IntCounterVec::new(
                    prometheus::Opts::new(
                        "strangler_cdc_retries_total",
                        "Reconnections after a retryable error, by part (pipeline, source, sink).",
                    ),
                    &["part"],
                )
                .unwrap_or_else(|e| unreachable!("static metric: {e}"));
                r.register(Box::new(c.clone()))
                    .unwrap_or_else(|e| unreachable!("distinct metric: {e}"));
                c
            },
            registry: r,
            last: std::sync::Mutex::new(Progress::default()),
        })
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
        self.rows_applied
            .inc_by(p.rows_applied.saturating_sub(last.rows_applied));
        self.dead_letters
            .inc_by(p.dead_letters.saturating_sub(last.dead_letters));
        self.published
            .inc_by(p.published.saturating_sub(last.published));
        self.confirmed.set(p.confirmed.as_i64());
        self.snapshot_expected
            .set(i64::try_from(p.snapshot_expected).unwrap_or(i64::MAX));
        self.behind_source.set(p.behind_ms as f64 / 1000.0);
        self.lag
            .set((self.source.get() - p.confirmed.as_i64()).max(0));
        *last = p.clone();
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
    }

    fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Serves `GET /metrics` on `addr` in the background.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("--metrics {addr}: {e}")))?;
        let me = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let me = me.clone();
                async move { me.render() }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(())
    }
}
