//! PostgreSQL's text forms, read and written exactly.
//!
//! The source session is pinned to `DateStyle=ISO`, `IntervalStyle=postgres`,
//! `TimeZone=UTC`, `bytea_output=hex` and `extra_float_digits=3` (see
//! [`crate::source::SESSION_SETTINGS`]), so these are the only forms that
//! arrive. Calendar arithmetic is Howard Hinnant's proleptic Gregorian
//! algorithm on plain integers: every date PostgreSQL accepts (4713 BC to
//! 5874897 AD) fits, unlike `chrono`'s ±262143 years.

/// Microseconds in a day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (`year` astronomical:
/// 0 is 1 BC).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01: (astronomical year, month, day).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A date, a timestamp's bound, or one of PostgreSQL's infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Infinite<T> {
    Finite(T),
    Plus,
    Minus,
}

fn infinity(t: &str) -> Option<Infinite<()>> {
    match t {
        "infinity" => Some(Infinite::Plus),
        "-infinity" => Some(Infinite::Minus),
        _ => None,
    }
}

/// Strips PostgreSQL's ` BC` suffix.
fn era(t: &str) -> (&str, bool) {
    match t.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (t, false),
    }
}

/// `YYYY-MM-DD` (any number of year digits) → (year as written, month, day).
fn ymd(d: &str) -> Option<(i64, i64, i64)> {
    let mut p = d.splitn(3, '-');
    let y: i64 = p.next()?.parse().ok()?;
    let m: i64 = p.next()?.parse().ok()?;
    let day: i64 = p.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&day)).then_some((y, m, day))
}

fn astronomical(year: i64, bc: bool) -> i64 {
    if bc {
        1 - year
    } else {
        year
    }
}

/// PostgreSQL's `date` text → days since 1970-01-01.
pub fn parse_date(t: &str) -> Option<Infinite<i64>> {
    if let Some(i) = infinity(t) {
        return Some(inf(i));
    }
    let (body, bc) = era(t);
    let (y, m, d) = ymd(body)?;
    Some(Infinite::Finite(days_from_civil(astronomical(y, bc), m, d)))
}

fn inf<T>(i: Infinite<()>) -> Infinite<T> {
    match i {
        Infinite::Plus => Infinite::Plus,
        _ => Infinite::Minus,
    }
}

/// Days since 1970-01-01 → PostgreSQL's `date` text.
pub fn write_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// `HH:MM:SS[.ffffff]` → microseconds (up to `24:00:00`; hours may exceed
/// 24 inside intervals).
pub fn parse_time(t: &str) -> Option<i64> {
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    let mut p = hms.split(':');
    let h: i64 = p.next()?.parse().ok()?;
    let m: i64 = p.next()?.parse().ok()?;
    let s: i64 = p.next()?.parse().ok()?;
    if p.next().is_some() || !(0..60).contains(&m) || !(0..=60).contains(&s) || h < 0 {
        return None;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + micros)
}

/// `.ffffff` without trailing zeros, or nothing.
pub(crate) fn fraction(micros: i64) -> String {
    if micros == 0 {
        return String::new();
    }
    let f = format!(".{micros:06}");
    f.trim_end_matches('0').to_string()
}

/// Microseconds of the day → `HH:MM:SS[.ffffff]` as PostgreSQL writes it.
pub fn write_time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    format!(
        "{:02}:{:02}:{:02}{}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        fraction(micros.rem_euclid(1_000_000))
    )
}

/// A `+HH[:MM[:SS]]` offset → seconds east of UTC.
fn parse_offset(t: &str) -> Option<i64> {
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let mut secs = 0;
    let mut unit = 3600;
    for part in rest.split(':') {
        if unit == 0 || part.len() != 2 {
            return None;
        }
        secs += part.parse::<i64>().ok()? * unit;
        unit /= 60;
    }
    Some(sign * secs)
}

/// Splits `HH:MM:SS.ffffff+HH:MM` into the time and the offset in seconds.
fn split_offset(t: &str) -> Option<(&str, i64)> {
    let at = t.rfind(['+', '-'])?;
    Some((&t[..at], parse_offset(&t[at..])?))
}

