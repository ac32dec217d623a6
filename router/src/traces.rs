//! OTLP traces (`[telemetry]`): a server span per request, a client
//! span per upstream attempt and one for the shadow copy, exported over
//! OTLP/HTTP by a batch processor on its own thread.
//!
//! Nothing here waits on the network: ending a span is a `try_send` onto a
//! bounded queue; when the collector is slow or away the queue fills and
//! further spans are dropped, never the request. Spans are built with
//! explicit parents (no thread-local "current context": a request moves
//! between Pingora's threads).

use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use strangler_config::TelemetryConfig;

pub use opentelemetry_sdk::trace::Span;

/// How long an export may take before the batch is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy's tracer.
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Traces {
    /// Starts the exporter (its thread); nothing is sent until spans end.
    pub fn start(config: &TelemetryConfig) -> Result<Traces, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.otlp_endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("telemetry: cannot build the OTLP exporter: {e}"))?;
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(8192)
                    .with_max_export_batch_size(512)
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("strangler-router");
        Ok(Traces { provider, tracer })
    }

    /// The server span of a request that started at `start`: a child of
    /// the client's `traceparent` when it is valid, else a new trace.
    pub fn request(&self, headers: &http::HeaderMap, name: String, start: SystemTime) -> Span {
        let parent = TraceContextPropagator::new()
            .extract_with_context(&Context::new(), &HeaderGet(headers));
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(start)
            .start_with_context(&self.tracer, &parent)
    }

    /// A client span under `parent` (an upstream attempt, a shadow copy).
    pub fn child(&self, parent: &SpanContext, name: String) -> Span {
        let parent = Context::new().with_remote_span_context(parent.clone());
        self.tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .start_with_context(&self.tracer, &parent)
    }

    /// Sends what is queued and stops the exporter (blocks up to 5 s: call
    /// off the async threads).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP exporter: spans not flushed at exit");
        }
    }
}

/// The spans of one request in flight.
pub struct RequestTrace {
    pub server: Span,
    /// The upstream attempt under way (a fallback starts a second).
    pub attempt: Option<Span>,
    attempts: u32,
}

impl RequestTrace {
    pub fn new(server: Span) -> RequestTrace {
        RequestTrace {
            server,
            attempt: None,
            attempts: 0,
        }
    }

    /// Ends the previous attempt (if any) and starts one to `target`.
    pub fn begin_attempt(&mut self, traces: &Traces, target: &str, addr: std::net::SocketAddr) {
        if let Some(mut previous) = self.attempt.take() {
            previous.end();
        }
        self.attempts += 1;
        let mut span = traces.child(self.server.span_context(), format!("upstream {target}"));
        let n = self.attempts;
        annotate(&mut span, || {
            vec![
                KeyValue::new("strangler.target", target.to_string()),
                KeyValue::new("server.address", addr.ip().to_string()),
                KeyValue::new("server.port", i64::from(addr.port())),
                KeyValue::new("strangler.attempt", i64::from(n)),
            ]
        });
        self.attempt = Some(span);
    }

    /// The current attempt failed.
    pub fn fail_attempt(&mut self, why: String) {
        if let Some(span) = self.attempt.as_mut() {
            fail(span, why);
        }
    }
}

/// The `traceparent` header that makes a span the parent of what the
/// receiver does.
pub fn traceparent(span: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8() & 1
    )
}

/// Sets attributes only on a span that is recorded (a dropped span's
/// attributes would be thrown away: do not build them).
pub fn annotate(span: &mut Span, attributes: impl FnOnce() -> Vec<KeyValue>) {
    if span.is_recording() {
        span.set_attributes(attributes());
    }
}

/// Marks a span failed.
pub fn fail(span: &mut Span, why: String) {
    if span.is_recording() {
        span.set_status(Status::error(why));
    }
}

struct HeaderGet<'a>(&'a http::HeaderMap);

impl Extractor for HeaderGet<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_continues_the_clients_trace_and_hands_its_own_span_on() {
        let traces = Traces::start(&TelemetryConfig {
            otlp_endpoint: "http://127.0.0.1:9/v1/traces".into(),
            sample_ratio: 1.0,
            service_name: "test".into(),
        })
        .expect("tracer");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let span = traces.request(&headers, "GET /x".into(), SystemTime::now());
        let sc = span.span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(sc.span_id().to_string(), "00f067aa0ba902b7");
        let child = traces.child(&sc, "upstream".into());
        let tp = traceparent(child.span_context());
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(tp.ends_with("-01"), "{tp}");
        assert_eq!(
            crate::access_log::trace_id_of(tp.as_bytes()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // Unsampled by the client: not recorded here either.
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            ),
        );
        let span = traces.request(&headers, "GET /x".into(), SystemTime::now());
        assert!(!span.is_recording());
        assert!(traceparent(span.span_context()).ends_with("-00"));
        drop((span, child));
        std::thread::spawn(move || traces.shutdown())
            .join()
            .expect("shutdown");
    }
}
