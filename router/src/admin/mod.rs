//! The admin API, on its own listener (loopback by default).
//!
//! | method, path                     | does                                   | role     |
//! |----------------------------------|----------------------------------------|----------|
//! | `GET /healthz`, `GET /livez`     | 200 while the process serves           | none     |
//! | `GET /readyz`                    | 200, or 503 with why when degraded (`?degraded=ok`: 200 naming it — a proxy serving its cached state stays in a Kubernetes Service) | none |
//! | `GET /metrics`                   | Prometheus text                        | viewer   |
//! | `GET /routes`, `GET /routes/{n}` | declared, effective, origin, why, gates| viewer   |
//! | `PUT /routes/{n}`                | `{"stage", "percent", "reason", "force"}`; a step forward runs the gates (409 when one fails) | operator (force: approver) |
//! | `POST /routes/{n}/rollback`      | to legacy and hold                     | operator |
//! | `POST /routes/{n}/resume`        | lift the hold (`{"reason"}`)           | operator |
//! | `POST /routes/{n}/promote`       | next step through the gates (`{"to", "force", "reason"}`; 409 when a gate fails) | operator (force: approver) |
//! | `GET /routes/{n}/history`        | the audit log (`?verify=true` checks the chain) | viewer |
//! | `GET /shadow/summary`            | per-route comparison counts, verdicts  | viewer   |
//! | `GET /inventory`                 | the endpoint inventory (every template, the route covering it) | viewer |
//! | `POST /inventory/routes`         | `{"method", "template", "name"?, "reason"?}`: a route in stage legacy appended to this proxy's config file, audited | operator |
//! | `/ui…`                           | the web board (`ui/`)                  | viewer   |
//!
//! With credentials configured (`auth.rs`) every endpoint but the health
//! checks needs `Authorization: Bearer <token>` (401 without, 403 when the
//! token's role is too low) — or, from the web board, the token in its
//! cookie; the audit log records the token's name.

pub mod auth;
mod inventory;
pub mod oidc;
mod routes;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::runtime::Shared;
use auth::{Credentials, Identity, Role};
use strangler_state::store::StateStore;

pub use routes::{route_views, RouteView};

/// What the admin handlers share.
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub store: StateStore,
    /// `None`: the API is open.
    pub credentials: std::sync::RwLock<Option<Arc<Credentials>>>,
    /// The config file routes created on the board are written to.
    pub config_path: Option<std::path::PathBuf>,
    /// The web board's logged-in sessions.
    pub sessions: ui::Sessions,
}

impl AdminState {
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.credentials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs credentials read again (on reload).
    pub fn set_credentials(&self, c: Option<Credentials>) {
        *self
            .credentials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = c.map(Arc::new);
    }
}

/// The admin API's router.
pub fn router(state: Arc<AdminState>) -> Router {
    let metrics_public = state.shared.config.load().proxy.metrics_public;
    let mut protected = Router::new()
        .route("/routes", get(routes::list))
        .route("/routes/{name}", get(routes::show).put(routes::set))
        .route("/routes/{name}/rollback", post(routes::rollback))
        .route("/routes/{name}/resume", post(routes::resume))
        .route("/routes/{name}/promote", post(routes::promote))
        .route("/routes/{name}/history", get(routes::history))
        .route("/shadow/summary", get(shadow_summary))
        .route("/inventory", get(inventory::list))
        .route("/inventory/routes", post(inventory::create))
        .route("/ui", get(ui::board))
        .route("/ui/", get(ui::board))
        .route("/ui/live", get(ui::board_live))
        .route("/ui/routes/{name}", get(ui::route_page))
        .route("/ui/routes/{name}/live", get(ui::route_live))
        // The board's actions: the same handlers, under /ui (where its
        // session cookie is sent).
        .route("/ui/api/routes/{name}", put(routes::set))
        .route("/ui/api/routes/{name}/rollback", post(routes::rollback))
        .route("/ui/api/routes/{name}/resume", post(routes::resume))
        .route("/ui/api/routes/{name}/promote", post(routes::promote))
        .route("/ui/api/inventory/routes", post(inventory::create));
    let mut open = Router::new();
    if metrics_public {
        open = open.route("/metrics", get(metrics));
    } else {
        protected = protected.route("/metrics", get(metrics));
    }
    let protected = protected.layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(open)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/ui/login", get(ui::login_form).post(ui::login))
        .route("/ui/logout", post(ui::logout))
        .route("/ui/board.css", get(ui::css))
        .route("/ui/board.js", get(ui::js))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin endpoint") })
        .layer(middleware::from_fn(same_origin))
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

/// 400 naming what is wrong with a JSON body.
pub(crate) fn bad_body(e: &axum::extract::rejection::JsonRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("bad body: {}", e.body_text()),
    )
}

