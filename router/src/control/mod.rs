//! The control plane of one proxy, beside the data path on its own runtime:
//! admin API, state-store polling, config reload (file change and SIGHUP),
//! health checks, and draining on SIGTERM.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use strangler_config::Config;

mod sync;

pub use sync::refresh;

use crate::admin::{self, AdminState};
use crate::health::HealthCheckers;
use crate::runtime::Shared;
use crate::tls::{Refresh, ServedCertificate};
use strangler_state::store::StateStore;

/// How often the config file is looked at for changes.
const FILE_POLL: Duration = Duration::from_millis(500);

/// The control-plane background service.
pub struct Control {
    pub shared: Arc<Shared>,
    pub config_path: PathBuf,
    /// Bound before the server starts, so a busy port fails the start.
    pub admin_listener: Mutex<Option<std::net::TcpListener>>,
    pub credentials_slot: Mutex<Option<crate::admin::auth::Credentials>>,
    /// What the TLS listener serves, when there is one.
    pub certificate: Option<Arc<ServedCertificate>>,
}

#[async_trait]
impl BackgroundService for Control {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let config = self.shared.config.load_full();
        // Connects on first use: the proxy serves (from its cache) and the
        // admin API answers while the store is down.
        let store = match config
            .state
            .store_url()
            .map_err(|e| e.to_string())
            .and_then(|u| StateStore::lazy(u).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot use the state store URL");
                return;
            }
        };
        let listener = self
            .admin_listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .map(tokio::net::TcpListener::from_std);
        let mut admin_state = None;
        match listener {
            Some(Ok(l)) => {
                let credentials = self
                    .credentials_slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                let state = Arc::new(AdminState {
                    shared: self.shared.clone(),
                    store: store.clone(),
                    credentials: std::sync::RwLock::new(credentials.map(Arc::new)),
                    config_path: Some(self.config_path.clone()),
                    sessions: Default::default(),
                });
                admin_state = Some(state.clone());
                if let Some(o) = state.credentials().and_then(|c| c.oidc.clone()) {
                    tokio::spawn(async move {
                        loop {
                            match o.refresh().await {
                                Ok(n) => tracing::info!(keys = n, "OIDC key set fetched"),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot fetch the OIDC key set; JWTs fail until it answers")
                                }
                            }
                            tokio::time::sleep(crate::admin::oidc::REFRESH_EVERY).await;
                        }
                    });
                }
                let mut stop = shutdown.clone();
                tokio::spawn(admin::run(l, state, async move {
                    let _ = stop.changed().await;
                }));
            }
            Some(Err(e)) => tracing::error!(error = %e, "cannot serve the admin API"),
            None => {}
        }
        let mut health = HealthCheckers::new();
        health.reconcile(&self.shared, &config);
        tokio::spawn(sync::poll_store(self.shared.clone(), store.clone()));
        tokio::spawn(shadow_loop(self.shared.clone(), store.clone()));
        tokio::spawn(shed_loop(self.shared.clone()));
        tokio::spawn(rollback_loop(self.shared.clone(), store.clone()));

        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload on file change only");
                None
            }
        };
        let mut file = FileState::read(&self.config_path);
        let mut file_tick = tokio::time::interval(FILE_POLL);
        loop {
            let (reload, hangup_now) = tokio::select! {
                _ = file_tick.tick() => {
                    let now = FileState::read(&self.config_path);
                    let changed = now != file;
                    file = now;
                    (changed, false)
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    (true, true)
                }
                _ = shutdown.changed() => break,
            };
            if reload {
                if let Some(config) = self.reload() {
                    health.reconcile(&self.shared, &config);
                    self.shared.reconcile_due.store(true, Ordering::Relaxed);
                    if let Some(admin) = &admin_state {
                        reload_credentials(admin, &config);
                    }
                }
            }
            self.refresh_certificate(hangup_now);
        }
        drain(&self.shared, &store).await;
    }
}

impl Control {
    /// Serves the TLS listener's certificate files anew when they changed
    /// (or on SIGHUP); a pair that cannot be used leaves the old one.
    fn refresh_certificate(&self, force: bool) {
        let (Some(served), Some(tls)) = (&self.certificate, &self.shared.config.load().proxy.tls)
        else {
            return;
        };
        let result = match served.refresh(&tls.cert_file, &tls.key_file, force) {
            Refresh::Unchanged => return,
            Refresh::Swapped => {
                tracing::info!(cert = %tls.cert_file.display(), "TLS certificate reloaded; new connections get it");
                "ok"
            }
            Refresh::Kept(why) => {
                tracing::error!(error = %why, "TLS certificate not reloaded; the previous one keeps serving");
                "error"
            }
        };
        self.shared
            .metrics
            .certificate_reloads
            .with_label_values(&[result])
            .inc();
    }

