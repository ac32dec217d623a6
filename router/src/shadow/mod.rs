//! Shadow traffic: the monolith answers the client while the service gets
//! a copy of the same request; the two responses are compared off the
//! request path.
//!
//! ```text
//! request_filter ─ plan? (stage shadow, method in shadow_methods,
//!                         shadow_percent, inflight slot, body size)
//!     │  no request body ─────────────────────▶ spawn ShadowJob ──▶ candidate
//! request_body_filter ─ tee (≤ max bytes); end ─▶ spawn ShadowJob      │
//! response_filter / response_body_filter ─ tee the primary response    │
//!     │  end of stream ─ oneshot ───────────────────────────────▶ compare
//!     ▼                                                        (+ A/A, lag re-check)
//! client gets the primary's bytes, untouched                      record → flush → store
//! ```
//!
//! Invariant: the shadow path never touches the primary response: it only
//! clones `Bytes` (reference counts) into its buffers, never waits on the
//! candidate, and a shadow failure is only ever counted.
//! Migrated routes with `shadow_percent > 0` are reverse-shadowed: the
//! service is primary and the monolith the candidate.

pub mod cpu;
mod job;
pub mod lag;
pub mod plan;
pub mod shed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Method;
use strangler_shadow::{Response, RouteStats, Rules, Skip};
use tokio::sync::oneshot;

pub use job::{JobContext, ShadowJob};
pub use lag::LagView;

use crate::metrics::Metrics;

/// Which side answers the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Stage shadow: the monolith answers, the service is the candidate.
    Forward,
    /// Stage migrated: the service answers, the monolith is the candidate.
    Reverse,
}

/// Shared shadow machinery of one proxy.
pub struct Shadower {
    pub(crate) client: reqwest::Client,
    /// Shadow work runs on its own thread, never on the proxy's: a slow
    /// candidate or a big comparison cannot hold up a primary request.
    runtime: Option<tokio::runtime::Runtime>,
    inflight: AtomicU64,
    /// What this proxy learned since the last flush, per route.
    deltas: Mutex<HashMap<String, RouteStats>>,
    /// CDC positions, refreshed by the control loop.
    pub lag: ArcSwap<LagView>,
    /// Admits copies while the proxy has headroom.
    pub shed: shed::Shedder,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shadower {
    pub fn new() -> Shadower {
        let client = reqwest::Client::builder()
            .no_proxy()
            // Every connection goes back to the pool: the copies in flight
            // (at most `proxy.max_shadow_inflight`) bound how many there
            // are. A cap below that closed the connections beyond it after
            // each use, so under load every copy past the cap paid a new
            // handshake and left a socket in TIME_WAIT.
            .pool_max_idle_per_host(usize::MAX)
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("strangler-shadow")
            .enable_all()
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot start the shadow thread; shadow work shares the proxy's"))
            .ok();
        Shadower {
            client,
            runtime,
            inflight: AtomicU64::new(0),
            deltas: Mutex::new(HashMap::new()),
            lag: ArcSwap::from_pointee(LagView::default()),
            shed: shed::Shedder::new(),
        }
    }

    /// Runs shadow work off the proxy's threads.
    pub fn spawn(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.runtime {
            Some(rt) => {
                rt.spawn(job);
            }
            None => {
                tokio::spawn(job);
            }
        }
    }

    /// Takes an in-flight slot, or `None` when `max` are in use.
    pub fn try_slot(self: &Arc<Self>, max: u64) -> Option<Slot> {
        let mut cur = self.inflight.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return None;
            }
            match self.inflight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// Records into this proxy's delta for `route`.
    pub fn record(&self, route: &str, f: impl FnOnce(&mut RouteStats)) {
        f(lock(&self.deltas).entry(route.to_string()).or_default());
    }

    /// Counts a request that was not compared.
    pub fn skip(&self, metrics: &Metrics, route: &str, why: Skip) {
        metrics
            .shadow
            .with_label_values(&[route, &format!("skipped_{}", why.as_str())])
            .inc();
        self.record(route, |s| s.skip(why));
    }

    /// Everything learned since the last call (for the flush to the store).
    pub fn take_deltas(&self) -> HashMap<String, RouteStats> {
        std::mem::take(&mut *lock(&self.deltas))
    }

    /// Puts back deltas that could not be flushed, so nothing is lost.
    pub fn restore_deltas(&self, deltas: HashMap<String, RouteStats>) {
        let mut mine = lock(&self.deltas);
        for (route, d) in deltas {
            mine.entry(route).or_default().merge(&d);
        }
    }

    pub fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }
}

