//! The endpoint inventory: every request a proxy serves — matched by a
//! route or not — grouped by method and a path template inferred from the
//! path itself, with its volume, latency, errors and bytes.
//!
//! ```text
//!  GET /customers/42/orders?limit=10 ─ infer ─▶ GET /customers/{id}/orders
//!    numbers, UUIDs, hashes, dates, slugs with digits, e-mails → {id}, {id2}, …
//!  per (method, template): requests, errors, bytes, latency histogram,
//!  first/last seen, an example path
//!  bounded: siblings past COLLAPSE_AFTER distinct literals become a
//!  parameter; past MAX_TEMPLATES the smallest go to one overflow entry
//! ```
//!
//! Proxies count into an [`Inventory`] and merge it into the store
//! (`store/inventory.rs`), which applies the same bounds to the fleet's
//! merged view.

use std::collections::{BTreeMap, HashMap};

/// The most templates kept (by a proxy between flushes, and in the store).
pub const MAX_TEMPLATES: usize = 2_000;

/// Distinct literal values one path position may take under the same
/// surrounding segments before it is taken for a parameter (user names,
/// slugs without digits, …).
pub const COLLAPSE_AFTER: usize = 50;

/// The method and template of the entry that counts what the bounds turned away.
pub const OVERFLOW_METHOD: &str = "*";
pub const OVERFLOW_TEMPLATE: &str = "(other)";

/// What one template has seen.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub requests: u64,
    /// Answers with status ≥ 500, and requests that got no answer.
    pub errors: u64,
    /// Response body bytes sent to clients.
    pub bytes: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// A path (without query) that had this template.
    pub example: String,
    pub latency: Latency,
}

impl Entry {
    /// One request.
    pub fn one(path: &str, status: u16, bytes: u64, micros: u64, at_ms: i64) -> Entry {
        let mut latency = Latency::default();
        latency.record(micros);
        Entry {
            requests: 1,
            errors: u64::from(status == 0 || status >= 500),
            bytes,
            first_seen_ms: at_ms,
            last_seen_ms: at_ms,
            example: example_of(path),
            latency,
        }
    }

    pub fn merge(&mut self, o: &Entry) {
        if self.requests == 0 {
            *self = o.clone();
            return;
        }
        if o.requests == 0 {
            return;
        }
        self.requests += o.requests;
        self.errors += o.errors;
        self.bytes += o.bytes;
        self.first_seen_ms = self.first_seen_ms.min(o.first_seen_ms);
        if o.last_seen_ms >= self.last_seen_ms {
            self.last_seen_ms = o.last_seen_ms;
            self.example.clone_from(&o.example);
        }
        self.latency.merge(&o.latency);
    }

    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// A latency histogram in microseconds, 8 buckets per doubling (a
/// quantile is within 9 % of the truth), mergeable across proxies.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Latency(BTreeMap<u16, u64>);

impl Latency {
    /// Buckets a histogram has (the last holds everything beyond).
    pub const BUCKETS: usize = 241;

    /// The bucket of `micros`.
    pub fn bucket(micros: u64) -> u16 {
        // 8 × log2(µs + 1), capped at 2^30 µs (18 minutes).
        let v = (micros + 1) as f64;
        (v.log2() * 8.0).floor().clamp(0.0, 240.0) as u16
    }

    pub fn record(&mut self, micros: u64) {
        *self.0.entry(Self::bucket(micros)).or_default() += 1;
    }

    /// Adds `n` samples to bucket `b` (counts kept elsewhere, folded in).
    pub fn add(&mut self, b: u16, n: u64) {
        if n > 0 {
            *self.0.entry(b).or_default() += n;
        }
    }

    pub fn merge(&mut self, o: &Latency) {
        for (b, n) in &o.0 {
            *self.0.entry(*b).or_default() += n;
        }
    }

