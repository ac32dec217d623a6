//! The order domain: placing an order (reserve stock, record the payment and
//! the order in one transaction) and reading orders back. The monolith and
//! the extracted orders service run the same logic against their own
//! databases, whose order tables have the same shape.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::{PgPool, Row};

use crate::{body, int_param, parse_id, ts, with_noise, ApiError, ApiResult};

/// `POST /orders`, `GET /orders/{id}`, `GET /customers/{id}/orders`.
pub fn router() -> Router<PgPool> {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(show_order))
        .route("/customers/{id}/orders", get(customer_orders))
}

/// [`router`] whose `POST /orders` also writes an `OrderPlaced` event into
/// the `outbox` table in the order's transaction (the transactional
/// outbox: `strangler cdc run` with `[[cdc.outbox]]` publishes it).
pub fn router_with_outbox() -> Router<PgPool> {
    Router::new()
        .route("/orders", post(place_order_with_event))
        .route("/orders/{id}", get(show_order))
        .route("/customers/{id}/orders", get(customer_orders))
}

async fn place_order(
    State(pool): State<PgPool>,
    b: Result<Json<NewOrder>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let order = place(&pool, body(b)?, false).await?;
    Ok((StatusCode::CREATED, with_noise(order)))
}

async fn place_order_with_event(
    State(pool): State<PgPool>,
    b: Result<Json<NewOrder>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let order = place(&pool, body(b)?, true).await?;
    Ok((StatusCode::CREATED, with_noise(order)))
}

async fn show_order(State(pool): State<PgPool>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id("order id", &id)?;
    read(&mut *pool.acquire().await?, id)
        .await?
        .map(with_noise)
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))
}

async fn customer_orders(
    State(pool): State<PgPool>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("customer id", &id)?;
    let limit = int_param(&q, "limit", 50, 1, 500)?;
    of_customer(&pool, id, limit)
        .await?
        .map(with_noise)
        .ok_or_else(|| ApiError::not_found(format!("customer {id} does not exist")))
}

/// Body of `POST /orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub customer_id: i64,
    pub items: Vec<NewItem>,
    /// `card` (default) or `invoice`.
    #[serde(default)]
    pub payment_method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub product_id: i64,
    pub quantity: i32,
}

/// What the shop refuses in an order whatever its database (422), and
/// what it asks for: the payment method and the quantity per product
/// (duplicate lines merged, in product order — the order rows are locked
/// in, so two orders never deadlock).
pub fn checked(order: &NewOrder) -> ApiResult<(String, BTreeMap<i64, i32>)> {
    if order.items.is_empty() {
        return Err(ApiError::unprocessable(
            "items: an order needs at least one item",
        ));
    }
    if order.items.len() > 100 {
        return Err(ApiError::unprocessable(
            "items: at most 100 lines per order",
        ));
    }
    let method = order
        .payment_method
        .clone()
        .unwrap_or_else(|| "card".into());
    if method != "card" && method != "invoice" {
        return Err(ApiError::unprocessable(format!(
            "payment_method: {method:?} is not card or invoice"
        )));
    }
    let mut wanted: BTreeMap<i64, i32> = BTreeMap::new();
    for (i, item) in order.items.iter().enumerate() {
        if item.quantity <= 0 || item.quantity > 1000 {
            return Err(ApiError::unprocessable(format!(
                "items[{i}].quantity must be 1..=1000, got {}",
                item.quantity
            )));
        }
        let q = wanted.entry(item.product_id).or_insert(0);
        *q = q.saturating_add(item.quantity);
    }
    Ok((method, wanted))
}

/// The price of every product `wanted`, when each has the stock (`rows`:
/// product id, on hand, reserved, price, as locked); 409 naming the first
/// that is short, 404 naming one that does not exist.
pub fn priced(
    rows: &[(i64, i32, i32, i64)],
    wanted: &BTreeMap<i64, i32>,
) -> ApiResult<BTreeMap<i64, i64>> {
    let mut prices = BTreeMap::new();
    for &(id, on_hand, reserved, price) in rows {
        let want = wanted.get(&id).copied().unwrap_or(0);
        if on_hand - reserved < want {
            return Err(ApiError::conflict(
                "insufficient_stock",
                format!(
                    "product {id}: {} available, {want} wanted",
                    on_hand - reserved
                ),
            ));
        }
        prices.insert(id, price);
    }
    if let Some(missing) = wanted.keys().find(|id| !prices.contains_key(id)) {
        return Err(ApiError::not_found(format!(
            "product {missing} does not exist"
        )));
    }
    Ok(prices)
}

