//! The monolith's HTTP contract, on a real PostgreSQL cluster and a real socket.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeSet;

use legacy_monolith::seed::{seed, SeedArgs};
use legacy_monolith::{app, MIGRATOR};
use serde_json::{json, Value};
use shop_common::connect;
use strangler_testkit::{serve_app, PgCluster, Served};

struct Shop {
    pg: PgCluster,
    pool: sqlx::PgPool,
    http: Served,
    c: reqwest::Client,
}

/// A cluster, a seeded database (50 products, 10 customers, 100 orders) and the API on a socket.
async fn shop() -> Shop {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = pg.create_database("shop").unwrap();
    let pool = connect(&url, &MIGRATOR).await.unwrap();
    let args = SeedArgs {
        database_url: url,
        products: 50,
        customers: 10,
        orders: 100,
        seed: 7,
        reset: false,
    };
    seed(&pool, &args).await.unwrap();
    let http = serve_app(app(pool.clone())).await;
    Shop {
        pg,
        pool,
        http,
        c: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

impl Shop {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .c
            .get(format!("{}{path}", self.http.url()))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .c
            .request(method, format!("{}{path}", self.http.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
    async fn raw(&self, method: reqwest::Method, path: &str, body: &'static str) -> (u16, Value) {
        let r = self
            .c
            .request(method, format!("{}{path}", self.http.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

fn assert_error(status: u16, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "JSON error body: {body}"
    );
}

#[tokio::test]
async fn products_read_with_noise_and_legacy_habits() {
    let s = shop().await;
    let r =
        s.c.get(format!("{}/products/1", s.http.url()))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("date"), "a Date header");
    let p: Value = r.json().await.unwrap();
    let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "description",
            "generated_at",
            "id",
            "price_cents",
            "request_id",
            "sku",
            "title",
            "updated_at"
        ]
        .into(),
        "internal_notes never leaves the database"
    );
    assert_eq!(p["sku"], "SKU-000001");
    let (_, again) = s.get("/products/1").await;
    assert_ne!(
        p["request_id"], again["request_id"],
        "a fresh request_id per response"
    );
    // NULL descriptions are shown as "".
    let null_id: i64 =
        sqlx::query_scalar("SELECT id FROM products WHERE description IS NULL ORDER BY id LIMIT 1")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    let (_, p) = s.get(&format!("/products/{null_id}")).await;
    assert_eq!(p["description"], "");

    let (status, page) = s.get("/products?page=2&per_page=10").await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (11..=20).collect::<Vec<_>>());
    assert_eq!(
        (page["total"].as_i64(), page["page"].as_i64()),
        (Some(50), Some(2))
    );

    let (status, inv) = s.get("/inventory/3").await;
    assert_eq!(status, 200);
    assert_eq!(
        inv["available"].as_i64().unwrap(),
        inv["on_hand"].as_i64().unwrap() - inv["reserved"].as_i64().unwrap()
    );
    let (status, health) = s.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn products_write_and_reject_bad_input() {
    let s = shop().await;
    use reqwest::Method as M;
    let (status, p) = s
        .send(M::POST, "/products", json!({"sku": "NEW-1", "title": "Teapot", "price_cents": 1500, "on_hand": 5, "internal_notes": "x"}))
        .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_i64().unwrap();
    assert_eq!(p["description"], "");
    let (_, inv) = s.get(&format!("/inventory/{id}")).await;
    assert_eq!(inv["on_hand"], 5);
    let (status, body) = s
        .send(
            M::POST,
            "/products",
            json!({"sku": "NEW-1", "title": "Again", "price_cents": 1}),
        )
        .await;
    assert_error(status, &body, 409);
    let (status, body) = s
        .send(
            M::POST,
            "/products",
            json!({"sku": "NEW-2", "title": "Bad", "price_cents": -1}),
        )
        .await;
    assert_error(status, &body, 422);
    let (status, body) = s
        .send(
            M::POST,
            "/products",
            json!({"sku": "NEW-3", "price_cents": 1}),
        )
        .await;
    assert_error(status, &body, 422);
    let (status, body) = s.raw(M::POST, "/products", "{not json").await;
    assert_error(status, &body, 400);

    let before: Value = s.get("/products/2").await.1;
    let (status, after) = s
        .send(
            M::PUT,
            "/products/2",
            json!({"title": "Renamed", "price_cents": 999}),
        )
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        (after["title"].as_str(), after["price_cents"].as_i64()),
        (Some("Renamed"), Some(999))
    );
    assert_eq!(after["sku"], before["sku"]);
    assert_ne!(after["updated_at"], before["updated_at"]);
    let (status, body) = s
        .send(M::PUT, "/products/9999", json!({"title": "x"}))
        .await;
    assert_error(status, &body, 404);
    let (status, body) = s.send(M::PUT, "/products/2", json!({"title": ""})).await;
    assert_error(status, &body, 422);
    let (status, body) = s
        .send(M::PUT, "/products/2", json!({"colour": "red"}))
        .await;
    assert_error(status, &body, 422);

    for path in [
        "/products/abc",
        "/products/0",
        "/inventory/-1",
        "/orders/x",
        "/customers/1.5/orders",
        "/products?per_page=1000",
        "/products?page=0",
    ] {
        let (status, body) = s.get(path).await;
        assert_error(status, &body, 400);
    }
    for path in [
        "/products/9999",
        "/inventory/9999",
        "/orders/999999",
        "/customers/9999/orders",
        "/no/such/thing",
    ] {
        let (status, body) = s.get(path).await;
        assert_error(status, &body, 404);
    }
}

#[tokio::test]
async fn an_order_reserves_stock_and_records_the_payment_in_one_transaction() {
    let s = shop().await;
    use reqwest::Method as M;
    sqlx::query("UPDATE inventory SET on_hand = 10, reserved = 0 WHERE product_id IN (4, 5)")
        .execute(&s.pool)
        .await
        .unwrap();
    let (status, o) = s
        .send(M::POST, "/orders", json!({"customer_id": 3, "items": [{"product_id": 4, "quantity": 2}, {"product_id": 5, "quantity": 1}]}))
        .await;
    assert_eq!(status, 201, "{o}");
    let price = |id: i64| {
        let pool = s.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT price_cents FROM products WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let total = 2 * price(4).await + price(5).await;
    assert_eq!(o["total_cents"].as_i64(), Some(total));
    assert_eq!(o["payment"]["amount_cents"].as_i64(), Some(total));
    assert_eq!(o["items"].as_array().unwrap().len(), 2);
    assert_eq!(s.get("/inventory/4").await.1["reserved"], 2);
    let id = o["id"].as_i64().unwrap();
    let (status, again) = s.get(&format!("/orders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(again["items"], o["items"]);
    let (_, mine) = s.get("/customers/3/orders").await;
    assert_eq!(mine["orders"][0]["id"].as_i64(), Some(id), "newest first");

    // Short stock: 409, and nothing at all is written.
    let orders_before: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    let (status, body) = s
        .send(M::POST, "/orders", json!({"customer_id": 3, "items": [{"product_id": 5, "quantity": 1}, {"product_id": 4, "quantity": 9}]}))
        .await;
    assert_error(status, &body, 409);
    assert_eq!(body["error"]["code"], "insufficient_stock");
    assert_eq!(
        s.get("/inventory/5").await.1["reserved"],
        1,
        "no partial reservation"
    );
    let orders_after: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(orders_before, orders_after);

    let (status, body) = s
        .send(
            M::POST,
            "/orders",
            json!({"customer_id": 999, "items": [{"product_id": 4, "quantity": 1}]}),
        )
        .await;
    assert_error(status, &body, 404);
    let (status, body) = s
        .send(
            M::POST,
            "/orders",
            json!({"customer_id": 3, "items": [{"product_id": 999, "quantity": 1}]}),
        )
        .await;
    assert_error(status, &body, 404);
    let (status, body) = s
        .send(
            M::POST,
            "/orders",
            json!({"customer_id": 3, "items": [{"product_id": 4, "quantity": 0}]}),
        )
        .await;
    assert_error(status, &body, 422);
    let (status, body) = s
        .send(M::POST, "/orders", json!({"customer_id": 3, "items": []}))
        .await;
    assert_error(status, &body, 422);
    let (status, body) = s
        .send(
            M::POST,
            "/orders",
            json!({"customer_id": "three", "items": []}),
        )
        .await;
    assert_error(status, &body, 422);
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let s = shop().await;
    sqlx::query("UPDATE inventory SET on_hand = 10, reserved = 0 WHERE product_id = 7")
        .execute(&s.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE inventory SET on_hand = 100, reserved = 0 WHERE product_id IN (8, 9, 10)")
        .execute(&s.pool)
        .await
        .unwrap();
    let results = futures::future::join_all((0..40).map(|i| {
        let (c, url) = (s.c.clone(), format!("{}/orders", s.http.url()));
        async move {
            let body = json!({"customer_id": 1 + i % 10, "items": [{"product_id": 7, "quantity": 1}, {"product_id": 8 + i % 3, "quantity": 1}]});
            c.post(url).json(&body).send().await.unwrap().status().as_u16()
        }
    }))
    .await;
    let created = results.iter().filter(|s| **s == 201).count();
    let refused = results.iter().filter(|s| **s == 409).count();
    let (status, inv) = s.get("/inventory/7").await;
    assert_eq!(status, 200);
    assert_eq!(inv["reserved"], 10, "exactly the stock is reserved");
    assert_eq!(created + refused, 40, "{results:?}");
    assert_eq!(created, 10, "10 items in stock, 10 orders");
    let lines: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(quantity), 0)::bigint FROM order_items WHERE product_id = 7 AND order_id > 100")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(lines, 10);
    drop(s.pg);
}

#[tokio::test]
async fn seeding_is_deterministic_and_refuses_a_full_database() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let mut sums = Vec::new();
    for db in ["a", "b"] {
        let url = pg.create_database(db).unwrap();
        let pool = connect(&url, &MIGRATOR).await.unwrap();
        let args = SeedArgs {
            database_url: url,
            products: 2_000,
            customers: 200,
            orders: 5_000,
            seed: 42,
            reset: false,
        };
        let seeded = seed(&pool, &args).await.unwrap();
        assert!(
            seeded.orders > 4_000 && seeded.order_items >= seeded.orders,
            "{seeded:?}"
        );
        let again = seed(&pool, &args).await.unwrap_err().to_string();
        assert!(again.contains("--reset"), "{again}");
        seed(
            &pool,
            &SeedArgs {
                reset: true,
                ..args
            },
        )
        .await
        .unwrap();
        let sum: String = sqlx::query_scalar(
            "SELECT md5(string_agg(t, ',' ORDER BY t)) FROM ( \
               SELECT concat_ws('|', id, sku, title, description, price_cents, internal_notes, updated_at) AS t FROM products \
               UNION ALL SELECT concat_ws('|', o.id, customer_id, status, total_cents, created_at) FROM orders o \
               UNION ALL SELECT concat_ws('|', product_id, on_hand, reserved) FROM inventory) x",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let oversold: i64 =
            sqlx::query_scalar("SELECT count(*) FROM inventory WHERE reserved > on_hand")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(oversold, 0);
        sums.push(sum);
    }
    assert_eq!(sums[0], sums[1], "same seed, same data");
}
