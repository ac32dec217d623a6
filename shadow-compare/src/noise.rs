//! Noise: fields that differ even when the monolith is asked twice (A/A),
//! as Diffy separates noise from regressions, plus value-shape heuristics
//! that suggest ignore rules.

use serde::{Deserialize, Serialize};

use crate::{FieldStats, RouteStats};

/// When a field's differences count as noise.
///
/// For a field, `candidate_rate` is the share of candidate comparisons in
/// which it differed and `aa_rate` the share of A/A comparisons in which it
/// differed. What the candidate adds beyond the monolith's own
/// inconsistency is `excess = candidate_rate − aa_rate`. A field that
/// differed in A/A is noise when `excess ≤ absolute` (Diffy's absolute
/// threshold) or `excess ≤ relative × candidate_rate` (its relative one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Default 0.2 (20 %).
    pub relative: f64,
    /// Default 0.0003 (0.03 %).
    pub absolute: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            relative: 0.2,
            absolute: 0.0003,
        }
    }
}

/// Whether `field` is noise for a route with these stats.
pub fn is_noise(stats: &RouteStats, field: &FieldStats, t: Thresholds) -> bool {
    if field.aa == 0 || stats.aa_comparisons == 0 || stats.comparisons == 0 {
        return false;
    }
    let candidate_rate = field.candidate as f64 / stats.comparisons as f64;
    let aa_rate = field.aa as f64 / stats.aa_comparisons as f64;
    let excess = candidate_rate - aa_rate;
    excess <= t.absolute || excess <= t.relative * candidate_rate
}

/// The names of the noise fields of a route.
pub fn noise_fields(stats: &RouteStats, t: Thresholds) -> Vec<String> {
    stats
        .fields
        .iter()
        .filter(|(_, f)| is_noise(stats, f, t))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Real mismatches of a route: those with a difference outside the noise fields.
pub fn real_mismatches(stats: &RouteStats, t: Thresholds) -> u64 {
    let noise = noise_fields(stats, t);
    stats.real_mismatches(|f| noise.iter().any(|n| n == f))
}

/// A suggested rule and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// `ignore` (a JSON Pointer) or `ignore_headers` (a header name).
    pub rule: String,
    pub value: String,
    pub reason: String,
}

/// The shape of a value, when it looks like something that differs on
/// every response by nature.
pub fn shape(value: &str) -> Option<&'static str> {
    let v = value.trim_matches('"');
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && hex(p))
    {
        return Some("a UUID");
    }
    let b = v.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
    {
        return Some("a timestamp");
    }
    if v.len() >= 16 && hex(v) {
        return Some("a random hex id");
    }
    if let Ok(n) = v.parse::<i64>() {
        if n > 1_000_000_000 && n < 100_000_000_000_000 {
            return Some("an epoch time");
        }
    }
    None
}

/// Suggested rules for a route: fields the A/A traffic shows as noise, and
/// fields whose values look like ids or clocks on both sides.
pub fn suggestions(
    stats: &RouteStats,
    existing_ignores: &[String],
    t: Thresholds,
) -> Vec<Suggestion> {
    let mut out = Vec::new();
    for (name, f) in &stats.fields {
        if existing_ignores.iter().any(|e| e == name) || name == "status" || name == "body" {
            continue;
        }
        let (rule, value) = match name.strip_prefix("header:") {
            Some(h) => ("ignore_headers", h.to_string()),
            None => ("ignore", name.clone()),
        };
        let reason = if is_noise(stats, f, t) {
            Some(format!(
                "differs between two answers of the monolith itself in {} of {} A/A pairs",
                f.aa, stats.aa_comparisons
            ))
        } else {
            let shaped = |s: &crate::Sample| {
                s.legacy
                    .as_deref()
                    .and_then(shape)
                    .filter(|_| s.candidate.as_deref().and_then(shape).is_some())
            };
            let all: Vec<&crate::Sample> = f.samples.iter().chain(&f.aa_samples).collect();
            let shapes: Vec<&str> = all.iter().filter_map(|s| shaped(s)).collect();
            (!all.is_empty() && shapes.len() == all.len())
                .then(|| format!("its values look like {} on both sides", shapes[0]))
        };
        if let Some(reason) = reason {
            out.push(Suggestion {
                rule: rule.to_string(),
                value,
                reason,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compare, Response, Rules};
    use serde_json::{json, Value};

    fn resp(v: Value) -> Response {
        Response::new(
            200,
            vec![("content-type".into(), "application/json".into())],
            v.to_string().into_bytes(),
        )
    }

    /// Synthetic traffic: `/price` differs in 30 % of candidate answers (a
    /// real regression); `/generated_at` and `/nonce` differ on every
    /// answer, the monolith's own included.
    #[test]
    fn noise_is_learned_from_aa_traffic() {
        let mut rng = 7u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut stats = RouteStats::default();
        let rules = Rules::none();
        for i in 0..2_000 {
            let base = |n: u64| json!({"id": i, "price": 100, "generated_at": format!("2026-01-01T00:00:{:02}Z", n % 60), "nonce": format!("{:032x}", n)});
            let legacy = base(next());
            let mut candidate = base(next());
            if next() % 10 < 3 {
                candidate["price"] = json!(101);
            }
            stats.record(
                &compare(&rules, &resp(legacy.clone()), &resp(candidate)),
                "GET /p",
                i,
            );
            if i % 4 == 0 {
                stats.record_aa(
                    &compare(&rules, &resp(legacy), &resp(base(next()))),
                    "GET /p",
                    i,
                );
            }
        }
        let t = Thresholds::default();
        let mut noise = noise_fields(&stats, t);
        noise.sort();
        assert_eq!(noise, ["/generated_at", "/nonce"]);
        let real = real_mismatches(&stats, t);
        assert!(
            (500..700).contains(&real),
            "about 30 % of 2000 are real: {real}"
        );
        let sugg = suggestions(&stats, &[], t);
        let values: Vec<&str> = sugg.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(values, ["/generated_at", "/nonce"]);
    }

    #[test]
    fn shapes() {
        assert_eq!(
            shape("\"9b2f1c1e-2c4a-4f6e-9a57-0d2b8f0c4e11\""),
            Some("a UUID")
        );
        assert_eq!(
            shape("\"2026-11-22T01:02:03.123456Z\""),
            Some("a timestamp")
        );
        assert_eq!(
            shape("\"4bf92f3577b34da6a3ce929d0e0e4736\""),
            Some("a random hex id")
        );
        assert_eq!(shape("1795220000123"), Some("an epoch time"));
        assert_eq!(shape("\"Kettle\""), None);
        assert_eq!(shape("42"), None);
    }

    #[test]
    fn shape_suggestions_without_aa() {
        let mut stats = RouteStats::default();
        for i in 0..10 {
            let a = json!({"request_id": format!("{:032x}", i), "v": 1});
            let b = json!({"request_id": format!("{:032x}", i + 100), "v": 1});
            stats.record(&compare(&Rules::none(), &resp(a), &resp(b)), "GET /x", i);
        }
        let s = suggestions(&stats, &[], Thresholds::default());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].value, "/request_id");
        assert!(s[0].reason.contains("random hex id"), "{}", s[0].reason);
        assert!(suggestions(&stats, &["/request_id".into()], Thresholds::default()).is_empty());
    }
}
