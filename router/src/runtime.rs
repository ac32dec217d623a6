//! The state the data path reads: an immutable [`Routing`] snapshot behind an
//! `ArcSwap`, rebuilt whenever the config file or the fleet's route rows change.
//!
//! Invariant: a request reads one snapshot for its whole life, so a change
//! never splits a request between two tables; the next request sees it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use strangler_config::{Config, LEGACY};

use crate::metrics::Metrics;
use crate::shadow::{RouteShadow, Shadower};
use crate::table::{CompiledRoute, RouteTable, UpstreamId, LEGACY_ID};
use strangler_state::route_state::{effective, Effective, LiveRoute};

/// An upstream as the data path needs it.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Set for an `https://` upstream.
    pub tls: Option<Arc<crate::tls::TlsUpstream>>,
    /// Health as seen by the active checker; always true without one.
    pub up: Arc<AtomicBool>,
}

impl UpstreamRuntime {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// One immutable routing snapshot.
#[derive(Debug)]
pub struct Routing {
    pub table: RouteTable,
    /// Index [`LEGACY_ID`] is the monolith.
    pub upstreams: Vec<UpstreamRuntime>,
    pub override_header: Option<HeaderName>,
    pub access_log: bool,
    /// Count requests into the endpoint inventory.
    pub inventory: bool,
    pub max_shadow_body_bytes: usize,
    pub max_shadow_inflight: u64,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Metric series by route index (the last: the default route), for
    /// the monolith (0) and the route's service (1).
    pub series: Vec<[std::sync::OnceLock<crate::metrics::Series>; 2]>,
}

impl Routing {
    /// The upstream a route's service resolves to.
    pub fn upstream(&self, id: UpstreamId) -> &UpstreamRuntime {
        // Ids come from the same snapshot, so they are always in range.
        &self.upstreams[id.min(self.upstreams.len() - 1)]
    }
}

/// Everything the proxy, the admin API and the control loops share.
pub struct Shared {
    pub routing: ArcSwap<Routing>,
    pub config: ArcSwap<Config>,
    live: Mutex<Arc<Vec<LiveRoute>>>,
    /// Why the proxy is not fully ready (the store unreachable, running
    /// from its cache); `None` when it is.
    degraded: Mutex<Option<String>>,
    health: Mutex<HashMap<String, Arc<AtomicBool>>>,
    limiters: crate::limits::Limiters,
    pub metrics: Metrics,
    /// Requests being served (for draining on SIGTERM).
    pub inflight: AtomicI64,
    pub shadower: Arc<Shadower>,
    pub usage: crate::usage::Usage,
    /// Requests by method and inferred template since the last flush.
    pub inventory: crate::inventory::Recorder,
    /// The file must be brought to the fleet (start, reload).
    pub reconcile_due: AtomicBool,
    /// Set at start when `[telemetry]` is configured.
    pub traces: std::sync::OnceLock<crate::traces::Traces>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data behind.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(config: Config, live: Vec<LiveRoute>) -> Arc<Shared> {
        let health = Mutex::new(HashMap::new());
        let limiters = crate::limits::Limiters::default();
        let metrics = Metrics::new();
        let routing = build(&config, &live, (&health, &limiters), &metrics);
        Arc::new(Shared {
            routing: ArcSwap::from_pointee(routing),
            config: ArcSwap::from_pointee(config),
            live: Mutex::new(Arc::new(live)),
            degraded: Mutex::new(None),
            health,
            limiters,
            metrics,
            inflight: AtomicI64::new(0),
            shadower: Arc::new(Shadower::new()),
            usage: crate::usage::Usage::default(),
            inventory: crate::inventory::Recorder::default(),
            reconcile_due: AtomicBool::new(true),
            traces: std::sync::OnceLock::new(),
        })
    }

    /// Installs a newly loaded config file.
    pub fn set_config(&self, config: Config) {
        let live = lock(&self.live).clone();
        // Build before publishing both so readers never see a mismatch for long.
        let routing = build(
            &config,
            &live,
            (&self.health, &self.limiters),
            &self.metrics,
        );
        self.config.store(Arc::new(config));
        self.routing.store(Arc::new(routing));
    }

    /// Installs the route rows just read from the store (or the cache);
    /// `true` when they differ from the ones installed.
    pub fn set_live(&self, live: Vec<LiveRoute>) -> bool {
        let mut current = lock(&self.live);
        if **current == live {
            return false;
        }
        *current = Arc::new(live);
        let config = self.config.load();
        let routing = build(
            &config,
            &current,
            (&self.health, &self.limiters),
            &self.metrics,
        );
        self.routing.store(Arc::new(routing));
        true
    }

    /// The route rows installed.
    pub fn live(&self) -> Arc<Vec<LiveRoute>> {
        lock(&self.live).clone()
    }

    /// The stored row of route `name`, if any.
    pub fn live_route(&self, name: &str) -> Option<LiveRoute> {
        lock(&self.live).iter().find(|l| l.route == name).cloned()
    }

    /// Marks the proxy degraded (with why) or ready (`None`).
    pub fn set_degraded(&self, why: Option<String>) {
        self.metrics.degraded.set(i64::from(why.is_some()));
        *lock(&self.degraded) = why;
    }

    /// Why the proxy is degraded, if it is.
    pub fn degraded(&self) -> Option<String> {
        lock(&self.degraded).clone()
    }

