//! Per-route request counts by minute, shared through the state store: what
//! `strangler status` shows, what promotion gates read, and what automatic
//! rollback watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use strangler_state::counts::Counts;

/// The key of a count: route, minute, and the route state it was made
/// under (its row's `updated_at_ms`; 0 without a row).
pub type Key = (String, i64, i64);

/// [`Key`] with the route's name shared, not copied.
type SharedKey = (Arc<str>, i64, i64);

/// What this proxy counted since its last flush, by [`Key`]. Every request
/// records here: the key shares the route's name (no allocation) and is
/// hashed with FNV (short keys, no untrusted input).
#[derive(Debug, Default)]
pub struct Usage {
    deltas: Mutex<fnv::FnvHashMap<SharedKey, Counts>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Usage {
    pub fn record(&self, route: &Arc<str>, minute: i64, state_ms: i64, c: Counts) {
        lock(&self.deltas)
            .entry((route.clone(), minute, state_ms))
            .and_modify(|e| e.add(&c))
            .or_insert(c);
    }

    pub fn take(&self) -> HashMap<Key, Counts> {
        std::mem::take(&mut *lock(&self.deltas))
            .into_iter()
            .map(|((r, m, s), c)| ((r.to_string(), m, s), c))
            .collect()
    }

    pub fn restore(&self, d: HashMap<Key, Counts>) {
        for ((r, m, s), c) in d {
            self.record(&Arc::from(r), m, s, c);
        }
    }
}

/// The minute of `ms` since the epoch.
pub fn minute(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}
