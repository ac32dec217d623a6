//! Per-route limits: `[routes.rate_limit]` (answered 429 with
//! `Retry-After` by the proxy, per client), `max_body_bytes` (413) and
//! `timeout_ms` (504).

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

/// `max_body_bytes`: a body declared bigger is refused with 413 before
/// anything goes upstream; a chunked one is cut off with 413 once it
/// passes the limit; a body within it goes through.
#[tokio::test]
async fn a_request_body_over_the_routes_limit_gets_413() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}[[routes]]\nname = \"upload\"\nmethods = [\"POST\"]\npath = \"/upload\"\nservice = \"svc\"\nstage = \"migrated\"\nshadow_percent = 0.0\nmax_body_bytes = 1000\n",
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let p = h.start().await;
    let c = client();
    let post = |n: usize| {
        c.post(format!("{}/upload", p.base))
            .body(vec![b'x'; n])
            .send()
    };
    assert_eq!(post(1000).await.expect("post").status(), 200);
    assert_eq!(svc.requests(), 1);
    assert_eq!(post(1001).await.expect("post").status(), 413);
    assert_eq!(
        svc.requests(),
        1,
        "a declared body over the limit never goes upstream"
    );

    // Chunked: three chunks of 600 bytes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(format!("258\r\n{}\r\n", "y".repeat(600)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.expect("write");
    let mut head = [0u8; 12];
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut head))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    assert_eq!(&head, b"HTTP/1.1 413");
}

/// `timeout_ms`: the upstream must start answering within the route's
/// deadline, counted from the request's arrival and shared by the
/// fallback: a too slow answer is a 504 long before the upstream would
/// have answered, and a fast one is untouched.
#[tokio::test]
async fn a_route_deadline_answers_504_before_a_slow_upstream_does() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        r#"{}
[[routes]]
name = "quick"
methods = ["GET", "POST"]
path = "/slow"
service = "svc"
stage = "migrated"
shadow_percent = 0.0
timeout_ms = 400

[[routes]]
name = "quick-legacy"
methods = ["DELETE"]
path = "/slow"
service = "svc"
stage = "legacy"
timeout_ms = 400
"#,
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let p = h.start().await;
    let c = client();
    let timed = |method: reqwest::Method, path: &str| {
        let req = c.request(method, format!("{}{path}", p.base));
        async move {
            let start = std::time::Instant::now();
            let status = req.send().await.expect("request").status().as_u16();
            (status, start.elapsed())
        }
    };
    // The upstreams would answer after 3 s.
    for (method, path, why) in [
        (
            reqwest::Method::POST,
            "/slow?ms=3000",
            "a POST: no fallback once sent",
        ),
        (
            reqwest::Method::GET,
            "/slow?ms=3000",
            "a GET: no time is left for the monolith",
        ),
        (
            reqwest::Method::DELETE,
            "/slow?ms=3000",
            "the monolith itself",
        ),
    ] {
        let (status, took) = timed(method, path).await;
        assert_eq!(status, 504, "{why}\n{}", p.log_text());
        assert!(took < std::time::Duration::from_secs(2), "{why}: {took:?}");
    }
    // The GET's fallback was not tried: nothing could answer in time, and
    // the monolith would have done the work for nobody. The monolith saw
    // only the request routed to it.
    assert_eq!((svc.requests(), legacy.requests()), (2, 1));
    // Within the deadline: answered.
    let (status, _) = timed(reqwest::Method::GET, "/slow?ms=50").await;
    assert_eq!(status, 200);
    assert_eq!(
        p.metric_settled(r#"strangler_requests_total{code="504",route="quick",target="svc"}"#)
            .await,
        2.0
    );
}
