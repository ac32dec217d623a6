//! Products and inventory.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use shop_common::{body, int_param, parse_id, ts, with_noise, ApiError, ApiResult};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

const COLUMNS: &str = "id, sku, title, description, price_cents, updated_at";

/// A product as the API shows it. Legacy habit: a `NULL` description is
/// shown as `""`.
/// The price of product `id` in cents, as the monolith stores it (what the
/// demo watches come back through reverse sync).
pub async fn price_cents(pool: &PgPool, id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT price_cents FROM products WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
}

fn product(row: &PgRow) -> Result<Value, sqlx::Error> {
    Ok(json!({
        "id": row.try_get::<i64, _>("id")?,
        "sku": row.try_get::<String, _>("sku")?,
        "title": row.try_get::<String, _>("title")?,
        "description": row.try_get::<Option<String>, _>("description")?.unwrap_or_default(),
        "price_cents": row.try_get::<i64, _>("price_cents")?,
        "updated_at": ts(row.try_get("updated_at")?),
    }))
}

pub async fn list(
    State(pool): State<PgPool>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = int_param(&q, "page", 1, 1, 1_000_000)?;
    let per_page = int_param(&q, "per_page", 20, 1, 100)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM products ORDER BY id LIMIT $1 OFFSET $2"
    ))
    .bind(per_page)
    .bind((page - 1) * per_page)
    .fetch_all(&pool)
    .await?;
    let total: i64 = sqlx::query("SELECT count(*) FROM products")
        .fetch_one(&pool)
        .await?
        .try_get(0)?;
    let items = rows.iter().map(product).collect::<Result<Vec<_>, _>>()?;
    Ok(with_noise(
        json!({ "items": items, "page": page, "per_page": per_page, "total": total }),
    ))
}

pub async fn show(State(pool): State<PgPool>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM products WHERE id = $1"))
        .bind(id)
        .fetch_optional(&pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))?;
    Ok(with_noise(product(&row)?))
}

/// Body of `POST /products`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub(crate) sku: String,
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) price_cents: i64,
    pub(crate) internal_notes: Option<String>,
    /// Initial stock (default 0).
    #[serde(default)]
    pub(crate) on_hand: i32,
}

impl NewProduct {
    /// 422 for what the shop refuses, whatever the database.
    pub(crate) fn check(&self) -> ApiResult<()> {
        if self.sku.trim().is_empty() || self.title.trim().is_empty() {
            return Err(ApiError::unprocessable("sku and title must not be empty"));
        }
        if self.price_cents < 0 || self.on_hand < 0 {
            return Err(ApiError::unprocessable(
                "price_cents and on_hand must not be negative",
            ));
        }
        Ok(())
    }
}

pub async fn create(
    State(pool): State<PgPool>,
    b: Result<Json<NewProduct>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = body(b)?;
    p.check()?;
    let mut tx = pool.begin().await?;
    let row = sqlx::query(&format!(
        "INSERT INTO products (sku, title, description, price_cents, internal_notes) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(&p.sku)
    .bind(&p.title)
    .bind(&p.description)
    .bind(p.price_cents)
    .bind(&p.internal_notes)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match e.as_database_error() {
        Some(db) if db.is_unique_violation() => ApiError::conflict("duplicate_sku", format!("sku {:?} exists", p.sku)),
        _ => e.into(),
    })?;
    let id: i64 = row.try_get("id")?;
    sqlx::query("INSERT INTO inventory (product_id, on_hand) VALUES ($1, $2)")
        .bind(id)
        .bind(p.on_hand)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, with_noise(product(&row)?)))
}

/// Body of `PUT /products/{id}`: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdate {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) price_cents: Option<i64>,
}

impl ProductUpdate {
    /// 422 for what the shop refuses, whatever the database.
    pub(crate) fn check(&self) -> ApiResult<()> {
        if self.title.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ApiError::unprocessable("title must not be empty"));
        }
        if self.price_cents.is_some_and(|p| p < 0) {
            return Err(ApiError::unprocessable("price_cents must not be negative"));
        }
        Ok(())
    }
}

pub async fn update(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
    b: Result<Json<ProductUpdate>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let u = body(b)?;
    u.check()?;
    let row = sqlx::query(&format!(
        "UPDATE products SET title = COALESCE($2, title), description = COALESCE($3, description), \
         price_cents = COALESCE($4, price_cents), updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
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

pub async fn inventory(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let row =
        sqlx::query("SELECT product_id, on_hand, reserved FROM inventory WHERE product_id = $1")
            .bind(id)
            .fetch_optional(&pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no inventory for product {id}")))?;
    let (on_hand, reserved): (i32, i32) = (row.try_get(1)?, row.try_get(2)?);
    Ok(with_noise(json!({
        "product_id": row.try_get::<i64, _>(0)?,
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
    })))
}
