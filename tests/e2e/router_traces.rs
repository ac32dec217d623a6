//! OTLP traces: a real OTLP/HTTP receiver on loopback gets one trace per
//! request — the server span with the route and target, a client span per
//! upstream attempt, and the shadow copy's span under the request's — and
//! each upstream is handed the span it answers for in `traceparent`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message as _;

use crate::support::*;

/// Spans an OTLP receiver got, and the `service.name` they came with.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    services: Vec<String>,
}

/// An OTLP/HTTP traces receiver (protobuf, as collectors accept on
/// `:4318/v1/traces`); its base URL.
async fn otlp_receiver(received: Arc<Mutex<Received>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // The collector's base URL, as users write it: spans must come to
    // /v1/traces under it (anything else is answered 400).
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let received = received.clone();
                        async move {
                            let ok = req.uri().path() == "/v1/traces";
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let decoded = body
                                .ok()
                                .and_then(|b| ExportTraceServiceRequest::decode(b.as_ref()).ok());
                            let status = match (ok, decoded) {
                                (true, Some(export)) => {
                                    let mut r = received.lock().expect("lock");
                                    for rs in export.resource_spans {
                                        let service = rs
                                            .resource
                                            .iter()
                                            .flat_map(|r| &r.attributes)
                                            .find(|kv| kv.key == "service.name")
                                            .and_then(|kv| kv.value.as_ref())
                                            .and_then(|v| match &v.value {
                                                Some(Value::StringValue(s)) => Some(s.clone()),
                                                _ => None,
                                            })
                                            .unwrap_or_default();
                                        for ss in rs.scope_spans {
                                            for span in ss.spans {
                                                r.spans.push(span);
                                                r.services.push(service.clone());
                                            }
                                        }
                                    }
                                    200
                                }
                                _ => 400,
                            };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(bytes::Bytes::new()))
                                    .expect("response"),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let v = span.attributes.iter().find(|kv| kv.key == key)?;
    match v.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// A shadow span: its direction, and the candidate it copied to.
fn copied_to(span: &Span, direction: &str, candidate: &TestUpstream) {
    assert_eq!(
        attr(span, "strangler.shadow.direction").as_deref(),
        Some(direction)
    );
    assert_eq!(
        attr(span, "server.port"),
        Some(candidate.addr().port().to_string())
    );
}

fn failed(span: &Span) -> bool {
    span.status.as_ref().map(|s| s.code) == Some(StatusCode::Error as i32)
}

/// The parent span id in a `traceparent`.
fn parent_of(traceparent: &str) -> (&str, &str) {
    let mut parts = traceparent.split('-').skip(1);
    (
        parts.next().expect("trace id"),
        parts.next().expect("parent id"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_trace_with_its_attempts_and_its_shadow_copy() {
    let received = Arc::new(Mutex::new(Received::default()));
    let endpoint = otlp_receiver(received.clone()).await;
    let (legacy, svc) = (
        TestUpstream::start("legacy").await,
        TestUpstream::start("svc").await,
    );
    let [dead_port] = free_ports();
    let h = Harness::new();
    h.write_config(&format!(
        r#"{}
[upstreams.dead]
url = "http://127.0.0.1:{dead_port}"

[telemetry]
otlp_endpoint = "{endpoint}"
service_name = "edge-router"

[[routes]]
name = "orders"
methods = ["GET"]
path = "/orders/{{id}}"
service = "svc"
stage = "migrated"

[[routes]]
name = "carts"
methods = ["GET"]
path = "/carts/{{id}}"
service = "svc"
stage = "shadow"

[[routes]]
name = "flaky"
methods = ["GET"]
path = "/flaky/{{id}}"
service = "dead"
stage = "migrated"
shadow_percent = 0
"#,
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let p = h.start().await;
    let c = client();
    let seen_traceparent = |body: &serde_json::Value| {
        body["headers"]["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("no traceparent upstream: {body}"))
            .to_string()
    };

    // 1. The client's trace is continued.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body: serde_json::Value = c
        .get(format!("{}/orders/1", p.base))
        .header(
            "traceparent",
            format!("00-{client_trace}-00f067aa0ba902b7-01"),
        )
        .send()
        .await
        .expect("orders")
        .json()
        .await
        .expect("json");
    let orders_tp = seen_traceparent(&body);
    // 2. A shadowed request without a trace starts one.
    let body: serde_json::Value = c
        .get(format!("{}/carts/2", p.base))
        .send()
        .await
        .expect("carts")
        .json()
        .await
        .expect("json");
    let carts_tp = seen_traceparent(&body);
    let shadowed = eventually(Duration::from_secs(10), || async {
        (svc.shadow_requests(), legacy.shadow_requests()) == (1, 1)
    })
    .await;
    assert!(shadowed.is_some(), "{}", p.log_text());
    // 3. The service refuses the connection: the monolith answers.
    let body: serde_json::Value = c
        .get(format!("{}/flaky/3", p.base))
        .send()
        .await
        .expect("flaky")
        .json()
        .await
        .expect("json");
    assert_eq!(body["upstream"], "legacy");
    let flaky_tp = seen_traceparent(&body);

    // 3 + 3 + 3 spans.
    let all_in = eventually(Duration::from_secs(15), || async {
        received.lock().expect("lock").spans.len() >= 9
    })
    .await;
    let r = received.lock().expect("lock");
    assert!(
        all_in.is_some(),
        "{} spans arrived\n{}",
        r.spans.len(),
        p.log_text()
    );
    assert!(
        r.services.iter().all(|s| s == "edge-router"),
        "{:?}",
        r.services
    );
    let mut traces: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    for s in &r.spans {
        traces.entry(hex(&s.trace_id)).or_default().push(s);
    }
    assert_eq!(
        traces.len(),
        3,
        "one trace per request: {:?}",
        traces.keys()
    );
    let server_of = |trace: &str| -> &Span {
        let spans = &traces[trace];
        let servers: Vec<&&Span> = spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .collect();
        assert_eq!(servers.len(), 1, "{trace}: {spans:?}");
        servers[0]
    };
    let children = |trace: &str, server: &Span, prefix: &str| -> Vec<&Span> {
        traces[trace]
            .iter()
            .copied()
            .filter(|s| s.name.starts_with(prefix))
            .inspect(|s| {
                assert_eq!(
                    s.parent_span_id, server.span_id,
                    "{} under {}",
                    s.name, server.name
                );
                assert_eq!(s.kind, SpanKind::Client as i32, "{}", s.name);
            })
            .collect()
    };

    // 1: under the client's span; the service is handed the attempt span;
    // the monolith's copy (reverse shadow) has a span of its own.
    let (trace, parent) = parent_of(&orders_tp);
    assert_eq!(trace, client_trace);
    let server = server_of(client_trace);
    assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(server.name, "GET /orders/{id}");
    assert_eq!(attr(server, "strangler.route").as_deref(), Some("orders"));
    assert_eq!(attr(server, "strangler.stage").as_deref(), Some("migrated"));
    assert_eq!(attr(server, "strangler.target").as_deref(), Some("svc"));
    assert_eq!(attr(server, "http.route").as_deref(), Some("/orders/{id}"));
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    let attempts = children(client_trace, server, "upstream ");
    assert_eq!(attempts.len(), 1);
    assert_eq!(hex(&attempts[0].span_id), parent);
    assert_eq!(
        attr(attempts[0], "strangler.target").as_deref(),
        Some("svc")
    );
    let shadows = children(client_trace, server, "shadow ");
    assert_eq!(shadows.len(), 1);
    copied_to(shadows[0], "reverse", &legacy);
    assert_eq!(traces[client_trace].len(), 3);

    // 2: a new trace; the monolith's attempt and the shadow copy under it.
    let (trace, parent) = parent_of(&carts_tp);
    let server = server_of(trace);
    assert!(
        server.parent_span_id.is_empty(),
        "a new trace has no parent"
    );
    assert_eq!(attr(server, "strangler.stage").as_deref(), Some("shadow"));
    assert_eq!(attr(server, "strangler.target").as_deref(), Some("legacy"));
    let attempts = children(trace, server, "upstream ");
    assert_eq!(attempts.len(), 1);
    assert_eq!(hex(&attempts[0].span_id), parent);
    let shadows = children(trace, server, "shadow ");
    assert_eq!(shadows.len(), 1, "{:?}", traces[trace]);
    assert_eq!(shadows[0].name, "shadow carts");
    copied_to(shadows[0], "forward", &svc);
    // The test upstreams answer with their own names: a mismatch.
    assert_eq!(
        attr(shadows[0], "strangler.shadow.outcome").as_deref(),
        Some("mismatch")
    );
    assert_eq!(traces[trace].len(), 3);

    // 3: two attempts, the refused one failed, then the monolith.
    let (trace, parent) = parent_of(&flaky_tp);
    let server = server_of(trace);
    assert_eq!(
        attr(server, "strangler.fallback_reason").as_deref(),
        Some("connect_error")
    );
    assert_eq!(attr(server, "strangler.target").as_deref(), Some("legacy"));
    let mut attempts = children(trace, server, "upstream ");
    attempts.sort_by_key(|s| attr(s, "strangler.attempt"));
    assert_eq!(
        attempts.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["upstream dead", "upstream legacy"]
    );
    assert!(failed(attempts[0]), "{:?}", attempts[0].status);
    assert!(!failed(attempts[1]));
    assert_eq!(hex(&attempts[1].span_id), parent);
    assert_eq!(traces[trace].len(), 3);
}