/// `timetz` text → (microseconds of the day, offset seconds east of UTC).
pub fn parse_timetz(t: &str) -> Option<(i64, i64)> {
    let (time, offset) = split_offset(t)?;
    Some((parse_time(time)?, offset))
}

/// Microseconds since the epoch of a day, a time of day and an offset;
/// `None` past what an i64 holds (the last days of PostgreSQL's year
/// 294276 counted from 1970, as in Java).
fn at(days: i64, micros: i64, offset_secs: i64) -> Option<i64> {
    days.checked_mul(DAY_MICROS)?
        .checked_add(micros)?
        .checked_sub(offset_secs.checked_mul(1_000_000)?)
}

/// `timestamp` text (no zone) → microseconds since the epoch.
pub fn parse_timestamp(t: &str) -> Option<Infinite<i64>> {
    if let Some(i) = infinity(t) {
        return Some(inf(i));
    }
    let (body, bc) = era(t);
    let (d, time) = body.split_once(' ')?;
    let (y, m, day) = ymd(d)?;
    let days = days_from_civil(astronomical(y, bc), m, day);
    Some(Infinite::Finite(at(days, parse_time(time)?, 0)?))
}

/// `timestamptz` text → microseconds since the epoch (UTC).
pub fn parse_timestamptz(t: &str) -> Option<Infinite<i64>> {
    if let Some(i) = infinity(t) {
        return Some(inf(i));
    }
    let (body, bc) = era(t);
    let (d, time) = body.split_once(' ')?;
    let (time, offset) = split_offset(time)?;
    let (y, m, day) = ymd(d)?;
    let days = days_from_civil(astronomical(y, bc), m, day);
    Some(Infinite::Finite(at(days, parse_time(time)?, offset)?))
}

/// Microseconds since the epoch → `timestamp` text.
pub fn write_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(DAY_MICROS);
    let (y, m, d) = civil_from_days(days);
    let time = write_time(micros.rem_euclid(DAY_MICROS));
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} {time} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02} {time}")
    }
}

/// Microseconds since the epoch → `timestamptz` text in UTC.
pub fn write_timestamptz(micros: i64) -> String {
    let t = write_timestamp(micros);
    match t.strip_suffix(" BC") {
        Some(body) => format!("{body}+00 BC"),
        None => format!("{t}+00"),
    }
}

/// Microseconds since the epoch → ISO 8601 in UTC as Java writes it
/// (`0000` is 1 BC, `-0001` 2 BC, `+10000` after 9999): Debezium's
/// `ZonedTimestamp`.
pub fn write_iso_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(DAY_MICROS);
    let (y, m, d) = civil_from_days(days);
    let year = match y {
        0..=9999 => format!("{y:04}"),
        y if y > 9999 => format!("+{y}"),
        y => format!("-{:04}", -y),
    };
    format!(
        "{year}-{m:02}-{d:02}T{}Z",
        write_time(micros.rem_euclid(DAY_MICROS))
    )
}

/// ISO 8601 with an offset (`Z` or `±HH:MM`) → microseconds since the epoch.
pub fn parse_iso_timestamp(t: &str) -> Option<i64> {
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => (1, t),
    };
    let (date, time) = rest.split_once('T')?;
    let (y, m, d) = ymd(date)?;
    let (time, offset) = match time.strip_suffix('Z') {
        Some(t) => (t, 0),
        None => split_offset(time)?,
    };
    at(days_from_civil(sign * y, m, d), parse_time(time)?, offset)
}

/// `\x0a0b` → bytes.
pub fn parse_bytea(t: &str) -> Option<Vec<u8>> {
    let hex = t.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Bytes → `\x0a0b`.
pub fn write_bytea(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

mod array;
mod copy;
mod interval;

pub use array::{parse_array, write_array, Element};
pub use copy::parse_copy_line;
pub use interval::{interval_micros, parse_interval, write_iso_interval, Interval};

#[cfg(test)]
mod tests;
