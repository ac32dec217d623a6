//! Per-route rate limits: `[routes.rate_limit]`, answered 429 with
//! `Retry-After` by the proxy, per client.

use crate::support::*;

#[tokio::test]
async fn a_rate_limited_route_answers_429_with_retry_after_per_client() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}[[routes]]\nname = \"search\"\nmethods = [\"GET\"]\npath = \"/search\"\nservice = \"svc\"\nstage = \"migrated\"\nshadow_percent = 0.0\n[routes.rate_limit]\nrequests = 3\nper_seconds = 60\nkey = \"header:x-user-id\"\n",
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let p = h.start().await;
    let c = client();
    let get = |user: &'static str| {
        let c = c.clone();
        let url = format!("{}/search", p.base);
        async move {
            let r = c
                .get(url)
                .header("x-user-id", user)
                .send()
                .await
                .expect("request");
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            (r.status().as_u16(), retry)
        }
    };
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(get("alice").await);
    }
    let statuses: Vec<u16> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    for (_, retry) in &seen[3..] {
        // Three requests a minute: the next one in at most 20 s.
        assert!(
            retry.is_some_and(|s| (1..=20).contains(&s)),
            "Retry-After {retry:?}"
        );
    }
    // Another client has its own allowance.
    assert_eq!(get("bob").await.0, 200);
    // The refused requests never reached the service.
    assert_eq!(svc.requests(), 4);
    // Counted as answered 429 on the route, twice.
    assert_eq!(
        p.metric("strangler_requests_total{code=\"429\",route=\"search\",target=\"svc\"}")
            .await,
        2.0
    );
}
