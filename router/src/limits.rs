//! Per-route rate limits (`[routes.rate_limit]`): `requests` per `per` for
//! each client key (the client's address, a header, a cookie, or one limit
//! for the whole route), bursts up to `requests`, GCRA through `governor`.
//! A request over the limit is answered 429 with `Retry-After` by the
//! proxy; nothing reaches an upstream.
//!
//! A route's limiter survives rebuilds of the routing table (a store poll,
//! a stage change) and is replaced only when its limit changes.
//!
//! Retry budgets (`[routes.retry_budget]`, Envoy's): a request the service
//! answered with a 5xx or broke off may be tried again on the monolith
//! only while the route's retries in flight stay under `max(min_concurrency,
//! percent % of its requests in flight to the service)`; beyond, the client
//! gets the service's answer and the refusal is counted. A fallback before
//! the service saw the request (connect error, service down) is not a
//! retry: it costs the monolith what it served before the migration.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use strangler_config::{RateLimit, RetryBudget, Sticky};

use crate::table::sticky;

/// One route's limiter.
#[derive(Debug)]
pub struct RouteLimiter {
    limiter: DefaultKeyedRateLimiter<Vec<u8>>,
    key: Sticky,
    checks: AtomicU64,
}

impl RouteLimiter {
    fn new(limit: &RateLimit) -> RouteLimiter {
        let requests = NonZeroU32::new(limit.requests).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(limit.per / limit.requests.max(1))
            .unwrap_or_else(|| Quota::per_second(requests))
            .allow_burst(requests);
        RouteLimiter {
            limiter: RateLimiter::keyed(quota),
            key: limit.key.clone(),
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` when the request may go on, else how long the client should
    /// wait. A request without the key (no such header or cookie) is
    /// limited by its address.
    pub fn check(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<(), Duration> {
        let key: Vec<u8> = match &self.key {
            Sticky::None => Vec::new(),
            k => sticky::key(k, headers, client)
                .or_else(|| sticky::key(&Sticky::ClientIp, headers, client))
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default(),
        };
        // Forget idle clients now and then, so memory follows the active ones.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// One route's requests and retries in flight against its budget.
#[derive(Debug)]
pub struct RouteBudget {
    budget: RetryBudget,
    active: AtomicU64,
    retrying: AtomicU64,
}

/// A request in flight to a route's service (and its retry, once one is
/// admitted); dropped with the request.
#[derive(Debug)]
pub struct InFlight {
    of: Arc<RouteBudget>,
    retrying: bool,
}

impl RouteBudget {
    fn new(budget: RetryBudget) -> RouteBudget {
        RouteBudget {
            budget,
            active: AtomicU64::new(0),
            retrying: AtomicU64::new(0),
        }
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::Relaxed);
        InFlight {
            of: self.clone(),
            retrying: false,
        }
    }
}

impl InFlight {
    /// Whether this request may be tried again; counted as a retry in
    /// flight until it ends when it may.
    pub fn try_retry(&mut self) -> bool {
        if self.retrying {
            return true;
        }
        let b = &self.of;
        let active = b.active.load(Ordering::Relaxed) as f64;
        let allowed = (active * b.budget.percent / 100.0)
            .floor()
            .max(f64::from(b.budget.min_concurrency)) as u64;
        let admitted = b
            .retrying
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < allowed).then_some(n + 1)
            })
            .is_ok();
        self.retrying = admitted;
        admitted
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.of.active.fetch_sub(1, Ordering::Relaxed);
        if self.retrying {
            self.of.retrying.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Every route's limiter and retry budget, by route name.
#[derive(Debug, Default)]
pub struct Limiters {
    limiters: Mutex<HashMap<String, (RateLimit, Arc<RouteLimiter>)>>,
    budgets: Mutex<HashMap<String, Arc<RouteBudget>>>,
}

impl Limiters {
    /// The limiter of route `name` with `limit`: the one it had when the
    /// limit is unchanged, else a new one.
    pub fn for_route(&self, name: &str, limit: &RateLimit) -> Arc<RouteLimiter> {
        let mut all = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match all.get(name) {
            Some((l, r)) if l == limit => r.clone(),
            _ => {
                let r = Arc::new(RouteLimiter::new(limit));
                all.insert(name.to_string(), (limit.clone(), r.clone()));
                r
            }
        }
    }

    /// The retry budget of route `name`: the one it had (with its counts of
    /// requests in flight) when the budget is unchanged, else a new one.
    pub fn budget_for(&self, name: &str, budget: RetryBudget) -> Arc<RouteBudget> {
        let mut all = self
            .budgets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match all.get(name) {
            Some(b) if b.budget == budget => b.clone(),
            _ => {
                let b = Arc::new(RouteBudget::new(budget));
                all.insert(name.to_string(), b.clone());
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, secs: u64, key: Sticky) -> RateLimit {
        RateLimit {
            requests,
            per: Duration::from_secs(secs),
            key,
        }
    }

    #[test]
    fn retries_in_flight_stay_within_the_budget() {
        let b = Arc::new(RouteBudget::new(RetryBudget {
            percent: 20.0,
            min_concurrency: 1,
        }));
        let mut requests: Vec<InFlight> = (0..10).map(|_| b.enter()).collect();
        // 20 % of 10 in flight: two retries at once.
        assert!(requests[0].try_retry());
        assert!(requests[1].try_retry());
        assert!(!requests[2].try_retry(), "a third is over the budget");
        assert!(requests[0].try_retry(), "an admitted retry stays admitted");
        // Retries end with their requests: room again (8 in flight: one).
        requests.drain(..2);
        assert!(requests[0].try_retry());
        assert!(!requests[1].try_retry());
        // With few requests in flight, min_concurrency still allows one.
        let mut few = vec![Arc::new(RouteBudget::new(RetryBudget {
            percent: 20.0,
            min_concurrency: 1,
        }))
        .enter()];
        assert!(few[0].try_retry());
        // A budget of nothing refuses every retry.
        let none = Arc::new(RouteBudget::new(RetryBudget {
            percent: 0.0,
            min_concurrency: 0,
        }));
        assert!(!none.enter().try_retry());
        few.clear();
    }

    #[test]
    fn each_client_gets_its_burst_then_waits() {
        let l = RouteLimiter::new(&limit(3, 60, Sticky::Header("x-user".into())));
        let mut a = HeaderMap::new();
        a.insert("x-user", "a".parse().expect("value"));
        let mut b = HeaderMap::new();
        b.insert("x-user", "b".parse().expect("value"));
        for _ in 0..3 {
            assert_eq!(l.check(&a, None), Ok(()));
        }
        let wait = l.check(&a, None).expect_err("over the limit");
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}: one request every 20 s"
        );
        assert_eq!(l.check(&b, None), Ok(()), "another client");
    }

    #[test]
    fn a_limiter_survives_a_rebuild_unless_its_limit_changed() {
        let all = Limiters::default();
        let first = all.for_route("r", &limit(3, 60, Sticky::ClientIp));
        assert!(Arc::ptr_eq(
            &first,
            &all.for_route("r", &limit(3, 60, Sticky::ClientIp))
        ));
        assert!(!Arc::ptr_eq(
            &first,
            &all.for_route("r", &limit(4, 60, Sticky::ClientIp))
        ));
    }
}
