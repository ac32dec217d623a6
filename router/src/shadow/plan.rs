//! Whether a request is shadowed, and the job that copies it.
//!
//! Stage `shadow`: the monolith answers, the service gets the copy
//! (forward); stage `migrated`: the service answers, the monolith gets the
//! copy (reverse). Only methods listed in `shadow_methods`, only the
//! `shadow_percent` share, never a copy of a copy (`x-strangler-shadow`),
//! never a declared body over `max_shadow_body_bytes`, and only while an
//! in-flight slot is free (skips are counted).

use std::sync::Arc;

use pingora_http::RequestHeader;
use strangler_config::Stage;
use strangler_shadow::Skip;

use super::{method_allowed, Direction, ShadowCtx, ShadowJob, Target, Targets};
use crate::proxy::Ctx;
use crate::runtime::Shared;
use crate::table::{Why, LEGACY_ID};

/// The shadow state of this request and its direction, when it is
/// shadowed. A request with no body has its copy sent at once.
pub fn plan(
    shared: &Arc<Shared>,
    ctx: &Ctx,
    req: &RequestHeader,
) -> Option<(ShadowCtx, Direction)> {
    let routing = ctx.routing.clone()?;
    let route = ctx.route.and_then(|i| routing.table.routes().get(i))?;
    let service = route.service?;
    let direction = match (route.stage, ctx.why) {
        (Stage::Shadow, Why::Stage) => Direction::Forward,
        (Stage::Migrated, Why::Stage) if ctx.target == service => Direction::Reverse,
        _ => return None,
    };
    let sh = &route.shadow;
    if sh.percent <= 0.0
        || fastrand::f64() * 100.0 >= sh.percent
        || !method_allowed(&req.method, &sh.methods)
        // A copy made by another proxy is never copied again.
        || req.headers.contains_key("x-strangler-shadow")
    {
        return None;
    }
    let (metrics, shadower) = (&shared.metrics, &shared.shadower);
    if req.headers.contains_key(http::header::UPGRADE) {
        shadower.skip(metrics, &route.name, Skip::Upgrade);
        return None;
    }
    let declared_len = crate::proxy::headers::content_length(&req.headers);
    if declared_len.is_some_and(|n| n > routing.max_shadow_body_bytes as u64) {
        shadower.skip(metrics, &route.name, Skip::BodyTooLarge);
        return None;
    }
    if !shadower.shed.admit() {
        shadower.skip(metrics, &route.name, Skip::Shed);
        return None;
    }
    let Some(slot) = shadower.try_slot(routing.max_shadow_inflight) else {
        shadower.skip(metrics, &route.name, Skip::Inflight);
        return None;
    };
    let (primary, candidate) = match direction {
        Direction::Forward => (LEGACY_ID, service),
        Direction::Reverse => (service, LEGACY_ID),
    };
    let safe = crate::proxy::is_safe(&req.method);
    let job = ShadowJob {
        route: route.name.clone(),
        direction,
        rules: sh.rules.clone(),
        targets: Targets {
            primary: Target::of(routing.upstream(primary)),
            candidate: Target::of(routing.upstream(candidate)),
        },
        method: req.method.clone(),
        uri: req
            .uri
            .path_and_query()
            .map_or_else(|| req.uri.path().to_string(), |pq| pq.as_str().to_string()),
        headers: req.headers.clone(),
        body: Vec::new(),
        max_body: routing.max_shadow_body_bytes,
        aa: safe && fastrand::f64() * 100.0 < sh.aa_percent,
        tables: sh.tables.clone(),
        request_ms: strangler_state::store::now_ms(),
        slot,
        trace_parent: ctx.trace.as_ref().map(|t| {
            use opentelemetry::trace::Span as _;
            t.server.span_context().clone()
        }),
    };
    let mut state = ShadowCtx::new(job, routing.max_shadow_body_bytes);
    let has_body = declared_len.is_some_and(|n| n > 0)
        || req.headers.contains_key(http::header::TRANSFER_ENCODING);
    if !has_body {
        // Nothing to wait for: the candidate request goes out now.
        state.spawn(shared.clone());
    }
    Some((state, direction))
}
