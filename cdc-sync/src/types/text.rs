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
fn fraction(micros: i64) -> String {
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
        format!("{sign}{s}{}", fraction(frac as i64))
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

/// An element of an array literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    Null,
    Value(String),
    Array(Vec<Element>),
}

/// PostgreSQL's array literal (`{1,NULL,"a \"b\""}`, nested for more
/// dimensions). `None` for literals with explicit bounds (`[0:1]={…}`),
/// which a JSON array cannot carry.
pub fn parse_array(t: &str) -> Option<Vec<Element>> {
    let b = t.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut i = 0;
    let items = array_at(b, &mut i)?;
    (i == b.len()).then_some(items)
}

fn array_at(b: &[u8], i: &mut usize) -> Option<Vec<Element>> {
    debug_assert_eq!(b.get(*i), Some(&b'{'));
    *i += 1;
    let mut out = Vec::new();
    if b.get(*i) == Some(&b'}') {
        *i += 1;
        return Some(out);
    }
    loop {
        match b.get(*i)? {
            b'{' => out.push(Element::Array(array_at(b, i)?)),
            b'"' => {
                *i += 1;
                let mut v = Vec::new();
                loop {
                    match b.get(*i)? {
                        b'\\' => {
                            v.push(*b.get(*i + 1)?);
                            *i += 2;
                        }
                        b'"' => {
                            *i += 1;
                            break;
                        }
                        c => {
                            v.push(*c);
                            *i += 1;
                        }
                    }
                }
                out.push(Element::Value(String::from_utf8(v).ok()?));
            }
            _ => {
                let start = *i;
                while !matches!(b.get(*i)?, b',' | b'}') {
                    *i += 1;
                }
                let raw = std::str::from_utf8(&b[start..*i]).ok()?.trim();
                out.push(if raw.eq_ignore_ascii_case("NULL") {
                    Element::Null
                } else {
                    Element::Value(raw.to_string())
                });
            }
        }
        match b.get(*i)? {
            b',' => *i += 1,
            b'}' => {
                *i += 1;
                return Some(out);
            }
            _ => return None,
        }
    }
}

/// Elements → an array literal (every value quoted, so any text is safe).
pub fn write_array(items: &[Element]) -> String {
    let mut s = String::new();
    write_items(items, &mut s);
    s
}

