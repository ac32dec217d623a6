//! The order domain on MySQL: the same rules and bodies as
//! `shop_common::orders` (placing an order reserves stock and records the
//! order and its payment in one transaction).

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Row, TxOpts, Value as My};
use serde_json::{json, Value};
use shop_common::orders::{checked, priced, NewOrder};
use shop_common::{body, int_param, parse_id, ts, with_noise, ApiError, ApiResult};

use super::{api_error, time};

pub async fn place_order(
    State(pool): State<Pool>,
    b: Result<Json<NewOrder>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let order = place(&pool, body(b)?).await?;
    Ok((StatusCode::CREATED, with_noise(order)))
}

pub async fn show_order(
    State(pool): State<Pool>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("order id", &id)?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    read(&mut c, id)
        .await?
        .map(with_noise)
        .ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))
}

pub async fn customer_orders(
    State(pool): State<Pool>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let id = parse_id("customer id", &id)?;
    let limit = int_param(&q, "limit", 50, 1, 500)?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    let exists: Option<i64> = c
        .exec_first("SELECT 1 FROM customers WHERE id = ?", (id,))
        .await
        .map_err(api_error)?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("customer {id} does not exist")));
    }
    let rows: Vec<Row> = c
        .exec(
            "SELECT id, status, total_cents, created_at FROM orders WHERE customer_id = ? ORDER BY id DESC LIMIT ?",
            (id, limit),
        )
        .await
        .map_err(api_error)?;
    let orders: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            let created = r.take::<My, _>(3).unwrap_or(My::NULL);
            json!({
                "id": r.take::<i64, _>(0).unwrap_or_default(),
                "status": r.take::<String, _>(1).unwrap_or_default(),
                "total_cents": r.take::<i64, _>(2).unwrap_or_default(),
                "created_at": ts(time(&created)),
            })
        })
        .collect();
    Ok(with_noise(json!({ "customer_id": id, "orders": orders })))
}

/// Places an order: the order, 409 when stock is short, 422 on bad items,
/// 404 for an unknown customer or product.
pub async fn place(pool: &Pool, order: NewOrder) -> ApiResult<Value> {
    let (method, wanted) = checked(&order)?;
    let mut c = pool.get_conn().await.map_err(api_error)?;
    let mut tx = c
        .start_transaction(TxOpts::default())
        .await
        .map_err(api_error)?;
    let customer: Option<i64> = tx
        .exec_first("SELECT 1 FROM customers WHERE id = ?", (order.customer_id,))
        .await
        .map_err(api_error)?;
    if customer.is_none() {
        return Err(ApiError::not_found(format!(
            "customer {} does not exist",
            order.customer_id
        )));
    }
    let ids: Vec<i64> = wanted.keys().copied().collect();
    let rows: Vec<(i64, i32, i32, i64)> = tx
        .exec(
            format!(
                "SELECT i.product_id, i.on_hand, i.reserved, p.price_cents \
                 FROM inventory i JOIN products p ON p.id = i.product_id \
                 WHERE i.product_id IN ({}) ORDER BY i.product_id FOR UPDATE",
                vec!["?"; ids.len()].join(", ")
            ),
            ids.clone(),
        )
        .await
        .map_err(api_error)?;
    let prices = priced(&rows, &wanted)?;
    for (id, q) in &wanted {
        tx.exec_drop(
            "UPDATE inventory SET reserved = reserved + ? WHERE product_id = ?",
            (q, id),
        )
        .await
        .map_err(api_error)?;
    }
    let total: i64 = order
        .items
        .iter()
        .map(|i| prices.get(&i.product_id).copied().unwrap_or(0) * i64::from(i.quantity))
        .sum();
    tx.exec_drop(
        "INSERT INTO orders (customer_id, status, total_cents) VALUES (?, 'placed', ?)",
        (order.customer_id, total),
    )
    .await
    .map_err(api_error)?;
    let order_id = tx.last_insert_id().unwrap_or(0) as i64;
    for (line, item) in order.items.iter().enumerate() {
        tx.exec_drop(
            "INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price_cents) VALUES (?, ?, ?, ?, ?)",
            (
                order_id,
                i32::try_from(line + 1).unwrap_or(i32::MAX),
                item.product_id,
                item.quantity,
                prices.get(&item.product_id).copied().unwrap_or(0),
            ),
        )
        .await
        .map_err(api_error)?;
    }
    tx.exec_drop(
        "INSERT INTO payments (order_id, amount_cents, method, status) VALUES (?, ?, ?, 'authorized')",
        (order_id, total, &method),
    )
    .await
    .map_err(api_error)?;
    let placed = read(&mut tx, order_id).await?;
    tx.commit().await.map_err(api_error)?;
    placed.ok_or_else(|| ApiError::not_found("order vanished"))
}

/// One order with its items and payment, or `None`.
pub async fn read(db: &mut impl Queryable, id: i64) -> ApiResult<Option<Value>> {
    let o: Option<Row> = db
        .exec_first(
            "SELECT o.id, o.customer_id, o.status, o.total_cents, o.created_at, \
                    p.amount_cents, p.method, p.status \
             FROM orders o LEFT JOIN payments p ON p.order_id = o.id WHERE o.id = ?",
            (id,),
        )
        .await
        .map_err(api_error)?;
    let Some(mut o) = o else {
        return Ok(None);
    };
    let items: Vec<(i32, i64, i32, i64)> = db
        .exec(
            "SELECT line_no, product_id, quantity, unit_price_cents FROM order_items WHERE order_id = ? ORDER BY line_no",
            (id,),
        )
        .await
        .map_err(api_error)?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|(line, product, qty, price)| {
            json!({"line": line, "product_id": product, "quantity": qty, "unit_price_cents": price})
        })
        .collect();
    let created = o.take::<My, _>(4).unwrap_or(My::NULL);
    let payment = match o.take::<Option<i64>, _>(5).flatten() {
        Some(amount) => json!({
            "amount_cents": amount,
            "method": o.take::<Option<String>, _>(6).flatten(),
            "status": o.take::<Option<String>, _>(7).flatten(),
        }),
        None => Value::Null,
    };
    Ok(Some(json!({
        "id": o.take::<i64, _>(0).unwrap_or_default(),
        "customer_id": o.take::<i64, _>(1).unwrap_or_default(),
        "status": o.take::<String, _>(2).unwrap_or_default(),
        "total_cents": o.take::<i64, _>(3).unwrap_or_default(),
        "created_at": ts(time(&created)),
        "items": items,
        "payment": payment,
    })))
}
