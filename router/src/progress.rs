//! Migration progress over time: per hour, how many routes are in each
//! stage and how much of the traffic each stage took and new services
//! answered. Drawn from the store — usage by route and minute, and each
//! route's stage over time replayed from the audit log — so every proxy,
//! `strangler status` and the board give the same figures.
//!
//! ```text
//!  audit log ─ stage changes per route ─▶ stage of a route at minute m
//!  usage (route, minute) ─ requests, service_requests, fallbacks ─┤
//!                                                                 ▼
//!  Hour { routes by stage at its end, requests by stage, served by services }
//! ```

use std::collections::{BTreeMap, HashMap};

use strangler_config::{Config, Stage};
use strangler_state::route_state::effective;
use strangler_state::store::{AuditEntry, StateStore};
use strangler_state::{RouteStore, StoreError};

/// What requests no route matched are counted under.
pub const UNROUTED: &str = "unrouted";

const HOUR_MS: i64 = 3_600_000;

/// One hour (or the part of the current hour gone by).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Hour {
    /// Start of the hour, ms since the epoch.
    pub start_ms: i64,
    /// Routes in each stage at the hour's end (now for the current hour).
    pub routes: BTreeMap<String, u64>,
    pub requests: u64,
    /// Requests by the stage their route was in when they came
    /// ([`UNROUTED`]: no route matched; the monolith answered).
    pub requests_by_stage: BTreeMap<String, u64>,
    /// Requests a new service answered (meant for it and not fallen back).
    pub served_by_services: u64,
}

impl Hour {
    /// Routes in canary or migrated, and routes in all.
    pub fn routes_on_services(&self) -> (u64, u64) {
        let on = ["canary", "migrated"]
            .iter()
            .filter_map(|s| self.routes.get(*s))
            .sum();
        (on, self.routes.values().sum())
    }

    /// Share of the requests new services answered.
    pub fn served_share(&self) -> f64 {
        ratio(self.served_by_services, self.requests)
    }

