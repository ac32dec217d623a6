//! Shadow copies admitted by headroom: while the primary's latency stays
//! near its floor every eligible request is copied; when it rises past the
//! floor by more than the headroom (the proxy is saturated and the copies
//! take CPU from the primary) the admitted share is cut multiplicatively,
//! and it grows back additively once latency recovers (AIMD, as TCP does
//! with its window).
//!
//! Only a busy proxy sheds: its request threads must use at least
//! [`BUSY_CORES`] of their cores (`shadow::cpu`), so a proxy whose latency
//! moves for other reasons (a slow upstream, a burst, a machine busy with
//! other work) copies everything.
//!
//! The signal is the median time to the primary's response header over
//! 200 ms windows (robust to long polls and streams, which would wreck a
//! mean). The floor is the lowest window median seen in the last epoch
//! (60 s). Only *sustained* load is judged: a window is busy with at least
//! [`MIN_SAMPLES`] responses (500/s), and nothing happens before
//! [`SUSTAINED`] busy windows in a row (1 s) — a burst, a test, a lightly
//! used proxy copy everything. Once traffic has been busy that long, one
//! window per epoch runs with no copies at all (a probe), so the floor is
//! the primary's latency without shadow work even when traffic started at
//! saturation; a probe costs 1/300 of the copies. The share is cut only
//! after three congested windows in a row, and is back to every copy as
//! soon as a window is not busy.
//!
//! Admission is a random draw per request, so what is compared stays a
//! uniform sample of the route's traffic; what is shed is counted per
//! route (`skipped_shed`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Responses per window below which the window is not judged.
pub const MIN_SAMPLES: u64 = 100;
/// Share of the worker threads' cores in use that makes the proxy busy.
pub const BUSY_CORES: f64 = 0.6;
/// Windows in a row that make load sustained (1 s of 200 ms windows).
pub const SUSTAINED: u32 = 5;
/// Congested windows in a row before the share is cut.
const CONGESTED: u32 = 3;
/// Windows per epoch (60 s of 200 ms windows).
const EPOCH_WINDOWS: u32 = 300;
/// Added to the floor before comparing: sub-millisecond jitter is not
/// congestion.
const MARGIN_US: f64 = 50.0;
/// Multiplicative decrease on a congested window.
const DECREASE: f64 = 0.7;
/// Additive increase on a healthy window (0 → 1 in 10 s).
const INCREASE: f64 = 0.02;
/// The share never goes below this: some copies keep flowing, so the
/// statistics keep growing (slowly) even at saturation.
const MIN_SHARE: f64 = 0.01;

/// Sub-buckets per power of two of microseconds (≈ 9 % wide).
const SUB: u32 = 8;
/// Octaves covered: 1 µs to 2^24 µs (16.7 s); slower lands in the last.
const OCTAVES: u32 = 24;
const BUCKETS: usize = (OCTAVES * SUB) as usize;

/// The shedder of one proxy.
pub struct Shedder {
    buckets: Box<[AtomicU32]>,
    /// Admitted share × 1e6 (a draw below it admits).
    admit_ppm: AtomicU64,
    state: Mutex<State>,
}

struct State {
    share: f64,
    floor_us: Option<f64>,
    epoch_min_us: f64,
    windows: u32,
    probing: bool,
    /// A probe ran in this epoch.
    probed: bool,
    busy_streak: u32,
    congested_streak: u32,
}

/// What one window decided (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The median of the window, when it had enough responses.
    pub median_us: Option<f64>,
    pub floor_us: Option<f64>,
    /// The share admitted from now on (0 during a probe).
    pub admitted: f64,
}

impl Shedder {
    pub fn new() -> Shedder {
        Shedder {
            buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            admit_ppm: AtomicU64::new(1_000_000),
            state: Mutex::new(State::new()),
        }
    }

