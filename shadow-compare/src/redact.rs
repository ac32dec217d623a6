//! Redaction: credentials and configured fields never reach storage or reports.

use crate::{Comparison, Difference, Rules};

/// Headers whose values are never kept.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Redacts one difference in place: secret headers, and JSON values at or
/// below a configured pointer (or that contain a redacted subtree).
pub fn difference(rules: &Rules, d: &mut Difference) {
    let secret = match d.path.strip_prefix("header:") {
        Some(name) => SECRET_HEADERS.contains(&name),
        None => {
            let segs: Vec<String> = d
                .path
                .strip_prefix('/')
                .map_or_else(Vec::new, |r| r.split('/').map(unescape).collect());
            // A pattern at or above the path, or one below it (the value holds it).
            rules
                .redact
                .iter()
                .any(|p| p.covers(&segs) || p.covers_prefix_of(&segs))
        }
    };
    if secret {
        for v in [&mut d.legacy, &mut d.candidate].into_iter().flatten() {
            *v = REDACTED.to_string();
        }
    }
}

/// Redacts every difference of a comparison.
pub fn comparison(rules: &Rules, c: &mut Comparison) {
    for d in &mut c.differences {
        difference(rules, d);
    }
}

fn unescape(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use strangler_config::CompareRules;

    fn d(path: &str) -> Difference {
        Difference {
            path: path.into(),
            field: path.into(),
            kind: Kind::Value,
            legacy: Some("secret".into()),
            candidate: Some("other".into()),
        }
    }

    #[test]
    fn secrets_and_configured_fields_are_redacted() {
        let rules = Rules::new(&CompareRules {
            redact: vec!["/customer/email".into(), "/cards/*/number".into()],
            ..Default::default()
        });
        for path in [
            "header:authorization",
            "header:set-cookie",
            "/customer/email",
            "/cards/2/number",
            "/customer",
            "/cards/0",
        ] {
            let mut x = d(path);
            difference(&rules, &mut x);
            assert_eq!(x.legacy.as_deref(), Some(REDACTED), "{path}");
            assert_eq!(x.candidate.as_deref(), Some(REDACTED), "{path}");
        }
        for path in ["header:etag", "/customer/name", "/cards/2/expiry"] {
            let mut x = d(path);
            difference(&rules, &mut x);
            assert_eq!(x.legacy.as_deref(), Some("secret"), "{path}");
        }
    }
}
