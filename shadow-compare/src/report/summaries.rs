//! Report rows for a configuration's routes from stored statistics: what
//! `strangler shadow report`, the board and the admin API show.

use super::{route, RouteInfo, RouteReport};

/// Report rows for every route that has a service, from stored stats.
/// Fields covered by the route's current `ignore` rules are left out, so
/// accepting an ignore rule cleans the verdict of data already gathered.
pub fn summaries(
    config: &strangler_config::Config,
    stage_of: impl Fn(&strangler_config::Route) -> strangler_config::Stage,
    stats: &[(String, crate::RouteStats)],
    max_mismatch: f64,
    min_samples: u64,
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
