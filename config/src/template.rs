//! Path templates: `/products/{id}`, `/files/{*rest}`.

use std::cmp::Ordering;
use std::fmt;

/// One segment of a [`PathTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `{name}`: matches one non-empty segment.
    Param(String),
    /// `{*name}`: matches one or more trailing segments; last only.
    CatchAll(String),
}

impl Segment {
    /// Lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::CatchAll(_) => 2,
        }
    }
}

/// A parsed, valid path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path template {text:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let segment = if let Some(inner) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "path template {text:?}: parameter {part:?} needs a name of letters, digits or '_'"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!(
                        "path template {text:?}: parameter {name:?} appears twice"
                    ));
                }
                names.push(name);
                if catch_all {
                    if !last {
                        return Err(format!(
                            "path template {text:?}: {part:?} matches the tail and must be the last segment"
                        ));
                    }
                    Segment::CatchAll(name.to_string())
                } else {
                    Segment::Param(name.to_string())
                }
            } else {
                if part.contains('{') || part.contains('}') {
                    return Err(format!(
                        "path template {text:?}: segment {part:?} mixes text and a parameter; a parameter is a whole segment"
                    ));
                }
                if part.is_empty() && !last {
                    return Err(format!(
                        "path template {text:?} has an empty segment ('//')"
                    ));
                }
                Segment::Literal((*part).to_string())
            };
            segments.push(segment);
        }
        Ok(PathTemplate {
            source: text.to_string(),
            segments,
        })
    }

    /// The segments after the leading `/`.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` (the URI path, without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = (!rest.is_empty()).then(|| rest.split('/'));
        self.walk(|| parts.as_mut().and_then(Iterator::next))
    }

    /// Whether a path split once with [`SplitPath`] matches: the same
    /// answer as [`PathTemplate::matches`], without splitting the path
    /// again for every template of a table.
    pub fn matches_split(&self, path: &SplitPath<'_>) -> bool {
        let Some(segs) = path.segments() else {
            return self.matches(path.source);
        };
        let tail = matches!(self.segments.last(), Some(Segment::CatchAll(_)));
        if !tail && segs.len() != self.segments.len() {
            return false;
        }
        let mut parts = segs.iter().copied();
        self.walk(|| parts.next())
    }

    /// Matches the template against the path's segments, given one by one.
    fn walk<'p>(&self, mut next: impl FnMut() -> Option<&'p str>) -> bool {
        for segment in &self.segments {
            let part = next();
            match segment {
                Segment::Literal(lit) => {
                    if part != Some(lit.as_str()) {
                        return false;
                    }
                }
                Segment::Param(_) => match part {
                    Some(p) if !p.is_empty() => {}
                    _ => return false,
                },
                Segment::CatchAll(_) => return matches!(part, Some(p) if !p.is_empty()),
            }
        }
        next().is_none()
    }

    /// Specificity order: `Less` means `self` is more specific than `other`.
    ///
    /// Segment by segment, a literal beats a parameter, which beats a
    /// catch-all; when one template is a prefix of the other, the longer one
    /// is more specific.
    pub fn specificity_cmp(&self, other: &PathTemplate) -> Ordering {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match a.rank().cmp(&b.rank()) {
                Ordering::Equal => {}
                ord => return ord,
            }
        }
        other.segments.len().cmp(&self.segments.len())
    }

    /// Whether both templates have the same shape (they match the same paths).
    pub fn same_shape(&self, other: &PathTemplate) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    (Segment::CatchAll(_), Segment::CatchAll(_)) => true,
                    _ => false,
                })
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Segments a path is split into on the stack; longer paths are matched
/// the slow way.
const SPLIT_MAX: usize = 24;

/// A request path split into its segments once.
pub struct SplitPath<'a> {
    source: &'a str,
    segments: [&'a str; SPLIT_MAX],
    /// `None`: not a path, or more than `SPLIT_MAX` segments.
    len: Option<usize>,
}

