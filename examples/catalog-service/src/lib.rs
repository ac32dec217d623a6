//! The catalog service: `GET /products`, `GET /products/{id}` and
//! `PUT /products/{id}` with the monolith's external API, on its own
//! database (`catalog_items`).
//!
//! Deliberate difference from the monolith (what shadow comparison must
//! find): a product without a description is shown with `"description":
//! null`, where the monolith shows `""`.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use shop_common::{body, healthz, int_param, parse_id, ts, with_noise, ApiError, ApiResult};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

/// The schema, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The catalog's HTTP API.
/// How many products the catalog holds (what the demo waits on after the
/// snapshot).
pub async fn count_items(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM catalog_items")
        .fetch_one(pool)
        .await
}

pub fn app(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/products", get(list))
        .route("/products/{id}", get(show).put(update))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(pool)
}

const COLUMNS: &str = "id, sku, name, description, price, updated_at";

/// A catalog item in the monolith's external shape.
fn product(row: &PgRow) -> Result<Value, sqlx::Error> {
    Ok(json!({
        "id": row.try_get::<i64, _>("id")?,
        "sku": row.try_get::<String, _>("sku")?,
        "title": row.try_get::<String, _>("name")?,
        // The deliberate difference: NULL stays null.
        "description": row.try_get::<Option<String>, _>("description")?,
        "price_cents": row.try_get::<i64, _>("price")?,
        "updated_at": ts(row.try_get("updated_at")?),
    }))
}

async fn list(
    State(pool): State<PgPool>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = int_param(&q, "page", 1, 1, 1_000_000)?;
    let per_page = int_param(&q, "per_page", 20, 1, 100)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM catalog_items ORDER BY id LIMIT $1 OFFSET $2"
    ))
    .bind(per_page)
    .bind((page - 1) * per_page)
    .fetch_all(&pool)
    .await?;
    let total: i64 = sqlx::query("SELECT count(*) FROM catalog_items")
        .fetch_one(&pool)
        .await?
        .try_get(0)?;
    let items = rows.iter().map(product).collect::<Result<Vec<_>, _>>()?;
    Ok(with_noise(
        json!({ "items": items, "page": page, "per_page": per_page, "total": total }),
    ))
}

async fn show(State(pool): State<PgPool>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM catalog_items WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))?;
    Ok(with_noise(product(&row)?))
}

/// Body of `PUT /products/{id}`, in the external names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductUpdate {
    title: Option<String>,
    description: Option<String>,
    price_cents: Option<i64>,
}

async fn update(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
    b: Result<Json<ProductUpdate>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let u = body(b)?;
    if u.title.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(ApiError::unprocessable("title must not be empty"));
    }
    if u.price_cents.is_some_and(|p| p < 0) {
        return Err(ApiError::unprocessable("price_cents must not be negative"));
    }
    let row = sqlx::query(&format!(
        "UPDATE catalog_items SET name = COALESCE($2, name), description = COALESCE($3, description), \
         price = COALESCE($4, price), updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&u.title)
    .bind(&u.description)
    .bind(u.price_cents)
    .fetch_optional(&pool)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))?;
    Ok(with_noise(product(&row)?))
}