    /// The effective state of the route called `name`.
    pub fn effective(&self, name: &str) -> Option<Effective> {
        let config = self.config.load();
        let route = config.route(name)?;
        let live = lock(&self.live).clone();
        Some(effective(route, live.iter().find(|o| o.route == name)))
    }

    /// The health flag of upstream `name` (created up).
    pub fn health_flag(&self, name: &str) -> Arc<AtomicBool> {
        health_flag(&self.health, &self.metrics, name)
    }
}

fn health_flag(
    health: &Mutex<HashMap<String, Arc<AtomicBool>>>,
    metrics: &Metrics,
    name: &str,
) -> Arc<AtomicBool> {
    lock(health)
        .entry(name.to_string())
        .or_insert_with(|| {
            metrics.upstream_up.with_label_values(&[name]).set(1);
            Arc::new(AtomicBool::new(true))
        })
        .clone()
}

fn build(
    config: &Config,
    live: &[LiveRoute],
    (health, limiters): (
        &Mutex<HashMap<String, Arc<AtomicBool>>>,
        &crate::limits::Limiters,
    ),
    metrics: &Metrics,
) -> Routing {
    // Legacy first, so that LEGACY_ID (0) is the monolith.
    let mut names: Vec<&String> = config
        .upstreams
        .keys()
        .filter(|n| n.as_str() != LEGACY)
        .collect();
    if let Some((legacy, _)) = config.upstreams.get_key_value(LEGACY) {
        names.insert(LEGACY_ID, legacy);
    }
    let upstreams: Vec<UpstreamRuntime> = names
        .iter()
        .filter_map(|n| config.upstreams.get(*n))
        .map(|u| {
            let addr = u.resolve().unwrap_or_else(|e| {
                // Connecting fails (and falls back) until a rebuild resolves it.
                tracing::error!(upstream = %u.name, authority = %u.authority, error = %e, "cannot resolve upstream");
                SocketAddr::from(([0, 0, 0, 0], 0))
            });
            (u, addr)
        })
        .map(|(u, addr)| UpstreamRuntime {
            name: Arc::from(u.name.as_str()),
            addr,
            tls: u.tls.as_ref().map(|t| {
                Arc::new(
                    crate::tls::TlsUpstream::new(t, &u.authority, addr).unwrap_or_else(|e| {
                        tracing::error!(upstream = %u.name, error = %e, "cannot set up TLS to the upstream; its requests fail until the file is fixed");
                        crate::tls::TlsUpstream::refusing(t, &u.authority)
                    }),
                )
            }),
            connect_timeout: u.connect_timeout,
            read_timeout: u.read_timeout,
            up: if u.health.is_some() {
                health_flag(health, metrics, &u.name)
            } else {
                Arc::new(AtomicBool::new(true))
            },
        })
        .collect();
    let id_of = |name: &str| upstreams.iter().position(|u| &*u.name == name);
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let ov = live.iter().find(|o| o.route == r.name);
            let shadow = RouteShadow {
                rules: Arc::new(strangler_shadow::Rules::new(&r.compare)),
                percent: r.shadow_percent,
                methods: r.shadow_methods.clone(),
                aa_percent: r.compare.aa_percent,
                tables: r.tables.clone(),
            };
            let mut c = CompiledRoute::new(
                r,
                i,
                r.service.as_deref().and_then(id_of),
                effective(r, ov),
                shadow,
            );
            c.state_ms = ov.map_or(0, |l| l.updated_at_ms);
            c.rate_limit = r
                .rate_limit
                .as_ref()
                .map(|l| limiters.for_route(&r.name, l));
            c.retry_budget = Some(limiters.budget_for(&r.name, r.retry_budget));
            c
        })
        .collect();
    metrics.route_state.reset();
    metrics.route_percent.reset();
    metrics.route_held.reset();
    let on_service = |stage: strangler_config::Stage, percent: f64| match stage {
        strangler_config::Stage::Migrated => 100.0,
        strangler_config::Stage::Canary => percent,
        _ => 0.0,
    };
    for r in &config.routes {
        let e = effective(r, live.iter().find(|o| o.route == r.name));
        let percent = on_service(e.stage, e.percent).round() as i64;
        metrics
            .route_percent
            .with_label_values(&[r.name.as_str(), "declared"])
            .set(on_service(r.stage, r.percent));
        metrics
            .route_percent
            .with_label_values(&[r.name.as_str(), "effective"])
            .set(on_service(e.stage, e.percent));
        metrics.auto_rollbacks.with_label_values(&[r.name.as_str()]);
        metrics
            .route_held
            .with_label_values(&[r.name.as_str()])
            .set(i64::from(
                e.origin == strangler_state::route_state::Origin::Hold,
            ));
        metrics
            .route_state
            .with_label_values(&[
                r.name.as_str(),
                r.stage.as_str(),
                e.stage.as_str(),
                e.origin.as_str(),
            ])
            .set(percent);
    }
    let series = (0..=config.routes.len())
        .map(|_| Default::default())
        .collect();
    Routing {
        series,
        table: RouteTable::new(routes),
        upstreams,
        override_header: config
            .proxy
            .override_header
            .as_deref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        access_log: config.proxy.access_log,
        inventory: config.proxy.inventory,
        max_shadow_body_bytes: usize::try_from(config.proxy.max_shadow_body_bytes)
            .unwrap_or(usize::MAX),
        max_shadow_inflight: config.proxy.max_shadow_inflight,
        trusted_proxies: config.proxy.trusted_proxies.clone(),
    }
}
