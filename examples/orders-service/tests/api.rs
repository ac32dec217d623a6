//! The orders service on its own database and its synced copies.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use serde_json::{json, Value};
use shop_common::connect;
use strangler_testkit::{serve_app, PgCluster, Served};

async fn orders() -> (PgCluster, sqlx::PgPool, Served) {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = pg.create_database("orders").unwrap();
    let pool = connect(&url, &orders_service::MIGRATOR).await.unwrap();
    // The synced copies CDC keeps.
    for sql in [
        "INSERT INTO customers SELECT i, 'c' || i || '@example.com', 'Customer ' || i, now() FROM generate_series(1, 5) i",
        "INSERT INTO products SELECT i, 'SKU-' || i, 'Item ' || i, 1000 + i, now() FROM generate_series(1, 5) i",
        "INSERT INTO inventory SELECT i, 10, 0 FROM generate_series(1, 5) i",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let http = serve_app(orders_service::app(pool.clone())).await;
    (pg, pool, http)
}

#[tokio::test]
async fn orders_are_placed_on_the_services_own_database() {
    let (_pg, pool, http) = orders().await;
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .post(format!("{}/orders", http.url()))
        .json(&json!({"customer_id": 2, "items": [{"product_id": 3, "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let o: Value = r.json().await.unwrap();
    let id = o["id"].as_i64().unwrap();
    assert!(
        id >= 1_000_000_000,
        "ids never collide with the monolith's: {id}"
    );
    assert_eq!(o["total_cents"], 2 * 1003);
    let reserved: i32 = sqlx::query_scalar("SELECT reserved FROM inventory WHERE product_id = 3")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reserved, 2);
    let mine: Value = c
        .get(format!("{}/customers/2/orders", http.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["orders"][0]["id"], id);
    let got: Value = c
        .get(format!("{}/orders/{id}", http.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["payment"]["status"], "authorized");
    let r = c
        .post(format!("{}/orders", http.url()))
        .json(&json!({"customer_id": 2, "items": [{"product_id": 3, "quantity": 9}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .get(format!("{}/products/1", http.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the orders service serves no products");
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let (_pg, pool, http) = orders().await;
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let statuses = futures::future::join_all((0..30).map(|i| {
        let (c, url) = (c.clone(), format!("{}/orders", http.url()));
        async move {
            c.post(url)
                .json(
                    &json!({"customer_id": 1 + i % 5, "items": [{"product_id": 1, "quantity": 1}]}),
                )
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 20);
    let reserved: i32 = sqlx::query_scalar("SELECT reserved FROM inventory WHERE product_id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reserved, 10);
}
