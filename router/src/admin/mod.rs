//! The admin API, on its own listener (loopback by default).
//!
//! | method, path                     | does                                   |
//! |----------------------------------|----------------------------------------|
//! | `GET /healthz`                   | 200 while the router serves (no token) |
//! | `GET /metrics`                   | Prometheus text                        |
//! | `GET /routes`, `GET /routes/{n}` | stages, percents, counters             |
//! | `PUT /routes/{n}`                | `{"stage", "percent", "reason"}`       |
//! | `POST /routes/{n}/rollback`      | to legacy, now                         |
//! | `GET /shadow/summary`            | 501 until the shadow comparator lands  |
//!
//! When `proxy.admin_token_env` is set, every endpoint but `/healthz`
//! requires `Authorization: Bearer <token>` (401 otherwise).

mod routes;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::runtime::Shared;
use strangler_state::store::StateStore;

pub use routes::{route_views, RouteView};

/// What the admin handlers share.
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub store: StateStore,
    /// The bearer token, when one is required.
    pub token: Option<String>,
}

/// The admin API's router.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/routes", get(routes::list))
        .route("/routes/{name}", get(routes::show).put(routes::set))
        .route("/routes/{name}/rollback", post(routes::rollback))
        .route("/shadow/summary", get(shadow_summary))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin endpoint") })
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "admin API stopped");
    }
}

/// A JSON error body: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "this admin API needs Authorization: Bearer <token>",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.shared.metrics.render(),
    )
        .into_response()
}

/// Per-route comparison counts and verdicts, under each route's own thresholds.
async fn shadow_summary(State(state): State<Arc<AdminState>>) -> Response {
    let stats = match state.store.shadow_stats().await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let config = state.shared.config.load();
    let routing = state.shared.routing.load();
    let stage_of =
        |r: &strangler_config::Route| routing.table.find(&r.name).map_or(r.stage, |c| c.stage);
    let routes = strangler_shadow::report::summaries(&config, stage_of, &stats, None);
    let list: Vec<_> = routes
        .iter()
        .map(|r| {
            json!({
                "route": r.route, "endpoint": r.endpoint, "stage": r.stage,
                "comparisons": r.comparisons, "matches": r.matches, "stale": r.stale,
                "real_mismatches": r.verdict.real_mismatches, "upper_bound": r.verdict.upper_bound,
                "verdict": r.verdict.status, "skipped": r.skipped,
                "noise_fields": r.fields.iter().filter(|f| f.noise).map(|f| f.field.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "routes": list })).into_response()
}
