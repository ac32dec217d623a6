//! `[[routes]]`: matching, stages, shadow settings, `[routes.compare]`
//! and `[routes.promote]`.

use std::collections::{BTreeMap, HashSet};

use toml::Spanned;

use super::*;

pub(super) fn check_routes(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawRoute>],
    upstreams: &BTreeMap<String, Upstream>,
) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    let mut names = HashSet::new();
    for (i, spanned) in raw.iter().enumerate() {
        let r = spanned.get_ref();
        let key = |field: &str| format!("routes[{i}].{field}");
        let name = r.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.');
        if !name_ok {
            c.err(
                &r.name,
                &key("name"),
                format!("{name:?}: use letters, digits, '-', '_' or '.'"),
            );
        } else if !names.insert(name.clone()) {
            c.err(
                &r.name,
                &key("name"),
                format!("{name:?} is used by an earlier route; names are unique"),
            );
        }
        let path = match PathTemplate::parse(r.path.get_ref()) {
            Ok(t) => t,
            Err(msg) => {
                c.err(&r.path, &key("path"), msg);
                PathTemplate::parse("/").unwrap_or_else(|_| unreachable!("'/' is a valid template"))
            }
        };
        let stage = match &r.stage {
            Some(s) => s.get_ref().parse::<Stage>().unwrap_or_else(|msg| {
                c.err(s, &key("stage"), msg);
                Stage::Legacy
            }),
            None => Stage::Legacy,
        };
        let service = r.service.as_ref().map(|s| {
            let n = s.get_ref();
            if n == LEGACY {
                c.err(
                    s,
                    &key("service"),
                    "names the monolith; a route's service is the new upstream",
                );
            } else if !upstreams.contains_key(n) {
                let known: Vec<&str> = upstreams
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k != LEGACY)
                    .collect();
                let known = if known.is_empty() {
                    "none besides legacy".to_string()
                } else {
                    known.join(", ")
                };
                c.err(
                    s,
                    &key("service"),
                    format!("no upstream {n:?} (defined: {known})"),
                );
            }
            n.clone()
        });
        if service.is_none() && stage != Stage::Legacy {
            let at = r
                .stage
                .as_ref()
                .map_or(spanned.span().start, |s| s.span().start);
            c.err_at(
                at,
                &key("service"),
                format!("stage {stage} needs a service to send traffic to"),
            );
        }
        let sticky = match &r.sticky {
            Some(s) => s.get_ref().parse::<Sticky>().unwrap_or_else(|msg| {
                c.err(s, &key("sticky"), msg);
                Sticky::None
            }),
            None => Sticky::ClientIp,
        };
        let rate_limit = r.rate_limit.as_ref().map(|l| {
            let requests = match u32::try_from(*l.requests.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    c.err(
                        &l.requests,
                        &key("rate_limit.requests"),
                        "requests from 1 to 4294967295",
                    );
                    1
                }
            };
            let per = match &l.per_seconds {
                Some(s) if (1..=86_400).contains(s.get_ref()) => *s.get_ref(),
                Some(s) => {
                    c.err(s, &key("rate_limit.per_seconds"), "seconds from 1 to 86400");
                    1
                }
                None => 1,
            };
            let key_of = match &l.key {
                Some(k) => k.get_ref().parse::<Sticky>().unwrap_or_else(|msg| {
                    c.err(
                        k,
                        &key("rate_limit.key"),
                        msg.replace("sticky key", "rate-limit key"),
                    );
                    Sticky::ClientIp
                }),
                None => Sticky::ClientIp,
            };
            RateLimit {
                requests,
                per: std::time::Duration::from_secs(per),
                key: key_of,
            }
        });
        let shadow_methods = match &r.shadow_methods {
            Some(m) => methods(c, m, &key("shadow_methods")),
            None => vec!["GET".to_string(), "HEAD".to_string()],
        };
        let route = Route {
            methods: methods(c, &r.methods, &key("methods")),
            path,
            service,
            stage,
            percent: percent(c, &r.percent, &key("percent"), 0.0),
            sticky,
            rate_limit,
            retry_budget: match &r.retry_budget {
                None => RetryBudget::default(),
                Some(b) => RetryBudget {
                    percent: match &b.percent {
                        Some(p) if (0.0..=100.0).contains(p.get_ref()) => *p.get_ref(),
                        Some(p) => {
                            c.err(p, &key("retry_budget.percent"), "a percent from 0 to 100");
                            20.0
                        }
                        None => 20.0,
                    },
                    min_concurrency: b.min_concurrency.as_ref().map_or(3, |m| *m.get_ref()),
                },
            },
            idle_timeout: r.idle_timeout_secs.as_ref().map(|s| match *s.get_ref() {
                n @ 1..=86_400 => std::time::Duration::from_secs(n),
                _ => {
                    c.err(s, &key("idle_timeout_secs"), "seconds from 1 to 86400");
                    std::time::Duration::from_secs(60)
                }
            }),
            timeout: r.timeout_ms.as_ref().map(|s| match *s.get_ref() {
                _ if r.idle_timeout_secs.is_some() => {
                    c.err(
                        s,
                        &key("timeout_ms"),
                        "cannot go with idle_timeout_secs: the deadline bounds every read of the answer, so a long-lived stream would be cut at it",
                    );
                    std::time::Duration::from_secs(60)
                }
                n @ 1..=86_400_000 => std::time::Duration::from_millis(n),
                _ => {
                    c.err(s, &key("timeout_ms"), "milliseconds from 1 to 86400000");
                    std::time::Duration::from_secs(60)
                }
            }),
            max_body_bytes: r.max_body_bytes.as_ref().map(|s| match *s.get_ref() {
                0 => {
                    c.err(s, &key("max_body_bytes"), "must be greater than 0");
                    1
                }
                n => n,
            }),
            fallback: r.fallback.unwrap_or(true),
            shadow_percent: percent(c, &r.shadow_percent, &key("shadow_percent"), 100.0),
            shadow_methods,
            tables: r
                .tables
                .iter()
                .map(|t| {
                    if let Err(msg) = t.get_ref().parse::<TableName>() {
                        c.err(t, &key("tables"), msg);
                    }
                    t.get_ref().clone()
                })
                .collect(),
            compare: check_compare(c, &r.compare, &key("compare")),
            promote: check_promote(c, &r.promote, &key("promote")),
            name,
        };
        if let Some(earlier) = out.iter().find(|o| {
            o.path.same_shape(&route.path)
                && (o.methods.is_empty() && route.methods.is_empty()
                    || o.methods.iter().any(|m| route.methods.contains(m)))
        }) {
            c.err(
                &r.path,
                &key("path"),
                format!(
                    "matches the same requests as route {:?} ({} {}); which one wins would be ambiguous",
                    earlier.name,
                    if earlier.methods.is_empty() { "*".to_string() } else { earlier.methods.join(",") },
                    earlier.path
                ),
            );
        }
        out.push(route);
    }
    out
}

