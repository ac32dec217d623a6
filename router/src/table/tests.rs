use std::path::Path;

use http::{HeaderMap, Method};
use strangler_config::{Config, Stage};

use super::*;
use strangler_state::route_state::{effective, Origin};

const CONFIG: &str = r#"
[upstreams.legacy]
url = "http://127.0.0.1:1"
[upstreams.svc]
url = "http://127.0.0.1:2"

[[routes]]
name = "any-product"
path = "/products/{id}"
service = "svc"
stage = "migrated"

[[routes]]
name = "get-product"
methods = ["GET"]
path = "/products/{id}"
service = "svc"
stage = "canary"
percent = 50.0
sticky = "header:x-user-id"

[[routes]]
name = "new-product"
path = "/products/new"
service = "svc"
stage = "shadow"

[[routes]]
name = "static"
path = "/static/{*rest}"
service = "svc"
stage = "migrated"

[[routes]]
name = "no-service"
path = "/about"
"#;

fn table_with(stage_of: impl Fn(&str) -> Option<(Stage, f64)>) -> RouteTable {
    let config = Config::from_toml(CONFIG, Path::new("t.toml")).expect("valid config");
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut eff = effective(r, None);
            if let Some((stage, percent)) = stage_of(&r.name) {
                eff = Effective {
                    stage,
                    percent,
                    origin: Origin::Runtime,
                };
            }
            let shadow = crate::shadow::RouteShadow {
                rules: std::sync::Arc::new(strangler_shadow::Rules::none()),
                percent: 0.0,
                methods: vec![],
                aa_percent: 0.0,
                tables: vec![],
            };
            CompiledRoute::new(r, i, r.service.as_ref().map(|_| 1), eff, shadow)
        })
        .collect();
    RouteTable::new(routes)
}

fn table() -> RouteTable {
    table_with(|_| None)
}

fn req<'a>(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> RequestInfo<'a> {
    RequestInfo {
        method,
        path,
        headers,
        client_ip: None,
        random_bucket: 0,
        forced: None,
    }
}

fn name(t: &RouteTable, d: Decision) -> &str {
    d.route.map_or(DEFAULT_ROUTE, |i| &t.routes()[i].name)
}

#[test]
fn unmatched_goes_to_legacy() {
    let t = table();
    let h = HeaderMap::new();
    let d = t.decide(&req(&Method::GET, "/cart", &h), |_| true);
    assert_eq!(
        d,
        Decision {
            route: None,
            target: LEGACY_ID,
            why: Why::Unmatched
        }
    );
}

#[test]
fn most_specific_match_wins() {
    let t = table();
    let h = HeaderMap::new();
    let up = |_| true;
    assert_eq!(
        name(&t, t.decide(&req(&Method::GET, "/products/new", &h), up)),
        "new-product"
    );
    assert_eq!(
        name(&t, t.decide(&req(&Method::GET, "/products/7", &h), up)),
        "get-product"
    );
    assert_eq!(
        name(&t, t.decide(&req(&Method::PUT, "/products/7", &h), up)),
        "any-product"
    );
    assert_eq!(
        name(&t, t.decide(&req(&Method::GET, "/static/a/b.css", &h), up)),
        "static"
    );
    assert_eq!(
        name(&t, t.decide(&req(&Method::GET, "/static", &h), up)),
        DEFAULT_ROUTE
    );
}

#[test]
fn stages_pick_targets() {
    let t = table();
    let h = HeaderMap::new();
    let d = t.decide(&req(&Method::GET, "/products/new", &h), |_| true);
    assert_eq!(
        (d.target, d.why),
        (LEGACY_ID, Why::Stage),
        "shadow answers from legacy"
    );
    let d = t.decide(&req(&Method::PUT, "/products/1", &h), |_| true);
    assert_eq!(
        (d.target, d.why),
        (1, Why::Stage),
        "migrated answers from the service"
    );
    let d = t.decide(&req(&Method::GET, "/about", &h), |_| true);
    assert_eq!(
        (d.target, d.why),
        (LEGACY_ID, Why::Stage),
        "no service: legacy"
    );
}

