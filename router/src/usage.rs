//! Per-route request counts by minute, shared through the state store: what
//! `strangler status` shows, what promotion gates read, and what automatic
//! rollback watches.

use std::collections::HashMap;
use std::sync::Mutex;

pub use strangler_state::counts::Counts;

/// The key of a count: route, minute, and the route state it was made
/// under (its row's `updated_at_ms`; 0 without a row).
pub type Key = (String, i64, i64);

/// What this proxy counted since its last flush, by [`Key`].
#[derive(Debug, Default)]
pub struct Usage {
    deltas: Mutex<HashMap<Key, Counts>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Usage {
    pub fn record(&self, route: &str, minute: i64, state_ms: i64, c: Counts) {
        let mut d = lock(&self.deltas);
        match d.get_mut(&(route.to_string(), minute, state_ms)) {
            Some(e) => e.add(&c),
            None => {
                d.insert((route.to_string(), minute, state_ms), c);
            }
        }
    }

    pub fn take(&self) -> HashMap<Key, Counts> {
        std::mem::take(&mut *lock(&self.deltas))
    }

    pub fn restore(&self, d: HashMap<Key, Counts>) {
        for ((r, m, s), c) in d {
            self.record(&r, m, s, c);
        }
    }
}

/// The minute of `ms` since the epoch.
pub fn minute(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}