fn write_items(items: &[Element], s: &mut String) {
    s.push('{');
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match e {
            Element::Null => s.push_str("NULL"),
            Element::Array(inner) => write_items(inner, s),
            Element::Value(v) => {
                s.push('"');
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
}

/// One line of `COPY … TO STDOUT` text format (without its newline) → its
/// fields; `\N` is NULL.
pub fn parse_copy_line(line: &[u8]) -> Option<Vec<Option<String>>> {
    line.split(|b| *b == b'\t')
        .map(|f| {
            if f == b"\\N" {
                return Some(None);
            }
            let mut out = Vec::with_capacity(f.len());
            let mut i = 0;
            while i < f.len() {
                if f[i] != b'\\' {
                    out.push(f[i]);
                    i += 1;
                    continue;
                }
                let c = *f.get(i + 1)?;
                i += 2;
                out.push(match c {
                    b'b' => 8,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        for _ in 0..2 {
                            match f.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        u8::try_from(v).ok()?
                    }
                    b'x' => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 2 {
                            match f.get(i).and_then(|d| (*d as char).to_digit(16)) {
                                Some(d) => {
                                    v = v * 16 + d;
                                    i += 1;
                                    n += 1;
                                }
                                None => break,
                            }
                        }
                        u8::try_from(v).ok()?
                    }
                    other => other,
                });
            }
            Some(Some(String::from_utf8(out).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips_across_eras() {
        for days in [-2_440_588 - 1_000, -719_528, -1, 0, 1, 19_724, 2_932_897] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(parse_date(&write_date(days)), Some(Infinite::Finite(days)));
        }
        assert_eq!(write_date(0), "1970-01-01");
        assert_eq!(write_date(days_from_civil(0, 1, 1)), "0001-01-01 BC");
        assert_eq!(write_date(days_from_civil(10_000, 1, 1)), "10000-01-01");
        assert_eq!(parse_date("infinity"), Some(Infinite::Plus));
        assert_eq!(parse_date("2024-13-01"), None);
    }

    #[test]
    fn timestamps_keep_microseconds_and_eras() {
        let t = "0001-01-01 00:00:00.000001 BC";
        let Some(Infinite::Finite(us)) = parse_timestamp(t) else {
            panic!()
        };
        assert_eq!(write_timestamp(us), t);
        let tz = "2024-03-01 12:30:00.5+00";
        let Some(Infinite::Finite(us)) = parse_timestamptz(tz) else {
            panic!()
        };
        assert_eq!(write_timestamptz(us), tz);
        assert_eq!(write_iso_timestamp(us), "2024-03-01T12:30:00.5Z");
        assert_eq!(parse_iso_timestamp("2024-03-01T12:30:00.5Z"), Some(us));
        let bc = parse_iso_timestamp("-0001-01-01T00:00:00Z").expect("iso");
        assert_eq!(write_timestamptz(bc), "0002-01-01 00:00:00+00 BC");
        assert_eq!(write_iso_timestamp(bc), "-0001-01-01T00:00:00Z");
        let far = parse_iso_timestamp("+10000-01-01T00:00:00Z").expect("iso");
        assert_eq!(write_iso_timestamp(far), "+10000-01-01T00:00:00Z");
        assert_eq!(
            parse_timestamptz("2024-01-01 02:00:00+02:00"),
            parse_timestamptz("2024-01-01 00:00:00+00")
        );
        assert_eq!(write_time(parse_time("24:00:00").expect("t")), "24:00:00");
    }

    #[test]
    fn intervals_as_postgres_writes_them() {
        let iv = parse_interval("1 year 2 mons -3 days -04:05:06.78").expect("iv");
        assert_eq!(
            iv,
            Interval {
                months: 14,
                days: -3,
                micros: -(4 * 3600 + 5 * 60 + 6) * 1_000_000 - 780_000
            }
        );
        assert_eq!(write_iso_interval(iv), "P1Y2M-3DT-4H-5M-6.78S");
        assert_eq!(
            write_iso_interval(parse_interval("00:00:00").expect("zero")),
            "P0Y0M0DT0H0M0S"
        );
        assert_eq!(
            interval_micros(parse_interval("1 day").expect("d")),
            DAY_MICROS
        );
    }

    #[test]
    fn arrays_round_trip_with_quotes_and_nulls() {
        let lit = r#"{{"a \"q\"",NULL},{"back\\slash",""}}"#;
        let items = parse_array(lit).expect("array");
        assert_eq!(
            items,
            vec![
                Element::Array(vec![Element::Value("a \"q\"".into()), Element::Null]),
                Element::Array(vec![
                    Element::Value("back\\slash".into()),
                    Element::Value(String::new())
                ]),
            ]
        );
        assert_eq!(parse_array(&write_array(&items)), Some(items));
        assert_eq!(parse_array("{}"), Some(vec![]));
        assert_eq!(parse_array("[0:1]={1,2}"), None);
        assert_eq!(
            parse_array("{1, 2,NULL}"),
            Some(vec![
                Element::Value("1".into()),
                Element::Value("2".into()),
                Element::Null
            ])
        );
    }

    #[test]
    fn copy_lines_unescape() {
        assert_eq!(
            parse_copy_line(b"1\t\\N\ta\\tb\\nc\\\\d\t\\101"),
            Some(vec![
                Some("1".into()),
                None,
                Some("a\tb\nc\\d".into()),
                Some("A".into())
            ])
        );
        assert_eq!(
            parse_bytea(&write_bytea(&[0, 255, 10])),
            Some(vec![0, 255, 10])
        );
    }
}
