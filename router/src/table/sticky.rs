//! Sticky canary assignment.
//!
//! A user's bucket is a stable hash of (route name, sticky key) into
//! [`BUCKETS`] buckets; the user is on the service when
//! `bucket < percent × 100`. Because the bucket does not depend on the
//! percent, raising the percent only ever adds buckets: nobody moves back.
//! The hash is FNV-1a followed by a 64-bit finalizer (splitmix64): fixed
//! here, so every proxy of a fleet, and every version, agrees.

use std::net::IpAddr;

use http::HeaderMap;
use strangler_config::Sticky;

/// Number of sticky buckets.
pub const BUCKETS: u32 = 10_000;

/// The bucket of `key` for `route`, in `0..BUCKETS`.
pub fn bucket(route: &str, key: &[u8]) -> u32 {
    use std::hash::Hasher;
    let mut fnv = fnv::FnvHasher::default();
    fnv.write(route.as_bytes());
    fnv.write(&[0xff]);
    fnv.write(key);
    let mut h = fnv.finish();
    // splitmix64 finalizer: spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % u64::from(BUCKETS)) as u32
}

/// Whether `bucket` is on the service at `percent` (0.0..=100.0).
pub fn on_service(bucket: u32, percent: f64) -> bool {
    f64::from(bucket) < percent * 100.0
}

/// The sticky key of a request, if the request carries one.
pub fn key<'a>(
    sticky: &Sticky,
    headers: &'a HeaderMap,
    client_ip: Option<IpAddr>,
) -> Option<StickyKey<'a>> {
    match sticky {
        Sticky::Header(name) => headers
            .get(name.as_str())
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty())
            .map(StickyKey::Borrowed),
        Sticky::Cookie(name) => cookie(headers, name).map(StickyKey::Borrowed),
        Sticky::ClientIp => client_ip.map(|ip| StickyKey::Owned(ip.to_string().into_bytes())),
        Sticky::None => None,
    }
}

/// A sticky key, borrowed from the request when possible.
pub enum StickyKey<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl StickyKey<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            StickyKey::Borrowed(b) => b,
            StickyKey::Owned(v) => v,
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(http::header::COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (k, val) = (pair.get(..eq)?, pair.get(eq + 1..)?);
            (trim(k) == name.as_bytes() && !val.is_empty()).then(|| trim(val))
        })
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_is_stable_across_versions() {
        // Pinned: changing the hash would move every user of every fleet.
        assert_eq!(bucket("get-product", b"user-1"), 1_847);
        assert_ne!(
            bucket("get-product", b"user-1"),
            bucket("other-route", b"user-1")
        );
    }

    #[test]
    fn share_is_close_to_percent() {
        for percent in [1.0, 10.0, 33.3, 50.0, 90.0] {
            let on = (0..100_000)
                .filter(|i| on_service(bucket("r", format!("u{i}").as_bytes()), percent))
                .count();
            let share = on as f64 / 1_000.0;
            assert!(
                (share - percent).abs() < 0.5,
                "percent {percent}: share {share}"
            );
        }
    }

    #[test]
    fn edges() {
        assert!(!on_service(0, 0.0));
        assert!(on_service(9_999, 100.0));
        assert!(on_service(0, 0.01));
        assert!(!on_service(1, 0.01));
    }

    #[test]
    fn cookie_and_header_keys() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", "42".parse().expect("header"));
        h.append(
            http::header::COOKIE,
            "a=1; sid = abc ;b=2".parse().expect("header"),
        );
        let k = key(&Sticky::Header("x-user-id".into()), &h, None).map(|k| k.as_bytes().to_vec());
        assert_eq!(k.as_deref(), Some(&b"42"[..]));
        let k = key(&Sticky::Cookie("sid".into()), &h, None).map(|k| k.as_bytes().to_vec());
        assert_eq!(k.as_deref(), Some(&b"abc"[..]));
        assert!(key(&Sticky::Cookie("nope".into()), &h, None).is_none());
        let ip = "10.1.2.3".parse().ok();
        let k = key(&Sticky::ClientIp, &h, ip).map(|k| k.as_bytes().to_vec());
        assert_eq!(k.as_deref(), Some(&b"10.1.2.3"[..]));
        assert!(key(&Sticky::None, &h, ip).is_none());
    }

    proptest! {
        /// Raising the percent never moves a user back to the monolith.
        #[test]
        fn monotone_in_percent(route in "[a-z-]{1,12}", user in any::<Vec<u8>>(), p in 0.0f64..=100.0, q in 0.0f64..=100.0) {
            let (lo, hi) = if p <= q { (p, q) } else { (q, p) };
            let b = bucket(&route, &user);
            prop_assert!(b < BUCKETS);
            if on_service(b, lo) {
                prop_assert!(on_service(b, hi));
            }
        }
    }
}
