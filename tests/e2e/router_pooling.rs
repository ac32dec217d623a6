//! Upstream connections are pooled: keep-alive requests through the proxy
//! reuse one upstream connection instead of opening a new one now and then
//! (each new one costs a handshake and leaves a socket in TIME_WAIT), and
//! so do the shadow copies.

use futures::{stream, StreamExt};

use crate::support::*;

const ROUTES: &str = r#"
[[routes]]
name = "moved"
methods = ["GET"]
path = "/moved/{id}"
service = "a"
stage = "migrated"
# The proxy's own connections: no reverse-shadow copies (they travel on
# the shadow client's connections, counted by the next test).
shadow_percent = 0.0

[[routes]]
name = "old"
methods = ["GET"]
path = "/old/{id}"
service = "a"
stage = "legacy"

[[routes]]
name = "trial"
methods = ["GET"]
path = "/trial/{id}"
service = "b"
stage = "canary"
percent = 50.0
sticky = "none"
"#;

/// 1,000 sequential keep-alive requests each through a migrated, a legacy
/// and a canary route: every upstream saw exactly one connection.
#[tokio::test]
async fn sequential_keep_alive_requests_reuse_one_upstream_connection() {
    let legacy = TestUpstream::start("legacy").await;
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}{ROUTES}",
        upstreams(&legacy, &[("a", &a), ("b", &b)])
    ));
    let p = h.start().await;
    // One client connection, kept alive.
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let mut answered = std::collections::HashMap::<String, u64>::new();
    for route in ["moved", "old", "trial"] {
        for i in 0..1_000 {
            let (status, who) = who(
                &c,
                reqwest::Method::GET,
                &format!("{}/{route}/{i}", p.base),
                &[],
            )
            .await;
            assert_eq!(status, 200, "{route} {i}");
            *answered.entry(who).or_default() += 1;
        }
    }
    assert_eq!(answered["a"], 1_000, "{answered:?}");
    assert!(
        answered["b"] > 0 && answered["legacy"] > 1_000,
        "the canary splits: {answered:?}"
    );
    assert_eq!(
        (legacy.connections(), a.connections(), b.connections()),
        (1, 1, 1),
        "upstream connections (legacy, a, b) for {answered:?}"
    );
}

/// A migrated route under 100 concurrent requests, every one copied to the
/// monolith (reverse shadow): three rounds, and no upstream connection is
/// ever closed — neither the proxy's nor the shadow client's (its pool
/// kept 64 idle connections per upstream, so each round closed the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_and_their_shadow_copies_close_no_upstream_connection() {
    const CONCURRENT: usize = 100;
    let legacy = TestUpstream::start("legacy").await;
    let a = TestUpstream::start("a").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}[[routes]]\nname = \"moved\"\nmethods = [\"GET\"]\npath = \"/moved/{{id}}\"\nservice = \"a\"\nstage = \"migrated\"\n[routes.compare]\naa_percent = 0.0\n",
        upstreams(&legacy, &[("a", &a)])
    ));
    let p = h.start().await;
    let c = client();
    for round in 1..=3u64 {
        let statuses: Vec<u16> = stream::iter(0..CONCURRENT)
            .map(|i| {
                let (c, url) = (c.clone(), format!("{}/moved/{i}", p.base));
                async move { who(&c, reqwest::Method::GET, &url, &[]).await.0 }
            })
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        // Every request answered by the service, every copy by the monolith.
        let want = round * CONCURRENT as u64;
        let copied = eventually(std::time::Duration::from_secs(30), || async {
            legacy.requests() == want && a.requests() == want
        })
        .await;
        assert!(
            copied.is_some(),
            "round {round}: monolith {} and service {} requests of {want}",
            legacy.requests(),
            a.requests()
        );
    }
    assert_eq!(
        (legacy.closed(), a.closed()),
        (0, 0),
        "upstream connections closed (monolith, service) of {} and {} opened",
        legacy.connections(),
        a.connections()
    );
}
