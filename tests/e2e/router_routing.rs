//! Matching, stages, canary stickiness and the override header, through a
//! real proxy process.

use std::collections::HashMap;

use futures::{stream, StreamExt};
use reqwest::Method;

use crate::support::*;

const ROUTES: &str = r#"
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
stage = "legacy"

[[routes]]
name = "featured"
methods = ["GET"]
path = "/products/featured"
service = "svc"
stage = "migrated"

[[routes]]
name = "assets"
path = "/assets/{*rest}"
service = "svc"
stage = "migrated"

[[routes]]
name = "shadowed"
path = "/reviews/{id}"
service = "svc"
stage = "shadow"
# No A/A copies: the test counts the monolith's requests exactly (one in
# ten copies went to it a second time).
[routes.compare]
aa_percent = 0.0

[[routes]]
name = "canary"
methods = ["GET"]
path = "/orders/{id}"
service = "svc"
stage = "canary"
percent = 30.0
sticky = "header:x-user-id"
"#;

async fn setup() -> (TestUpstream, TestUpstream, Harness, Proxy) {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!("{}{ROUTES}", upstreams(&legacy, &[("svc", &svc)])));
    let p = h.start().await;
    (legacy, svc, h, p)
}

#[tokio::test]
async fn default_route_goes_to_the_monolith() {
    let (_l, _s, _h, p) = setup().await;
    let c = client();
    for path in ["/", "/cart", "/products", "/products/1/reviews", "/assets"] {
        assert_eq!(
            get_who(&c, &format!("{}{path}", p.base), &[]).await,
            "legacy",
            "{path}"
        );
    }
}

#[tokio::test]
async fn method_and_template_precedence() {
    let (_l, _s, _h, p) = setup().await;
    let c = client();
    let url = |path: &str| format!("{}{path}", p.base);
    // GET /products/{id} (legacy) beats the any-method route (migrated).
    assert_eq!(get_who(&c, &url("/products/7"), &[]).await, "legacy");
    // Other methods fall to the any-method route.
    assert_eq!(
        who(&c, Method::PUT, &url("/products/7"), &[]).await.1,
        "svc"
    );
    assert_eq!(
        who(&c, Method::DELETE, &url("/products/7"), &[]).await.1,
        "svc"
    );
    // A literal segment beats a parameter.
    assert_eq!(get_who(&c, &url("/products/featured"), &[]).await, "svc");
    // Catch-all takes the tail; the query string does not matter.
    assert_eq!(
        get_who(&c, &url("/assets/css/site.css?v=3"), &[]).await,
        "svc"
    );
}

#[tokio::test]
async fn each_stage_sends_traffic_where_it_should() {
    let (legacy, svc, _h, p) = setup().await;
    let c = client();
    // legacy
    assert_eq!(
        get_who(&c, &format!("{}/products/1", p.base), &[]).await,
        "legacy"
    );
    // shadow: the monolith answers, the service gets a marked copy
    let before = legacy.requests();
    assert_eq!(
        get_who(&c, &format!("{}/reviews/1", p.base), &[]).await,
        "legacy"
    );
    assert_eq!(legacy.requests(), before + 1);
    let copied = eventually(std::time::Duration::from_secs(5), || async {
        svc.shadow_requests() == 1
    })
    .await;
    assert!(copied.is_some(), "the service got the shadow copy");
    // migrated
    let before = svc.requests();
    assert_eq!(
        who(&c, Method::POST, &format!("{}/products/1", p.base), &[])
            .await
            .1,
        "svc"
    );
    assert_eq!(svc.requests(), before + 1);
    // canary: some users on each side
    let mut seen = HashMap::new();
    for i in 0..200 {
        let up = get_who(
            &c,
            &format!("{}/orders/1", p.base),
            &[("x-user-id", &format!("u{i}"))],
        )
        .await;
        *seen.entry(up).or_insert(0) += 1;
    }
    assert!(
        seen.get("svc").copied().unwrap_or(0) > 20 && seen.get("legacy").copied().unwrap_or(0) > 80,
        "{seen:?}"
    );
}

/// 10,000 distinct users through the proxy: the service's share is within
/// ±3 points of the percent.
#[tokio::test]
async fn canary_share_over_ten_thousand_users() {
    let (_l, _s, _h, p) = setup().await;
    let c = client();
    let url = format!("{}/orders/42", p.base);
    let on_service: usize = stream::iter(0..10_000)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            async move {
                usize::from(
                    get_who(&c, &url, &[("x-user-id", &format!("user-{i}"))]).await == "svc",
                )
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    let share = on_service as f64 / 100.0;
    assert!(
        (share - 30.0).abs() <= 3.0,
        "service share {share}% at percent 30"
    );
}

#[tokio::test]
async fn the_same_user_always_gets_the_same_target() {
    let (_l, _s, _h, p) = setup().await;
    let c = client();
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let first = get_who(&c, &format!("{}/orders/1", p.base), &[("x-user-id", user)]).await;
        for i in 0..100 {
            let again = get_who(
                &c,
                &format!("{}/orders/{i}", p.base),
                &[("x-user-id", user)],
            )
            .await;
            assert_eq!(again, first, "user {user}, request {i}");
        }
    }
}