/// A JSON error body: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Refuses a change sent by a browser page of another origin (a form or
/// script on any site can post to a loopback admin listener; with no
/// credentials configured nothing else would stop it). Browsers name the
/// page's origin (`Origin`) and whether it is cross-site
/// (`Sec-Fetch-Site`); other clients send neither.
async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        return next.run(req).await;
    }
    let h = req.headers();
    let cross_site = h
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| {
            let authority = o.split_once("://").map_or(o, |(_, a)| a);
            Some(authority) != host
        });
    if cross_site || foreign_origin {
        return error(
            StatusCode::FORBIDDEN,
            "a change from a page of another origin is refused (cross-site request)",
        );
    }
    next.run(req).await
}

/// The caller's identity, or the answer that turns them away. `GET`s
/// need a viewer, anything else an operator.
async fn require_token(
    State(state): State<Arc<AdminState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let identity = match state.credentials() {
        None => Identity {
            name: "admin-api".into(),
            role: Role::Approver,
        },
        Some(creds) => {
            let bearer = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // The board's session cookie counts on /ui paths only.
            let cookie =
                ui::cookie_session(req.headers()).filter(|_| req.uri().path().starts_with("/ui"));
            let found = match (bearer, cookie) {
                (Some(g), _) => creds.identify(g).await,
                (None, Some(c)) => {
                    // A change on the strength of the cookie alone must
                    // come from the board's script: a cross-site form or
                    // fetch cannot set this header (CSRF).
                    if req.method() != axum::http::Method::GET
                        && req.headers().get(ui::UI_HEADER).is_none_or(|v| v != "1")
                    {
                        return error(
                            StatusCode::FORBIDDEN,
                            format!("a change authorised by the board's cookie needs the {} header (sent by the board itself)", ui::UI_HEADER),
                        );
                    }
                    match state.sessions.credential(c) {
                        // Checked again: a rotated token ends its sessions.
                        Some(credential) => creds.identify(&credential).await,
                        None => Err("the board's session ended: log in again".to_string()),
                    }
                }
                (None, None) => Err("no bearer token".into()),
            };
            match found {
                Ok(id) => id,
                Err(_)
                    if req.method() == axum::http::Method::GET
                        && req.uri().path().starts_with("/ui") =>
                {
                    return axum::response::Redirect::to("/ui/login").into_response();
                }
                Err(why) => {
                    let mut resp = error(
                        StatusCode::UNAUTHORIZED,
                        format!("this admin API needs Authorization: Bearer <token> with a known token or a valid OIDC token ({why})"),
                    );
                    resp.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Bearer"),
                    );
                    return resp;
                }
            }
        }
    };
    let needs = if req.method() == axum::http::Method::GET {
        Role::Viewer
    } else {
        Role::Operator
    };
    if identity.role < needs {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{} has role {}; {} {} needs {}",
                identity.name,
                identity.role.as_str(),
                req.method(),
                req.uri().path(),
                needs.as_str()
            ),
        );
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

#[derive(serde::Deserialize)]
struct ReadyQuery {
    /// `ok`: a degraded proxy (serving its last known route state while
    /// the store is away) counts as ready; the body still names why.
    degraded: Option<String>,
}

async fn readyz(
    State(state): State<Arc<AdminState>>,
    axum::extract::Query(q): axum::extract::Query<ReadyQuery>,
) -> Response {
    match state.shared.degraded() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            if q.degraded.as_deref() == Some("ok") {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            format!("degraded: {why}\n"),
        )
            .into_response(),
    }
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
