//! The state the data path reads: an immutable [`Routing`] snapshot behind an
//! `ArcSwap`, rebuilt whenever the config file or the stored overrides change.
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
use strangler_state::route_state::{effective, Effective, Override};

/// An upstream as the data path needs it.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
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
    pub max_shadow_body_bytes: usize,
    pub max_shadow_inflight: u64,
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
    overrides: Mutex<Arc<Vec<Override>>>,
    health: Mutex<HashMap<String, Arc<AtomicBool>>>,
    pub metrics: Metrics,
    /// Requests being served (for draining on SIGTERM).
    pub inflight: AtomicI64,
    pub shadower: Arc<Shadower>,
    pub usage: crate::usage::Usage,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data behind.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(config: Config, overrides: Vec<Override>) -> Arc<Shared> {
        let health = Mutex::new(HashMap::new());
        let metrics = Metrics::new();
        let routing = build(&config, &overrides, &health, &metrics);
        Arc::new(Shared {
            routing: ArcSwap::from_pointee(routing),
            config: ArcSwap::from_pointee(config),
            overrides: Mutex::new(Arc::new(overrides)),
            health,
            metrics,
            inflight: AtomicI64::new(0),
            shadower: Arc::new(Shadower::new()),
            usage: crate::usage::Usage::default(),
        })
    }

    /// Installs a newly loaded config file.
    pub fn set_config(&self, config: Config) {
        let overrides = lock(&self.overrides).clone();
        // Build before publishing both so readers never see a mismatch for long.
        let routing = build(&config, &overrides, &self.health, &self.metrics);
        self.config.store(Arc::new(config));
        self.routing.store(Arc::new(routing));
    }

    /// Installs the overrides just read from the store.
    pub fn set_overrides(&self, overrides: Vec<Override>) {
        let mut current = lock(&self.overrides);
        if **current == overrides {
            return;
        }
        *current = Arc::new(overrides);
        let config = self.config.load();
        let routing = build(&config, &current, &self.health, &self.metrics);
        self.routing.store(Arc::new(routing));
    }

    /// The effective state of the route called `name`.
    pub fn effective(&self, name: &str) -> Option<Effective> {
        let config = self.config.load();
        let route = config.route(name)?;
        let overrides = lock(&self.overrides).clone();
        Some(effective(route, overrides.iter().find(|o| o.route == name)))
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
    overrides: &[Override],
    health: &Mutex<HashMap<String, Arc<AtomicBool>>>,
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
        .map(|u| UpstreamRuntime {
            name: Arc::from(u.name.as_str()),
            addr: u.resolve().unwrap_or_else(|e| {
                // Connecting fails (and falls back) until a rebuild resolves it.
                tracing::error!(upstream = %u.name, authority = %u.authority, error = %e, "cannot resolve upstream");
                SocketAddr::from(([0, 0, 0, 0], 0))
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
            let ov = overrides.iter().find(|o| o.route == r.name);
            let shadow = RouteShadow {
                rules: Arc::new(strangler_shadow::Rules::new(&r.compare)),
                percent: r.shadow_percent,
                methods: r.shadow_methods.clone(),
                aa_percent: r.compare.aa_percent,
                tables: r.tables.clone(),
            };
            CompiledRoute::new(
                r,
                i,
                r.service.as_deref().and_then(id_of),
                effective(r, ov),
                shadow,
            )
        })
        .collect();
    Routing {
        table: RouteTable::new(routes),
        upstreams,
        override_header: config
            .proxy
            .override_header
            .as_deref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        access_log: config.proxy.access_log,
        max_shadow_body_bytes: usize::try_from(config.proxy.max_shadow_body_bytes)
            .unwrap_or(usize::MAX),
        max_shadow_inflight: config.proxy.max_shadow_inflight,
    }
}
