//! Keeping one proxy in step with the fleet through the state store:
//! reading the route rows (and caching them), reconciling this proxy's file
//! with the fleet's state, reporting the config revision it runs, and
//! riding out a store outage with backoff while `/readyz` says degraded.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::Shared;
use strangler_state::store::StateStore;
use strangler_state::{RouteStore, StoreError};

/// Reads the fleet's route rows and installs them (and the cache) when
/// they changed.
pub async fn refresh(shared: &Shared, store: &StateStore) -> Result<(), StoreError> {
    let rows = store.routes().await?;
    let cache = shared.config.load().state.cache_file.clone();
    if shared.set_live(rows) {
        if let Err(e) = crate::cache::write(&cache, &shared.live()) {
            tracing::warn!(file = %cache.display(), error = %e, "cannot write the route-state cache");
        }
    }
    Ok(())
}

/// Brings this proxy's file to the fleet (`gates::reconcile`): on start,
/// after a reload, and while a declaration waits for its gates.
async fn reconcile(shared: &Shared, store: &StateStore) -> Result<(), StoreError> {
    let config = shared.config.load_full();
    for u in crate::gates::reconcile::apply(&config, store).await? {
        if let Some(e) = u.entry() {
            tracing::warn!(route = %e.route, from = %e.before, to = %e.after, reason = %e.reason, "the file's declaration met the fleet");
        }
    }
    Ok(())
}

/// Whether a route's declaration waits for its gates.
fn waiting(shared: &Shared) -> bool {
    shared
        .live()
        .iter()
        .any(|l| l.origin == strangler_state::route_state::Origin::File && l.target() != l.declared)
}

/// This proxy's name in the fleet: host and admin port.
fn proxy_id(shared: &Shared) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "proxy".into());
    format!("{host}:{}", shared.config.load().proxy.admin.port())
}

/// Follows changes made by other proxies and the CLI, reconciles this
/// proxy's file, and reports the revision it runs. While the store fails
/// with a retryable error (unreachable, restarting) the proxy keeps
/// serving the last known state (`/readyz` says degraded) and tries again
/// with backoff, logging and counting every retry; a fatal error is logged
/// and polling goes on at the normal pace.
pub(super) async fn poll_store(shared: Arc<Shared>, store: StateStore) {
    let mut last_version = None;
    let mut retries: Option<(u32, Box<dyn Iterator<Item = Duration> + Send>)> = None;
    let mut last_resolve = Instant::now();
    let mut last_seen: Option<Instant> = None;
    let mut last_retry_gates = Instant::now();
    let mut first = true;
    // Failed rounds since the store last answered.
    let mut failures: Option<u32> = None;
    loop {
        let interval = shared.config.load().state.poll_interval;
        let wait = match retries.as_mut() {
            Some((_, delays)) => delays.next().unwrap_or(interval).max(interval),
            None => interval,
        };
        if !first {
            tokio::time::sleep(wait).await;
        }
        first = false;
        // Upstream names are resolved when a table is built: rebuild now and
        // then so DNS changes (a rescheduled pod) are picked up.
        if last_resolve.elapsed() > Duration::from_secs(30) {
            last_resolve = Instant::now();
            let config = (*shared.config.load_full()).clone();
            shared.set_config(config);
        }
        let began = Instant::now();
        let result = async {
            if shared.reconcile_due.swap(false, Ordering::Relaxed)
                || (waiting(&shared) && last_retry_gates.elapsed() > GATE_RETRY)
            {
                last_retry_gates = Instant::now();
                if let Err(e) = reconcile(&shared, &store).await {
                    shared.reconcile_due.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            let v = store.version().await?;
            if last_version != Some(v) {
                refresh(&shared, &store).await?;
                last_version = Some(v);
            }
            if last_seen.is_none_or(|t| t.elapsed() > SEEN_EVERY) {
                let config = shared.config.load();
                store
                    .proxy_seen(&proxy_id(&shared), &config.revision)
                    .await?;
                last_seen = Some(Instant::now());
            }
            Ok::<_, StoreError>(())
        }
        .await;
        shared
            .metrics
            .store_duration
            .with_label_values(&["poll"])
            .observe(began.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                retries = None;
                if let Some(n) = failures.take() {
                    tracing::info!(failures = n, "the state store answers again");
                }
                if shared.degraded().is_some() {
                    tracing::info!("the state store answers; route state caught up, ready");
                    shared.set_degraded(None);
                }
            }
            Err(e) if e.is_retryable() => {
                *failures.get_or_insert(0) += 1;
                let (n, _) =
                    retries.get_or_insert_with(|| (0, Box::new(strangler_state::retry::delays())));
                *n += 1;
                shared
                    .metrics
                    .store_retries
                    .with_label_values(&["poll"])
                    .inc();
                if shared.degraded().is_none() {
                    shared.set_degraded(Some(format!(
                        "state store unreachable ({e}); serving the last known route state"
                    )));
                }
                tracing::warn!(error = %e, retry = *n, "cannot read the state store (retryable); serving the last known route state and trying again with backoff");
            }
            Err(e) => {
                *failures.get_or_insert(0) += 1;
                retries = None;
                tracing::error!(error = %e, "cannot read the state store (not retryable); serving the last known route state");
            }
        }
    }
}

/// How often a proxy reports the revision it runs.
const SEEN_EVERY: Duration = Duration::from_secs(5);
/// How often a declaration held by its gates is tried again.
const GATE_RETRY: Duration = Duration::from_secs(10);