    /// Loads the file; on error the running table keeps serving.
    fn reload(&self) -> Option<Arc<Config>> {
        match Config::load(&self.config_path) {
            Ok(new) => {
                let old = self.shared.config.load_full();
                for (what, changed) in [
                    ("proxy.listen", old.proxy.listen != new.proxy.listen),
                    ("proxy.h2c", old.proxy.h2c != new.proxy.h2c),
                    ("telemetry", old.telemetry != new.telemetry),
                    (
                        "proxy.tls",
                        old.proxy.tls.as_ref().map(|t| (t.listen, t.http2))
                            != new.proxy.tls.as_ref().map(|t| (t.listen, t.http2)),
                    ),
                    ("proxy.admin", old.proxy.admin != new.proxy.admin),
                    ("state", old.state.url != new.state.url),
                    ("proxy.threads", old.proxy.threads != new.proxy.threads),
                    (
                        "state.cache_file",
                        old.state.cache_file != new.state.cache_file,
                    ),
                    (
                        "proxy.metrics_public",
                        old.proxy.metrics_public != new.proxy.metrics_public,
                    ),
                ] {
                    if changed {
                        tracing::warn!(
                            key = what,
                            "changed in the file; it takes effect at the next restart"
                        );
                    }
                }
                self.shared.set_config(new);
                self.shared.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(
                    routes = self.shared.config.load().routes.len(),
                    "configuration reloaded"
                );
                Some(self.shared.config.load_full())
            }
            Err(errors) => {
                self.shared
                    .metrics
                    .reloads
                    .with_label_values(&["error"])
                    .inc();
                for e in &errors.0 {
                    tracing::error!(error = %e, "configuration rejected; the running configuration keeps serving");
                }
                None
            }
        }
    }
}

/// What tells a changed file apart: modification time, length, content hash.
#[derive(Debug, PartialEq)]
pub(crate) struct FileState(Option<(std::time::SystemTime, u64, u64)>);

impl FileState {
    pub(crate) fn read(path: &Path) -> FileState {
        let meta = std::fs::metadata(path).ok();
        let content = std::fs::read(path).ok();
        FileState(meta.zip(content).map(|(m, c)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            c.hash(&mut h);
            (
                m.modified().unwrap_or(std::time::UNIX_EPOCH),
                m.len(),
                h.finish(),
            )
        }))
    }
}

/// Reads the tokens file again after a reload.
fn reload_credentials(admin: &AdminState, config: &Config) {
    let env_token = config
        .proxy
        .admin_token_env
        .as_ref()
        .and_then(|v| std::env::var(v).ok())
        .filter(|t| !t.is_empty());
    match crate::admin::auth::Credentials::load(&config.proxy, env_token.as_deref()) {
        Ok(c) => admin.set_credentials(c),
        Err(e) => {
            tracing::error!(error = %e, "admin credentials not reloaded; the previous ones stay")
        }
    }
}

/// Refreshes the CDC positions (lag-aware comparison) every 200 ms and
/// flushes shadow statistics to the store every second.
async fn shadow_loop(shared: Arc<Shared>, store: StateStore) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for n in 0u64.. {
        tick.tick().await;
        match store.lag_view().await {
            Ok(v) if **shared.shadower.lag.load() != v => shared.shadower.lag.store(Arc::new(v)),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read CDC positions"),
        }
        if n % 5 == 4 {
            flush_shadow(&shared, &store).await;
        }
        if n % 25 == 24 {
            flush_inventory(&shared, &store).await;
        }
        if n % 50 == 10 {
            // Every 10 s: the migration gauges over the last 60 minutes.
            let config = shared.config.load_full();
            let now = strangler_state::store::now_ms();
            match crate::progress::window(&config, &store, now, now - 3_600_000).await {
                Ok(h) => shared.metrics.set_progress(&h),
                Err(e) => tracing::debug!(error = %e, "cannot read migration progress"),
            }
        }
    }
}

/// Closes a shadow-shedding window every 200 ms (its own loop: the store's
/// latency must not stretch the windows).
async fn shed_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was = 1.0;
    let mut cpu = crate::shadow::cpu::WorkerCpu::new();
    // The workers Pingora started (a reload changes `threads` only at the
    // next start), on the cores there are.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = shared.config.load().proxy.threads.min(cores) as f64;
    loop {
        tick.tick().await;
        let proxy = &shared.config.load().proxy;
        let shed = &shared.shadower.shed;
        let now = if proxy.shadow_shedding {
            let busy = cpu
                .cores()
                .map(|c| c >= crate::shadow::shed::BUSY_CORES * workers);
            let w = shed.tick(proxy.shadow_headroom, busy);
            if (w.admitted < 1.0) != (was < 1.0) && w.admitted > 0.0 {
                tracing::info!(
                    admitted = w.admitted,
                    median_ms = w.median_us.map(|u| u / 1000.0),
                    floor_ms = w.floor_us.map(|u| u / 1000.0),
                    "shadow shedding {}",
                    if w.admitted < 1.0 {
                        "started: the primary's latency is above its floor"
                    } else {
                        "ended"
                    }
                );
            }
            w.admitted
        } else {
            shed.disable();
            1.0
        };
        if now > 0.0 {
            was = now;
        }
        shared.metrics.shadow_admitted.set(now);
    }
}