impl Drop for Shadower {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Default for Shadower {
    fn default() -> Self {
        Shadower::new()
    }
}

/// An in-flight shadow slot; released when dropped.
pub struct Slot(Arc<Shadower>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-request shadow state, kept in the proxy's `Ctx`.
pub struct ShadowCtx {
    /// The job, until it is spawned (when the request body is complete).
    pub job: Option<ShadowJob>,
    /// Primary response header, then body (tee).
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    too_big: bool,
    max_body: usize,
    /// Hands the primary response to the spawned job, or why there is none
    /// to compare.
    primary_tx: Option<oneshot::Sender<Result<Response, Skip>>>,
    /// Request body tee (for requests with a body).
    req_body: Vec<u8>,
}

impl ShadowCtx {
    pub fn new(job: ShadowJob, max_body: usize) -> Self {
        ShadowCtx {
            job: Some(job),
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            too_big: false,
            max_body,
            primary_tx: None,
            req_body: Vec::new(),
        }
    }

    /// Tees a request body chunk; `false` when the body is too big to shadow.
    pub fn tee_request(&mut self, chunk: Option<&Bytes>) -> bool {
        if let Some(c) = chunk {
            if self.req_body.len() + c.len() > self.max_body {
                return false;
            }
            self.req_body.extend_from_slice(c);
        }
        true
    }

    /// Spawns the job (the candidate request goes out now, beside the primary).
    pub fn spawn(&mut self, ctx: job::JobContext) {
        if let Some(mut job) = self.job.take() {
            job.body = std::mem::take(&mut self.req_body);
            let (tx, rx) = oneshot::channel();
            self.primary_tx = Some(tx);
            let shadower = ctx.shadower.clone();
            shadower.spawn(job.run(rx, ctx));
        }
    }

    pub fn primary_header(&mut self, status: u16, headers: Vec<(String, String)>) {
        self.status = status;
        self.headers = headers;
    }

    /// Tees a primary response chunk; at the end hands the response over.
    pub fn primary_body(&mut self, chunk: Option<&Bytes>, end: bool) {
        if let Some(c) = chunk {
            if self.body.len() + c.len() > self.max_body {
                self.too_big = true;
                self.body = Vec::new();
            } else if !self.too_big {
                self.body.extend_from_slice(c);
            }
        }
        if end {
            if let Some(tx) = self.primary_tx.take() {
                let resp = if self.too_big {
                    Err(Skip::BodyTooLarge)
                } else {
                    Ok(Response::new(
                        self.status,
                        std::mem::take(&mut self.headers),
                        std::mem::take(&mut self.body),
                    ))
                };
                let _ = tx.send(resp);
            }
        }
    }

    /// The primary response will not be compared (`why`): the job ends now,
    /// without waiting for it or for the candidate, and counts it skipped.
    /// The tee stops.
    pub fn abandon(&mut self, why: Skip) {
        self.too_big = true;
        self.body = Vec::new();
        if let Some(tx) = self.primary_tx.take() {
            let _ = tx.send(Err(why));
        }
    }
}

/// Whether `method` may be shadowed: listed, and safe unless listed explicitly.
pub fn method_allowed(method: &Method, allowed: &[String]) -> bool {
    allowed.iter().any(|m| m.as_str() == method.as_str())
}

/// What the job needs to know about the two upstreams.
#[derive(Debug, Clone)]
pub struct Targets {
    pub primary: Target,
    pub candidate: Target,
}

/// Where one side of a shadow comparison is sent.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// An `https://` upstream: its own client and name.
    pub tls: Option<Arc<crate::tls::TlsUpstream>>,
}

impl Target {
    pub fn of(up: &crate::runtime::UpstreamRuntime) -> Target {
        Target {
            addr: up.addr,
            tls: up.tls.clone(),
        }
    }
}

/// A compiled route's shadow settings.
#[derive(Debug, Clone)]
pub struct RouteShadow {
    pub rules: Arc<Rules>,
    pub percent: f64,
    pub methods: Vec<String>,
    pub aa_percent: f64,
    pub tables: Vec<String>,
}