fn check_promote(c: &mut Checker<'_>, raw: &RawPromote, key: &str) -> PromoteRules {
    let d = PromoteRules::default();
    let canary_steps = match &raw.canary_steps {
        Some(steps) => {
            let mut out = Vec::new();
            for s in steps {
                let v = *s.get_ref();
                if !(v > 0.0 && v < 100.0) || out.last().is_some_and(|l| *l >= v) {
                    c.err(
                        s,
                        &format!("{key}.canary_steps"),
                        "steps are ascending percents between 0 and 100 (exclusive)",
                    );
                }
                out.push(v);
            }
            out
        }
        None => d.canary_steps,
    };
    PromoteRules {
        canary_steps,
        max_error_rate: percent(
            c,
            &raw.max_error_rate,
            &format!("{key}.max_error_rate"),
            1.0,
        ) / 100.0,
        max_lag_bytes: raw
            .max_lag_bytes
            .as_ref()
            .map_or(d.max_lag_bytes, |v| *v.get_ref()),
        auto_rollback: raw.auto_rollback.unwrap_or(true),
        window: c.millis(
            &raw.window_secs
                .as_ref()
                .map(|s| Spanned::new(s.span(), s.get_ref() * 1000)),
            &format!("{key}.window_secs"),
            120_000,
        ),
        min_requests: raw
            .min_requests
            .as_ref()
            .map_or(d.min_requests, |v| *v.get_ref()),
        max_mismatch: percent(c, &raw.max_mismatch, &format!("{key}.max_mismatch"), 0.1) / 100.0,
        min_samples: raw
            .min_samples
            .as_ref()
            .map_or(d.min_samples, |v| *v.get_ref()),
    }
}

fn check_compare(c: &mut Checker<'_>, raw: &RawCompare, key: &str) -> CompareRules {
    let pointers = |c: &mut Checker<'_>, v: &[Spanned<String>], field: &str| -> Vec<String> {
        v.iter()
            .map(|p| {
                if !p.get_ref().is_empty() && !p.get_ref().starts_with('/') {
                    c.err(
                        p,
                        &format!("{key}.{field}"),
                        format!(
                            "{:?} is not a JSON Pointer (it starts with '/')",
                            p.get_ref()
                        ),
                    );
                }
                p.get_ref().clone()
            })
            .collect()
    };
    let tolerance = match &raw.numeric_tolerance {
        Some(t) if !(t.get_ref().is_finite() && *t.get_ref() >= 0.0) => {
            c.err(
                t,
                &format!("{key}.numeric_tolerance"),
                "must be a finite number ≥ 0",
            );
            0.0
        }
        Some(t) => *t.get_ref(),
        None => 0.0,
    };
    CompareRules {
        ignore: pointers(c, &raw.ignore, "ignore"),
        ignore_headers: raw
            .ignore_headers
            .iter()
            .map(|h| {
                if !is_token(h.get_ref()) {
                    c.err(
                        h,
                        &format!("{key}.ignore_headers"),
                        format!("{:?} is not a header name", h.get_ref()),
                    );
                }
                h.get_ref().to_ascii_lowercase()
            })
            .collect(),
        unordered_arrays: pointers(c, &raw.unordered_arrays, "unordered_arrays"),
        numeric_tolerance: tolerance,
        redact: pointers(c, &raw.redact, "redact"),
        redact_headers: raw
            .redact_headers
            .iter()
            .map(|h| {
                if !is_token(h.get_ref()) {
                    c.err(
                        h,
                        &format!("{key}.redact_headers"),
                        format!("{:?} is not a header name", h.get_ref()),
                    );
                }
                h.get_ref().to_ascii_lowercase()
            })
            .collect(),
        secret_fields: raw
            .secret_fields
            .iter()
            .map(|f| {
                if !f
                    .get_ref()
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
                    || f.get_ref().is_empty()
                {
                    c.err(
                        f,
                        &format!("{key}.secret_fields"),
                        format!(
                            "{:?}: a field-name pattern is letters, digits, '_' and '-'",
                            f.get_ref()
                        ),
                    );
                }
                f.get_ref().to_ascii_lowercase()
            })
            .collect(),
        aa_percent: percent(c, &raw.aa_percent, &format!("{key}.aa_percent"), 10.0),
    }
}