/// Places an order: 201 with the order, 409 when stock is short, 422 on bad
/// items, 404 for an unknown customer or product. With `event`, an
/// `OrderPlaced` row goes into the `outbox` table in the same transaction
/// (aggregate `order`, the order's id, the order as payload).
pub async fn place(pool: &PgPool, order: NewOrder, event: bool) -> ApiResult<Value> {
    let (method, wanted) = checked(&order)?;
    let mut tx = pool.begin().await?;
    let customer = sqlx::query("SELECT 1 FROM customers WHERE id = $1")
        .bind(order.customer_id)
        .fetch_optional(&mut *tx)
        .await?;
    if customer.is_none() {
        return Err(ApiError::not_found(format!(
            "customer {} does not exist",
            order.customer_id
        )));
    }
    let ids: Vec<i64> = wanted.keys().copied().collect();
    let rows: Vec<(i64, i32, i32, i64)> = sqlx::query_as(
        "SELECT i.product_id, i.on_hand, i.reserved, p.price_cents \
         FROM inventory i JOIN products p ON p.id = i.product_id \
         WHERE i.product_id = ANY($1) ORDER BY i.product_id FOR UPDATE OF i",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let prices = priced(&rows, &wanted)?;
    for (id, q) in &wanted {
        sqlx::query("UPDATE inventory SET reserved = reserved + $2 WHERE product_id = $1")
            .bind(id)
            .bind(q)
            .execute(&mut *tx)
            .await?;
    }
    let total: i64 = order
        .items
        .iter()
        .map(|i| prices.get(&i.product_id).copied().unwrap_or(0) * i64::from(i.quantity))
        .sum();
    let order_id: i64 = sqlx::query("INSERT INTO orders (customer_id, status, total_cents) VALUES ($1, 'placed', $2) RETURNING id")
        .bind(order.customer_id)
        .bind(total)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    for (line, item) in order.items.iter().enumerate() {
        sqlx::query("INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price_cents) VALUES ($1, $2, $3, $4, $5)")
            .bind(order_id)
            .bind(i32::try_from(line + 1).unwrap_or(i32::MAX))
            .bind(item.product_id)
            .bind(item.quantity)
            .bind(prices.get(&item.product_id).copied().unwrap_or(0))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO payments (order_id, amount_cents, method, status) VALUES ($1, $2, $3, 'authorized')")
        .bind(order_id)
        .bind(total)
        .bind(&method)
        .execute(&mut *tx)
        .await?;
    let order = read(&mut tx, order_id).await?;
    if event {
        sqlx::query(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
             VALUES (gen_random_uuid(), 'order', $1::text, 'OrderPlaced', $2::jsonb)",
        )
        .bind(order_id)
        .bind(order.as_ref().map(Value::to_string))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    order.ok_or_else(|| ApiError::not_found("order vanished"))
}

/// One order with its items and payment, or `None`.
pub async fn read(db: &mut sqlx::PgConnection, id: i64) -> ApiResult<Option<Value>> {
    let Some(o) = sqlx::query(
        "SELECT o.id, o.customer_id, o.status, o.total_cents, o.created_at, \
                p.amount_cents, p.method, p.status \
         FROM orders o LEFT JOIN payments p ON p.order_id = o.id WHERE o.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *db)
    .await?
    else {
        return Ok(None);
    };
    let items = sqlx::query(
        "SELECT line_no, product_id, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    let items: Vec<Value> = items
        .iter()
        .map(|r| {
            Ok(json!({
                "line": r.try_get::<i32, _>(0)?,
                "product_id": r.try_get::<i64, _>(1)?,
                "quantity": r.try_get::<i32, _>(2)?,
                "unit_price_cents": r.try_get::<i64, _>(3)?,
            }))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let payment = match o.try_get::<Option<i64>, _>(5)? {
        Some(amount) => json!({
            "amount_cents": amount,
            "method": o.try_get::<Option<String>, _>(6)?,
            "status": o.try_get::<Option<String>, _>(7)?,
        }),
        None => Value::Null,
    };
    Ok(Some(json!({
        "id": o.try_get::<i64, _>(0)?,
        "customer_id": o.try_get::<i64, _>(1)?,
        "status": o.try_get::<String, _>(2)?,
        "total_cents": o.try_get::<i64, _>(3)?,
        "created_at": ts(o.try_get(4)?),
        "items": items,
        "payment": payment,
    })))
}

/// A customer's orders, newest first (summaries), or `None` for an unknown customer.
pub async fn of_customer(pool: &PgPool, customer_id: i64, limit: i64) -> ApiResult<Option<Value>> {
    let exists = sqlx::query("SELECT 1 FROM customers WHERE id = $1")
        .bind(customer_id)
        .fetch_optional(pool)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT id, status, total_cents, created_at FROM orders WHERE customer_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let orders: Vec<Value> = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>(0)?,
                "status": r.try_get::<String, _>(1)?,
                "total_cents": r.try_get::<i64, _>(2)?,
                "created_at": ts(r.try_get(3)?),
            }))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(
        json!({ "customer_id": customer_id, "orders": orders }),
    ))
}
