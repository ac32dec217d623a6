//! The Pingora service: wires the routing decision into Pingora's phases.
//!
//! ```text
//! request_filter ── decide(table snapshot, request) ─▶ ctx.target
//!       │                                  (service down + fallback → legacy)
//! upstream_peer ── ctx.fallback? legacy : ctx.target
//!       │
//!       ├─ connect refused / timed out to the service ─▶ fail_to_connect:
//!       │        fallback = connect_*, retry ─▶ upstream_peer → legacy
//!       ├─ service answers 5xx to GET/HEAD/OPTIONS ─▶ upstream_response_filter:
//!       │        fallback = status_5xx, error(retry) ─▶ legacy; nothing was sent
//!       │        to the client yet, so the client only sees the monolith's answer
//!       └─ response header to client ─▶ ctx.responded (no fallback after this)
//! logging ── metrics + one JSON access-log line
//! ```

mod ctx;
pub(crate) mod headers;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use opentelemetry::trace::Span as _;
use opentelemetry::KeyValue;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};

pub use ctx::{Ctx, FallbackReason};

use crate::access_log;
use crate::runtime::Shared;
use crate::shadow::{self, Direction};
use crate::table::{sticky::BUCKETS, Forced, RequestInfo, Why, DEFAULT_ROUTE, LEGACY_ID};
use crate::traces::{self, RequestTrace};
use strangler_shadow::Skip;

/// The default route's name, shared by every unmatched request's count.
static DEFAULT_NAME: std::sync::LazyLock<Arc<str>> =
    std::sync::LazyLock::new(|| Arc::from(DEFAULT_ROUTE));

/// The router's Pingora service.
pub struct RouterProxy {
    shared: Arc<Shared>,
}

impl RouterProxy {
    pub fn new(shared: Arc<Shared>) -> Self {
        RouterProxy { shared }
    }
}

pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[async_trait]
impl ProxyHttp for RouterProxy {
    /// What Pingora's own log lines name a request by: method, path and
    /// host, never the query string (it carries tokens often enough).
    fn request_summary(&self, session: &Session, _ctx: &Self::CTX) -> String {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        format!(
            "{} {}{}, Host: {host}",
            req.method,
            req.uri.path(),
            if req.uri.query().is_some() {
                "?…"
            } else {
                ""
            }
        )
    }

    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new(&self.shared)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let routing = self.shared.routing.load_full();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let req = session.req_header_mut();
        let client_ip = headers::real_client(
            peer,
            req.headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok()),
            &routing.trusted_proxies,
        );
        ctx.client_ip = client_ip;
        let forced = match &routing.override_header {
            Some(h) => req
                .remove_header(h)
                .and_then(|v| Forced::parse(v.as_bytes())),
            None => None,
        };
        let decision = routing.table.decide(
            &RequestInfo {
                method: &req.method,
                path: req.uri.path(),
                headers: &req.headers,
                client_ip,
                random_bucket: fastrand::u32(..BUCKETS),
                forced,
            },
            |id| routing.upstream(id).is_up(),
        );
        ctx.route = decision.route;
        ctx.target = decision.target;
        ctx.attempt = decision.target;
        ctx.why = decision.why;
        if decision.why == Why::ServiceDown {
            ctx.fallback = Some(FallbackReason::Unhealthy);
        }
        let route = ctx.route.and_then(|i| routing.table.routes().get(i));
        if let Some(traces) = self.shared.traces.get() {
            let name = match route {
                Some(r) => format!("{} {}", req.method, r.template),
                None => req.method.to_string(),
            };
            let start = SystemTime::now()
                .checked_sub(ctx.start.elapsed())
                .unwrap_or_else(SystemTime::now);
            ctx.trace = Some(Box::new(RequestTrace::new(traces.request(
                &req.headers,
                name,
                start,
            ))));
        }
        let limited = route
            .and_then(|r| r.rate_limit.as_ref())
            .and_then(|l| l.check(&req.headers, client_ip).err());
        let max_body = route.and_then(|r| r.max_body_bytes);
        let too_big = max_body
            .zip(headers::content_length(&req.headers))
            .is_some_and(|(max, n)| n > max);
        if ctx.target != LEGACY_ID {
            ctx.budget = route
                .and_then(|r| r.retry_budget.as_ref())
                .map(|b| b.enter());
        }
        ctx.body_left = max_body;
        ctx.routing = Some(routing);
        if let Some(wait) = limited {
            // Over the route's limit: answered here, nothing goes upstream.
            let mut resp = ResponseHeader::build(429, Some(3))?;
            resp.insert_header(
                "retry-after",
                wait.as_secs_f64().ceil().max(1.0).to_string(),
            )?;
            resp.insert_header("content-length", "0")?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }
        if too_big {
            // Declared too big: refused before anything goes upstream.
            let mut resp = ResponseHeader::build(413, Some(3))?;
            resp.insert_header("content-length", "0")?;
            resp.insert_header("connection", "close")?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }
        let req = session.req_header_mut();

        let span = ctx.trace.as_ref().map(|t| t.server.span_context());
        let ids = headers::stamp(req, peer, span)?;
        ctx.request_id = ids.request_id;
        ctx.trace_id = ids.trace_id;
        if let Some((state, direction)) =
            shadow::plan::plan(&self.shared, ctx, session.req_header())
        {
            ctx.shadow_reverse = direction == Direction::Reverse;
            ctx.shadow = Some(Box::new(state));
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(left), Some(b)) = (ctx.body_left.as_mut(), body.as_ref()) {
            // A body without a length (chunked) that grows past the limit:
            // cut off (the upstream sees an aborted request), 413.
            match left.checked_sub(b.len() as u64) {
                Some(l) => *left = l,
                None => {
                    ctx.shadow = None;
                    return Error::e_explain(
                        ErrorType::HTTPStatus(413),
                        "the request body is larger than the route's max_body_bytes",
                    );
                }
            }
        }
        if let Some(sh) = ctx.shadow.as_mut() {
            if sh.job.is_some() {
                if !sh.tee_request(body.as_ref()) {
                    let route = sh.job.as_ref().map(|j| j.route.clone());
                    ctx.shadow = None;
                    if let Some(route) = route {
                        self.shared
                            .shadower
                            .skip(&self.shared.metrics, &route, Skip::BodyTooLarge);
                    }
                } else if end_of_stream {
                    sh.spawn(self.shared.clone());
                }
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(routing) = ctx.routing.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "no routing snapshot");
        };
        ctx.attempt = if ctx.fallback.is_some() {
            LEGACY_ID
        } else {
            ctx.target
        };
        ctx.replaced_status = None;
        let up = routing.upstream(ctx.attempt);
        let route = ctx.route.and_then(|i| routing.table.routes().get(i));
        let mut read = route
            .and_then(|r| r.idle_timeout)
            .unwrap_or(up.read_timeout);
        let mut connect = up.connect_timeout;
        if let Some(left) = ctx.deadline_left() {
            if ctx.deadline_passed() {
                return Error::e_explain(
                    ErrorType::HTTPStatus(504),
                    "the route's timeout_ms passed before an upstream answered",
                );
            }
            // What is left of the route's deadline bounds this attempt.
            read = read.min(left);
            connect = connect.min(left);
        }
        let mut peer = match &up.tls {
            Some(tls) => {
                let mut peer = HttpPeer::new(up.addr, true, tls.server_name.clone());
                peer.options.ca = tls.ca.clone();
                peer
            }
            None => HttpPeer::new(up.addr, false, String::new()),
        };
        peer.options.connection_timeout = Some(connect);
        peer.options.read_timeout = Some(read);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        if let (Some(trace), Some(traces)) = (ctx.trace.as_mut(), self.shared.traces.get()) {
            trace.begin_attempt(traces, &up.name, up.addr);
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(attempt) = ctx.trace.as_ref().and_then(|t| t.attempt.as_ref()) {
            // What the upstream does is a child of this attempt.
            upstream_request
                .insert_header("traceparent", traces::traceparent(attempt.span_context()))?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(trace) = ctx.trace.as_mut() {
            trace.fail_attempt(e.to_string());
        }
        if matches!(e.etype(), ErrorType::ConnectTimedout) && ctx.deadline_passed() {
            // The route's deadline ran out while connecting: 504, like a
            // read past it.
            return Error::because(
                ErrorType::HTTPStatus(504),
                "the route's timeout_ms passed while connecting",
                e,
            );
        }
        if ctx.may_fall_back() {
            // Nothing reached the service: safe to hand any method to the monolith.
            ctx.fallback = Some(match e.etype() {
                ErrorType::ConnectTimedout => FallbackReason::ConnectTimeout,
                _ => FallbackReason::ConnectError,
            });
            e.set_retry(true);
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        if let Some(attempt) = ctx.trace.as_mut().and_then(|t| t.attempt.as_mut()) {
            traces::annotate(attempt, || {
                vec![KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                )]
            });
            if status >= 500 {
                traces::fail(attempt, format!("status {status}"));
            }
        }
        if status >= 500
            && is_safe(&session.req_header().method)
            && ctx.may_fall_back()
            && ctx.retry_admitted(&self.shared.metrics)
        {
            ctx.fallback = Some(FallbackReason::Status5xx);
            ctx.replaced_status = Some(status);
            // Raised before anything is written to the client; the retry
            // (see error_while_proxy) goes to the monolith.
            return Error::e_explain(
                ErrorType::HTTPStatus(status),
                "service answered 5xx; the monolith answers instead",
            );
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.responded = true;
        // The primary's time to its answer: what shadow shedding watches.
        self.shared.shadower.shed.observe(ctx.start.elapsed());
        if ctx.shadow_reverse && ctx.fallback.is_some() {
            // The monolith answered after all: nothing to compare it with.
            ctx.shadow = None;
        }
        let event_stream = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if let (true, Some(sh)) = (event_stream, ctx.shadow.as_mut()) {
            // Server-sent events may flow for hours: not compared, and the
            // shadow job ends now instead of holding its slot.
            sh.abandon(Skip::Stream);
            ctx.shadow = None;
        }
        if let Some(sh) = ctx.shadow.as_mut() {
            let headers = resp
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            sh.primary_header(resp.status.as_u16(), headers);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(sh) = ctx.shadow.as_mut() {
            sh.primary_body(body.as_ref(), end_of_stream);
        }
        Ok(None)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if let Some(trace) = ctx.trace.as_mut() {
            trace.fail_attempt(e.to_string());
        }
        if ctx.replaced_status.is_some() {
            e.set_retry(true);
        } else if is_safe(&session.req_header().method)
            && ctx.may_fall_back()
            && ctx.retry_admitted(&self.shared.metrics)
        {
            ctx.fallback = Some(FallbackReason::UpstreamError);
            e.set_retry(true);
        } else if matches!(e.etype(), ErrorType::ReadTimedout)
            && e.esource() == &pingora_error::ErrorSource::Upstream
        {
            // The upstream did not answer in time: 504, as nginx and Envoy
            // say it (Pingora's default is 502).
            return Error::because(
                ErrorType::HTTPStatus(504),
                "the upstream did not answer in time",
                e,
            );
        } else if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            // Pingora's default policy for everything else.
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or_else(
            || match e.map(|e| e.etype()) {
                Some(ErrorType::HTTPStatus(code)) => *code,
                Some(_) => 502,
                None => 0,
            },
            |r| r.status.as_u16(),
        );
        let Some(routing) = ctx.routing.as_ref() else {
            return;
        };
        let route = ctx.route.and_then(|i| routing.table.routes().get(i));
        let route_name = route.map_or(DEFAULT_ROUTE, |r| &*r.name);
        let target = &*routing.upstream(ctx.attempt).name;
        let metrics = &self.shared.metrics;
        let elapsed = ctx.start.elapsed();
        // The cached series are the monolith's and the route's service's.
        let slot = if ctx.attempt == LEGACY_ID {
            Some(0)
        } else if route.and_then(|r| r.service) == Some(ctx.attempt) {
            Some(1)
        } else {
            None
        };
        let index = ctx.route.unwrap_or(routing.table.routes().len());
        metrics.record_request(
            slot.and_then(|s| routing.series.get(index).map(|cells| &cells[s])),
            route_name,
            target,
            status,
            elapsed.as_secs_f64(),
        );
        let now_ms = strangler_state::store::now_ms();
        if routing.inventory {
            let req = session.req_header();
            self.shared.inventory.record(
                req.method.as_str(),
                req.uri.path(),
                status,
                session.body_bytes_sent() as u64,
                elapsed.as_micros() as u64,
                now_ms,
            );
        }
        let meant_for_service = ctx.target != LEGACY_ID || ctx.fallback.is_some();
        let service_error = ctx.fallback.is_some() || (ctx.attempt != LEGACY_ID && status >= 500);
        self.shared.usage.record(
            route.map_or(&*DEFAULT_NAME, |r| &r.name),
            crate::usage::minute(now_ms),
            route.map_or(0, |r| r.state_ms),
            strangler_state::counts::Counts {
                requests: 1,
                service_requests: u64::from(meant_for_service),
                service_errors: u64::from(meant_for_service && service_error),
                fallbacks: u64::from(ctx.fallback.is_some()),
            },
        );
        if let Some(reason) = ctx.fallback {
            metrics
                .fallbacks
                .with_label_values(&[route_name, reason.as_str()])
                .inc();
        }
        if let Some(mut trace) = ctx.trace.take() {
            if let Some(mut attempt) = trace.attempt.take() {
                attempt.end();
            }
            let req = session.req_header();
            traces::annotate(&mut trace.server, || {
                let mut a = vec![
                    KeyValue::new("http.request.method", req.method.to_string()),
                    KeyValue::new("url.path", req.uri.path().to_string()),
                    KeyValue::new("http.response.status_code", i64::from(status)),
                    KeyValue::new("strangler.route", route_name.to_string()),
                    KeyValue::new("strangler.decision", ctx.why.as_str()),
                    KeyValue::new("strangler.target", target.to_string()),
                    KeyValue::new("strangler.request_id", ctx.request_id.clone()),
                ];
                if let Some(r) = route {
                    a.push(KeyValue::new("http.route", r.template.to_string()));
                    a.push(KeyValue::new("strangler.stage", r.stage.as_str()));
                }
                if let Some(reason) = ctx.fallback {
                    a.push(KeyValue::new("strangler.fallback_reason", reason.as_str()));
                }
                if let Some(ip) = ctx.client_ip {
                    a.push(KeyValue::new("client.address", ip.to_string()));
                }
                a
            });
            if let Some(e) = e {
                traces::fail(&mut trace.server, e.to_string());
            } else if status >= 500 {
                traces::fail(&mut trace.server, format!("status {status}"));
            }
            trace.server.end();
        }
        if routing.access_log {
            let req = session.req_header();
            access_log::write_line(
                access_log::Entry {
                    request_id: &ctx.request_id,
                    trace_id: &ctx.trace_id,
                    client: ctx.client_ip,
                    method: req.method.as_str(),
                    path: req.uri.path(),
                    route: route_name,
                    stage: route.map(|r| r.stage.as_str()),
                    decision: ctx.why.as_str(),
                    target,
                    fallback: ctx.fallback.map(FallbackReason::as_str),
                    status,
                    elapsed,
                    error: e.map(|e| e.to_string()),
                }
                .to_json(),
            );
        }
    }
}
