//! The web board on the admin listener: server-rendered HTML, one small
//! script (`board.js`) that polls the page's fragment every 2 s and sends
//! actions to the admin API, charts as inline SVG. No build step.
//!
//! | path                            | does                                          | role     |
//! |---------------------------------|-----------------------------------------------|----------|
//! | `GET /ui/login`, `POST /ui/login` | the token form; a valid token opens a session: a random id in an HTTP-only, SameSite=Strict cookie scoped to `/ui`, valid 12 h | none |
//! | `POST /ui/logout`               | ends the session                              | none     |
//! | `GET /ui`, `GET /ui/live`       | the board: routes, progress, inventory (`live`: the fragment) | viewer |
//! | `GET /ui/routes/{n}`, `…/live`  | a route: gates, shadow differences, history   | viewer   |
//! | `GET /ui/board.js`, `…/board.css` | the script and the styles                   | none     |
//!
//! Actions go to the admin API's own handlers, mounted under `/ui/api`
//! (`POST /ui/api/routes/{n}/promote`, `PUT /ui/api/routes/{n}`, …): the
//! same gates, roles and audit as any other client. The token itself never
//! leaves the login request: the cookie holds a session id, sent only to
//! `/ui` paths, and ends on logout, after 12 h, or as soon as the
//! credential it was opened with is no longer accepted. A change made with the cookie must carry `x-strangler-ui: 1`,
//! which a cross-site form or script cannot send, and any change from a
//! browser page of another origin is refused (`require_token`,
//! `same_origin`).

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

/// The cookie the browser keeps its session id in.
pub const COOKIE: &str = "strangler_admin_session";

/// How long a board session lasts.
const SESSION: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The board's sessions: a random id → the credential it logged in with
/// (kept in this process only) and until when. Every request checks that
/// credential again, so a token removed from the tokens file, or an OIDC
/// token past its expiry, ends its sessions at once.
#[derive(Default)]
pub struct Sessions(
    std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
);

impl Sessions {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (String, std::time::Instant)>>
    {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for `credential`; `None` when no randomness can be read.
    fn open(&self, credential: &str) -> Option<String> {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .ok()?;
        let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = self.lock();
        let now = std::time::Instant::now();
        s.retain(|_, (_, until)| *until > now);
        s.insert(key.clone(), (credential.to_string(), now + SESSION));
        Some(key)
    }

    /// The credential of the session `key`, while it lasts.
    pub fn credential(&self, key: &str) -> Option<String> {
        let s = self.lock();
        s.get(key)
            .filter(|(_, until)| *until > std::time::Instant::now())
            .map(|(c, _)| c.clone())
    }

    fn close(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The header a cookie-authenticated change must carry.
pub const UI_HEADER: &str = "x-strangler-ui";

/// Templates shown on the board (the CLI lists them all).
const INVENTORY_ROWS: usize = 50;

/// Hours of progress charted.
const HOURS: u32 = 24;

/// The session id in the request's cookie, if any.
pub fn cookie_session(headers: &HeaderMap) -> Option<&str> {
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
            let Some(session) = state.sessions.open(token) else {
                return super::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read /dev/urandom for a session id",
                );
            };
            let cookie = format!(
                "{COOKIE}={session}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
                SESSION.as_secs()
            );
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

pub(super) async fn logout(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(key) = cookie_session(&headers) {
        state.sessions.close(key);
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "strangler_admin_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
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
