//! `legacy-monolith seed --mysql`: the same rows as the PostgreSQL seed
//! ([`crate::seed::generate`]), written in multi-row `INSERT`s.

use std::time::Instant;

use anyhow::bail;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, TxOpts, Value};

use super::mysql_time;
use crate::seed::{generate, SeedArgs, Seeded};

/// Rows per `INSERT` statement.
const ROWS: usize = 1_000;

/// Inserts `rows` (each a list of values for `columns`) into `table`.
async fn insert(
    tx: &mut mysql_async::Transaction<'_>,
    table: &str,
    columns: &str,
    rows: Vec<Vec<Value>>,
) -> anyhow::Result<()> {
    for chunk in rows.chunks(ROWS) {
        let width = chunk.first().map_or(0, Vec::len);
        let one = format!("({})", vec!["?"; width].join(", "));
        let sql = format!(
            "INSERT INTO {table} ({columns}) VALUES {}",
            vec![one; chunk.len()].join(", ")
        );
        let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
        tx.exec_drop(sql, params).await?;
    }
    Ok(())
}

/// Fills the (empty, or `reset`) MySQL database.
pub async fn seed(pool: &Pool, args: &SeedArgs) -> anyhow::Result<Seeded> {
    let start = Instant::now();
    let mut c = pool.get_conn().await?;
    let existing: i64 = c
        .query_first("SELECT (SELECT COUNT(*) FROM products) + (SELECT COUNT(*) FROM customers)")
        .await?
        .unwrap_or(0);
    if existing > 0 && !args.reset {
        bail!("the database already has {existing} products and customers; pass --reset to replace them");
    }
    if args.reset {
        c.query_drop("SET FOREIGN_KEY_CHECKS = 0").await?;
        for t in [
            "payments",
            "order_items",
            "orders",
            "inventory",
            "products",
            "customers",
        ] {
            c.query_drop(format!("TRUNCATE TABLE {t}")).await?;
        }
        c.query_drop("SET FOREIGN_KEY_CHECKS = 1").await?;
    }
    let d = generate(args)?;
    let t = |v: &chrono::DateTime<chrono::Utc>| Value::from(mysql_time(*v));
    let mut tx = c.start_transaction(TxOpts::default()).await?;
    insert(
        &mut tx,
        "customers",
        "id, email, name, created_at",
        (0..d.customer_ids.len())
            .map(|i| {
                vec![
                    d.customer_ids[i].into(),
                    d.emails[i].clone().into(),
                    d.names[i].clone().into(),
                    t(&d.customers_created[i]),
                ]
            })
            .collect(),
    )
    .await?;
    insert(
        &mut tx,
        "products",
        "id, sku, title, description, price_cents, internal_notes, updated_at",
        (0..d.product_ids.len())
            .map(|i| {
                vec![
                    d.product_ids[i].into(),
                    d.skus[i].clone().into(),
                    d.titles[i].clone().into(),
                    d.descriptions[i].clone().into(),
                    d.prices[i].into(),
                    d.notes[i].clone().into(),
                    t(&d.updated[i]),
                ]
            })
            .collect(),
    )
    .await?;
    insert(
        &mut tx,
        "inventory",
        "product_id, on_hand, reserved",
        (0..d.product_ids.len())
            .map(|i| {
                vec![
                    d.product_ids[i].into(),
                    d.on_hand[i].into(),
                    d.reserved[i].into(),
                ]
            })
            .collect(),
    )
    .await?;
    insert(
        &mut tx,
        "orders",
        "id, customer_id, status, total_cents, created_at",
        (0..d.order_ids.len())
            .map(|i| {
                vec![
                    d.order_ids[i].into(),
                    d.order_customers[i].into(),
                    d.order_status[i].clone().into(),
                    d.order_totals[i].into(),
                    t(&d.order_created[i]),
                ]
            })
            .collect(),
    )
    .await?;
    insert(
        &mut tx,
        "payments",
        "order_id, amount_cents, method, status, created_at",
        (0..d.order_ids.len())
            .map(|i| {
                vec![
                    d.order_ids[i].into(),
                    d.order_totals[i].into(),
                    "card".into(),
                    "captured".into(),
                    t(&d.order_created[i]),
                ]
            })
            .collect(),
    )
    .await?;
    insert(
        &mut tx,
        "order_items",
        "order_id, line_no, product_id, quantity, unit_price_cents",
        (0..d.item_order.len())
            .map(|i| {
                vec![
                    d.item_order[i].into(),
                    d.item_line[i].into(),
                    d.item_product[i].into(),
                    d.item_qty[i].into(),
                    d.item_price[i].into(),
                ]
            })
            .collect(),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        elapsed_ms = start.elapsed().as_millis() as u64,
        "seeded (MySQL)"
    );
    Ok(d.counts())
}