#[test]
fn canary_is_sticky_and_close_to_percent() {
    let t = table();
    let mut on = 0;
    for i in 0..10_000 {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", format!("user-{i}").parse().expect("header"));
        let first = t.decide(&req(&Method::GET, "/products/1", &h), |_| true);
        for _ in 0..3 {
            let again = t.decide(
                &RequestInfo {
                    random_bucket: 9_999,
                    ..req(&Method::GET, "/products/2", &h)
                },
                |_| true,
            );
            assert_eq!(again.target, first.target, "same user, same target");
        }
        on += usize::from(first.target == 1);
    }
    assert!(
        (4_700..=5_300).contains(&on),
        "{on} of 10000 on the service at 50%"
    );
}

#[test]
fn canary_without_key_uses_the_random_bucket() {
    let t = table();
    let h = HeaderMap::new();
    let low = t.decide(
        &RequestInfo {
            random_bucket: 10,
            ..req(&Method::GET, "/products/1", &h)
        },
        |_| true,
    );
    let high = t.decide(
        &RequestInfo {
            random_bucket: 9_000,
            ..req(&Method::GET, "/products/1", &h)
        },
        |_| true,
    );
    assert_eq!((low.target, low.why), (1, Why::CanaryIn));
    assert_eq!((high.target, high.why), (LEGACY_ID, Why::CanaryOut));
}

#[test]
fn forced_target_wins_over_stage_and_health() {
    let t = table();
    let h = HeaderMap::new();
    let d = t.decide(
        &RequestInfo {
            forced: Some(Forced::Service),
            ..req(&Method::GET, "/products/new", &h)
        },
        |_| false,
    );
    assert_eq!((d.target, d.why), (1, Why::Forced));
    let d = t.decide(
        &RequestInfo {
            forced: Some(Forced::Legacy),
            ..req(&Method::PUT, "/products/1", &h)
        },
        |_| true,
    );
    assert_eq!((d.target, d.why), (LEGACY_ID, Why::Forced));
    // No service: forcing the service still goes to legacy.
    let d = t.decide(
        &RequestInfo {
            forced: Some(Forced::Service),
            ..req(&Method::GET, "/about", &h)
        },
        |_| true,
    );
    assert_eq!(d.target, LEGACY_ID);
    assert_eq!(Forced::parse(b"SERVICE"), Some(Forced::Service));
    assert_eq!(Forced::parse(b"other"), None);
}

#[test]
fn service_down_falls_back_to_legacy() {
    let t = table();
    let h = HeaderMap::new();
    let d = t.decide(&req(&Method::PUT, "/products/1", &h), |id| id != 1);
    assert_eq!((d.target, d.why), (LEGACY_ID, Why::ServiceDown));
}

#[test]
fn overrides_change_the_decision() {
    let t = table_with(|n| (n == "any-product").then_some((Stage::Legacy, 0.0)));
    let h = HeaderMap::new();
    let d = t.decide(&req(&Method::PUT, "/products/1", &h), |_| true);
    assert_eq!(d.target, LEGACY_ID);
    assert_eq!(
        t.find("any-product").map(|r| r.origin),
        Some(Origin::Runtime)
    );
}

#[test]
fn raising_percent_moves_no_user_back() {
    let at = |p: f64| table_with(move |n| (n == "get-product").then_some((Stage::Canary, p)));
    let (t10, t50) = (at(10.0), at(50.0));
    for i in 0..5_000 {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", format!("u{i}").parse().expect("header"));
        let a = t10.decide(&req(&Method::GET, "/products/1", &h), |_| true);
        let b = t50.decide(&req(&Method::GET, "/products/1", &h), |_| true);
        assert!(
            a.target == LEGACY_ID || b.target == 1,
            "user u{i} moved back"
        );
    }
}