    pub fn stage_share(&self, stage: &str) -> f64 {
        ratio(
            self.requests_by_stage.get(stage).copied().unwrap_or(0),
            self.requests,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Each route's stage over time.
struct Timelines {
    by_route: HashMap<String, Vec<(i64, Stage, Stage)>>,
    now: HashMap<String, Stage>,
}

impl Timelines {
    fn new(audit: &[AuditEntry], now: HashMap<String, Stage>) -> Timelines {
        let mut by_route: HashMap<String, Vec<(i64, Stage, Stage)>> = HashMap::new();
        for e in audit {
            by_route.entry(e.route.clone()).or_default().push((
                e.at_ms,
                e.before.stage,
                e.after.stage,
            ));
        }
        // Entries are in write order; writers' clocks may disagree by a
        // little: replay in time order.
        for changes in by_route.values_mut() {
            changes.sort_by_key(|(at, _, _)| *at);
        }
        Timelines { by_route, now }
    }

    /// The stage of `route` at `ms`.
    fn at(&self, route: &str, ms: i64) -> Stage {
        match self.by_route.get(route) {
            Some(changes) => match changes.iter().rev().find(|(at, _, _)| *at <= ms) {
                Some((_, _, after)) => *after,
                None => changes[0].1,
            },
            None => self.now.get(route).copied().unwrap_or(Stage::Legacy),
        }
    }
}

/// Progress per clock hour over the last `hours` hours, oldest first, the
/// current (partial) hour last.
pub async fn hourly(
    config: &Config,
    store: &StateStore,
    now_ms: i64,
    hours: u32,
) -> Result<Vec<Hour>, StoreError> {
    let current = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let from = current - i64::from(hours.saturating_sub(1)) * HOUR_MS;
    let mut out: Vec<Hour> = (0..i64::from(hours.max(1)))
        .map(|i| Hour {
            start_ms: from + i * HOUR_MS,
            ..Hour::default()
        })
        .collect();
    fill(
        config,
        store,
        now_ms,
        from,
        |ms| usize::try_from((ms - from).div_euclid(HOUR_MS)).ok(),
        &mut out,
    )
    .await?;
    Ok(out)
}

/// Progress over the window `[since_ms, now_ms]` as one [`Hour`]: what the
/// proxy's gauges show (the last 60 minutes).
pub async fn window(
    config: &Config,
    store: &StateStore,
    now_ms: i64,
    since_ms: i64,
) -> Result<Hour, StoreError> {
    let mut out = vec![Hour {
        start_ms: since_ms,
        ..Hour::default()
    }];
    fill(config, store, now_ms, since_ms, |_| Some(0), &mut out).await?;
    Ok(out.pop().unwrap_or_default())
}

async fn fill(
    config: &Config,
    store: &StateStore,
    now_ms: i64,
    from_ms: i64,
    bucket: impl Fn(i64) -> Option<usize>,
    out: &mut [Hour],
) -> Result<(), StoreError> {
    let rows = store.routes().await?;
    let now: HashMap<String, Stage> = config
        .routes
        .iter()
        .map(|r| {
            let row = rows.iter().find(|o| o.route == r.name);
            (r.name.clone(), effective(r, row).stage)
        })
        .collect();
    let audit = store.audit_log(None).await?;
    let lines = Timelines::new(&audit, now);
    for (route, minute, c) in store.usage_by_minute(from_ms.div_euclid(60_000)).await? {
        let ms = minute * 60_000;
        let Some(h) = bucket(ms).and_then(|i| out.get_mut(i)) else {
            continue;
        };
        let stage = if config.route(&route).is_some() {
            lines.at(&route, ms + 59_999).to_string()
        } else {
            UNROUTED.to_string()
        };
        h.requests += c.requests;
        *h.requests_by_stage.entry(stage).or_default() += c.requests;
        h.served_by_services += c.service_requests.saturating_sub(c.fallbacks);
    }
    for h in out.iter_mut() {
        let end = (h.start_ms + HOUR_MS - 1).min(now_ms);
        for r in &config.routes {
            *h.routes
                .entry(lines.at(&r.name, end).to_string())
                .or_default() += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strangler_state::route_state::Target;

    fn entry(route: &str, at_ms: i64, before: Stage, after: Stage) -> AuditEntry {
        let t = |stage| Target {
            stage,
            percent: 0.0,
        };
        AuditEntry {
            id: 0,
            route: route.into(),
            actor: "t".into(),
            at_ms,
            at: String::new(),
            reason: String::new(),
            before: t(before),
            after: t(after),
            revision: String::new(),
            fleet_revision: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[tokio::test]
    async fn hours_count_requests_by_the_stage_their_route_was_in() {
        use strangler_state::counts::Counts;
        let dir = tempfile::tempdir().expect("dir");
        let store =
            StateStore::connect(&format!("sqlite://{}/s.db?mode=rwc", dir.path().display()))
                .await
                .expect("store");
        let config = Config::from_toml(
            "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n[upstreams.svc]\nurl = \"http://127.0.0.1:2\"\n\
             [[routes]]\nname = \"a\"\npath = \"/a\"\nservice = \"svc\"\nstage = \"legacy\"\n\
             [[routes]]\nname = \"b\"\npath = \"/b\"\nstage = \"legacy\"\n",
            std::path::Path::new("/tmp/s.toml"),
        )
        .expect("config");
        let now = strangler_state::store::now_ms();
        let this_hour = now.div_euclid(HOUR_MS) * HOUR_MS;
        let last_hour_minute = (this_hour - HOUR_MS) / 60_000 + 1;
        let c = |requests, service_requests, fallbacks| Counts {
            requests,
            service_requests,
            service_errors: 0,
            fallbacks,
        };
        let before = std::collections::HashMap::from([
            (("a".to_string(), last_hour_minute, 0), c(100, 0, 0)),
            (("default".to_string(), last_hour_minute, 0), c(50, 0, 0)),
        ]);
        store.merge_usage(&before).await.expect("usage");
        // a goes to canary now (audited), then takes requests.
        crate::gates::set(
            &config,
            &store,
            "a",
            Stage::Canary,
            Some(50.0),
            true,
            strangler_state::route_store::Who {
                actor: "t".into(),
                reason: "test".into(),
                revision: String::new(),
            },
        )
        .await
        .expect("set");
        // Now is after the change (the current hour's routes are counted at now).
        let now = strangler_state::store::now_ms();
        let after =
            std::collections::HashMap::from([(("a".to_string(), now / 60_000, 1), c(40, 20, 2))]);
        store.merge_usage(&after).await.expect("usage");
        let hours = hourly(&config, &store, now, 2).await.expect("progress");
        assert_eq!(hours.len(), 2);
        let (last, current) = (&hours[0], &hours[1]);
        assert_eq!(last.start_ms, this_hour - HOUR_MS);
        assert_eq!(last.requests, 150);
        assert_eq!(
            last.requests_by_stage,
            BTreeMap::from([("legacy".to_string(), 100), (UNROUTED.to_string(), 50)])
        );
        assert_eq!(last.routes, BTreeMap::from([("legacy".to_string(), 2)]));
        assert_eq!(last.served_by_services, 0);
        assert_eq!(current.requests, 40);
        assert_eq!(
            current.requests_by_stage,
            BTreeMap::from([("canary".to_string(), 40)])
        );
        assert_eq!(
            current.served_by_services, 18,
            "meant for the service, less fallbacks"
        );
        assert_eq!(
            current.routes,
            BTreeMap::from([("canary".to_string(), 1), ("legacy".to_string(), 1)])
        );
        assert!((current.served_share() - 0.45).abs() < 1e-9);
        assert_eq!(current.routes_on_services(), (1, 2));
        let w = window(&config, &store, now, now - HOUR_MS)
            .await
            .expect("window");
        assert_eq!(
            w.requests,
            40 + if last_hour_minute >= (now - HOUR_MS).div_euclid(60_000) {
                150
            } else {
                0
            }
        );
    }

    #[test]
    fn a_routes_stage_at_a_time_is_replayed_from_its_changes() {
        let lines = Timelines::new(
            &[
                entry("a", 100, Stage::Legacy, Stage::Shadow),
                entry("a", 200, Stage::Shadow, Stage::Canary),
            ],
            HashMap::from([("a".into(), Stage::Canary), ("b".into(), Stage::Migrated)]),
        );
        assert_eq!(lines.at("a", 50), Stage::Legacy);
        assert_eq!(lines.at("a", 100), Stage::Shadow);
        assert_eq!(lines.at("a", 199), Stage::Shadow);
        assert_eq!(lines.at("a", 10_000), Stage::Canary);
        assert_eq!(lines.at("b", 0), Stage::Migrated, "never changed: as now");
        assert_eq!(lines.at("gone", 0), Stage::Legacy);
    }
}