impl<'a> SplitPath<'a> {
    pub fn new(path: &'a str) -> SplitPath<'a> {
        let mut out = SplitPath {
            source: path,
            segments: [""; SPLIT_MAX],
            len: None,
        };
        let Some(rest) = path.strip_prefix('/') else {
            return out;
        };
        if rest.is_empty() {
            out.len = Some(0);
            return out;
        }
        let mut n = 0;
        for part in rest.split('/') {
            if n == SPLIT_MAX {
                return out;
            }
            out.segments[n] = part;
            n += 1;
        }
        out.len = Some(n);
        out
    }

    fn segments(&self) -> Option<&[&'a str]> {
        self.len.map(|n| &self.segments[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Split once or split per template: the same answer.
        #[test]
        fn matching_a_split_path_agrees(
            template in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", "{x}", "{*r}"]), 0..5),
            path in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "", "c"]), 0..30),
        ) {
            let mut text = String::new();
            for (i, seg) in template.iter().enumerate() {
                if seg.starts_with("{*") && i + 1 != template.len() {
                    continue;
                }
                let seg = if seg.starts_with("{x") { format!("{{x{i}}}") } else { seg.to_string() };
                text.push('/');
                text.push_str(&seg);
            }
            if text.is_empty() {
                text.push('/');
            }
            let Ok(t) = PathTemplate::parse(&text) else {
                return Ok(());
            };
            let path = format!("/{}", path.join("/"));
            proptest::prop_assert_eq!(t.matches_split(&SplitPath::new(&path)), t.matches(&path), "{} {}", text, path);
            proptest::prop_assert_eq!(t.matches_split(&SplitPath::new("x")), t.matches("x"));
        }
    }

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).expect("valid template")
    }

    #[test]
    fn literal_and_params_match() {
        assert!(t("/").matches("/"));
        assert!(!t("/").matches("/a"));
        assert!(t("/products").matches("/products"));
        assert!(!t("/products").matches("/products/1"));
        assert!(t("/products/{id}").matches("/products/42"));
        assert!(!t("/products/{id}").matches("/products/"));
        assert!(!t("/products/{id}").matches("/products"));
        assert!(!t("/products/{id}").matches("/products/1/x"));
        assert!(t("/customers/{id}/orders").matches("/customers/7/orders"));
    }

    #[test]
    fn catch_all_takes_one_or_more_segments() {
        let c = t("/static/{*rest}");
        assert!(c.matches("/static/a"));
        assert!(c.matches("/static/a/b/c"));
        assert!(!c.matches("/static"));
        assert!(!c.matches("/static/"));
    }

    #[test]
    fn bad_templates_are_rejected_with_reason() {
        assert!(PathTemplate::parse("products")
            .unwrap_err()
            .contains("start with '/'"));
        assert!(PathTemplate::parse("/a/{*r}/b")
            .unwrap_err()
            .contains("last segment"));
        assert!(PathTemplate::parse("/a/x{id}")
            .unwrap_err()
            .contains("whole segment"));
        assert!(PathTemplate::parse("/a/{id}/{id}")
            .unwrap_err()
            .contains("twice"));
        assert!(PathTemplate::parse("/a//b")
            .unwrap_err()
            .contains("empty segment"));
        assert!(PathTemplate::parse("/a/{}")
            .unwrap_err()
            .contains("needs a name"));
    }

    #[test]
    fn specificity_prefers_literals_then_params_then_longer() {
        use Ordering::*;
        assert_eq!(
            t("/products/new").specificity_cmp(&t("/products/{id}")),
            Less
        );
        assert_eq!(
            t("/products/{id}").specificity_cmp(&t("/products/{*rest}")),
            Less
        );
        assert_eq!(t("/a/{x}/{*r}").specificity_cmp(&t("/a/{*r}")), Less);
        assert_eq!(t("/a/{x}").specificity_cmp(&t("/a/{y}")), Equal);
        assert!(t("/a/{x}").same_shape(&t("/a/{y}")));
        assert!(!t("/a/{x}").same_shape(&t("/a/b")));
    }
}
