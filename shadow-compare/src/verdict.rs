//! "Is this endpoint safe to cut over?"

use serde::{Deserialize, Serialize};

/// z for a one-sided… two-sided 95 % interval, as Wilson's score interval uses.
const Z: f64 = 1.959_963_984_540_054;

/// The answer for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Enough samples, and the 95 % upper bound of the real-mismatch rate is
    /// within the allowed rate.
    Ready,
    /// The observed real-mismatch rate is above the allowed rate.
    NotReady,
    /// Too few samples to say: fewer than `min_samples`, or the observed
    /// rate is within bounds but its upper bound is not yet.
    InsufficientData,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ready => "READY",
            Status::NotReady => "NOT READY",
            Status::InsufficientData => "INSUFFICIENT DATA",
        }
    }
}

/// The verdict with the numbers behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Status,
    pub samples: u64,
    pub real_mismatches: u64,
    /// Observed real-mismatch rate (0..=1).
    pub rate: f64,
    /// 95 % Wilson upper bound of the rate (0..=1).
    pub upper_bound: f64,
    /// The allowed rate (0..=1).
    pub max_mismatch: f64,
    pub min_samples: u64,
    /// Samples still needed at the observed rate before the bound can
    /// reach the allowed rate (0 when there or unreachable).
    pub samples_needed: u64,
}

/// Wilson score upper bound of `k` successes in `n` trials (95 %).
pub fn wilson_upper(k: u64, n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + margin) / (1.0 + z2 / n)).min(1.0)
}

/// Decides from `real_mismatches` out of `samples` comparisons.
/// `max_mismatch` is a fraction (0.001 for 0.1 %).
pub fn verdict(samples: u64, real_mismatches: u64, max_mismatch: f64, min_samples: u64) -> Verdict {
    let rate = if samples == 0 {
        0.0
    } else {
        real_mismatches as f64 / samples as f64
    };
    let upper = wilson_upper(real_mismatches, samples);
    let status = if samples >= min_samples && upper <= max_mismatch {
        Status::Ready
    } else if samples >= min_samples && rate > max_mismatch {
        Status::NotReady
    } else {
        Status::InsufficientData
    };
    let samples_needed = if status == Status::InsufficientData && rate < max_mismatch {
        // Smallest n (doubling, then bisecting) whose bound at this rate fits.
        let fits = |n: u64| wilson_upper((rate * n as f64).round() as u64, n) <= max_mismatch;
        let mut hi = samples.max(min_samples).max(1);
        while !fits(hi) && hi < u64::MAX / 4 {
            hi *= 2;
        }
        let mut lo = hi / 2;
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi.max(min_samples).saturating_sub(samples)
    } else {
        0
    };
    Verdict {
        status,
        samples,
        real_mismatches,
        rate,
        upper_bound: upper,
        max_mismatch,
        min_samples,
        samples_needed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 0 of 100: upper bound ~3.70 %.
        assert!((wilson_upper(0, 100) - 0.0370).abs() < 0.0005);
        // 10 of 100: ~17.4 %.
        assert!((wilson_upper(10, 100) - 0.1744).abs() < 0.0005);
        assert_eq!(wilson_upper(0, 0), 1.0);
    }

    #[test]
    fn statuses() {
        assert_eq!(verdict(100, 0, 0.001, 500).status, Status::InsufficientData);
        assert_eq!(verdict(5_000, 0, 0.001, 500).status, Status::Ready);
        assert_eq!(verdict(5_000, 100, 0.001, 500).status, Status::NotReady);
        // Clean so far but the bound is not there yet: more data, not a failure.
        let v = verdict(1_000, 0, 0.001, 500);
        assert_eq!(v.status, Status::InsufficientData);
        assert!(
            v.samples_needed > 2_000 && v.samples_needed < 3_000,
            "{v:?}"
        );
        assert_eq!(verdict(600, 1, 0.05, 500).status, Status::Ready);
    }
}
