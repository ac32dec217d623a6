//! `/routes` handlers: list, show, set, promote, rollback, resume, history.
//! (About 400 lines: seven handlers, each parse → `gates` → answer.)

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strangler_config::Stage;

use super::auth::{Identity, Role};
use super::{error, AdminState};
use crate::gates::{PromoteError, Promotion, ResumeError, SetOutcome};
use crate::runtime::Shared;
use strangler_state::route_state::{Origin, Target};
use strangler_state::route_store::Who;
use strangler_state::store::AuditEntry;

/// A route as the admin API and `strangler route list` show it.
#[derive(Debug, Serialize)]
pub struct RouteView {
    pub name: String,
    pub methods: Vec<String>,
    pub path: String,
    pub service: Option<String>,
    /// What the file declares (this proxy's file).
    pub declared: Target,
    /// What the fleet runs.
    pub stage: Stage,
    pub percent: f64,
    pub origin: Origin,
    /// Why the effective state differs from the declared one ("" when not).
    pub why: String,
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
    let config = shared.config.load();
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
            let live = shared.live_route(&r.name);
            RouteView {
                name: r.name.to_string(),
                methods: r.methods.iter().map(|m| m.to_string()).collect(),
                path: r.template.to_string(),
                service: service.map(|s| s.name.to_string()),
                declared: config
                    .route(&r.name)
                    .map_or(Target::LEGACY, Target::declared),
                why: live.map(|l| l.explain()).unwrap_or_default(),
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
    Json(json!({
        "revision": state.shared.config.load().revision,
        "degraded": state.shared.degraded(),
        "routes": route_views(&state.shared),
    }))
    .into_response()
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
        Ok(reports) => reports
            .into_iter()
            .find(|r| r.route == name)
            .map(|r| json!({ "verdict": r.verdict, "cdc_lag": r.cdc_lag, "gates": r.gates })),
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
    /// Past failed gates (needs the approver role and a reason).
    #[serde(default)]
    force: bool,
}

/// Body of `POST /routes/{name}/rollback` and `/resume` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    #[serde(default)]
    reason: String,
    /// Rollback: past failed rollback gates (needs a reason).
    #[serde(default)]
    force: bool,
}

fn who(id: &Identity, reason: &str, shared: &Shared) -> Who {
    Who {
        actor: id.name.clone(),
        reason: reason.to_string(),
        revision: shared.config.load().revision.clone(),
    }
}

pub(super) async fn set(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Extension(id): Extension<Identity>,
    body: Result<Json<SetBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return super::bad_body(&e),
    };
    let stage: Stage = match body.stage.parse() {
        Ok(s) => s,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if let Some(r) = refuse_force(&id, body.force, &body.reason) {
        return r;
    }
    let config = state.shared.config.load_full();
    let outcome = crate::gates::set(
        &config,
        &state.store,
        &name,
        stage,
        body.percent,
        body.force,
        who(&id, &body.reason, &state.shared),
    )
    .await;
    let entry = match outcome {
        Ok(SetOutcome::RolledBack(entry)) => entry,
        Ok(SetOutcome::Moved(Promotion::Promoted { entry, .. })) => *entry,
        Ok(SetOutcome::Moved(Promotion::Refused { to, gates })) => {
            return refused(&name, &to, gates)
        }
        Err(e) => return promote_error(&name, e),
    };
    applied(&state, &name, entry).await
}

/// Body of `POST /routes/{name}/promote`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromoteBody {
    to: Option<f64>,
    #[serde(default)]
    force: bool,
    reason: Option<String>,
}

fn refuse_force(id: &Identity, force: bool, reason: &str) -> Option<Response> {
    if !force {
        return None;
    }
    if id.role < Role::Approver {
        return Some(error(
            StatusCode::FORBIDDEN,
            format!(
                "{} has role {}; a forced move needs approver",
                id.name,
                id.role.as_str()
            ),
        ));
    }
    reason.trim().is_empty().then(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a forced move needs a reason",
        )
    })
}

fn refused(name: &str, to: &Target, gates: Vec<crate::gates::Gate>) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({
            "error": format!("gates failed for {name} → {to}; nothing changed (force with a reason to override)"),
            "to": to,
            "gates": gates,
        })),
    )
        .into_response()
}

