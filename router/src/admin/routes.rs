//! `/routes` handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strangler_config::Stage;

use super::{error, AdminState};
use crate::runtime::Shared;
use strangler_state::route_state::{check_target, Origin};

/// A route as the admin API and `strangler route list` show it.
#[derive(Debug, Serialize)]
pub struct RouteView {
    pub name: String,
    pub methods: Vec<String>,
    pub path: String,
    pub service: Option<String>,
    pub stage: Stage,
    pub percent: f64,
    pub origin: Origin,
    pub sticky: String,
    pub fallback: bool,
    /// Health of the service (true without a health check).
    pub service_up: Option<bool>,
    /// Requests answered, by target upstream.
    pub requests: BTreeMap<String, u64>,
    /// Fallbacks to the monolith, by reason.
    pub fallbacks: BTreeMap<String, u64>,
}

/// Every route in file order, with counters from the metrics.
pub fn route_views(shared: &Shared) -> Vec<RouteView> {
    let routing = shared.routing.load();
    let mut by_route_target: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut fallbacks: BTreeMap<(String, String), u64> = BTreeMap::new();
    let families = prometheus::core::Collector::collect(&shared.metrics.requests)
        .into_iter()
        .chain(prometheus::core::Collector::collect(
            &shared.metrics.fallbacks,
        ));
    for family in families {
        let is_requests = family.name() == "strangler_requests_total";
        for m in family.get_metric() {
            let label = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value().to_string())
            };
            let value = m.get_counter().get_value() as u64;
            if is_requests {
                if let (Some(r), Some(t)) = (label("route"), label("target")) {
                    *by_route_target.entry((r, t)).or_default() += value;
                }
            } else if let (Some(r), Some(reason)) = (label("route"), label("reason")) {
                *fallbacks.entry((r, reason)).or_default() += value;
            }
        }
    }
    let mut routes: Vec<_> = routing.table.routes().iter().collect();
    routes.sort_by_key(|r| r.file_index);
    routes
        .into_iter()
        .map(|r| {
            let pick = |m: &BTreeMap<(String, String), u64>| {
                m.iter()
                    .filter(|((route, _), _)| route.as_str() == &*r.name)
                    .map(|((_, k), v)| (k.clone(), *v))
                    .collect()
            };
            let service = r.service.map(|id| routing.upstream(id));
            RouteView {
                name: r.name.to_string(),
                methods: r.methods.iter().map(|m| m.to_string()).collect(),
                path: r.template.to_string(),
                service: service.map(|s| s.name.to_string()),
                stage: r.stage,
                percent: r.percent,
                origin: r.origin,
                sticky: r.sticky.to_string(),
                fallback: r.fallback,
                service_up: service.map(|s| s.is_up()),
                requests: pick(&by_route_target),
                fallbacks: pick(&fallbacks),
            }
        })
        .collect()
}

pub(super) async fn list(State(state): State<Arc<AdminState>>) -> Response {
    Json(json!({ "routes": route_views(&state.shared) })).into_response()
}

pub(super) async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Response {
    let Some(view) = route_views(&state.shared)
        .into_iter()
        .find(|r| r.name == name)
    else {
        return error(StatusCode::NOT_FOUND, format!("no route {name:?}"));
    };
    // The next promotion as the one engine sees it (what `route promote`
    // and `strangler status` show).
    let config = state.shared.config.load_full();
    let promotion = match crate::gates::evaluate_all(&config, &state.store).await {
        Ok(reports) => reports.into_iter().find(|r| r.route == name).map(
            |r| json!({ "verdict": r.verdict, "cdc_lag_bytes": r.cdc_lag_bytes, "gates": r.gates }),
        ),
        Err(e) => Some(json!({ "error": e.to_string() })),
    };
    let mut body = serde_json::to_value(&view).unwrap_or_default();
    body["promotion"] = promotion.unwrap_or_default();
    Json(body).into_response()
}

/// Body of `PUT /routes/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetBody {
    stage: String,
    percent: Option<f64>,
    #[serde(default)]
    reason: String,
}

/// Body of `POST /routes/{name}/rollback` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    #[serde(default)]
    reason: String,
}

fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-strangler-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(|| "admin-api".to_string(), |v| format!("admin-api:{v}"))
}

pub(super) async fn set(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SetBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("bad body: {}", e.body_text()),
            )
        }
    };
    let stage: Stage = match body.stage.parse() {
        Ok(s) => s,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    change(
        &state,
        &name,
        stage,
        body.percent,
        &actor(&headers),
        &body.reason,
    )
    .await
}

pub(super) async fn rollback(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RollbackBody>>,
) -> Response {
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    change(
        &state,
        &name,
        Stage::Legacy,
        None,
        &actor(&headers),
        &reason,
    )
    .await
}

async fn change(
    state: &AdminState,
    name: &str,
    stage: Stage,
    percent: Option<f64>,
    actor: &str,
    reason: &str,
) -> Response {
    let config = state.shared.config.load_full();
    let (Some(route), Some(current)) = (config.route(name), state.shared.effective(name)) else {
        return error(StatusCode::NOT_FOUND, format!("no route {name:?}"));
    };
    let target = match check_target(route, stage, percent, current) {
        Ok(t) => t,
        Err(msg) => return error(StatusCode::UNPROCESSABLE_ENTITY, msg),
    };
    let entry = match state.store.set_route(route, target, actor, reason).await {
        Ok(e) => e,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // Apply here at once: the very next request through this proxy obeys.
    match state.store.overrides().await {
        Ok(o) => state.shared.set_overrides(o),
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("change saved but not reloaded: {e}"),
            )
        }
    }
    tracing::info!(route = name, actor, reason, from = %entry.before.stage, to = %entry.after.stage, percent = entry.after.percent, "route changed");
    let view = route_views(&state.shared)
        .into_iter()
        .find(|r| r.name == name);
    Json(json!({ "route": view, "audit": entry })).into_response()
}
