//! A borrowed JSON tree for comparison, with its own parser.
//!
//! Comparison is the hot path of shadowing, and building a
//! `serde_json::Value` (key copies, B-tree inserts, UTF-8 checks) cost most
//! of it. This parser borrows everything it can from the body: strings
//! without escapes and numbers are slices of it, objects are vectors of
//! pairs in document order. Strings are compared as bytes (invalid UTF-8 is
//! compared, not rejected, and rendered lossily); numbers are equal when
//! their text is, else compared by value.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Deeper documents are not parsed (compared as text instead).
const MAX_DEPTH: usize = 256;

/// A JSON value borrowing from the body it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum J<'a> {
    Null,
    Bool(bool),
    /// The number's text, as written.
    Num(&'a [u8]),
    /// Decoded string bytes.
    Str(Cow<'a, [u8]>),
    Arr(Vec<J<'a>>),
    Obj(Vec<(Cow<'a, [u8]>, J<'a>)>),
}

/// Parses a body; `None` if it is not one well-formed JSON document.
pub fn parse(body: &[u8]) -> Option<J<'_>> {
    let mut p = Parser {
        s: body,
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    (p.i == body.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> Option<()> {
        if self.s.get(self.i..self.i + lit.len())? == lit {
            self.i += lit.len();
            Some(())
        } else {
            None
        }
    }

    fn value(&mut self) -> Option<J<'a>> {
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string().map(J::Str),
            b't' => self.eat(b"true").map(|_| J::Bool(true)),
            b'f' => self.eat(b"false").map(|_| J::Bool(false)),
            b'n' => self.eat(b"null").map(|_| J::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn object(&mut self) -> Option<J<'a>> {
        self.enter()?;
        self.i += 1;
        let mut pairs = Vec::with_capacity(8);
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Some(J::Obj(pairs));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return None;
            }
            let k = self.string()?;
            self.ws();
            self.eat(b":")?;
            let v = self.value()?;
            pairs.push((k, v));
            self.ws();
            match *self.s.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(J::Obj(pairs));
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self) -> Option<J<'a>> {
        self.enter()?;
        self.i += 1;
        let mut items = Vec::with_capacity(8);
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Some(J::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match *self.s.get(self.i)? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Some(J::Arr(items));
                }
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> Option<J<'a>> {
        let start = self.i;
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.s.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > from
        };
        if !digits(self) {
            return None;
        }
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(J::Num(&self.s[start..self.i]))
    }

    /// A string at `self.i` (on its opening quote), decoded.
    fn string(&mut self) -> Option<Cow<'a, [u8]>> {
        self.i += 1;
        let start = self.i;
        // Fast path: no escapes, borrow. One tight scan to the first byte
        // that needs a look.
        let rest = self.s.get(start..)?;
        let stop = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.i = start + stop;
        match rest[stop] {
            b'"' => {
                self.i += 1;
                return Some(Cow::Borrowed(&rest[..stop]));
            }
            b'\\' => {}
            _ => return None,
        }
        let mut out = self.s[start..self.i].to_vec();
        loop {
            match *self.s.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    let e = *self.s.get(self.i + 1)?;
                    self.i += 2;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp)
                                && self.s.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                }
                            }
                            let c = char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }
}

impl<'a> J<'a> {
    /// The value of `key`, looking first at position `hint` (objects of the
    /// same serializer list their keys in the same order).
    pub fn get<'s>(
        pairs: &'s [(Cow<'a, [u8]>, J<'a>)],
        key: &[u8],
        hint: usize,
    ) -> Option<&'s J<'a>> {
        match pairs.get(hint) {
            Some((k, v)) if k.as_ref() == key => Some(v),
            _ => pairs
                .iter()
                .find(|(k, _)| k.as_ref() == key)
                .map(|(_, v)| v),
        }
    }

    /// Canonical JSON text (object keys sorted), for multiset comparisons.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, true);
        out
    }

    fn write(&self, out: &mut String, sort: bool) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(&String::from_utf8_lossy(n)),
            J::Str(s) => write_str(out, s),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out, sort);
                }
                out.push(']');
            }
            J::Obj(pairs) => {
                let mut refs: Vec<&(Cow<'_, [u8]>, J<'_>)> = pairs.iter().collect();
                if sort {
                    refs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                out.push('{');
                for (i, (k, v)) in refs.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out, sort);
                }
                out.push('}');
            }
        }
    }
}

impl fmt::Display for J<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write(&mut s, false);
        f.write_str(&s)
    }
}

fn write_str(out: &mut String, s: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Numbers: equal when written the same, else by value (integers exactly).
pub fn numbers_equal(a: &[u8], b: &[u8], tolerance: f64) -> bool {
    if a == b && tolerance >= 0.0 {
        return true;
    }
    let is_int = |n: &[u8]| !n.iter().any(|c| matches!(c, b'.' | b'e' | b'E'));
    let text = |n: &[u8]| {
        std::str::from_utf8(n)
            .ok()
            .map(str::to_string)
            .unwrap_or_default()
    };
    if tolerance == 0.0 && is_int(a) && is_int(b) {
        if let (Ok(x), Ok(y)) = (text(a).parse::<i128>(), text(b).parse::<i128>()) {
            return x == y;
        }
    }
    match (text(a).parse::<f64>(), text(b).parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y || (x - y).abs() <= tolerance,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let body = br#"{"b": [1, -2.5e3, "x\"y\u00e9\ud83d\ude00", null, true], "a": {"k": "v"}}"#;
        let j = parse(body).expect("json");
        assert_eq!(
            j.to_string(),
            "{\"b\":[1,-2.5e3,\"x\\\"yé😀\",null,true],\"a\":{\"k\":\"v\"}}"
        );
        assert_eq!(
            j.canonical(),
            "{\"a\":{\"k\":\"v\"},\"b\":[1,-2.5e3,\"x\\\"yé😀\",null,true]}"
        );
        assert!(
            matches!(&j, J::Obj(p) if matches!(p[0].0, Cow::Borrowed(_))),
            "keys borrow from the body"
        );
    }

    #[test]
    fn rejects_what_is_not_json() {
        for bad in [
            &b"{\"a\": 1} trailing"[..],
            b"nope",
            b"{\"a\" 1}",
            b"[1,]",
            b"01x",
            b"\"\x01\"",
            b"{\"a\":1",
            b"-",
            b"1.",
            b"1e",
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_none());
        for good in [&b" 0 "[..], b"-0.5e-3", b"[]", b"{}", b"\"\"", b"[[],{}]"] {
            assert!(parse(good).is_some(), "{}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn numbers() {
        assert!(numbers_equal(b"1", b"1.0", 0.0));
        assert!(numbers_equal(b"100", b"1e2", 0.0));
        assert!(
            !numbers_equal(b"9007199254740993", b"9007199254740992", 0.0),
            "big integers compare exactly"
        );
        assert!(numbers_equal(b"1.0", b"1.001", 0.01));
        assert!(!numbers_equal(b"1.0", b"1.1", 0.01));
    }
}
