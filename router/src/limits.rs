//! Per-route rate limits (`[routes.rate_limit]`): `requests` per `per` for
//! each client key (the client's address, a header, a cookie, or one limit
//! for the whole route), bursts up to `requests`, GCRA through `governor`.
//! A request over the limit is answered 429 with `Retry-After` by the
//! proxy; nothing reaches an upstream.
//!
//! A route's limiter survives rebuilds of the routing table (a store poll,
//! a stage change) and is replaced only when its limit changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use strangler_config::{RateLimit, Sticky};

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

/// Every route's limiter, by route name.
#[derive(Debug, Default)]
pub struct Limiters(Mutex<HashMap<String, (RateLimit, Arc<RouteLimiter>)>>);

impl Limiters {
    /// The limiter of route `name` with `limit`: the one it had when the
    /// limit is unchanged, else a new one.
    pub fn for_route(&self, name: &str, limit: &RateLimit) -> Arc<RouteLimiter> {
        let mut all = self
            .0
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
