//! Redaction: credentials, configured fields and secrets in text never
//! reach storage, reports or logs.
//!
//! Where a byte of a request or response is kept (a difference's two
//! values, a unified diff of text bodies, A/A samples) it passes here first:
//!
//! - secret headers (`authorization`, `proxy-authorization`, `cookie`,
//!   `set-cookie`, `x-api-key`, `x-auth-token`, and `redact_headers`);
//! - JSON values at or below a `redact` pointer, or under a field whose
//!   name contains a secret pattern (`password`, `passwd`, `secret`,
//!   `token`, `api_key`, `apikey`, `credential`, `private_key`, and
//!   `secret_fields`);
//! - in any kept text: `name=value` and `"name": "value"` pairs with a
//!   secret name, `Bearer`/`Basic` credentials, JWTs, and card numbers
//!   (13–19 digits passing the Luhn check).

use std::borrow::Cow;

use regex::{Captures, Regex};

use crate::{Comparison, Difference, Rules};

/// Headers whose values are never kept.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// Field-name patterns (case-insensitive substrings) whose values are never kept.
pub const SECRET_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "credential",
    "private_key",
];

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// The compiled secret patterns of one route.
#[derive(Debug)]
pub struct Secrets {
    headers: Vec<String>,
    fields: Vec<String>,
    pairs: Regex,
    credentials: Regex,
    jwt: Regex,
    digits: Regex,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets::new(&[], &[])
    }
}

impl Secrets {
    /// The defaults plus a route's extra header names and field patterns.
    pub fn new(extra_headers: &[String], extra_fields: &[String]) -> Secrets {
        let headers: Vec<String> = SECRET_HEADERS
            .iter()
            .map(|h| h.to_string())
            .chain(extra_headers.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        let fields: Vec<String> = SECRET_FIELDS
            .iter()
            .map(|f| f.to_string())
            .chain(extra_fields.iter().map(|f| f.to_ascii_lowercase()))
            .collect();
        let names = fields
            .iter()
            .map(|f| regex::escape(f))
            .collect::<Vec<_>>()
            .join("|");
        // A name containing a secret pattern, `=` or `:`, then the value:
        // quoted (JSON) or up to a separator (query strings, forms, logs).
        let pairs = format!(
            r#"(?i)("?[\w.-]*(?:{names})[\w.-]*"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|[^\s&,;}}"'<>]+)"#
        );
        let compile = |re: &str| {
            Regex::new(re).unwrap_or_else(|e| unreachable!("escaped names make a valid regex: {e}"))
        };
        Secrets {
            headers,
            fields,
            pairs: compile(&pairs),
            credentials: compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"),
            jwt: compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
            digits: compile(r"\b\d(?:[ -]?\d){12,18}\b"),
        }
    }

    pub fn is_secret_header(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.headers.contains(&name)
    }

    /// Whether a JSON field (a path segment) is named like a secret.
    pub fn is_secret_field(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.fields.iter().any(|f| name.contains(f.as_str()))
    }

    /// `text` with every secret it carries replaced by [`REDACTED`].
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        let replaced = self.pairs.replace_all(&out, |c: &Captures<'_>| {
            let quoted = c[2].starts_with('"');
            if quoted {
                format!("{}\"{REDACTED}\"", &c[1])
            } else {
                format!("{}{REDACTED}", &c[1])
            }
        });
        if let Cow::Owned(s) = replaced {
            out = Cow::Owned(s);
        }
        for (re, with) in [
            (&self.credentials, format!("$1 {REDACTED}")),
            (&self.jwt, REDACTED.to_string()),
        ] {
            if let Cow::Owned(s) = re.replace_all(&out, with.as_str()) {
                out = Cow::Owned(s);
            }
        }
        let cards = self.digits.replace_all(&out, |c: &Captures<'_>| {
            if luhn(&c[0]) {
                REDACTED.to_string()
            } else {
                c[0].to_string()
            }
        });
        if let Cow::Owned(s) = cards {
            out = Cow::Owned(s);
        }
        out
    }
}

/// Whether the digits of `s` (spaces and dashes ignored) pass the Luhn check.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Redacts one difference in place: secret headers, JSON values at or
/// below a configured pointer or under a secret-named field (or that
/// contain a redacted subtree), and secrets inside any kept value.
pub fn difference(rules: &Rules, d: &mut Difference) {
    let secrets = &rules.secrets;
    let secret = match d.path.strip_prefix("header:") {
        Some(name) => secrets.is_secret_header(name),
        None => {
            let segs: Vec<String> = d
                .path
                .strip_prefix('/')
                .map_or_else(Vec::new, |r| r.split('/').map(unescape).collect());
            // A pattern at or above the path, or one below it (the value holds it).
            segs.iter().any(|s| secrets.is_secret_field(s))
                || rules
                    .redact
                    .iter()
                    .any(|p| p.covers(&segs) || p.covers_prefix_of(&segs))
        }
    };
    for v in [&mut d.legacy, &mut d.candidate].into_iter().flatten() {
        if secret {
            *v = REDACTED.to_string();
        } else if let Cow::Owned(s) = secrets.scrub(v) {
            *v = s;
        }
    }
}

/// Redacts every difference of a comparison, and its unified diff.
pub fn comparison(rules: &Rules, c: &mut Comparison) {
    for d in &mut c.differences {
        difference(rules, d);
    }
    if let Some(u) = c.unified_diff.as_mut() {
        if let Cow::Owned(s) = rules.secrets.scrub(u) {
            *u = s;
        }
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
            redact_headers: vec!["x-session".into()],
            secret_fields: vec!["pin".into()],
            ..Default::default()
        });
        for path in [
            "header:authorization",
            "header:set-cookie",
            "header:x-api-key",
            "header:x-session",
            "/customer/email",
            "/cards/2/number",
            "/customer",
            "/cards/0",
            "/user/password",
            "/auth/access_token",
            "/card/PIN",
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

    #[test]
    fn secrets_inside_text_are_scrubbed() {
        let s = Secrets::default();
        let cases = [
            ("password=hunter2&user=bob", "password=[redacted]&user=bob"),
            (
                r#"{"user":"bob","api_key":"k-123","n":1}"#,
                r#"{"user":"bob","api_key":"[redacted]","n":1}"#,
            ),
            (
                "Authorization: Bearer abc.def-123",
                "Authorization: Bearer [redacted]",
            ),
            ("pay 4111 1111 1111 1111 now", "pay [redacted] now"),
            ("order 4111111111111112 ok", "order 4111111111111112 ok"),
            (
                "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_x end",
                "t [redacted] end",
            ),
            (
                "GET /x?access_token=s3cr3t&page=2",
                "GET /x?access_token=[redacted]&page=2",
            ),
            ("nothing to see", "nothing to see"),
        ];
        for (input, want) in cases {
            assert_eq!(s.scrub(input), want, "{input}");
        }
    }

    #[test]
    fn luhn_accepts_only_valid_card_numbers() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(!luhn("4111111111111112"));
        assert!(!luhn("1234"));
    }
}
