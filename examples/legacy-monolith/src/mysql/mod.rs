//! The monolith's MySQL/MariaDB flavour: the same schema, endpoints,
//! bodies and seed as the PostgreSQL one, on a MySQL database — the shape
//! of most monoliths teams strangle (`strangler demo --mysql` runs the
//! story with it).

pub mod orders;
pub mod products;
pub mod seed;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use mysql_async::prelude::Queryable;
pub use mysql_async::Pool;
use mysql_async::Value;
use shop_common::ApiError;

/// The schema, applied at start (`CREATE TABLE IF NOT EXISTS`).
pub const SCHEMA: &str = include_str!("../../mysql/schema.sql");

/// Connects (sessions in UTC) and applies [`SCHEMA`].
pub async fn connect(url: &str) -> anyhow::Result<Pool> {
    let opts = mysql_async::Opts::from_url(url)?;
    let opts = mysql_async::OptsBuilder::from_opts(opts)
        .init(vec!["SET time_zone = '+00:00', NAMES utf8mb4"])
        .prefer_socket(false);
    let pool = Pool::new(opts);
    let mut c = pool.get_conn().await?;
    for statement in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        c.query_drop(statement).await?;
    }
    Ok(pool)
}

/// The monolith's HTTP API on MySQL.
pub fn app(pool: Pool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/products", get(products::list).post(products::create))
        .route("/products/{id}", get(products::show).put(products::update))
        .route("/inventory/{product_id}", get(products::inventory))
        .route("/orders", post(orders::place_order))
        .route("/orders/{id}", get(orders::show_order))
        .route("/customers/{id}/orders", get(orders::customer_orders))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(pool)
}

/// `GET /healthz`: the database answers.
async fn healthz(
    axum::extract::State(pool): axum::extract::State<Pool>,
) -> shop_common::ApiResult<axum::Json<serde_json::Value>> {
    let mut c = pool.get_conn().await.map_err(api_error)?;
    c.query_drop("SELECT 1").await.map_err(api_error)?;
    Ok(axum::Json(serde_json::json!({ "status": "ok" })))
}

/// A MySQL error as the shop answers it: constraint violations are the
/// client's doing, the rest is ours.
pub fn api_error(e: mysql_async::Error) -> ApiError {
    if let mysql_async::Error::Server(s) = &e {
        match s.code {
            // duplicate key
            1062 => return ApiError::conflict("conflict", s.message.clone()),
            // check constraint, foreign key
            3819 | 4025 | 1451 | 1452 => return ApiError::unprocessable(s.message.clone()),
            _ => {}
        }
    }
    tracing::error!(error = %e, "database error");
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: "the database is unavailable; try again".into(),
    }
}

/// A `TIMESTAMP` value (read in UTC) as a time.
pub fn time(v: &Value) -> DateTime<Utc> {
    match v {
        Value::Date(y, mo, d, h, mi, s, us) => {
            NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*mo), u32::from(*d))
                .and_then(|day| {
                    day.and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us)
                })
                .map(|t| t.and_utc())
                .unwrap_or_default()
        }
        Value::Bytes(b) => chrono::NaiveDateTime::parse_from_str(
            &String::from_utf8_lossy(b),
            "%Y-%m-%d %H:%M:%S%.f",
        )
        .map(|t| t.and_utc())
        .unwrap_or_default(),
        _ => DateTime::default(),
    }
}

/// A time as MySQL's `TIMESTAMP` input (UTC sessions).
pub fn mysql_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}
