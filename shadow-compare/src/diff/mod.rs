//! `compare(rules, legacy, candidate)`.

mod json;
mod text;
mod tree;

use serde::{Deserialize, Serialize};

use crate::{Response, Rules};

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Same type, other value.
    Value,
    /// Other JSON type (`""` vs `null`, `1` vs `"1"`).
    Type,
    /// Present in the legacy response, absent from the candidate's.
    Missing,
    /// Absent from the legacy response, present in the candidate's.
    Extra,
    /// Same elements, other order.
    ArrayOrder,
    /// Arrays of different lengths.
    ArrayLength,
    /// Other status code.
    Status,
    /// A header differs, is missing or is extra.
    Header,
    /// Text bodies differ (line diff).
    Text,
    /// Other bodies differ (length and hash).
    Binary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Value => "value",
            Kind::Type => "type",
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::ArrayOrder => "array_order",
            Kind::ArrayLength => "array_length",
            Kind::Status => "status",
            Kind::Header => "header",
            Kind::Text => "text",
            Kind::Binary => "binary",
        }
    }
}

/// One difference between the two responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// `status`, `header:NAME`, a JSON Pointer (`/items/3/price`), or `body`.
    pub path: String,
    /// The path with array indexes as `*` (`/items/*/price`): what is counted per field.
    pub field: String,
    pub kind: Kind,
    /// The legacy side, rendered short (absent for `extra`).
    pub legacy: Option<String>,
    /// The candidate side, rendered short (absent for `missing`).
    pub candidate: Option<String>,
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    pub differences: Vec<Difference>,
    /// For text bodies that differ: a unified diff (bounded), for reports.
    pub unified_diff: Option<String>,
}

impl Comparison {
    pub fn is_match(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Longest rendering of a value kept in a difference.
pub const MAX_RENDERED: usize = 200;

pub(crate) fn short(s: &str) -> String {
    if s.len() <= MAX_RENDERED {
        return s.to_string();
    }
    let mut end = MAX_RENDERED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Compares `candidate` against `legacy` under `rules`.
pub fn compare(rules: &Rules, legacy: &Response, candidate: &Response) -> Comparison {
    let mut out = Comparison::default();
    if legacy.status != candidate.status {
        out.differences.push(Difference {
            path: "status".into(),
            field: "status".into(),
            kind: Kind::Status,
            legacy: Some(legacy.status.to_string()),
            candidate: Some(candidate.status.to_string()),
        });
    }
    compare_headers(rules, legacy, candidate, &mut out);
    compare_bodies(rules, legacy, candidate, &mut out);
    out
}

fn compare_headers(rules: &Rules, legacy: &Response, candidate: &Response, out: &mut Comparison) {
    let mut names: Vec<&str> = legacy
        .headers
        .iter()
        .chain(&candidate.headers)
        .map(|(k, _)| k.as_str())
        .filter(|name| !rules.ignores_header(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let (a, b) = (legacy.header(name), candidate.header(name));
        if a != b {
            let path = format!("header:{name}");
            out.differences.push(Difference {
                field: path.clone(),
                path,
                kind: Kind::Header,
                legacy: a.as_deref().map(short),
                candidate: b.as_deref().map(short),
            });
        }
    }
}

fn compare_bodies(rules: &Rules, legacy: &Response, candidate: &Response, out: &mut Comparison) {
    if legacy.body == candidate.body {
        return;
    }
    fn parse(r: &Response) -> Option<tree::J<'_>> {
        let looks_json = r.is_json()
            || matches!(
                r.body.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'{' | b'[')
            );
        looks_json.then(|| tree::parse(&r.body)).flatten()
    }
    if let (Some(a), Some(b)) = (parse(legacy), parse(candidate)) {
        json::diff(rules, &a, &b, &mut out.differences);
        return;
    }
    match (
        std::str::from_utf8(&legacy.body),
        std::str::from_utf8(&candidate.body),
    ) {
        (Ok(a), Ok(b)) => text::diff(a, b, out),
        _ => out.differences.push(Difference {
            path: "body".into(),
            field: "body".into(),
            kind: Kind::Binary,
            legacy: Some(text::fingerprint(&legacy.body)),
            candidate: Some(text::fingerprint(&candidate.body)),
        }),
    }
}

#[cfg(test)]
mod tests;