#[tokio::test]
async fn raising_the_percent_moves_no_user_back() {
    let (_l, _s, _h, p) = setup().await;
    let c = client();
    let set = |percent: f64| {
        let (c, admin) = (c.clone(), p.admin.clone());
        async move {
            let r = c
                .put(format!("{admin}/routes/canary"))
                .json(&serde_json::json!({"stage": "canary", "percent": percent, "reason": "e2e", "force": true}))
                .send()
                .await
                .expect("admin");
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        }
    };
    let targets = |c: reqwest::Client, base: String| async move {
        stream::iter(0..2_000)
            .map(|i| {
                let (c, base) = (c.clone(), base.clone());
                async move {
                    get_who(
                        &c,
                        &format!("{base}/orders/1"),
                        &[("x-user-id", &format!("u{i}"))],
                    )
                    .await
                }
            })
            .buffered(32)
            .collect::<Vec<_>>()
            .await
    };
    set(10.0).await;
    let at10 = targets(c.clone(), p.base.clone()).await;
    set(50.0).await;
    let at50 = targets(c.clone(), p.base.clone()).await;
    let moved_back = at10
        .iter()
        .zip(&at50)
        .filter(|(a, b)| *a == "svc" && *b == "legacy")
        .count();
    assert_eq!(
        moved_back, 0,
        "users moved back to the monolith when the percent went up"
    );
    let (n10, n50) = (
        at10.iter().filter(|t| *t == "svc").count(),
        at50.iter().filter(|t| *t == "svc").count(),
    );
    assert!(
        n10 > 100 && n50 > 800,
        "on service: {n10} at 10%, {n50} at 50% of 2000"
    );
}

#[tokio::test]
async fn override_header_forces_a_target_and_is_not_forwarded() {
    let (_l, _s, _h, p) = setup().await;
    let c = client();
    let url = format!("{}/products/1", p.base);
    assert_eq!(get_who(&c, &url, &[]).await, "legacy");
    assert_eq!(
        get_who(&c, &url, &[("x-strangler-target", "service")]).await,
        "svc"
    );
    let url = format!("{}/products/featured", p.base);
    assert_eq!(
        get_who(&c, &url, &[("x-strangler-target", "legacy")]).await,
        "legacy"
    );
    // Unmatched paths have no service to force.
    assert_eq!(
        get_who(
            &c,
            &format!("{}/cart", p.base),
            &[("x-strangler-target", "service")]
        )
        .await,
        "legacy"
    );
    let body: serde_json::Value = c
        .get(format!("{}/products/1", p.base))
        .header("x-strangler-target", "service")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(
        body["headers"].get("x-strangler-target").is_none(),
        "override header leaked: {body}"
    );
}

#[tokio::test]
async fn request_id_and_traceparent_are_passed_on_or_created() {
    let (_l, _s, _h, p) = setup().await;
    let c = client();
    let echo = |headers: Vec<(&'static str, &'static str)>| {
        let (c, url) = (c.clone(), format!("{}/cart", p.base));
        async move {
            let mut r = c.get(url);
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send()
                .await
                .expect("send")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = echo(vec![("x-request-id", "req-123"), ("traceparent", tp)]).await;
    assert_eq!(body["headers"]["x-request-id"], "req-123");
    assert_eq!(body["headers"]["traceparent"], tp);
    let body = echo(vec![]).await;
    let id = body["headers"]["x-request-id"]
        .as_str()
        .expect("created request id");
    assert_eq!(id.len(), 32);
    let created = body["headers"]["traceparent"]
        .as_str()
        .expect("created traceparent");
    assert!(
        created.starts_with("00-") && created.len() == 55,
        "{created}"
    );
    assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1");
    // One JSON access-log line per request, carrying the ids.
    let found = eventually(std::time::Duration::from_secs(5), || async {
        std::fs::read_to_string(&p.access_log)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                    v["request_id"] == "req-123"
                        && v["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
                        && v["route"] == "default"
                })
            })
    })
    .await;
    assert!(found.is_some(), "no access-log line for req-123");
}

/// A canary at 50 % keyed by `sticky`, alone in its config.
async fn sticky_setup(sticky: &str) -> (TestUpstream, TestUpstream, Harness, Proxy) {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}\n[[routes]]\nname = \"orders\"\nmethods = [\"GET\"]\npath = \"/orders/{{id}}\"\nservice = \"svc\"\nstage = \"canary\"\npercent = 50.0\nsticky = \"{sticky}\"\n",
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let p = h.start().await;
    (legacy, svc, h, p)
}

