//! One shadow comparison, off the request path.

use std::sync::Arc;

use http::{HeaderMap, Method};
use strangler_shadow::{compare, redact, Response, Rules, Skip};
use tokio::sync::oneshot;

use opentelemetry::trace::Span as _;

use super::{lag, Direction, Slot, Target, Targets};
use crate::runtime::Shared;

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// What the spawned job shares with the proxy.
pub type JobContext = Arc<Shared>;

/// A shadow request waiting to be sent, and everything needed to judge it.
pub struct ShadowJob {
    pub route: Arc<str>,
    pub direction: Direction,
    pub rules: Arc<Rules>,
    pub targets: Targets,
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub max_body: usize,
    /// Also ask the primary twice (A/A) for noise learning.
    pub aa: bool,
    /// Monolith tables the route reads (lag-aware re-check).
    pub tables: Vec<String>,
    pub request_ms: i64,
    pub slot: Slot,
    /// The request's server span, when traced: the shadow span's parent.
    pub trace_parent: Option<opentelemetry::trace::SpanContext>,
}

enum Fetch {
    Ok(Response),
    TooBig,
    Failed(String),
}

impl ShadowJob {
    /// `traceparent`: the shadow span's, for the candidate (tracing on).
    async fn fetch(
        &self,
        client: &reqwest::Client,
        target: &Target,
        shadow: bool,
        traceparent: Option<&str>,
    ) -> Fetch {
        let mut req = match &target.tls {
            Some(tls) => tls.client.request(
                self.method.clone(),
                format!("https://{}{}", tls.authority, self.uri),
            ),
            None => client.request(
                self.method.clone(),
                format!("http://{}{}", target.addr, self.uri),
            ),
        };
        let replaced = |name: &http::HeaderName| traceparent.is_some() && name == "traceparent";
        for (name, value) in &self.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && !replaced(name) {
                req = req.header(name, value);
            }
        }
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        if shadow {
            req = req.header("x-strangler-shadow", "1");
        }
        if !self.body.is_empty() {
            req = req.body(self.body.clone());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Fetch::Failed(e.without_url().to_string()),
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > self.max_body {
                        return Fetch::TooBig;
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Fetch::Failed(e.without_url().to_string()),
            }
        }
        Fetch::Ok(Response::new(status, headers, body))
    }

    /// (legacy, candidate) in the comparator's orientation: the monolith is
    /// always "legacy", whichever side answered the client.
    fn oriented<'a>(
        &self,
        primary: &'a Response,
        candidate: &'a Response,
    ) -> (&'a Response, &'a Response) {
        match self.direction {
            Direction::Forward => (primary, candidate),
            Direction::Reverse => (candidate, primary),
        }
    }

    /// The CDC directions a stale re-check waits for: forward when the
    /// monolith answered first; both when the service did (it may hold
    /// writes the monolith only gets through reverse sync).
    fn recheck_directions(&self) -> &'static [lag::Direction] {
        match self.direction {
            Direction::Forward => &[lag::Direction::Forward],
            Direction::Reverse => &[lag::Direction::Forward, lag::Direction::Reverse],
        }
    }

    fn count(&self, ctx: &JobContext, outcome: &str) {
        ctx.metrics
            .shadow
            .with_label_values(&[&self.route, outcome])
            .inc();
    }

    /// Sends the candidate request now, waits for the primary response,
    /// compares and records; a span for it all when traced.
    pub async fn run(self, primary_rx: oneshot::Receiver<Result<Response, Skip>>, ctx: JobContext) {
        let span = match (ctx.traces.get(), &self.trace_parent) {
            (Some(traces), Some(parent)) => {
                Some(traces.child(parent, format!("shadow {}", self.route)))
            }
            _ => None,
        };
        let Some(mut span) = span else {
            self.compare(primary_rx, &ctx, None).await;
            return;
        };
        let (route, direction) = (self.route.clone(), self.direction);
        let candidate = self.targets.candidate.addr;
        let traceparent = crate::traces::traceparent(span.span_context());
        let outcome = self.compare(primary_rx, &ctx, Some(&traceparent)).await;
        crate::traces::annotate(&mut span, || {
            vec![
                opentelemetry::KeyValue::new("strangler.route", route.to_string()),
                opentelemetry::KeyValue::new(
                    "strangler.shadow.direction",
                    match direction {
                        Direction::Forward => "forward",
                        Direction::Reverse => "reverse",
                    },
                ),
                opentelemetry::KeyValue::new("server.address", candidate.ip().to_string()),
                opentelemetry::KeyValue::new("server.port", i64::from(candidate.port())),
                opentelemetry::KeyValue::new("strangler.shadow.outcome", outcome.clone()),
            ]
        });
        span.end();
    }

    /// Counts and records a comparison that did not happen; its outcome.
    fn skipped(&self, ctx: &JobContext, why: Skip) -> String {
        ctx.shadower.skip(&ctx.metrics, &self.route, why);
        format!("skipped_{}", why.as_str())
    }

    /// The comparison itself; its outcome (`match`, `mismatch`, `stale`,
    /// `skipped_*`).
    async fn compare(
        self,
        mut primary_rx: oneshot::Receiver<Result<Response, Skip>>,
        ctx: &JobContext,
        traceparent: Option<&str>,
    ) -> String {
        let client = ctx.shadower.client.clone();
        // The primary may say early that there is nothing to compare (a
        // stream): the candidate's answer is then not waited for.
        let (candidate, primary) = {
            let mut fetch =
                std::pin::pin!(self.fetch(&client, &self.targets.candidate, true, traceparent));
            tokio::select! {
                candidate = &mut fetch => (Some(candidate), primary_rx.await),
                primary = &mut primary_rx => match primary {
                    Ok(Err(why)) => (None, Ok(Err(why))),
                    other => (Some(fetch.await), other),
                },
            }
        };
        let primary = match primary {
            Ok(Ok(p)) => p,
            Ok(Err(why)) => return self.skipped(ctx, why),
            Err(_) => return self.skipped(ctx, Skip::PrimaryIncomplete),
        };
        let candidate = match candidate {
            Some(Fetch::Ok(c)) => c,
            // Only with a primary that said why (counted above).
            None => return "skipped".into(),
            Some(Fetch::TooBig) => return self.skipped(ctx, Skip::BodyTooLarge),
            Some(Fetch::Failed(e)) => {
                tracing::debug!(route = %self.route, error = %e, "shadow request failed");
                return self.skipped(ctx, Skip::CandidateError);
            }
        };
        let request = format!(
            "{} {}",
            self.method,
            self.uri.split('?').next().unwrap_or("")
        );
        let now = strangler_state::store::now_ms();
        let (l, c) = self.oriented(&primary, &candidate);
        let mut comparison = compare(&self.rules, l, c);
        redact::comparison(&self.rules, &mut comparison);

        if self.aa {
            if let Fetch::Ok(secondary) = self
                .fetch(&client, &self.targets.primary, false, None)
                .await
            {
                let mut aa = compare(&self.rules, &primary, &secondary);
                redact::comparison(&self.rules, &mut aa);
                ctx.shadower
                    .record(&self.route, |s| s.record_aa(&aa, &request, now));
                self.count(ctx, "aa");
            }
        }

        let safe = matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !comparison.is_match()
            && safe
            && !self.tables.is_empty()
            && lag::caught_up(
                &ctx.shadower.lag,
                &self.tables,
                self.request_ms,
                self.recheck_directions(),
            )
            .await
        {
            // Replication has caught up: ask both again.
            let again = (
                self.fetch(&client, &self.targets.primary, false, None)
                    .await,
                self.fetch(&client, &self.targets.candidate, true, traceparent)
                    .await,
            );
            if let (Fetch::Ok(p2), Fetch::Ok(c2)) = again {
                let (l2, c2) = self.oriented(&p2, &c2);
                if compare(&self.rules, l2, c2).is_match() {
                    ctx.shadower.record(&self.route, |s| s.record_stale());
                    self.count(ctx, "stale");
                    return "stale".into();
                }
            }
        }
        let outcome = if comparison.is_match() {
            "match"
        } else {
            "mismatch"
        };
        ctx.shadower
            .record(&self.route, |s| s.record(&comparison, &request, now));
        self.count(ctx, outcome);
        drop(self.slot);
        outcome.into()
    }
}
