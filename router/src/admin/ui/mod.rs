//! The web board on the admin listener: server-rendered HTML, one small
//! script (`board.js`) that polls the page's fragment every 2 s and sends
//! actions to the admin API, charts as inline SVG. No build step.
//!
//! | path                            | does                                          | role     |
//! |---------------------------------|-----------------------------------------------|----------|
//! | `GET /ui/login`, `POST /ui/login` | the token form; a valid token is kept in an HTTP-only, SameSite=Strict cookie | none |
//! | `POST /ui/logout`               | forgets the cookie                            | none     |
//! | `GET /ui`, `GET /ui/live`       | the board: routes, progress, inventory (`live`: the fragment) | viewer |
//! | `GET /ui/routes/{n}`, `…/live`  | a route: gates, shadow differences, history   | viewer   |
//! | `GET /ui/board.js`, `…/board.css` | the script and the styles                   | none     |
//!
//! Actions go to the admin API itself (`POST /routes/{n}/promote`, `PUT
//! /routes/{n}`, `POST /routes/{n}/rollback`, `POST /inventory/routes`):
//! the same gates, roles and audit as any other client. A change made with
//! the cookie must carry `x-strangler-ui: 1`, which a cross-site form or
//! script cannot send (`require_token`).

pub(super) mod chart;
pub(super) mod html;

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use strangler_state::RouteStore;

use super::auth::Identity;
use super::AdminState;

/// The cookie the browser keeps the token in.
pub const COOKIE: &str = "strangler_admin_token";

/// The header a cookie-authenticated change must carry.
pub const UI_HEADER: &str = "x-strangler-ui";

/// Templates shown on the board (the CLI lists them all).
const INVENTORY_ROWS: usize = 50;

/// Hours of progress charted.
const HOURS: u32 = 24;

/// The token in the request's cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then_some(v)
        })
}

pub(super) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("board.css"),
    )
        .into_response()
}

pub(super) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("board.js"),
    )
        .into_response()
}

pub(super) async fn login_form(State(state): State<Arc<AdminState>>) -> Response {
    if state.credentials().is_none() {
        return Redirect::to("/ui").into_response();
    }
    Html(html::login(None)).into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(
    State(state): State<Arc<AdminState>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(creds) = state.credentials() else {
        return Redirect::to("/ui").into_response();
    };
    let token = form.token.trim();
    match creds.identify(token).await {
        Ok(id) => {
            tracing::info!(who = %id.name, "logged in to the web board");
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            let mut resp = Redirect::to("/ui").into_response();
            if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(why) => {
            tracing::warn!(%why, "web board login refused");
            (
                StatusCode::UNAUTHORIZED,
                Html(html::login(Some("that token is not accepted here"))),
            )
                .into_response()
        }
    }
}

pub(super) async fn logout() -> Response {
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "strangler_admin_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

fn who(id: &Identity) -> String {
    format!("{} ({})", id.name, id.role.as_str())
}

/// The board's live part: routes, progress, inventory.
async fn board_fragment(state: &AdminState) -> String {
    let config = state.shared.config.load_full();
    let mut out = String::new();
    if let Some(why) = state.shared.degraded() {
        out.push_str(&format!(
            r#"<p class="blocked" role="alert">degraded: {}</p>"#,
            html::esc(&why)
        ));
    }
    match crate::board::board(&config, &state.store).await {
        Ok(rows) => out.push_str(&html::routes(&rows)),
        Err(e) => out.push_str(&format!(
            r#"<p class="blocked" role="alert">the state store did not answer: {}</p>"#,
            html::esc(&e.to_string())
        )),
    }
    let now = strangler_state::store::now_ms();
    if let Ok(hours) = crate::progress::hourly(&config, &state.store, now, HOURS).await {
        out.push_str(&html::progress(&hours));
    }
    if let Ok(t) = state.store.inventory().await {
        let rows = strangler_state::inventory::listed(&t, |m, p| {
            config.route_for(m, p).map(|r| r.name.clone())
        });
        out.push_str(&html::inventory(
            &rows,
            INVENTORY_ROWS,
            state.config_path.is_some(),
        ));
    }
    out.push_str(&format!(
        r#"<p class="stamp">config revision {} · updated {}</p>"#,
        html::esc(&config.revision),
        chrono::Utc::now().format("%H:%M:%S UTC")
    ));
    out
}

pub(super) async fn board(
    State(state): State<Arc<AdminState>>,
    Extension(id): Extension<Identity>,
) -> Response {
    let body = board_fragment(&state).await;
    Html(html::page(
        "Board",
        "/ui/live",
        &body,
        &who(&id),
        state.credentials().is_some(),
    ))
    .into_response()
}

pub(super) async fn board_live(State(state): State<Arc<AdminState>>) -> Response {
    Html(board_fragment(&state).await).into_response()
}

/// A route's live part; `None` when there is no such route.
async fn route_fragment(state: &AdminState, name: &str) -> Option<String> {
    let config = state.shared.config.load_full();
    config.route(name)?;
    let rows = match crate::board::board(&config, &state.store).await {
        Ok(r) => r,
        Err(e) => {
            return Some(format!(
                r#"<p class="blocked" role="alert">the state store did not answer: {}</p>"#,
                html::esc(&e.to_string())
            ))
        }
    };
    let row = rows.into_iter().find(|r| r.route == name)?;
    let stats = state.store.shadow_stats().await.unwrap_or_default();
    let stage = row.stage;
    let shadow = strangler_shadow::report::summaries(
        &config,
        |r| if r.name == name { stage } else { r.stage },
        &stats,
        None,
    )
    .into_iter()
    .find(|s| s.route == name && s.comparisons > 0);
    let history = state.store.audit_log(Some(name)).await.unwrap_or_default();
    Some(html::route_page(&row, shadow.as_ref(), &history))
}

pub(super) async fn route_page(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Extension(id): Extension<Identity>,
) -> Response {
    match route_fragment(&state, &name).await {
        Some(body) => Html(html::page(
            &name,
            &format!("/ui/routes/{}/live", html::path_segment(&name)),
            &body,
            &who(&id),
            state.credentials().is_some(),
        ))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(html::page(
                "No such route",
                "",
                &format!(
                    r#"<p><a href="/ui">← Board</a></p><p>no route {}</p>"#,
                    html::esc(&name)
                ),
                &who(&id),
                state.credentials().is_some(),
            )),
        )
            .into_response(),
    }
}

pub(super) async fn route_live(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Response {
    match route_fragment(&state, &name).await {
        Some(body) => Html(body).into_response(),
        None => super::error(StatusCode::NOT_FOUND, format!("no route {name:?}")),
    }
}
