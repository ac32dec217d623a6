//! Products and inventory on MySQL: the bodies of `crate::products`.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Row, TxOpts};
use serde_json::{json, Value};
use shop_common::{body, int_param, parse_id, ts, with_noise, ApiError, ApiResult};

use super::{api_error, time};
use crate::products::{NewProduct, ProductUpdate};

const COLUMNS: &str = "id, sku, title, description, price_cents, updated_at";

/// The price of product `id` in cents, as the monolith stores it.
pub async fn price_cents(pool: &Pool, id: i64) -> Result<i64, mysql_async::Error> {
    let mut c = pool.get_conn().await?;
    Ok(
        c.exec_first("SELECT price_cents FROM products WHERE id = ?", (id,))
            .await?
            .unwrap_or(0),
    )
}

/// A product as the API shows it (a `NULL` description as `""`).
fn product(mut row: Row) -> Value {
    let updated = row
        .take::<mysql_async::Value, _>(5)
        .unwrap_or(mysql_async::Value::NULL);
    json!({
        "id": row.take::<i64, _>(0).unwrap_or_default(),
        "sku": row.take::<String, _>(1).unwrap_or_default(),
        "title": row.take::<String, _>(2).unwrap_or_default(),
        "description": row.take::<Option<String>, _>(3).flatten().unwrap_or_default(),
        "price_cents": row.take::<i64, _>(4).unwrap_or_default(),
        "updated_at": ts(time(&updated)),
    })
}

pub async fn list(
    State(pool): State<Pool>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let page = int_param(&q, "page", 1, 1, 1_000_000)?;
    let per_page = int_param(&q, "per_page", 20, 1, 100)?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    let rows: Vec<Row> = c
        .exec(
            format!("SELECT {COLUMNS} FROM products ORDER BY id LIMIT ? OFFSET ?"),
            (per_page, (page - 1) * per_page),
        )
        .await
        .map_err(api_error)?;
    let total: i64 = c
        .query_first("SELECT COUNT(*) FROM products")
        .await
        .map_err(api_error)?
        .unwrap_or(0);
    let items: Vec<Value> = rows.into_iter().map(product).collect();
    Ok(with_noise(
        json!({ "items": items, "page": page, "per_page": per_page, "total": total }),
    ))
}

async fn read(c: &mut impl Queryable, id: i64) -> ApiResult<Option<Value>> {
    let row: Option<Row> = c
        .exec_first(
            format!("SELECT {COLUMNS} FROM products WHERE id = ?"),
            (id,),
        )
        .await
        .map_err(api_error)?;
    Ok(row.map(product))
}

pub async fn show(State(pool): State<Pool>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    read(&mut c, id)
        .await?
        .map(with_noise)
        .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))
}

pub async fn create(
    State(pool): State<Pool>,
    b: Result<Json<NewProduct>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = body(b)?;
    p.check()?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    let mut tx = c
        .start_transaction(TxOpts::default())
        .await
        .map_err(api_error)?;
    tx.exec_drop(
        "INSERT INTO products (sku, title, description, price_cents, internal_notes) VALUES (?, ?, ?, ?, ?)",
        (&p.sku, &p.title, &p.description, p.price_cents, &p.internal_notes),
    )
    .await
    .map_err(|e| match &e {
        mysql_async::Error::Server(s) if s.code == 1062 => {
            ApiError::conflict("duplicate_sku", format!("sku {:?} exists", p.sku))
        }
        _ => api_error(e),
    })?;
    let id = tx.last_insert_id().unwrap_or(0) as i64;
    tx.exec_drop(
        "INSERT INTO inventory (product_id, on_hand) VALUES (?, ?)",
        (id, p.on_hand),
    )
    .await
    .map_err(api_error)?;
    let made = read(&mut tx, id).await?;
    tx.commit().await.map_err(api_error)?;
    let made = made.ok_or_else(|| ApiError::not_found("product vanished"))?;
    Ok((StatusCode::CREATED, with_noise(made)))
}

pub async fn update(
    State(pool): State<Pool>,
    Path(id): Path<String>,
    b: Result<Json<ProductUpdate>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let u = body(b)?;
    u.check()?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    let mut tx = c
        .start_transaction(TxOpts::default())
        .await
        .map_err(api_error)?;
    tx.exec_drop(
        "UPDATE products SET title = COALESCE(?, title), description = COALESCE(?, description), \
         price_cents = COALESCE(?, price_cents), updated_at = CURRENT_TIMESTAMP(6) WHERE id = ?",
        (&u.title, &u.description, u.price_cents, id),
    )
    .await
    .map_err(api_error)?;
    let row = read(&mut tx, id).await?;
    tx.commit().await.map_err(api_error)?;
    row.map(with_noise)
        .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))
}

pub async fn inventory(State(pool): State<Pool>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id("product id", &id)?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    let row: Option<(i64, i32, i32)> = c
        .exec_first(
            "SELECT product_id, on_hand, reserved FROM inventory WHERE product_id = ?",
            (id,),
        )
        .await
        .map_err(api_error)?;
    let (product_id, on_hand, reserved) =
        row.ok_or_else(|| ApiError::not_found(format!("no inventory for product {id}")))?;
    Ok(with_noise(json!({
        "product_id": product_id,
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
    })))
}