    /// Records one primary response's time to header.
    pub fn observe(&self, latency: Duration) {
        self.buckets[bucket(latency.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this request's copy is admitted.
    pub fn admit(&self) -> bool {
        let ppm = self.admit_ppm.load(Ordering::Relaxed);
        ppm >= 1_000_000 || fastrand::u64(..1_000_000) < ppm
    }

    /// Shedding off: every copy admitted, the window and what was learned
    /// forgotten (turned on again, it starts afresh).
    pub fn disable(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::new();
        self.admit_ppm.store(1_000_000, Ordering::Relaxed);
    }

    /// The share admitted now.
    pub fn admitted(&self) -> f64 {
        self.admit_ppm.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Closes a window (every 200 ms): judges its median against the
    /// floor with `headroom` (0.05 = 5 % above the floor) and sets the
    /// share for the next one. `busy_cpu`: whether the request threads
    /// used [`BUSY_CORES`] of their cores in the window (`None`: unknown,
    /// latency alone decides).
    pub fn tick(&self, headroom: f64, busy_cpu: Option<bool>) -> Window {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| u64::from(b.swap(0, Ordering::Relaxed)))
            .collect();
        let total: u64 = counts.iter().sum();
        let median = median_us(&counts);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let busy = total >= MIN_SAMPLES && busy_cpu.unwrap_or(true);
        let admitted = s.close(median, busy, headroom);
        self.admit_ppm
            .store((admitted * 1e6).round() as u64, Ordering::Relaxed);
        Window {
            median_us: median,
            floor_us: s.floor_us,
            admitted,
        }
    }
}

impl Default for Shedder {
    fn default() -> Self {
        Shedder::new()
    }
}

impl State {
    fn new() -> State {
        State {
            share: 1.0,
            floor_us: None,
            epoch_min_us: f64::INFINITY,
            windows: 0,
            probing: false,
            probed: false,
            busy_streak: 0,
            congested_streak: 0,
        }
    }

    /// The share for the next window.
    fn close(&mut self, median: Option<f64>, busy: bool, headroom: f64) -> f64 {
        self.windows += 1;
        if self.windows >= EPOCH_WINDOWS {
            // A new epoch: the floor follows the traffic (a slower mix of
            // endpoints raises it); a probe confirms it if still busy.
            self.windows = 0;
            self.probed = false;
            if self.epoch_min_us.is_finite() {
                self.floor_us = Some(self.epoch_min_us);
            }
            self.epoch_min_us = f64::INFINITY;
        }
        if let Some(m) = median {
            self.epoch_min_us = self.epoch_min_us.min(m);
            self.floor_us = Some(self.floor_us.map_or(m, |f| f.min(m)));
        }
        if self.probing {
            // That was the window without copies: its median lowered the
            // floor to the primary's own latency.
            self.probing = false;
            return self.share;
        }
        self.busy_streak = if busy { self.busy_streak + 1 } else { 0 };
        if !busy {
            // Headroom again: nothing to protect.
            self.congested_streak = 0;
            self.share = 1.0;
            return self.share;
        }
        if self.busy_streak < SUSTAINED {
            self.congested_streak = 0;
            self.share = (self.share + INCREASE).min(1.0);
            return self.share;
        }
        if !self.probed {
            self.probed = true;
            self.probing = true;
            return 0.0;
        }
        let (Some(m), Some(floor)) = (median, self.floor_us) else {
            return self.share;
        };
        if m > floor * (1.0 + headroom) + MARGIN_US {
            self.congested_streak += 1;
            if self.congested_streak >= CONGESTED {
                self.share = (self.share * DECREASE).max(MIN_SHARE);
            }
        } else {
            self.congested_streak = 0;
            self.share = (self.share + INCREASE).min(1.0);
        }
        self.share
    }
}

/// The bucket of a latency in microseconds: `SUB` per power of two.
fn bucket(us: u64) -> usize {
    let us = us.max(1);
    let octave = 63 - us.leading_zeros();
    if octave >= OCTAVES {
        return BUCKETS - 1;
    }
    // The `SUB` bits below the leading one pick the sub-bucket.
    let sub = if octave >= 3 {
        (us >> (octave - 3)) & u64::from(SUB - 1)
    } else {
        (us << (3 - octave)) & u64::from(SUB - 1)
    };
    (octave * SUB) as usize + sub as usize
}

/// The lower edge of a bucket, in microseconds.
fn bucket_floor(i: usize) -> f64 {
    let (octave, sub) = (i as u32 / SUB, i as u32 % SUB);
    2f64.powi(octave as i32) * (1.0 + f64::from(sub) / f64::from(SUB))
}

/// Fewer responses than this in a window give no median.
const MIN_MEDIAN: u64 = 10;

/// The median of a window's histogram (linear within its bucket), or
/// `None` below [`MIN_MEDIAN`] responses.
fn median_us(counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total < MIN_MEDIAN {
        return None;
    }
    let half = total as f64 / 2.0;
    let mut seen = 0.0;
    for (i, &c) in counts.iter().enumerate() {
        let c = c as f64;
        if c > 0.0 && seen + c >= half {
            let (lo, hi) = (bucket_floor(i), bucket_floor(i + 1));
            return Some(lo + (hi - lo) * (half - seen) / c);
        }
        seen += c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(s: &Shedder, n: u64, us: u64) -> Window {
        for _ in 0..n {
            s.observe(Duration::from_micros(us));
        }
        s.tick(0.05, Some(true))
    }

    #[test]
    fn buckets_are_ordered_and_narrow() {
        let mut last = 0;
        for us in 1..100_000u64 {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            assert!(
                bucket_floor(b) <= us as f64 && (us as f64) < bucket_floor(b + 1),
                "{us}"
            );
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        let m = median_us(&{
            let mut c = vec![0; BUCKETS];
            c[bucket(1500)] = 200;
            c
        })
        .expect("median");
        assert!((1400.0..1600.0).contains(&m), "{m}");
    }

    #[test]
    fn an_idle_cpu_copies_everything_whatever_the_latency() {
        let s = Shedder::new();
        for _ in 0..50 {
            for _ in 0..1000 {
                s.observe(Duration::from_micros(if fastrand::bool() {
                    400
                } else {
                    40_000
                }));
            }
            assert_eq!(s.tick(0.05, Some(false)).admitted, 1.0);
        }
    }

    #[test]
    fn a_lightly_used_proxy_and_a_burst_copy_everything() {
        let s = Shedder::new();
        for _ in 0..20 {
            let w = window(&s, MIN_SAMPLES - 1, 50_000);
            assert_eq!(w.admitted, 1.0);
        }
        // A one-second burst at twenty times the latency: not sustained.
        for _ in 0..SUSTAINED - 1 {
            assert_eq!(window(&s, 1000, 1_000_000).admitted, 1.0);
        }
        assert_eq!(window(&s, 10, 50_000).admitted, 1.0);
        assert!(s.admit());
    }

    #[test]
    fn saturation_cuts_the_share_and_recovery_restores_it() {
        let s = Shedder::new();
        // Traffic starts at saturation: once sustained, a probe (no
        // copies) finds the primary's own latency.
        let shares: Vec<f64> = (0..SUSTAINED)
            .map(|_| window(&s, 500, 3400).admitted)
            .collect();
        assert_eq!(shares, [1.0, 1.0, 1.0, 1.0, 0.0]);
        assert!(!s.admit(), "a probe admits nothing");
        let w = window(&s, 500, 1700);
        assert_eq!(w.floor_us.map(|f| (f / 100.0).round()), Some(17.0));
        assert_eq!(w.admitted, 1.0);
        // With the copies, latency doubles: after a second of it the share
        // falls geometrically.
        let shares: Vec<f64> = (0..15).map(|_| window(&s, 500, 3400).admitted).collect();
        assert_eq!(shares[..CONGESTED as usize - 1], [1.0; 2]);
        let falling = &shares[CONGESTED as usize - 1..];
        assert!(falling.windows(2).all(|p| p[1] < p[0]), "{shares:?}");
        assert!(falling[10] < 0.03, "{shares:?}");
        // Near the floor (within 5 % + 0.05 ms) it grows back.
        let before = s.admitted();
        for _ in 0..5 {
            window(&s, 500, 1800);
        }
        assert!((s.admitted() - (before + 5.0 * INCREASE)).abs() < 1e-9);
        // The load goes: every copy at once.
        assert_eq!(s.tick(0.05, Some(false)).admitted, 1.0);
    }

    #[test]
    fn below_saturation_every_request_is_copied_except_one_probe_an_epoch() {
        let s = Shedder::new();
        let mut probes = Vec::new();
        for i in 0..(2 * EPOCH_WINDOWS) {
            // Half load: latency with copies a little above without.
            let us = if i % 7 == 0 { 400 } else { 440 };
            let w = window(&s, 400, us);
            if w.admitted != 1.0 {
                assert_eq!(w.admitted, 0.0, "only probes admit less: window {i}");
                probes.push(i);
            }
        }
        // Once the load is sustained, then at the start of each epoch.
        assert_eq!(
            probes,
            [SUSTAINED - 1, EPOCH_WINDOWS - 1, 2 * EPOCH_WINDOWS - 1]
        );
    }
}
