//! Intervals: PostgreSQL's `postgres` style read, Debezium's ISO 8601 and
//! MicroDuration written.

use super::{parse_time, DAY_MICROS};

/// An interval as PostgreSQL keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    pub months: i64,
    pub days: i64,
    pub micros: i64,
}

/// `IntervalStyle=postgres` text (`1 year 2 mons -3 days -04:05:06.5`).
pub fn parse_interval(t: &str) -> Option<Interval> {
    let mut iv = Interval::default();
    let mut words = t.split_whitespace();
    while let Some(w) = words.next() {
        if w.contains(':') {
            let (neg, body) = match w.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, w.strip_prefix('+').unwrap_or(w)),
            };
            let us = parse_time(body)?;
            iv.micros += if neg { -us } else { us };
            continue;
        }
        let n: i64 = w.parse().ok()?;
        match words.next()?.trim_end_matches('s') {
            "year" => iv.months += n * 12,
            "mon" => iv.months += n,
            "day" => iv.days += n,
            _ => return None,
        }
    }
    Some(iv)
}

/// ISO 8601 with designators, as Debezium's `io.debezium.time.Interval`:
/// `P1Y2M3DT4H5M6.78S`; every field carries its own sign.
pub fn write_iso_interval(iv: Interval) -> String {
    let (y, mo) = (iv.months / 12, iv.months % 12);
    let neg = iv.micros < 0;
    let abs = iv.micros.unsigned_abs();
    let (h, mi) = (abs / 3_600_000_000, abs / 60_000_000 % 60);
    let (s, frac) = (abs / 1_000_000 % 60, abs % 1_000_000);
    let sign = if neg { "-" } else { "" };
    let secs = if frac == 0 {
        format!("{sign}{s}")
    } else {
        format!("{sign}{s}{}", super::fraction(frac as i64))
    };
    let signed = |v: u64| {
        if v == 0 {
            "0".to_string()
        } else {
            format!("{sign}{v}")
        }
    };
    format!(
        "P{y}Y{mo}M{}DT{}H{}M{secs}S",
        iv.days,
        signed(h),
        signed(mi)
    )
}

/// Debezium's `MicroDuration`: a month counts 365.25 / 12 days.
pub fn interval_micros(iv: Interval) -> i64 {
    let days = iv.months as f64 * 30.4375 + iv.days as f64;
    (days * DAY_MICROS as f64) as i64 + iv.micros
}
