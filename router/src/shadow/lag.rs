//! Replication lag as the router sees it, for lag-aware comparison.
//!
//! The CDC pipeline writes two things to the state store: the source's
//! current WAL position with the time it was read (`strangler_cdc_source`),
//! and per sink and source table the position applied so far
//! (`strangler_cdc_sinks`). A mismatch on a route that lists `tables` is
//! re-checked once every sink has applied past a source position read
//! *after* the request was answered: then the service has seen every
//! change the monolith had when it answered.

use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use strangler_state::lag::LagView;

/// How long a re-check waits for replication to catch up.
pub const RECHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until every sink has applied past a source position read after
/// `request_ms`; `false` on timeout or when CDC reports nothing for a table.
pub async fn caught_up(view: &ArcSwap<LagView>, tables: &[String], request_ms: i64) -> bool {
    {
        // Without positions for every table there is nothing to wait for.
        let v = view.load();
        if v.source.is_none() || tables.iter().any(|t| !v.applied.contains_key(t)) {
            return false;
        }
    }
    let start = Instant::now();
    let mut target: Option<i64> = None;
    while start.elapsed() < RECHECK_TIMEOUT {
        let v = view.load();
        if target.is_none() {
            target = v
                .source
                .filter(|(_, at)| *at >= request_ms)
                .map(|(lsn, _)| lsn);
        }
        if let Some(t) = target {
            if tables
                .iter()
                .all(|tb| v.applied.get(tb).is_some_and(|a| *a >= t))
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