    /// The `q` quantile (0..=1) in milliseconds: the upper edge of the
    /// bucket holding it; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.0.values().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in &self.0 {
            seen += n;
            if seen >= rank {
                return (2f64.powf(f64::from(*b + 1) / 8.0) - 1.0) / 1000.0;
            }
        }
        0.0
    }
}

/// `path` as an example worth keeping: e-mail addresses and long opaque
/// tokens (session ids, API keys, reset links) masked, at most 200
/// characters — the inventory is read by everyone who reads the board.
pub fn example_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len().min(200));
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let uuid = seg.len() == 36 && seg.bytes().filter(|c| *c == b'-').count() == 4;
        if seg.contains('@') {
            out.push_str("{email}");
        } else if seg.len() >= 24 && !uuid {
            out.push_str("{token}");
        } else {
            out.push_str(seg);
        }
    }
    out.chars().take(200).collect()
}

/// Whether a path segment is a value rather than a name: a number, a
/// UUID, a hash, a date, an e-mail address, a slug or code with digits.
/// Version markers (`v1`, `v2.1`) and short names with a digit (`oauth2`,
/// `s3`) stay literal.
pub fn is_value(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let b = seg.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    // Characters a template cannot hold literally.
    if seg.contains(['{', '}', '@', ' ']) || b.iter().any(|c| c.is_ascii_control()) {
        return true;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        // Long opaque tokens (base64, hex without digits is rare).
        return b.len() >= 24
            && b.iter().any(u8::is_ascii_uppercase)
            && b.iter().any(u8::is_ascii_lowercase);
    }
    if let Some(rest) = seg.strip_prefix(['v', 'V']) {
        if !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
            return false;
        }
    }
    let hex = b.iter().all(u8::is_ascii_hexdigit);
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    // 2024-05-01, 2024-05-01T10:00:00Z, 20240501
    let date =
        b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && (b.len() == 8 || b[4] == b'-');
    let separated = seg.contains(['-', '_', '.', ':', '~', '%', '+', '=']);
    uuid || date || (hex && b.len() >= 8) || separated || digits >= 3 || b.len() >= 10
}

