//! `/inventory` handlers: the endpoint inventory, and a route created for a
//! template no route covers (written to this proxy's config file, which it
//! then reloads like any edit).

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use strangler_config::edit::{append_routes_to_file, route_name, NewRoute};
use strangler_state::inventory::listed;
use strangler_state::route_store::Who;

use super::auth::Identity;
use super::{error, AdminState};

/// `GET /inventory`: every template, most requested first.
pub(super) async fn list(State(state): State<Arc<AdminState>>) -> Response {
    let config = state.shared.config.load_full();
    match state.store.inventory().await {
        Ok(t) => {
            let rows = listed(&t, |m, p| config.route_for(m, p).map(|r| r.name.clone()));
            let total: u64 = rows.iter().map(|r| r.requests).sum();
            Json(json!({ "requests": total, "templates": rows })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Body of `POST /inventory/routes`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    method: String,
    template: String,
    /// Defaults to one made from the method and template.
    name: Option<String>,
    #[serde(default)]
    reason: String,
}

/// `POST /inventory/routes`: appends a route in stage legacy for a
/// template to the config file and audits it; the proxy picks the file up
/// within its poll (0.5 s), the others when their file is updated the same
/// way (a config repository).
pub(super) async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(id): Extension<Identity>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return super::bad_body(&e),
    };
    let Some(path) = state.config_path.clone() else {
        return error(
            StatusCode::CONFLICT,
            "this proxy has no config file it may edit; run `strangler inventory --emit-routes` where the file lives",
        );
    };
    let config = state.shared.config.load_full();
    let method = body.method.to_ascii_uppercase();
    if !strangler_config::edit::METHODS.contains(&method.as_str()) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("method {:?} is not one a route may name", body.method),
        );
    }
    if let Some(r) = config.route_for(&method, &body.template) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{method} {} is covered by route {:?} already",
                body.template, r.name
            ),
        );
    }
    let taken: HashSet<String> = config.routes.iter().map(|r| r.name.clone()).collect();
    let name = body
        .name
        .clone()
        .unwrap_or_else(|| route_name(&method, &body.template, &taken));
    let new = NewRoute {
        name: name.clone(),
        method: method.clone(),
        path: body.template.clone(),
    };
    let by = format!("{} on the web board", id.name);
    let written = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || append_routes_to_file(&path, &[new], &by)).await
    };
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    // The route's first line in its history: who created it and why.
    let reason = if body.reason.trim().is_empty() {
        format!(
            "route created from the endpoint inventory ({method} {})",
            body.template
        )
    } else {
        format!(
            "route created from the endpoint inventory: {}",
            body.reason.trim()
        )
    };
    let audited = match strangler_config::Config::load(&path) {
        Ok(c) => match c.route(&name) {
            Some(route) => {
                let who = Who {
                    actor: id.name.clone(),
                    reason,
                    revision: c.revision.clone(),
                };
                crate::gates::note(&state.store, route, who).await.ok()
            }
            None => None,
        },
        Err(_) => None,
    };
    tracing::info!(route = %name, actor = %id.name, "route created from the inventory");
    (
        StatusCode::CREATED,
        Json(json!({
            "route": { "name": name, "methods": [method], "path": body.template, "stage": "legacy" },
            "file": path.display().to_string(),
            "audit": audited,
        })),
    )
        .into_response()
}
