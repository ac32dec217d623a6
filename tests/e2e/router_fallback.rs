//! Fallback to the monolith and health checks, with real upstreams failing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use reqwest::Method;

use crate::support::*;

const ROUTES: &str = r#"
[[routes]]
name = "products"
path = "/products/{id}"
service = "svc"
stage = "migrated"

[[routes]]
name = "no-fallback"
path = "/strict/{id}"
service = "svc"
stage = "migrated"
fallback = false
"#;

async fn setup(health: bool) -> (TestUpstream, TestUpstream, Harness, Proxy) {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let mut ups = upstreams(&legacy, &[("svc", &svc)]);
    if health {
        ups = ups.replace(
            &format!("url = \"{}\"\n", svc.url()),
            &format!("url = \"{}\"\nhealth_path = \"/healthz\"\nhealth_interval_ms = 100\nunhealthy_threshold = 2\n", svc.url()),
        );
    }
    h.write_config(&format!("{ups}{ROUTES}"));
    let p = h.start().await;
    (legacy, svc, h, p)
}

/// The service is killed in the middle of a burst of GETs: every client
/// request still succeeds, answered by the monolith.
#[tokio::test]
async fn service_killed_during_a_burst_gives_no_client_errors() {
    let (_legacy, svc, _h, p) = setup(false).await;
    let c = client();
    let done = Arc::new(AtomicUsize::new(0));
    let total = 3_000;
    let burst = {
        let (c, base, done) = (c.clone(), p.base.clone(), done.clone());
        tokio::spawn(async move {
            stream::iter(0..total)
                .map(|i| {
                    let (c, base, done) = (c.clone(), base.clone(), done.clone());
                    async move {
                        let r = who(&c, Method::GET, &format!("{base}/products/{i}"), &[]).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        r
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };
    while done.load(Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    svc.kill();
    let results = burst.await.expect("burst");
    let errors: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        errors.is_empty(),
        "{} client errors, e.g. {:?}",
        errors.len(),
        errors.first()
    );
    let by_legacy = results.iter().filter(|(_, u)| u == "legacy").count();
    let by_svc = results.iter().filter(|(_, u)| u == "svc").count();
    assert!(
        by_svc >= total / 3 - 16 && by_legacy > 0,
        "svc {by_svc}, legacy {by_legacy}"
    );
    let fallbacks = p
        .metric_settled("strangler_fallbacks_total{reason=\"connect_error\",route=\"products\"}")
        .await
        + p.metric_settled(
            "strangler_fallbacks_total{reason=\"upstream_error\",route=\"products\"}",
        )
        .await
        + p.metric_settled(
            "strangler_fallbacks_total{reason=\"connect_timeout\",route=\"products\"}",
        )
        .await;
    assert_eq!(
        fallbacks as usize, by_legacy,
        "every request the monolith answered is a counted fallback"
    );
}

#[tokio::test]
async fn service_5xx_on_safe_methods_is_answered_by_the_monolith() {
    let (_legacy, svc, _h, p) = setup(false).await;
    let c = client();
    svc.set_behaviour(Behaviour::Status(503));
    for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let (status, up) = who(&c, m.clone(), &format!("{}/products/1", p.base), &[]).await;
        assert_eq!((status, up.as_str()), (200, "legacy"), "{m}");
    }
    // Unsafe methods are never replayed: the client sees the service's answer.
    let (status, up) = who(&c, Method::POST, &format!("{}/products/1", p.base), &[]).await;
    assert_eq!((status, up.as_str()), (503, "svc"));
    // fallback = false: the service's 5xx reaches the client.
    let (status, up) = who(&c, Method::GET, &format!("{}/strict/1", p.base), &[]).await;
    assert_eq!((status, up.as_str()), (503, "svc"));
    assert_eq!(
        p.metric_settled("strangler_fallbacks_total{reason=\"status_5xx\",route=\"products\"}")
            .await,
        3.0
    );
    assert_eq!(
        p.metric_settled(
            "strangler_requests_total{code=\"200\",route=\"products\",target=\"legacy\"}"
        )
        .await,
        3.0
    );
    assert_eq!(
        p.metric_settled(
            "strangler_requests_total{code=\"503\",route=\"products\",target=\"svc\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn unsafe_methods_fall_back_when_the_service_refuses_the_connection() {
    let (_legacy, svc, _h, p) = setup(false).await;
    svc.kill();
    let c = client();
    // Nothing reached the service, so even a POST is safe to hand over.
    let (status, up) = who(&c, Method::POST, &format!("{}/products/1", p.base), &[]).await;
    assert_eq!((status, up.as_str()), (200, "legacy"));
    // Without fallback, the client gets a 502.
    let (status, _) = who(&c, Method::GET, &format!("{}/strict/1", p.base), &[]).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn a_service_down_by_health_check_gets_no_traffic_until_it_is_back() {
    let (_legacy, svc, _h, p) = setup(true).await;
    let c = client();
    assert_eq!(
        get_who(&c, &format!("{}/products/1", p.base), &[]).await,
        "svc"
    );
    let addr = svc.addr();
    svc.kill();
    let down = eventually(Duration::from_secs(5), || async {
        p.metric("strangler_upstream_up{upstream=\"svc\"}").await == 0.0
    })
    .await;
    assert!(down.is_some(), "health check never marked svc down");
    assert_eq!(
        get_who(&c, &format!("{}/products/1", p.base), &[]).await,
        "legacy"
    );
    assert!(
        p.metric_settled("strangler_fallbacks_total{reason=\"unhealthy\",route=\"products\"}")
            .await
            >= 1.0
    );
    // Back on the same port: traffic returns.
    let _svc = TestUpstream::start_on("svc", addr).await;
    let up = eventually(Duration::from_secs(5), || async {
        p.metric("strangler_upstream_up{upstream=\"svc\"}").await == 1.0
    })
    .await;
    assert!(up.is_some(), "health check never marked svc up again");
    assert_eq!(
        get_who(&c, &format!("{}/products/1", p.base), &[]).await,
        "svc"
    );
}

/// `[routes.retry_budget]`: a request the service answered with a 5xx goes
/// to the monolith only while the route's retries in flight are within the
/// budget. With room for one, a second failure while the first's retry is
/// still on the (slow) monolith gets the service's 500; once that retry
/// ended, the next failure falls back again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_bounds_fallbacks_in_flight() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    svc.set_behaviour(Behaviour::Status(500));
    let h = Harness::new();
    h.write_config(&format!(
        "{}[[routes]]\nname = \"slow\"\nmethods = [\"GET\"]\npath = \"/slow\"\nservice = \"svc\"\nstage = \"migrated\"\nshadow_percent = 0.0\n[routes.retry_budget]\npercent = 0.0\nmin_concurrency = 1\n",
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let p = h.start().await;
    let c = client();
    let get = |ms: u64| {
        let (c, url) = (c.clone(), format!("{}/slow?ms={ms}", p.base));
        async move {
            let r = c.get(url).send().await.expect("request");
            let who = r
                .headers()
                .get("x-upstream")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (r.status().as_u16(), who)
        }
    };
    // Both upstreams answer /slow after `ms`: the first request's 500 comes
    // after 3 s, its retry then takes 3 s on the monolith; the second fails
    // on the service while that retry is in flight.
    let first = tokio::spawn(get(3_000));
    let first_retrying =
        eventually(Duration::from_secs(30), || async { legacy.requests() == 1 }).await;
    assert!(first_retrying.is_some(), "{}", p.log_text());
    assert_eq!(get(10).await, (500, "svc".to_string()), "over the budget");
    assert_eq!(first.await.expect("join"), (200, "legacy".to_string()));
    assert_eq!(get(10).await, (200, "legacy".to_string()), "room again");
    assert_eq!(
        p.metric_settled(r#"strangler_retries_refused_total{route="slow"}"#)
            .await,
        1.0
    );
}