pub(super) async fn promote(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Extension(id): Extension<Identity>,
    body: Option<Json<PromoteBody>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let reason = body.reason.clone().unwrap_or_default();
    if let Some(r) = refuse_force(&id, body.force, &reason) {
        return r;
    }
    let config = state.shared.config.load_full();
    match crate::gates::promote(
        &config,
        &state.store,
        &name,
        body.to,
        body.force,
        body.reason.as_deref(),
        &id.name,
    )
    .await
    {
        Ok(Promotion::Promoted { entry, .. }) => applied(&state, &name, *entry).await,
        Ok(Promotion::Refused { to, gates }) => refused(&name, &to, gates),
        Err(e) => promote_error(&name, e),
    }
}

/// Query of `GET /routes/{name}/history`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct HistoryQuery {
    #[serde(default)]
    verify: bool,
}

pub(super) async fn history(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HistoryQuery>,
) -> Response {
    use strangler_state::RouteStore;
    if state.shared.config.load().route(&name).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no route {name:?}"));
    }
    let entries = match state.store.audit_log(Some(&name)).await {
        Ok(e) => e,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut body = json!({ "route": name, "history": entries });
    if q.verify {
        match state.store.audit_log(None).await {
            Ok(all) => {
                let breaks = strangler_state::audit::verify(&all);
                body["chain"] = json!({ "intact": breaks.is_empty(), "breaks": breaks });
            }
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
    Json(body).into_response()
}

fn promote_error(name: &str, e: PromoteError) -> Response {
    match e {
        PromoteError::UnknownRoute(_) => error(StatusCode::NOT_FOUND, format!("no route {name:?}")),
        PromoteError::NoStep(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        e @ (PromoteError::Held { .. } | PromoteError::Changed { .. }) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        e => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub(super) async fn rollback(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Extension(id): Extension<Identity>,
    body: Option<Json<ReasonBody>>,
) -> Response {
    let (reason, force) = body.map(|Json(b)| (b.reason, b.force)).unwrap_or_default();
    let config = state.shared.config.load_full();
    if config.route(&name).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no route {name:?}"));
    }
    if let Some(refused) = refuse_force(&id, force, &reason) {
        return refused;
    }
    let who = who(&id, &reason, &state.shared);
    match crate::gates::rollback_checked(&config, &state.store, &name, force, who).await {
        Ok(entry) => applied(&state, &name, entry).await,
        Err(e @ crate::gates::PromoteError::RollbackGated { .. }) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ crate::gates::PromoteError::NoStep(_)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub(super) async fn resume(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Extension(id): Extension<Identity>,
    body: Option<Json<ReasonBody>>,
) -> Response {
    let reason = body.map(|Json(b)| b.reason).unwrap_or_default();
    let config = state.shared.config.load_full();
    match crate::gates::resume(
        &config,
        &state.store,
        &name,
        who(&id, &reason, &state.shared),
    )
    .await
    {
        Ok(r) => {
            let then = r.then.clone();
            let next = r.next.clone();
            let mut resp = applied(&state, &name, r.released).await;
            if resp.status() == StatusCode::OK {
                resp = Json(json!({
                    "route": route_views(&state.shared).into_iter().find(|v| v.name == name),
                    "audit": next,
                    "then": then,
                }))
                .into_response();
            }
            resp
        }
        Err(ResumeError::UnknownRoute(_)) => {
            error(StatusCode::NOT_FOUND, format!("no route {name:?}"))
        }
        Err(e @ ResumeError::NotHeld(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Applies a change here at once (the very next request through this
/// proxy obeys; the others within a poll) and answers with the route.
async fn applied(state: &AdminState, name: &str, entry: AuditEntry) -> Response {
    if let Err(e) = crate::control::refresh(&state.shared, &state.store).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("change saved but not reloaded: {e}"),
        );
    }
    tracing::info!(route = name, actor = %entry.actor, reason = %entry.reason, from = %entry.before, to = %entry.after, "route changed");
    let view = route_views(&state.shared)
        .into_iter()
        .find(|r| r.name == name);
    Json(json!({ "route": view, "audit": entry })).into_response()
}
