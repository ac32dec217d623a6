//! The catalog service's contract, including its deliberate difference.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use serde_json::{json, Value};
use shop_common::connect;
use strangler_testkit::{serve_app, PgCluster, Served};

async fn catalog() -> (PgCluster, sqlx::PgPool, Served) {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = pg.create_database("catalog").unwrap();
    let pool = connect(&url, &catalog_service::MIGRATOR).await.unwrap();
    // What CDC would have copied from the monolith (title → name, price_cents → price).
    sqlx::query(
        "INSERT INTO catalog_items (id, sku, name, description, price, updated_at) \
         SELECT i, 'SKU-' || lpad(i::text, 6, '0'), 'Item ' || i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'About item ' || i END, \
                100 * i + 99, timestamptz '2024-01-01 00:00:00+00' + i * interval '37 seconds' \
         FROM generate_series(1, 30) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    let http = serve_app(catalog_service::app(pool.clone())).await;
    (pg, pool, http)
}

#[tokio::test]
async fn same_external_api_as_the_monolith() {
    let (_pg, _pool, http) = catalog().await;
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let p: Value = c
        .get(format!("{}/products/3", http.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["title"], "Item 3");
    assert_eq!(p["price_cents"], 399);
    assert_eq!(p["description"], "About item 3");
    assert_eq!(p["updated_at"], "2024-01-01T00:01:51.000000Z");
    assert!(p["generated_at"].is_string() && p["request_id"].is_string());
    let page: Value = c
        .get(format!("{}/products?page=2&per_page=10", http.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["id"], 11);
    assert_eq!(page["total"], 30);
    let r = c
        .put(format!("{}/products/3", http.url()))
        .json(&json!({"title": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["title"], "Renamed");
    for (path, status) in [
        ("/products/abc", 400),
        ("/products/999", 404),
        ("/orders/1", 404),
    ] {
        let r = c.get(format!("{}{path}", http.url())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string());
    }
    let r = c
        .put(format!("{}/products/3", http.url()))
        .json(&json!({"price_cents": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

/// The documented difference shadow comparison must find: a missing
/// description is `null` here and `""` in the monolith.
#[tokio::test]
async fn missing_description_is_null_not_empty() {
    let (_pg, _pool, http) = catalog().await;
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let p: Value = c
        .get(format!("{}/products/5", http.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["description"], Value::Null);
}
