//! Active health checks: `GET health_path` on an interval; an upstream is
//! down after `unhealthy_threshold` failures in a row and up again after
//! `healthy_threshold` successes. While a service is down, routes with
//! `fallback` send its traffic to the monolith (see `RouteTable::decide`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use strangler_config::{Config, HealthCheck, Upstream};
use tokio::task::JoinSet;

use crate::runtime::Shared;

/// Runs one checker task per upstream that has a health check.
pub struct HealthCheckers {
    tasks: JoinSet<()>,
    /// What the running tasks were started for.
    started_for: Vec<Upstream>,
}

impl HealthCheckers {
    pub fn new() -> Self {
        HealthCheckers {
            tasks: JoinSet::new(),
            started_for: Vec::new(),
        }
    }

    /// (Re)starts checkers when the upstreams in `config` changed.
    pub fn reconcile(&mut self, shared: &Arc<Shared>, config: &Config) {
        let wanted: Vec<Upstream> = config
            .upstreams
            .values()
            .filter(|u| u.health.is_some())
            .cloned()
            .collect();
        if wanted == self.started_for {
            return;
        }
        self.tasks.abort_all();
        let client = match reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the health-check client; health checks are off");
                return;
            }
        };
        for up in &wanted {
            if let Some(check) = up.health.clone() {
                let flag = shared.health_flag(&up.name);
                let shared = shared.clone();
                let client = match &up.tls {
                    Some(tls) => match tls_client(up, tls) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::error!(upstream = %up.name, error = %e, "cannot set up TLS for the health check; it fails until the file is fixed");
                            crate::tls::TlsUpstream::refusing(tls, &up.authority).client
                        }
                    },
                    None => client.clone(),
                };
                let up = up.clone();
                self.tasks
                    .spawn(async move { run(shared, client, up, check, flag).await });
            }
        }
        self.started_for = wanted;
    }
}

/// The health-check client of an `https://` upstream: its CA file's roots.
fn tls_client(
    up: &Upstream,
    tls: &strangler_config::UpstreamTls,
) -> Result<reqwest::Client, String> {
    let addr = up.resolve().map_err(|e| e.to_string())?;
    Ok(crate::tls::TlsUpstream::new(tls, &up.authority, addr)?.client)
}

impl Default for HealthCheckers {
    fn default() -> Self {
        HealthCheckers::new()
    }
}

async fn run(
    shared: Arc<Shared>,
    client: reqwest::Client,
    up: Upstream,
    check: HealthCheck,
    flag: Arc<std::sync::atomic::AtomicBool>,
) {
    let url = format!("{}{}", up.base_url(), check.path);
    let (mut failures, mut successes) = (0u32, 0u32);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = client
            .get(&url)
            .header(http::header::HOST, up.authority.as_str())
            .header("user-agent", "strangler-health-check")
            .timeout(check.timeout)
            .send()
            .await;
        let ok = matches!(&result, Ok(r) if r.status().is_success());
        let was_up = flag.load(Ordering::Relaxed);
        if ok {
            failures = 0;
            successes = successes.saturating_add(1);
            if !was_up && successes >= check.healthy_threshold {
                flag.store(true, Ordering::Relaxed);
                shared
                    .metrics
                    .upstream_up
                    .with_label_values(&[&up.name])
                    .set(1);
                tracing::info!(upstream = %up.name, "upstream is up");
            }
        } else {
            successes = 0;
            failures = failures.saturating_add(1);
            if was_up && failures >= check.unhealthy_threshold {
                flag.store(false, Ordering::Relaxed);
                shared
                    .metrics
                    .upstream_up
                    .with_label_values(&[&up.name])
                    .set(0);
                let why = match result {
                    Ok(r) => format!("status {}", r.status()),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(upstream = %up.name, %why, "upstream is down");
            }
        }
    }
}