/// Every user lands on one target for all of their requests, and the users
/// split between both.
fn assert_sticky(targets: &HashMap<String, Vec<String>>) {
    for (user, seen) in targets {
        assert!(
            seen.iter().all(|t| *t == seen[0]),
            "user {user} moved between targets: {seen:?}"
        );
    }
    let on_svc = targets.values().filter(|s| s[0] == "svc").count();
    assert!(
        (20..=80).contains(&on_svc),
        "{on_svc} of {} users on the service at 50 %",
        targets.len()
    );
}

#[tokio::test]
async fn cookie_stickiness_keeps_each_user_on_one_target() {
    let (_l, _s, _h, p) = sticky_setup("cookie:uid").await;
    let c = client();
    let mut targets: HashMap<String, Vec<String>> = HashMap::new();
    for u in 0..100 {
        let user = format!("user-{u}");
        for i in 0..5 {
            let cookie = format!("theme=dark; uid={user}; lang=en");
            let t = get_who(
                &c,
                &format!("{}/orders/{i}", p.base),
                &[("cookie", &cookie)],
            )
            .await;
            targets.entry(user.clone()).or_default().push(t);
        }
    }
    assert_sticky(&targets);
}

#[tokio::test]
async fn client_ip_stickiness_keeps_each_address_on_one_target() {
    let (_l, _s, _h, p) = sticky_setup("client-ip").await;
    let mut targets: HashMap<String, Vec<String>> = HashMap::new();
    // 100 clients, each from its own loopback address (127.0.0.0/8 is all
    // loopback on Linux).
    for n in 2..102u8 {
        let ip = std::net::IpAddr::from([127, 0, 0, n]);
        let c = reqwest::Client::builder()
            .no_proxy()
            .local_address(ip)
            .build()
            .expect("client");
        for i in 0..5 {
            let t = get_who(&c, &format!("{}/orders/{i}", p.base), &[]).await;
            targets.entry(ip.to_string()).or_default().push(t);
        }
    }
    assert_sticky(&targets);
}

/// Behind a trusted load balancer (`proxy.trusted_proxies`; here the test
/// on 127.0.0.1) client-ip stickiness sees the clients it forwards for;
/// from a peer that is not trusted, `X-Forwarded-For` is a claim, not the
/// client.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_told_apart_and_an_untrusted_peer_is_not_believed() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let path = h.write_config(&format!(
        "{}\n[[routes]]\nname = \"orders\"\nmethods = [\"GET\"]\npath = \"/orders/{{id}}\"\nservice = \"svc\"\nstage = \"canary\"\npercent = 50.0\nsticky = \"client-ip\"\n",
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let text = std::fs::read_to_string(&path).expect("config").replace(
        "drain_timeout_secs = 5\n",
        "drain_timeout_secs = 5\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    std::fs::write(&path, text).expect("write config");
    let p = h.start().await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    };
    let (balancer, stranger) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let mut targets: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..100u8 {
        let client = format!("198.51.100.{n}");
        for i in 0..5 {
            let t = get_who(
                &balancer,
                &format!("{}/orders/{i}", p.base),
                &[("x-forwarded-for", &client)],
            )
            .await;
            targets.entry(client.clone()).or_default().push(t);
        }
    }
    assert_sticky(&targets);
    let mut seen = std::collections::HashSet::new();
    for n in 0..100u8 {
        let client = format!("198.51.100.{n}");
        seen.insert(
            get_who(
                &stranger,
                &format!("{}/orders/1", p.base),
                &[("x-forwarded-for", &client)],
            )
            .await,
        );
    }
    assert_eq!(seen.len(), 1, "one peer, one target: {seen:?}");
}

#[tokio::test]
async fn without_an_override_header_the_header_forces_nothing() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!("{}{ROUTES}", upstreams(&legacy, &[("svc", &svc)])));
    let text = std::fs::read_to_string(h.config_path()).expect("read");
    let off = text.replace("override_header = \"x-strangler-target\"\n", "");
    assert_ne!(off, text, "the harness config names an override header");
    std::fs::write(h.config_path(), off).expect("write");
    let p = h.start().await;
    let c = client();
    // A legacy route stays legacy, a migrated one migrated.
    for (path, want) in [("/products/1", "legacy"), ("/products/featured", "svc")] {
        for force in ["service", "legacy"] {
            assert_eq!(
                get_who(
                    &c,
                    &format!("{}{path}", p.base),
                    &[("x-strangler-target", force)]
                )
                .await,
                want,
                "{path} with x-strangler-target: {force}"
            );
        }
    }
    // Nothing special about the header: it is passed on like any other.
    let body: serde_json::Value = c
        .get(format!("{}/products/1", p.base))
        .header("x-strangler-target", "service")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["headers"]["x-strangler-target"], "service", "{body}");
}
