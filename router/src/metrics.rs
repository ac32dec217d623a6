//! Prometheus metrics of the router, served on the admin listener.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the router exports.
pub struct Metrics {
    registry: Registry,
    /// `strangler_requests_total{route,target,code}`
    pub requests: IntCounterVec,
    /// `strangler_request_duration_seconds{route,target}`
    pub duration: HistogramVec,
    /// `strangler_fallbacks_total{route,reason}`
    pub fallbacks: IntCounterVec,
    /// `strangler_retries_refused_total{route}`: fallbacks the retry budget
    /// refused (the client got the service's answer).
    pub retries_refused: IntCounterVec,
    /// `strangler_upstream_up{upstream}`
    pub upstream_up: IntGaugeVec,
    /// `strangler_config_reloads_total{result}`
    pub reloads: IntCounterVec,
    /// `strangler_tls_certificate_reloads_total{result}`
    pub certificate_reloads: IntCounterVec,
    /// `strangler_shadow_total{route,outcome}`
    pub shadow: IntCounterVec,
    /// `strangler_shadow_admitted_ratio`: the share of eligible requests
    /// copied now (below 1 while shadow shedding protects the primary).
    pub shadow_admitted: prometheus::Gauge,
    /// `strangler_store_retries_total{operation}`
    pub store_retries: IntCounterVec,
    /// `strangler_degraded`: 1 while the store is unreachable.
    pub degraded: IntGauge,
    /// `strangler_route_percent{route,state}`: the share of a route's
    /// traffic on the service, as the file declares it (`declared`) and as
    /// the fleet runs it (`effective`).
    pub route_percent: prometheus::GaugeVec,
    /// `strangler_route_held{route}`: 1 while a rollback holds the route.
    pub route_held: IntGaugeVec,
    /// `strangler_auto_rollbacks_total{route}`: rollbacks this proxy made.
    pub auto_rollbacks: IntCounterVec,
    /// `strangler_store_duration_seconds{operation}`: how long the state
    /// store takes (`poll`: one round of the proxy's store poller).
    pub store_duration: HistogramVec,
    /// `strangler_route_state{route,declared,effective,origin}`: the
    /// effective percent, labelled with the file's stage and the origin.
    pub route_state: IntGaugeVec,
    /// `strangler_migration_routes{stage}`: the configured routes in each
    /// effective stage (`progress.rs`).
    pub migration_routes: IntGaugeVec,
    /// `strangler_migration_requests_ratio{stage}`: the fleet's requests of
    /// the last 60 minutes by the stage their route was in (`unrouted`: no
    /// route matched).
    pub migration_requests: prometheus::GaugeVec,
    /// `strangler_migration_served_ratio`: the share of the fleet's requests
    /// of the last 60 minutes that new services answered.
    pub migration_served: prometheus::Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "strangler_requests_total",
                "Requests answered, by route, target upstream and status code.",
            ),
            &["route", "target", "code"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "strangler_request_duration_seconds",
                "Time from request to the end of the response, by route and target upstream.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route", "target"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "strangler_fallbacks_total",
                "Requests meant for a service that the monolith answered instead, by route and reason.",
            ),
            &["route", "reason"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let retries_refused = IntCounterVec::new(
            Opts::new(
                "strangler_retries_refused_total",
                "Fallbacks to the monolith the route's retry budget refused, by route.",
            ),
            &["route"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "strangler_upstream_up",
                "1 when the upstream passes its active health check, else 0.",
            ),
            &["upstream"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let reloads = IntCounterVec::new(
            Opts::new(
                "strangler_config_reloads_total",
                "Configuration reloads, by result (ok or error).",
            ),
            &["result"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let certificate_reloads = IntCounterVec::new(
            Opts::new(
                "strangler_tls_certificate_reloads_total",
                "Reads of the TLS listener's changed certificate files, by result (ok, or error: the previous certificate kept serving).",
            ),
            &["result"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let shadow_admitted = prometheus::Gauge::new(
            "strangler_shadow_admitted_ratio",
            "Share of shadow-eligible requests copied now; below 1 while shedding protects the primary.",
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        shadow_admitted.set(1.0);
        let shadow = IntCounterVec::new(
            Opts::new(
                "strangler_shadow_total",
                "Shadowed requests by route and outcome: match, mismatch, stale, aa, skipped_*.",
            ),
            &["route", "outcome"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let store_retries = IntCounterVec::new(
            Opts::new(
                "strangler_store_retries_total",
                "State-store calls that failed with a retryable error and were tried again, by operation.",
            ),
            &["operation"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let degraded = IntGauge::new(
            "strangler_degraded",
            "1 while the state store is unreachable and the proxy serves its last known (or cached) route state.",
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let route_state = IntGaugeVec::new(
            Opts::new(
                "strangler_route_state",
                "Per route: the effective percent on the service, labelled with the stage the file declares, the effective stage and where it comes from (file, runtime, hold).",
            ),
            &["route", "declared", "effective", "origin"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let route_percent = prometheus::GaugeVec::new(
            Opts::new(
                "strangler_route_percent",
                "Per route: the percent of its traffic on the service, as declared by the file (state=declared) and as the fleet runs it (state=effective).",
            ),
            &["route", "state"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let route_held = IntGaugeVec::new(
            Opts::new(
                "strangler_route_held",
                "Per route: 1 while a rollback holds it at legacy (until `strangler route resume`).",
            ),
            &["route"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let auto_rollbacks = IntCounterVec::new(
            Opts::new(
                "strangler_auto_rollbacks_total",
                "Automatic rollbacks this proxy made (the route's error rate passed its promote.rollback_error_rate).",
            ),
            &["route"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "strangler_store_duration_seconds",
                "Time the state store takes, by operation (poll: one round of the proxy's store poller; failed rounds included).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["operation"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let migration_routes = IntGaugeVec::new(
            Opts::new(
                "strangler_migration_routes",
                "Configured routes in each effective stage (legacy, shadow, canary, migrated).",
            ),
            &["stage"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let migration_requests = prometheus::GaugeVec::new(
            Opts::new(
                "strangler_migration_requests_ratio",
                "Share of the fleet's requests of the last 60 minutes by the stage of the route that took them (unrouted: no route matched).",
            ),
            &["stage"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let migration_served = prometheus::Gauge::new(
            "strangler_migration_served_ratio",
            "Share of the fleet's requests of the last 60 minutes that new services answered.",
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        for stage in ["legacy", "shadow", "canary", "migrated"] {
            migration_routes.with_label_values(&[stage]);
            migration_requests.with_label_values(&[stage]);
        }
        migration_requests.with_label_values(&["unrouted"]);
        for m in [
            Box::new(store_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(migration_routes.clone()),
            Box::new(migration_requests.clone()),
            Box::new(migration_served.clone()),
            Box::new(route_percent.clone()),
            Box::new(route_held.clone()),
            Box::new(auto_rollbacks.clone()),
            Box::new(requests.clone()),
            Box::new(degraded.clone()),
            Box::new(route_state.clone()),
            Box::new(store_retries.clone()),
            Box::new(duration.clone()),
            Box::new(fallbacks.clone()),
            Box::new(retries_refused.clone()),
            Box::new(upstream_up.clone()),
            Box::new(reloads.clone()),
            Box::new(certificate_reloads.clone()),
            Box::new(shadow.clone()),
            Box::new(shadow_admitted.clone()),
        ] {
            registry
                .register(m)
                .unwrap_or_else(|e| unreachable!("metric names are distinct: {e}"));
        }
        // Series that exist from the start at 0 (so that `rate` and alerts
        // see the first event, and dashboards find them).
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
            certificate_reloads.with_label_values(&[result]);
        }
        store_retries.with_label_values(&["poll"]);
        store_duration.with_label_values(&["poll"]);
        Metrics {
            registry,
            requests,
            duration,
            fallbacks,
            retries_refused,
            upstream_up,
            reloads,
            certificate_reloads,
            shadow,
            shadow_admitted,
            store_retries,
            degraded,
            route_state,
            route_percent,
            route_held,
            auto_rollbacks,
            store_duration,
            migration_routes,
            migration_requests,
            migration_served,
        }
    }

    /// Sets the migration gauges from the progress of the last 60 minutes.
    pub fn set_progress(&self, last_hour: &crate::progress::Hour) {
        for stage in ["legacy", "shadow", "canary", "migrated"] {
            self.migration_routes
                .with_label_values(&[stage])
                .set(last_hour.routes.get(stage).copied().unwrap_or(0) as i64);
        }
        for stage in [
            "legacy",
            "shadow",
            "canary",
            "migrated",
            crate::progress::UNROUTED,
        ] {
            self.migration_requests
                .with_label_values(&[stage])
                .set(last_hour.stage_share(stage));
        }
        self.migration_served.set(last_hour.served_share());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A route's series for one target, looked up once per routing snapshot
/// instead of hashing the labels on every request.
#[derive(Debug)]
pub struct Series {
    /// `strangler_requests_total{route,target,code="200"}`
    pub ok: prometheus::IntCounter,
    pub duration: prometheus::Histogram,
}

impl Metrics {
    /// Counts a finished request; `cached` holds the route and target's
    /// series (filled on first use).
    pub fn record_request(
        &self,
        cached: Option<&std::sync::OnceLock<Series>>,
        route: &str,
        target: &str,
        status: u16,
        seconds: f64,
    ) {
        let Some(cell) = cached else {
            self.requests
                .with_label_values(&[route, target, &status.to_string()])
                .inc();
            self.duration
                .with_label_values(&[route, target])
                .observe(seconds);
            return;
        };
        let series = cell.get_or_init(|| Series {
            ok: self.requests.with_label_values(&[route, target, "200"]),
            duration: self.duration.with_label_values(&[route, target]),
        });
        if status == 200 {
            series.ok.inc();
        } else {
            self.requests
                .with_label_values(&[route, target, &status.to_string()])
                .inc();
        }
        series.duration.observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
