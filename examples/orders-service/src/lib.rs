//! The orders service: `POST /orders`, `GET /orders/{id}` and
//! `GET /customers/{id}/orders` with the monolith's external API, on its
//! own database. It reads products, inventory and customers from its own
//! synced copies (kept by CDC), never from the monolith's database.

use axum::routing::get;
use axum::Router;
use shop_common::{healthz, orders, ApiError};
use sqlx::PgPool;

/// The schema, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The orders service's HTTP API.
pub fn app(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(orders::router_with_outbox())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(pool)
}
