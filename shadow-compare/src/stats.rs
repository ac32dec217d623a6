//! Per-route, per-field aggregation of comparisons.
//!
//! A [`RouteStats`] is what one proxy learned since its last flush (a delta)
//! or what the whole fleet learned (the sum in the state store); [`merge`]
//! adds one to the other, so both are the same type.
//!
//! [`merge`]: RouteStats::merge

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Comparison, Kind};

/// Samples kept per field.
pub const MAX_SAMPLES_PER_FIELD: usize = 5;
/// Distinct mismatch signatures kept per route; the rest are pooled.
pub const MAX_SIGNATURES: usize = 1_000;
/// The pooled signature (always counted as a real mismatch).
const OTHER: &str = "*other*";

/// Why a request was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// A body was bigger than `max_shadow_body_bytes`.
    BodyTooLarge,
    /// `max_shadow_inflight` shadow requests were already in flight.
    Inflight,
    /// The candidate could not be reached or failed mid-response.
    CandidateError,
    /// The primary response did not complete (client went away, error).
    PrimaryIncomplete,
    /// A protocol upgrade (a WebSocket): a connection, not a request, so it
    /// is not copied.
    Upgrade,
    /// The primary answered with a stream of server-sent events: it may
    /// last for hours, so it is not compared (nor waited for).
    Stream,
    /// The proxy was short of headroom (the primary's latency above its
    /// floor): the copy was shed to protect the primary.
    Shed,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::BodyTooLarge => "body_too_large",
            Skip::Inflight => "inflight",
            Skip::CandidateError => "candidate_error",
            Skip::PrimaryIncomplete => "primary_incomplete",
            Skip::Upgrade => "upgrade",
            Skip::Stream => "stream",
            Skip::Shed => "shed",
        }
    }
}

/// One example difference, redacted before it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// `METHOD /path` of the request (no query string, no headers).
    pub request: String,
    pub path: String,
    pub kind: Kind,
    pub legacy: Option<String>,
    pub candidate: Option<String>,
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified_diff: Option<String>,
}

/// What is known about one field of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldStats {
    /// Comparisons (candidate vs monolith) where the field differed.
    pub candidate: u64,
    /// A/A comparisons (monolith vs monolith) where the field differed.
    pub aa: u64,
    /// Counts by kind (candidate comparisons).
    pub kinds: BTreeMap<Kind, u64>,
    /// Newest first, at most [`MAX_SAMPLES_PER_FIELD`].
    pub samples: Vec<Sample>,
    /// A/A samples: the monolith's two answers (for shape heuristics).
    #[serde(default)]
    pub aa_samples: Vec<Sample>,
}

/// What is known about one route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStats {
    /// Candidate-vs-monolith comparisons (stale ones included).
    pub comparisons: u64,
    /// Comparisons with no difference under the rules.
    pub matches: u64,
    /// Mismatches that matched when re-checked after replication caught up.
    pub stale: u64,
    /// Monolith-vs-monolith (A/A) comparisons.
    pub aa_comparisons: u64,
    /// Requests not compared, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Per field (array indexes as `*`).
    pub fields: BTreeMap<String, FieldStats>,
    /// Mismatching comparisons by the set of fields that differed
    /// (sorted, joined by newlines): what decides which mismatches are real
    /// once noise fields are known.
    pub signatures: BTreeMap<String, u64>,
}

impl RouteStats {
    /// Records a candidate-vs-monolith comparison of `request` (`METHOD /path`).
    pub fn record(&mut self, c: &Comparison, request: &str, at_ms: i64) {
        self.comparisons += 1;
        if c.is_match() {
            self.matches += 1;
            return;
        }
        let mut fields: Vec<&str> = c.differences.iter().map(|d| d.field.as_str()).collect();
        fields.sort_unstable();
        fields.dedup();
        for d in &c.differences {
            let f = self.fields.entry(d.field.clone()).or_default();
            *f.kinds.entry(d.kind).or_default() += 1;
            push_sample(
                &mut f.samples,
                Sample {
                    request: request.to_string(),
                    path: d.path.clone(),
                    kind: d.kind,
                    legacy: d.legacy.clone(),
                    candidate: d.candidate.clone(),
                    at_ms,
                    unified_diff: c.unified_diff.clone().filter(|_| d.kind == Kind::Text),
                },
            );
        }
        for field in &fields {
            if let Some(f) = self.fields.get_mut(*field) {
                f.candidate += 1;
            }
        }
        self.add_signature(fields.join("\n"), 1);
    }

    /// Records a monolith-vs-monolith comparison.
    pub fn record_aa(&mut self, c: &Comparison, request: &str, at_ms: i64) {
        self.aa_comparisons += 1;
        let mut seen: Vec<&str> = Vec::new();
        for d in &c.differences {
            let f = self.fields.entry(d.field.clone()).or_default();
            if !seen.contains(&d.field.as_str()) {
                f.aa += 1;
                seen.push(&d.field);
            }
            push_sample(
                &mut f.aa_samples,
                Sample {
                    request: request.to_string(),
                    path: d.path.clone(),
                    kind: d.kind,
                    legacy: d.legacy.clone(),
                    candidate: d.candidate.clone(),
                    at_ms,
                    unified_diff: None,
                },
            );
        }
    }

    /// Records a mismatch that matched on re-check (replication lag).
    pub fn record_stale(&mut self) {
        self.comparisons += 1;
        self.stale += 1;
    }

