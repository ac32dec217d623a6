//! The example e-commerce monolith: one axum process on one PostgreSQL
//! database (or, [`mysql`], a MySQL/MariaDB one), with the habits of a real monolith (noise in every body,
//! `NULL` descriptions shown as `""`, internal columns beside public ones).

pub mod mysql;
pub mod products;
pub mod seed;

use axum::routing::get;
use axum::Router;
use shop_common::{healthz, orders, ApiError};
pub use sqlx::PgPool;

/// The schema, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The monolith's HTTP API.
pub fn app(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/products", get(products::list).post(products::create))
        .route("/products/{id}", get(products::show).put(products::update))
        .route("/inventory/{product_id}", get(products::inventory))
        .merge(orders::router())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(pool)
}
