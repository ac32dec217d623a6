//! Compiled comparison rules.

use strangler_config::CompareRules;

/// Headers never compared unless a user asks: they differ on every
/// response or describe the connection, not the answer.
pub const DEFAULT_IGNORED_HEADERS: &[&str] = &[
    "date",
    "server",
    "x-request-id",
    "traceparent",
    "tracestate",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "x-upstream",
    "age",
    "via",
];

/// A JSON Pointer pattern: `*` matches one segment; a pattern also covers
/// everything below the place it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<String>);

/// One segment of a path being walked: an object key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a [u8]),
    Index(usize),
}

fn seg_matches(p: &str, s: Seg<'_>) -> bool {
    match s {
        _ if p == "*" => true,
        // Pattern segments are written escaped (RFC 6901).
        Seg::Key(k) => {
            if p.contains('~') {
                p.replace("~1", "/").replace("~0", "~").as_bytes() == k
            } else {
                p.as_bytes() == k
            }
        }
        Seg::Index(i) => p.parse::<usize>() == Ok(i),
    }
}

impl Pattern {
    pub fn parse(pointer: &str) -> Pattern {
        let segs = pointer.strip_prefix('/').map_or_else(Vec::new, |rest| {
            rest.split('/').map(str::to_string).collect()
        });
        Pattern(segs)
    }

    /// [`Pattern::covers`] for a path being walked.
    pub fn covers_segs(&self, path: &[Seg<'_>]) -> bool {
        self.0.len() <= path.len() && self.0.iter().zip(path).all(|(p, s)| seg_matches(p, *s))
    }

    /// [`Pattern::matches`] for a path being walked.
    pub fn matches_segs(&self, path: &[Seg<'_>]) -> bool {
        self.0.len() == path.len() && self.covers_segs(path)
    }

    /// Whether the pattern names `path` or one of its ancestors.
    pub fn covers(&self, path: &[String]) -> bool {
        self.0.len() <= path.len() && self.0.iter().zip(path).all(|(p, s)| p == "*" || p == s)
    }

    /// Whether `path` is an ancestor of (or equal to) a place the pattern names.
    pub fn covers_prefix_of(&self, path: &[String]) -> bool {
        path.len() <= self.0.len() && self.0.iter().zip(path).all(|(p, s)| p == "*" || p == s)
    }

    /// Whether the pattern names exactly `path`.
    pub fn matches(&self, path: &[String]) -> bool {
        self.0.len() == path.len() && self.covers(path)
    }
}

/// The rules of one route, ready to apply.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub ignore: Vec<Pattern>,
    pub ignore_headers: Vec<String>,
    pub unordered_arrays: Vec<Pattern>,
    pub numeric_tolerance: f64,
    /// Pointers whose values never reach samples or reports.
    pub redact: Vec<Pattern>,
    /// Headers, field names and text patterns whose values never reach
    /// samples or reports.
    pub secrets: std::sync::Arc<crate::redact::Secrets>,
}

impl Rules {
    /// Compiles a route's `[routes.compare]` on top of the defaults.
    pub fn new(rules: &CompareRules) -> Rules {
        let mut ignore_headers: Vec<String> = DEFAULT_IGNORED_HEADERS
            .iter()
            .map(|h| h.to_string())
            .collect();
        for h in &rules.ignore_headers {
            if !ignore_headers.contains(h) {
                ignore_headers.push(h.clone());
            }
        }
        Rules {
            ignore: rules.ignore.iter().map(|p| Pattern::parse(p)).collect(),
            ignore_headers,
            unordered_arrays: rules
                .unordered_arrays
                .iter()
                .map(|p| Pattern::parse(p))
                .collect(),
            numeric_tolerance: rules.numeric_tolerance,
            redact: rules.redact.iter().map(|p| Pattern::parse(p)).collect(),
            secrets: std::sync::Arc::new(crate::redact::Secrets::new(
                &rules.redact_headers,
                &rules.secret_fields,
            )),
        }
    }

    /// No rules at all: every difference counts (not even default headers are ignored).
    pub fn none() -> Rules {
        Rules::default()
    }

    pub fn ignores_path(&self, path: &[String]) -> bool {
        self.ignore.iter().any(|p| p.covers(path))
    }

    pub fn ignores_header(&self, name: &str) -> bool {
        self.ignore_headers.iter().any(|h| h == name)
    }

    /// Whether a counted field (`/items/*/etag`, `header:date`) is ignored.
    pub fn ignores_field(&self, field: &str) -> bool {
        if let Some(h) = field.strip_prefix("header:") {
            return self.ignores_header(h);
        }
        match field.strip_prefix('/') {
            Some(rest) => self.ignores_path(
                &rest
                    .split('/')
                    .map(|s| s.replace("~1", "/").replace("~0", "~"))
                    .collect::<Vec<_>>(),
            ),
            None => false,
        }
    }

    /// Whether an ignore pattern names exactly this path (its ancestors
    /// having been checked already).
    pub fn ignores_here(&self, path: &[Seg<'_>]) -> bool {
        !self.ignore.is_empty() && self.ignore.iter().any(|p| p.matches_segs(path))
    }

    pub fn unordered_segs(&self, path: &[Seg<'_>]) -> bool {
        self.unordered_arrays.iter().any(|p| p.matches_segs(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.strip_prefix('/')
            .map_or_else(Vec::new, |r| r.split('/').map(str::to_string).collect())
    }

    #[test]
    fn patterns_match_segments_and_cover_subtrees() {
        let p = Pattern::parse("/items/*/etag");
        assert!(p.covers(&path("/items/3/etag")));
        assert!(p.covers(&path("/items/3/etag/x")));
        assert!(!p.covers(&path("/items/3/name")));
        assert!(!p.covers(&path("/items")));
        assert!(p.matches(&path("/items/0/etag")));
        assert!(!p.matches(&path("/items/0/etag/x")));
        assert!(Pattern::parse("").covers(&path("/anything")));
    }
}