    pub fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why.as_str().to_string()).or_default() += 1;
    }

    /// Mismatching comparisons (noise included, stale excluded).
    pub fn mismatches(&self) -> u64 {
        self.comparisons - self.matches - self.stale
    }

    fn add_signature(&mut self, sig: String, n: u64) {
        if self.signatures.contains_key(&sig) || self.signatures.len() < MAX_SIGNATURES {
            *self.signatures.entry(sig).or_default() += n;
        } else {
            *self.signatures.entry(OTHER.to_string()).or_default() += n;
        }
    }

    /// Mismatches in which at least one field is not `noise`.
    pub fn real_mismatches(&self, noise: impl Fn(&str) -> bool) -> u64 {
        self.signatures
            .iter()
            .filter(|(sig, _)| sig.as_str() == OTHER || sig.split('\n').any(|f| !noise(f)))
            .map(|(_, n)| *n)
            .sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &RouteStats) {
        self.comparisons += other.comparisons;
        self.matches += other.matches;
        self.stale += other.stale;
        self.aa_comparisons += other.aa_comparisons;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        for (name, f) in &other.fields {
            let mine = self.fields.entry(name.clone()).or_default();
            mine.candidate += f.candidate;
            mine.aa += f.aa;
            for (k, v) in &f.kinds {
                *mine.kinds.entry(*k).or_default() += v;
            }
            for s in f.samples.iter().rev() {
                push_sample(&mut mine.samples, s.clone());
            }
            for s in f.aa_samples.iter().rev() {
                push_sample(&mut mine.aa_samples, s.clone());
            }
        }
        for (sig, n) in &other.signatures {
            self.add_signature(sig.clone(), *n);
        }
    }

    /// Drops fields that `forget` selects (rules added after the data was
    /// gathered): mismatches that differed only in them become matches.
    pub fn forget_fields(&mut self, forget: impl Fn(&str) -> bool) {
        self.fields.retain(|name, _| !forget(name));
        let old = std::mem::take(&mut self.signatures);
        for (sig, n) in old {
            if sig == OTHER {
                self.add_signature(sig, n);
                continue;
            }
            let kept: Vec<&str> = sig.split('\n').filter(|f| !forget(f)).collect();
            if kept.is_empty() {
                self.matches += n;
            } else {
                self.add_signature(kept.join("\n"), n);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == RouteStats::default()
    }
}

/// Newest first, bounded.
fn push_sample(samples: &mut Vec<Sample>, s: Sample) {
    samples.insert(0, s);
    samples.truncate(MAX_SAMPLES_PER_FIELD);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compare, Response, Rules};
    use serde_json::json;

    fn cmp(a: serde_json::Value, b: serde_json::Value) -> Comparison {
        let r = |v: serde_json::Value| {
            Response::new(
                200,
                vec![("content-type".into(), "application/json".into())],
                v.to_string().into_bytes(),
            )
        };
        compare(&Rules::none(), &r(a), &r(b))
    }

    #[test]
    fn counts_fields_kinds_and_signatures() {
        let mut s = RouteStats::default();
        s.record(
            &cmp(json!({"a": 1, "t": 1}), json!({"a": 2, "t": 2})),
            "GET /x",
            1,
        );
        s.record(
            &cmp(json!({"a": 1, "t": 1}), json!({"a": 1, "t": 3})),
            "GET /x",
            2,
        );
        s.record(&cmp(json!({"a": 1}), json!({"a": 1})), "GET /x", 3);
        assert_eq!((s.comparisons, s.matches, s.mismatches()), (3, 1, 2));
        assert_eq!(s.fields["/t"].candidate, 2);
        assert_eq!(s.fields["/a"].kinds[&Kind::Value], 1);
        assert_eq!(s.fields["/t"].samples[0].at_ms, 2, "newest first");
        // If /t is noise, only the comparison where /a differed is real.
        assert_eq!(s.real_mismatches(|f| f == "/t"), 1);
        assert_eq!(s.real_mismatches(|_| false), 2);
    }

    #[test]
    fn forgetting_fields_turns_their_mismatches_into_matches() {
        let mut s = RouteStats::default();
        s.record(
            &cmp(json!({"a": 1, "t": 1}), json!({"a": 2, "t": 2})),
            "GET /x",
            1,
        );
        s.record(
            &cmp(json!({"a": 1, "t": 1}), json!({"a": 1, "t": 3})),
            "GET /x",
            2,
        );
        s.forget_fields(|f| f == "/t");
        assert_eq!((s.comparisons, s.matches, s.mismatches()), (2, 1, 1));
        assert!(!s.fields.contains_key("/t"));
        assert_eq!(s.signatures["/a"], 1);
    }

    #[test]
    fn merge_adds_and_bounds_samples() {
        let mut a = RouteStats::default();
        let mut b = RouteStats::default();
        for i in 0..4 {
            a.record(&cmp(json!({"x": i}), json!({"x": -1})), "GET /a", i);
            b.record(&cmp(json!({"x": i}), json!({"x": -1})), "GET /b", 10 + i);
        }
        b.skip(Skip::Inflight);
        a.merge(&b);
        assert_eq!(a.comparisons, 8);
        assert_eq!(a.fields["/x"].candidate, 8);
        assert_eq!(a.fields["/x"].samples.len(), MAX_SAMPLES_PER_FIELD);
        assert_eq!(a.skipped["inflight"], 1);
        assert_eq!(a.signatures["/x"], 8);
    }
}
