//! Per-request context of the Pingora service.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::runtime::{Routing, Shared};
use crate::table::{UpstreamId, Why, LEGACY_ID};

/// Why the monolith answered a request meant for a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackReason {
    /// The service's health check marks it down.
    Unhealthy,
    /// The connection to the service was refused or failed.
    ConnectError,
    /// The connection to the service timed out.
    ConnectTimeout,
    /// The service answered 5xx to a safe method.
    Status5xx,
    /// The service failed after the connection, before answering (safe methods).
    UpstreamError,
}

impl FallbackReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Unhealthy => "unhealthy",
            FallbackReason::ConnectError => "connect_error",
            FallbackReason::ConnectTimeout => "connect_timeout",
            FallbackReason::Status5xx => "status_5xx",
            FallbackReason::UpstreamError => "upstream_error",
        }
    }
}

/// Decrements the in-flight count when the request ends, however it ends.
pub struct InflightGuard(Arc<Shared>);

impl InflightGuard {
    pub fn new(shared: &Arc<Shared>) -> Self {
        shared.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(shared.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one request carries through the proxy phases.
pub struct Ctx {
    pub start: Instant,
    pub _inflight: InflightGuard,
    /// The snapshot this request was routed with; set in `request_filter`.
    pub routing: Option<Arc<Routing>>,
    pub route: Option<usize>,
    /// Where the decision sent the request.
    pub target: UpstreamId,
    pub why: Why,
    /// The upstream of the current attempt.
    pub attempt: UpstreamId,
    /// Set when the monolith answers instead of the service.
    pub fallback: Option<FallbackReason>,
    /// The service's 5xx that is being replaced (retry pending).
    pub replaced_status: Option<u16>,
    /// A response header has gone to the client: no more fallback.
    pub responded: bool,
    pub request_id: String,
    pub trace_id: String,
    /// Shadow tee state when this request is shadowed (boxed, like
    /// `trace`: Pingora moves the context with the request's future, so
    /// what most requests do not use stays out of it).
    pub shadow: Option<Box<crate::shadow::ShadowCtx>>,
    /// Reverse shadow (the service answers): dropped if the monolith answers after all.
    pub shadow_reverse: bool,
    /// The client: the peer, or who a trusted proxy forwarded for.
    pub client_ip: Option<std::net::IpAddr>,
    /// Bytes of request body the route still accepts (`max_body_bytes`).
    pub body_left: Option<u64>,
    /// In flight to the route's service, against its retry budget.
    pub budget: Option<crate::limits::InFlight>,
    /// Spans, when `[telemetry]` is on.
    pub trace: Option<Box<crate::traces::RequestTrace>>,
}

impl Ctx {
    pub fn new(shared: &Arc<Shared>) -> Self {
        Ctx {
            start: Instant::now(),
            _inflight: InflightGuard::new(shared),
            routing: None,
            route: None,
            target: LEGACY_ID,
            why: Why::Unmatched,
            attempt: LEGACY_ID,
            fallback: None,
            replaced_status: None,
            responded: false,
            request_id: String::new(),
            trace_id: String::new(),
            shadow: None,
            shadow_reverse: false,
            client_ip: None,
            body_left: None,
            budget: None,
            trace: None,
        }
    }

    /// Whether the current attempt may still be handed to the monolith.
    /// Whether the route's retry budget lets a request the service already
    /// answered or broke off be tried again on the monolith; a refusal is
    /// counted.
    pub fn retry_admitted(&mut self, metrics: &crate::metrics::Metrics) -> bool {
        let Some(b) = self.budget.as_mut() else {
            return true;
        };
        if b.try_retry() {
            return true;
        }
        let route = match (&self.routing, self.route) {
            (Some(r), Some(i)) => r.table.routes().get(i).map(|r| r.name.clone()),
            _ => None,
        };
        if let Some(route) = route {
            metrics.retries_refused.with_label_values(&[&*route]).inc();
        }
        false
    }

    /// Whether the monolith may still answer: the route falls back, the
    /// attempt was the service's, and the route's deadline (if any) has
    /// time left — a fallback that cannot answer in time would only load
    /// the monolith and spend the retry budget.
    pub fn may_fall_back(&self) -> bool {
        if self.attempt == LEGACY_ID
            || self.fallback.is_some()
            || self.responded
            || self.deadline_passed()
        {
            return false;
        }
        match (&self.routing, self.route) {
            (Some(r), Some(i)) => r.table.routes().get(i).is_some_and(|route| route.fallback),
            _ => false,
        }
    }

    /// What is left of the route's `timeout_ms`; `None` without one.
    pub fn deadline_left(&self) -> Option<std::time::Duration> {
        let limit = match (&self.routing, self.route) {
            (Some(r), Some(i)) => r.table.routes().get(i).and_then(|route| route.timeout)?,
            _ => return None,
        };
        Some(limit.saturating_sub(self.start.elapsed()))
    }

    /// The route's deadline has (all but) passed: nothing more can answer
    /// in time.
    pub fn deadline_passed(&self) -> bool {
        self.deadline_left()
            .is_some_and(|left| left < std::time::Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    /// The context moves with every request's future: a field that makes
    /// it big costs every request, used or not.
    #[test]
    fn the_context_stays_small() {
        let size = std::mem::size_of::<super::Ctx>();
        assert!(
            size <= 256,
            "Ctx is {size} bytes: box what most requests do not use"
        );
    }
}
