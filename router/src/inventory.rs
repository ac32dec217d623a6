//! What this proxy counts into the endpoint inventory between flushes
//! (`strangler_state::inventory`): every request by method and inferred
//! path template. The hot path hashes the template without building it;
//! the template text is made once per new template. Bounded: past
//! [`MAX_TEMPLATES`] new templates are counted in the overflow entry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use strangler_state::inventory::{
    infer, key_hash, Entry, Latency, Templates, MAX_TEMPLATES, OVERFLOW_METHOD, OVERFLOW_TEMPLATE,
};

const SHARDS: usize = 8;

struct Slot {
    method: String,
    template: String,
    entry: Entry,
    /// Latencies since the slot was made, folded into `entry` when taken
    /// (a counter per bucket: no map to update per request).
    latency: Box<[u64; Latency::BUCKETS]>,
}

impl Slot {
    fn new(method: String, template: String, entry: Entry) -> Slot {
        Slot {
            method,
            template,
            entry,
            latency: Box::new([0; Latency::BUCKETS]),
        }
    }

    fn into_entry(self) -> Entry {
        let mut e = self.entry;
        for (b, n) in self.latency.iter().enumerate() {
            e.latency.add(b as u16, *n);
        }
        e
    }
}

/// Keys are hashes already: FNV over a `u64` is enough.
type Shard = fnv::FnvHashMap<u64, Slot>;

/// This proxy's counts since the last flush.
pub struct Recorder {
    shards: [Mutex<Shard>; SHARDS],
    templates: AtomicUsize,
    overflow: Mutex<Entry>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            templates: AtomicUsize::new(0),
            overflow: Mutex::new(Entry::default()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Recorder {
    /// Takes a place for a new template, if there is one under the cap.
    fn room(&self) -> bool {
        if self.templates.fetch_add(1, Ordering::Relaxed) < MAX_TEMPLATES {
            return true;
        }
        self.templates.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Counts `e` in the overflow entry, its example naming the method.
    fn overflow(&self, method: &str, mut e: Entry) {
        e.example = format!("{method} {}", e.example);
        lock(&self.overflow).merge(&e);
    }

    /// Counts one request.
    pub fn record(
        &self,
        method: &str,
        path: &str,
        status: u16,
        bytes: u64,
        micros: u64,
        now_ms: i64,
    ) {
        let h = key_hash(method, path);
        let mut shard = lock(&self.shards[(h as usize) % SHARDS]);
        if let Some(slot) = shard.get_mut(&h) {
            let e = &mut slot.entry;
            e.requests += 1;
            e.errors += u64::from(status == 0 || status >= 500);
            e.bytes += bytes;
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
            slot.latency[usize::from(Latency::bucket(micros))] += 1;
            return;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let one = Entry::one(path, status, bytes, micros, now_ms);
        if !self.room() {
            drop(shard);
            self.overflow(method, one);
            return;
        }
        shard.insert(h, Slot::new(method.to_string(), infer(path), one));
    }

    /// What was counted since the last call.
    pub fn take(&self) -> Templates {
        let mut out = Templates::new();
        for s in &self.shards {
            let drained: Vec<Slot> = lock(s).drain().map(|(_, v)| v).collect();
            self.templates.fetch_sub(drained.len(), Ordering::Relaxed);
            for mut slot in drained {
                let key = (
                    std::mem::take(&mut slot.method),
                    std::mem::take(&mut slot.template),
                );
                out.entry(key).or_default().merge(&slot.into_entry());
            }
        }
        let over = std::mem::take(&mut *lock(&self.overflow));
        if over.requests > 0 {
            out.insert(
                (OVERFLOW_METHOD.to_string(), OVERFLOW_TEMPLATE.to_string()),
                over,
            );
        }
        out
    }

    /// Puts back what could not be saved, within the cap (the rest in the
    /// overflow entry).
    pub fn restore(&self, t: Templates) {
        for ((method, template), e) in t {
            if method == OVERFLOW_METHOD {
                lock(&self.overflow).merge(&e);
                continue;
            }
            // A template hashes as every path it stands for does.
            let h = key_hash(&method, &template);
            let mut shard = lock(&self.shards[(h as usize) % SHARDS]);
            if let Some(slot) = shard.get_mut(&h) {
                slot.entry.merge(&e);
                continue;
            }
            if !self.room() {
                drop(shard);
                self.overflow(&method, e);
                continue;
            }
            shard.insert(h, Slot::new(method, template, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_template_and_taken_once() {
        let r = Recorder::default();
        for id in 1..=30 {
            r.record("GET", &format!("/products/{id}"), 200, 100, 1_000, 5);
        }
        r.record("GET", "/customers/3/orders?limit=10", 500, 7, 2_000, 6);
        r.record("PUT", "/products/3", 204, 0, 3_000, 7);
        let t = r.take();
        let k = |m: &str, p: &str| (m.to_string(), p.to_string());
        assert_eq!(t.len(), 3);
        let p = &t[&k("GET", "/products/{id}")];
        assert_eq!((p.requests, p.bytes, p.errors), (30, 3_000, 0));
        let mut all = Latency::default();
        for _ in 0..30 {
            all.record(1_000);
        }
        assert_eq!(
            p.latency, all,
            "every request's latency, the first and the others"
        );
        assert_eq!(p.example, "/products/1");
        let c = &t[&k("GET", "/customers/{id}/orders")];
        assert_eq!((c.requests, c.errors), (1, 1));
        assert_eq!(c.example, "/customers/3/orders");
        assert!(r.take().is_empty(), "taken once");
        r.restore(t);
        // Restored under the template's own key: new requests join it.
        r.record("GET", "/products/77", 200, 1, 1, 9);
        assert_eq!(r.take()[&k("GET", "/products/{id}")].requests, 31);
    }

    #[test]
    fn past_the_cap_new_templates_are_counted_as_overflow() {
        let r = Recorder::default();
        for i in 0..MAX_TEMPLATES + 10 {
            // Distinct literal names (no digits): each its own template.
            let name: String = format!("{i:05}")
                .bytes()
                .map(|d| (b'a' + d - b'0') as char)
                .collect();
            r.record("GET", &format!("/{name}"), 200, 1, 1, 1);
        }
        let t = r.take();
        assert_eq!(t.len(), MAX_TEMPLATES + 1);
        let over = &t[&(OVERFLOW_METHOD.to_string(), OVERFLOW_TEMPLATE.to_string())];
        assert_eq!(over.requests, 10);
        assert_eq!(
            t.values().map(|e| e.requests).sum::<u64>(),
            (MAX_TEMPLATES + 10) as u64
        );
    }
}