/// The template of `path` (query removed): value segments become `{id}`,
/// `{id2}`, … in order.
pub fn infer(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let Some(rest) = path.strip_prefix('/') else {
        return "/".into();
    };
    let mut out = String::with_capacity(path.len() + 4);
    let mut params = 0;
    if rest.is_empty() {
        return "/".into();
    }
    for seg in rest.split('/') {
        out.push('/');
        if is_value(seg) {
            params += 1;
            push_param(&mut out, params);
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn push_param(out: &mut String, n: usize) {
    push_named(out, "id", n);
}

fn push_named(out: &mut String, name: &str, n: usize) {
    if n == 1 {
        out.push('{');
        out.push_str(name);
        out.push('}');
    } else {
        out.push_str(&format!("{{{name}{n}}}"));
    }
}

/// A template's segment: text, a value (`{id}`), or a position collapsed
/// for its many names (`{name}`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seg<'a> {
    Lit(&'a str),
    Value,
    Name,
}

fn segs(template: &str) -> Vec<Seg<'_>> {
    template
        .split('/')
        .skip(1)
        .map(|s| {
            if s.starts_with("{name") {
                Seg::Name
            } else if s.starts_with('{') {
                Seg::Value
            } else {
                Seg::Lit(s)
            }
        })
        .collect()
}

fn render(segs: &[Seg<'_>]) -> String {
    let (mut ids, mut names) = (0, 0);
    let mut out = String::new();
    for s in segs {
        out.push('/');
        match s {
            Seg::Lit(t) => out.push_str(t),
            Seg::Value => {
                ids += 1;
                push_named(&mut out, "id", ids);
            }
            Seg::Name => {
                names += 1;
                push_named(&mut out, "name", names);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// A hash of the template of `path` and of `method`, without building the
/// template: what a proxy keys its counts by on the hot path.
pub fn key_hash(method: &str, path: &str) -> u64 {
    const PRIME: u64 = 0x100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(method.as_bytes());
    let path = path.split(['?', '#']).next().unwrap_or("");
    if let Some(rest) = path.strip_prefix('/').filter(|r| !r.is_empty()) {
        for seg in rest.split('/') {
            eat(b"/");
            if is_value(seg) {
                eat(b"{}");
            } else {
                eat(seg.as_bytes());
            }
        }
    } else {
        eat(b"/");
    }
    h
}

/// Templates by (method, template).
pub type Templates = HashMap<(String, String), Entry>;

/// Applies the bounds: a position holding more than [`COLLAPSE_AFTER`]
/// distinct literals among templates alike elsewhere becomes a parameter
/// (their entries merged), then everything past [`MAX_TEMPLATES`] (the
/// least requested) goes to the overflow entry. Returns how many templates
/// were folded into the overflow.
pub fn bound(t: &mut Templates, max: usize) -> usize {
    absorb(t);
    collapse(t);
    let overflow_key = (OVERFLOW_METHOD.to_string(), OVERFLOW_TEMPLATE.to_string());
    let real = t.len() - usize::from(t.contains_key(&overflow_key));
    if real <= max {
        return 0;
    }
    let mut keys: Vec<((String, String), u64)> = t
        .iter()
        .filter(|(k, _)| **k != overflow_key)
        .map(|(k, e)| (k.clone(), e.requests))
        .collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut folded = 0;
    for (k, _) in keys.into_iter().skip(max) {
        if let Some(e) = t.remove(&k) {
            let mut e = e;
            e.example = format!("{} {}", k.0, e.example);
            t.entry(overflow_key.clone()).or_default().merge(&e);
            folded += 1;
        }
    }
    folded
}

/// Templates alike but at one position: method, segment count, the
/// position, the other segments.
type Siblings = (String, usize, usize, String);

fn collapse(t: &mut Templates) {
    loop {
        // (method, segment count, position, the other segments) → the literals seen there.
        let mut groups: HashMap<Siblings, Vec<(String, String)>> = HashMap::new();
        for (method, template) in t.keys() {
            if method == OVERFLOW_METHOD {
                continue;
            }
            let segs: Vec<&str> = template.split('/').skip(1).collect();
            for (i, s) in segs.iter().enumerate() {
                if s.starts_with('{') || s.is_empty() {
                    continue;
                }
                let others: Vec<&str> = segs
                    .iter()
                    .enumerate()
                    .map(|(j, s)| if j == i { "*" } else { s })
                    .collect();
                groups
                    .entry((method.clone(), segs.len(), i, others.join("/")))
                    .or_default()
                    .push((method.clone(), template.clone()));
            }
        }
        let Some(((_, _, pos, _), members)) = groups
            .into_iter()
            .filter(|(_, m)| m.len() > COLLAPSE_AFTER)
            .min_by_key(|((_, _, pos, rest), _)| (*pos, rest.clone()))
        else {
            return;
        };
        for key in members {
            let Some(e) = t.remove(&key) else { continue };
            let mut at = segs(&key.1);
            at[pos] = Seg::Name;
            t.entry((key.0, render(&at))).or_default().merge(&e);
        }
    }
}

/// Folds templates with a literal where another template of theirs has a
/// collapsed position (`/users/alice` once `/users/{name}` exists) into
/// it: proxies keep sending literals the store has already collapsed.
fn absorb(t: &mut Templates) {
    let keys: Vec<(String, String)> = t.keys().cloned().collect();
    for (method, template) in keys {
        if method == OVERFLOW_METHOD {
            continue;
        }
        let parts = segs(&template);
        let target = (0..parts.len()).find_map(|i| {
            if !matches!(parts[i], Seg::Lit(l) if !l.is_empty()) {
                return None;
            }
            let mut at = parts.clone();
            at[i] = Seg::Name;
            let k = (method.clone(), render(&at));
            t.contains_key(&k).then_some(k)
        });
        if let Some(k) = target {
            if let Some(e) = t.remove(&(method.clone(), template.clone())) {
                t.entry(k).or_default().merge(&e);
            }
        }
    }
}

/// One row of the inventory as `strangler inventory` and the board show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub method: String,
    pub template: String,
    pub requests: u64,
    /// Of all requests in the inventory.
    pub share: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub bytes: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub example: String,
    /// The configured route that serves it (`None`: not covered yet).
    pub route: Option<String>,
}

/// The inventory as listed: most requested first, with shares.
pub fn listed(t: &Templates, route_of: impl Fn(&str, &str) -> Option<String>) -> Vec<Listed> {
    let total: u64 = t.values().map(|e| e.requests).sum();
    let mut out: Vec<Listed> = t
        .iter()
        .map(|((method, template), e)| Listed {
            method: method.clone(),
            template: template.clone(),
            requests: e.requests,
            share: if total == 0 {
                0.0
            } else {
                e.requests as f64 / total as f64
            },
            p50_ms: e.latency.quantile_ms(0.5),
            p99_ms: e.latency.quantile_ms(0.99),
            error_rate: e.error_rate(),
            bytes: e.bytes,
            first_seen_ms: e.first_seen_ms,
            last_seen_ms: e.last_seen_ms,
            example: e.example.clone(),
            route: if method == OVERFLOW_METHOD {
                None
            } else {
                route_of(method, &e.example)
            },
        })
        .collect();
    out.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.template.cmp(&b.template))
            .then_with(|| a.method.cmp(&b.method))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_paths_become_parameters() {
        for (path, want) in [
            ("/products/42", "/products/{id}"),
            ("/customers/7/orders?limit=10", "/customers/{id}/orders"),
            ("/orders/1000000001/items/3", "/orders/{id}/items/{id2}"),
            ("/files/3f2b1c9a-1d2e-4f5a-8b9c-0d1e2f3a4b5c", "/files/{id}"),
            (
                "/blobs/a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
                "/blobs/{id}",
            ),
            ("/reports/2024-05-01/daily", "/reports/{id}/daily"),
            ("/products/sku-1234", "/products/{id}"),
            ("/users/jane@example.com", "/users/{id}"),
            ("/api/v2/products", "/api/v2/products"),
            ("/oauth2/token", "/oauth2/token"),
            ("/items/a1b2c3", "/items/{id}"),
            ("/page12/x", "/page12/x"),
            ("/products", "/products"),
            ("/", "/"),
            ("", "/"),
            ("/health/", "/health/"),
        ] {
            assert_eq!(infer(path), want, "{path}");
        }
    }

    #[test]
    fn examples_keep_ids_and_mask_addresses_and_tokens() {
        assert_eq!(
            example_of("/users/jane@example.com/orders/7"),
            "/users/{email}/orders/7"
        );
        assert_eq!(
            example_of("/reset/Zm9vYmFyYmF6cXV4cXV1eHh4eHh4"),
            "/reset/{token}"
        );
        assert_eq!(
            example_of("/files/3f2b1c9a-1d2e-4f5a-8b9c-0d1e2f3a4b5c"),
            "/files/3f2b1c9a-1d2e-4f5a-8b9c-0d1e2f3a4b5c"
        );
    }

    #[test]
    fn the_hot_path_key_is_the_templates() {
        let same = ["/products/1", "/products/99999", "/products/sku-77?x=1"];
        let h: Vec<u64> = same.iter().map(|p| key_hash("GET", p)).collect();
        assert!(h.iter().all(|x| *x == h[0]));
        assert_ne!(
            key_hash("GET", "/products/1"),
            key_hash("PUT", "/products/1")
        );
        assert_ne!(key_hash("GET", "/products/1"), key_hash("GET", "/products"));
        assert_ne!(key_hash("GET", "/a/b"), key_hash("GET", "/ab"));
    }

    fn entry(n: u64, at: i64) -> Entry {
        let mut e = Entry::one("/x", 200, 10, 1000, at);
        e.requests = n;
        e
    }

    /// `i` in letters: names without digits, which stay literal one by one.
    fn alpha(mut i: usize) -> String {
        let mut s = String::new();
        loop {
            s.push((b'a' + (i % 26) as u8) as char);
            i /= 26;
            if i == 0 {
                return s;
            }
        }
    }

    #[test]
    fn many_literal_siblings_collapse_into_a_parameter() {
        let mut t = Templates::new();
        for i in 0..=COLLAPSE_AFTER {
            t.insert(
                ("GET".into(), format!("/users/{}/profile", alpha(i))),
                entry(2, 1),
            );
        }
        t.insert(("GET".into(), "/users".into()), entry(5, 1));
        t.insert(("POST".into(), "/users/alice/profile".into()), entry(1, 1));
        // Below the bound, siblings stay apart.
        let mut few = Templates::new();
        for i in 0..COLLAPSE_AFTER {
            few.insert(
                ("GET".into(), format!("/users/{}/profile", alpha(i))),
                entry(2, 1),
            );
        }
        assert_eq!(bound(&mut few, MAX_TEMPLATES), 0);
        assert_eq!(few.len(), COLLAPSE_AFTER);

        assert_eq!(bound(&mut t, MAX_TEMPLATES), 0);
        assert_eq!(t.len(), 3);
        let k = |m: &str, p: &str| (m.to_string(), p.to_string());
        assert_eq!(
            t[&k("GET", "/users/{name}/profile")].requests,
            2 * (COLLAPSE_AFTER as u64 + 1)
        );
        // A name sent again later joins the collapsed template.
        t.insert(("GET".into(), "/users/zed/profile".into()), entry(3, 2));
        t.insert(("GET".into(), "/users/zed/settings".into()), entry(4, 2));
        assert_eq!(bound(&mut t, MAX_TEMPLATES), 0);
        assert_eq!(
            t[&k("GET", "/users/{name}/profile")].requests,
            2 * (COLLAPSE_AFTER as u64 + 1) + 3
        );
        assert_eq!(
            t[&k("GET", "/users/zed/settings")].requests,
            4,
            "another shape stays"
        );
        assert_eq!(t[&k("GET", "/users")].requests, 5);
        assert_eq!(t[&k("POST", "/users/alice/profile")].requests, 1);
    }

    #[test]
    fn past_the_cap_the_least_requested_fold_into_overflow() {
        let mut t = Templates::new();
        for i in 0..10u64 {
            t.insert(
                (
                    "GET".into(),
                    format!(
                        "/r{}",
                        ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][i as usize]
                    ),
                ),
                entry(i + 1, 1),
            );
        }
        assert_eq!(bound(&mut t, 4), 6);
        assert_eq!(t.len(), 5);
        let over = &t[&(OVERFLOW_METHOD.to_string(), OVERFLOW_TEMPLATE.to_string())];
        assert_eq!(over.requests, 1 + 2 + 3 + 4 + 5 + 6);
        assert_eq!(
            t.values().map(|e| e.requests).sum::<u64>(),
            55,
            "nothing lost"
        );
    }

    #[test]
    fn latency_quantiles_are_within_a_bucket() {
        let mut l = Latency::default();
        for us in 1..=1000u64 {
            l.record(us * 10);
        }
        let p50 = l.quantile_ms(0.5);
        let p99 = l.quantile_ms(0.99);
        assert!((5.0..=5.5).contains(&p50), "{p50}");
        assert!((9.9..=10.9).contains(&p99), "{p99}");
        let mut m = Latency::default();
        m.merge(&l);
        m.merge(&l);
        assert_eq!(m.quantile_ms(0.5), p50);
    }
}
