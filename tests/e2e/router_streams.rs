//! What is not one request and one response: WebSocket upgrades pass
//! through to the route's target, and server-sent events reach the client
//! as they are sent, not when the stream ends.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// A WebSocket server that answers each text message with `NAME: message`;
/// its URL and the connections it accepted.
async fn ws_echo(name: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        if ws
                            .send(Message::Text(format!("{name}: {t}").into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

fn config(legacy: &str, svc: &str) -> String {
    format!(
        r#"[upstreams.legacy]
url = "{legacy}"
read_timeout_ms = 500

[upstreams.svc]
url = "{svc}"
read_timeout_ms = 500

[[routes]]
name = "chat-new"
methods = ["GET"]
path = "/new/chat"
service = "svc"
stage = "migrated"
idle_timeout_secs = 30

[[routes]]
name = "chat-old"
methods = ["GET"]
path = "/old/chat"
service = "svc"
stage = "legacy"
idle_timeout_secs = 30
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_pass_through_to_the_routes_target_and_outlive_the_read_timeout() {
    let ((legacy, legacy_conns), (svc, svc_conns)) =
        (ws_echo("legacy").await, ws_echo("svc").await);
    let h = Harness::new();
    h.write_config(&config(&legacy, &svc));
    let p = h.start().await;
    let ws_base = p.base.replace("http://", "ws://");
    // A minute of messages on both routes at once, 30 each 2 s apart: each gap
    // is four times the upstreams' read timeout, which the routes' idle
    // timeout overrides.
    let chat = |path: &'static str, who: &'static str| {
        let url = format!("{ws_base}{path}");
        let log = p.log.clone();
        async move {
            let log = || std::fs::read_to_string(&log).unwrap_or_default();
            let (mut ws, resp) = tokio_tungstenite::connect_async(url)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}\n{}", log()));
            assert_eq!(resp.status(), 101);
            for sent in 0..30 {
                ws.send(Message::Text(format!("m{sent}").into()))
                    .await
                    .unwrap_or_else(|e| panic!("{path} m{sent}: send: {e}\n{}", log()));
                let got = tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .unwrap_or_else(|_| panic!("{path} m{sent}: no answer within 10 s\n{}", log()))
                    .unwrap_or_else(|| panic!("{path} m{sent}: closed\n{}", log()))
                    .unwrap_or_else(|e| panic!("{path} m{sent}: {e}\n{}", log()));
                assert_eq!(got, Message::Text(format!("{who}: m{sent}").into()));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            ws.close(None).await.expect("close");
        }
    };
    tokio::join!(chat("/new/chat", "svc"), chat("/old/chat", "legacy"));
    // One connection each: the migrated route's upgrade was not copied to
    // the monolith (a connection is not a request to compare).
    assert_eq!(
        (
            svc_conns.load(Ordering::SeqCst),
            legacy_conns.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    assert_eq!(
        p.metric(r#"strangler_shadow_total{outcome="skipped_upgrade",route="chat-new"}"#)
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_client_before_the_stream_ends() {
    // The service sends one event, then waits for the test to say go.
    let go = Arc::new(Notify::new());
    let svc = sse_server(go.clone()).await;
    let legacy = TestUpstream::start("legacy").await;
    let h = Harness::new();
    h.write_config(&events_route(&legacy.url(), &svc, "migrated"));
    let p = h.start().await;
    let mut resp = first_event(&p).await;
    go.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("bytes") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"event: tick\ndata: 1\n\n");
}

/// A service answering every request with server-sent events: one event,
/// then a second once `go` is notified, then the end. Its URL.
async fn sse_server(go: Arc<Notify>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let go = go.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let go = go.clone();
                    async move {
                        let events = futures::stream::unfold(0u8, move |n| {
                            let go = go.clone();
                            async move {
                                match n {
                                    0 => {}
                                    1 => go.notified().await,
                                    _ => return None,
                                }
                                let frame =
                                    Frame::data(Bytes::from(format!("event: tick\ndata: {n}\n\n")));
                                Some((Ok::<_, Infallible>(frame), n + 1))
                            }
                        });
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "text/event-stream")
                                .header("x-upstream", "svc")
                                .body(StreamBody::new(events))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// A stream of events on a shadowed route is not compared: the shadow job
/// ends as soon as the monolith's answer says `text/event-stream`, without
/// waiting for either stream to end, and is counted as skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadowed_event_stream_is_skipped_at_once() {
    let go = Arc::new(Notify::new());
    let (monolith, service) = (sse_server(go.clone()).await, sse_server(go.clone()).await);
    let h = Harness::new();
    h.write_config(&events_route(&monolith, &service, "shadow"));
    let p = h.start().await;
    let _open = first_event(&p).await;
    // Both streams are still open: the job is already done.
    let skipped = eventually(Duration::from_secs(10), || async {
        p.metric(r#"strangler_shadow_total{outcome="skipped_stream",route="events"}"#)
            .await
            == 1.0
    })
    .await;
    assert!(skipped.is_some(), "{}", p.log_text());
}

/// A route `GET /events` to `svc` in `stage`, with `legacy` as the
/// monolith (no A/A copies).
fn events_route(legacy: &str, svc: &str, stage: &str) -> String {
    format!(
        r#"[upstreams.legacy]
url = "{legacy}"

[upstreams.svc]
url = "{svc}"

[[routes]]
name = "events"
methods = ["GET"]
path = "/events"
service = "svc"
stage = "{stage}"
[routes.compare]
aa_percent = 0.0
"#
    )
}

/// Opens `/events` and reads its first event (within 10 s, while the
/// stream is still open); the open response.
async fn first_event(p: &Proxy) -> reqwest::Response {
    let mut resp = client()
        .get(format!("{}/events", p.base))
        .send()
        .await
        .expect("events");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the first event arrives while the stream is open")
        .expect("bytes")
        .expect("a chunk");
    assert_eq!(&first[..], b"event: tick\ndata: 0\n\n");
    resp
}
