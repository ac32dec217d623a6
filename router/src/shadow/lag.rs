//! Replication lag as the router sees it, for lag-aware comparison.
//!
//! The CDC pipelines write, per stream (source cluster, slot, direction),
//! the source's current WAL position with the time it was read and, per
//! sink and table, the position applied so far (see
//! [`strangler_state::lag`]). A mismatch on a route that lists `tables` is
//! re-checked once every stream that carries those tables has applied past
//! a source position read *after* the request was answered: then each side
//! has seen every change the other had when it answered. With the monolith
//! answering first (shadow) that is the forward direction; with the service
//! answering first, reverse sync too (when it carries the table).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use strangler_state::lag::{Direction, LagView};

/// How long a re-check waits for replication to catch up.
pub const RECHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until every stream of `directions` that carries one of `tables`
/// has applied past a source position read after `request_ms`; `false` on
/// timeout or when no forward stream reports a table.
pub async fn caught_up(
    view: &ArcSwap<LagView>,
    tables: &[String],
    request_ms: i64,
    directions: &[Direction],
) -> bool {
    {
        // Without forward positions for every table there is nothing to wait for.
        let v = view.load();
        let reported = |t: &String| {
            v.for_table(t)
                .iter()
                .any(|l| l.direction == Direction::Forward && l.source.is_some())
        };
        if !tables.iter().all(reported) {
            return false;
        }
    }
    let start = Instant::now();
    // Per stream (cluster, slot): the first source position read after the request.
    let mut targets: HashMap<(String, String), i64> = HashMap::new();
    while start.elapsed() < RECHECK_TIMEOUT {
        let v = view.load();
        let mut all = true;
        for t in tables {
            for l in v.for_table(t) {
                if !directions.contains(&l.direction) {
                    continue;
                }
                let key = (l.cluster.clone(), l.slot.clone());
                if !targets.contains_key(&key) {
                    if let Some((lsn, at)) = l.source {
                        if at >= request_ms {
                            targets.insert(key.clone(), lsn);
                        }
                    }
                }
                all &= targets.get(&key).is_some_and(|target| l.applied >= *target);
            }
        }
        if all {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