/// Watches canaries and rolls one back to legacy when its service error
/// rate (fleet-wide, from the store) crosses its bound over its window.
async fn rollback_loop(shared: Arc<Shared>, store: StateStore) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let config = shared.config.load_full();
        let canaries: Vec<_> = config
            .routes
            .iter()
            .filter(|r| {
                shared
                    .effective(&r.name)
                    .is_some_and(|e| e.stage == strangler_config::Stage::Canary)
            })
            .collect();
        if canaries.is_empty() {
            continue;
        }
        for route in canaries {
            // Only what was counted under the route's current state counts
            // (the window starts at the later of its start and the change).
            let state_ms = shared
                .live_route(&route.name)
                .map_or(0, |l| l.updated_at_ms);
            let since = crate::usage::minute(
                strangler_state::store::now_ms() - route.promote.window.as_millis() as i64,
            );
            let Ok(usage) = store.usage_in_state(since, state_ms).await else {
                continue;
            };
            let counts = usage.get(&route.name).copied().unwrap_or_default();
            let Some(current) = shared.effective(&route.name) else {
                continue;
            };
            if let Some(reason) = crate::gates::should_roll_back(route, current, &counts) {
                let who = strangler_state::route_store::Who {
                    actor: "router:auto-rollback".into(),
                    reason: reason.clone(),
                    revision: config.revision.clone(),
                };
                match crate::gates::rollback(&store, route, who).await {
                    Ok(_) => {
                        shared
                            .metrics
                            .auto_rollbacks
                            .with_label_values(&[route.name.as_str()])
                            .inc();
                        tracing::warn!(route = %route.name, %reason, "rolled back and held at legacy");
                        if let Err(e) = sync::refresh(&shared, &store).await {
                            tracing::warn!(error = %e, "cannot read the route state back");
                        }
                    }
                    Err(e) => {
                        tracing::error!(route = %route.name, error = %e, "automatic rollback failed")
                    }
                }
            }
        }
    }
}

/// Adds this proxy's endpoint inventory to the fleet's (every 5 s).
async fn flush_inventory(shared: &Shared, store: &StateStore) {
    let counted = shared.inventory.take();
    if counted.is_empty() {
        return;
    }
    if let Err(e) = store.merge_inventory(&counted).await {
        tracing::warn!(error = %e, "cannot save the endpoint inventory; keeping it for the next flush");
        shared.inventory.restore(counted);
    }
}

/// Writes what this proxy learned to the store; keeps what fails for the next try.
async fn flush_shadow(shared: &Shared, store: &StateStore) {
    let usage = shared.usage.take();
    if !usage.is_empty() {
        if let Err(e) = store.merge_usage(&usage).await {
            tracing::warn!(error = %e, "cannot save route usage; keeping it for the next flush");
            shared.usage.restore(usage);
        }
    }
    let mut failed = std::collections::HashMap::new();
    for (route, delta) in shared.shadower.take_deltas() {
        if delta.is_empty() {
            continue;
        }
        if let Err(e) = store.merge_shadow(&route, &delta).await {
            tracing::warn!(route, error = %e, "cannot save shadow statistics; keeping them for the next flush");
            failed.insert(route, delta);
        }
    }
    if !failed.is_empty() {
        shared.shadower.restore_deltas(failed);
    }
}

/// SIGTERM: Pingora has stopped accepting; wait for in-flight requests to
/// finish (up to `proxy.drain_timeout_secs`), let shadow comparisons end,
/// save what they learned, then exit.
async fn drain(shared: &Arc<Shared>, store: &StateStore) {
    let timeout = shared.config.load().proxy.drain_timeout;
    let start = Instant::now();
    tracing::info!(
        inflight = shared.inflight.load(Ordering::Relaxed),
        "draining"
    );
    // Let the listeners close and requests already accepted get counted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while shared.inflight.load(Ordering::Relaxed) > 0 && start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shadow_deadline = Instant::now() + Duration::from_secs(2);
    while shared.shadower.inflight() > 0 && Instant::now() < shadow_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flush_shadow(shared, store).await;
    flush_inventory(shared, store).await;
    let left = shared.inflight.load(Ordering::Relaxed);
    tracing::info!(
        left,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "drained; exiting"
    );
    // Give the access-log writer a moment to flush its last lines, and
    // send the spans still queued (blocking: off this runtime's threads).
    tokio::time::sleep(Duration::from_millis(50)).await;
    if shared.traces.get().is_some() {
        let flush = tokio::task::spawn_blocking({
            let shared = shared.clone();
            move || {
                if let Some(t) = shared.traces.get() {
                    t.shutdown();
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(6), flush).await;
    }
    std::process::exit(0);
}
