//! Report rows for a configuration's routes from stored statistics: what
//! `strangler shadow report`, the board and the admin API show.

use super::{route, RouteInfo, RouteReport};

/// Report rows for every route that has a service, from stored stats;
/// `thresholds` (max mismatch rate, min samples) replaces every route's own.
/// Fields covered by the route's current `ignore` rules are left out, so
/// accepting an ignore rule cleans the verdict of data already gathered.
pub fn summaries(
    config: &strangler_config::Config,
    stage_of: impl Fn(&strangler_config::Route) -> strangler_config::Stage,
    stats: &[(String, crate::RouteStats)],
    thresholds: Option<(f64, u64)>,
) -> Vec<RouteReport> {
    config
        .routes
        .iter()
        .filter(|r| r.service.is_some())
        .map(|r| {
            let mut s = stats
                .iter()
                .find(|(n, _)| *n == r.name)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            let rules = crate::Rules::new(&r.compare);
            s.forget_fields(|field| rules.ignores_field(field));
            let stage = stage_of(r);
            // One verdict per route: its own `[routes.promote]` thresholds
            // (what the promotion gates use) unless the caller asks otherwise.
            let (max_mismatch, min_samples) =
                thresholds.unwrap_or((r.promote.max_mismatch, r.promote.min_samples));
            let methods = if r.methods.is_empty() {
                "*".to_string()
            } else {
                r.methods.join(",")
            };
            route(
                RouteInfo {
                    route: &r.name,
                    endpoint: format!("{methods} {}", r.path),
                    stage: stage.as_str(),
                    service: r.service.as_deref(),
                },
                &s,
                crate::noise::Thresholds::default(),
                max_mismatch,
                min_samples,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use strangler_config::Config;

    use super::*;
    use crate::verdict::Status;
    use crate::RouteStats;

    /// Two routes with the same clean statistics: the one whose own
    /// `min_samples` is met is READY, the other still needs samples; a
    /// caller's thresholds replace both.
    #[test]
    fn each_route_is_judged_by_its_own_thresholds() {
        let config = Config::from_toml(
            r#"
[upstreams.legacy]
url = "http://127.0.0.1:1"
[upstreams.svc]
url = "http://127.0.0.1:2"
[[routes]]
name = "strict"
path = "/a"
service = "svc"
[[routes]]
name = "lenient"
path = "/b"
service = "svc"
[routes.promote]
max_mismatch = 5.0
min_samples = 100
"#,
            Path::new("s.toml"),
        )
        .expect("config");
        let clean = RouteStats {
            comparisons: 200,
            matches: 200,
            ..RouteStats::default()
        };
        let stats = vec![
            ("strict".to_string(), clean.clone()),
            ("lenient".to_string(), clean),
        ];
        let status = |t: Option<(f64, u64)>| -> Vec<(String, Status)> {
            summaries(&config, |r| r.stage, &stats, t)
                .into_iter()
                .map(|r| (r.route, r.verdict.status))
                .collect()
        };
        assert_eq!(
            status(None),
            vec![
                ("strict".to_string(), Status::InsufficientData),
                ("lenient".to_string(), Status::Ready)
            ]
        );
        assert_eq!(
            status(Some((0.05, 100))),
            vec![
                ("strict".to_string(), Status::Ready),
                ("lenient".to_string(), Status::Ready)
            ]
        );
    }
}
