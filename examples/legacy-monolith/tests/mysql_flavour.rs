//! The MySQL/MariaDB flavour of the monolith answers exactly as the
//! PostgreSQL one does: the same seed, the same bodies (noise aside), the
//! same errors — on a real MariaDB server and a real PostgreSQL cluster.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use legacy_monolith::seed::SeedArgs;
use serde_json::{json, Value};
use strangler_testkit::{serve_app, MariaDb, PgCluster, Served};

fn args(url: String) -> SeedArgs {
    SeedArgs {
        database_url: url,
        products: 60,
        customers: 12,
        orders: 120,
        seed: 7,
        reset: false,
    }
}

/// A body without the noise every response carries.
fn quiet(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove("generated_at");
        m.remove("request_id");
    }
    v
}

async fn call(
    c: &reqwest::Client,
    s: &Served,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = c.request(method, format!("{}{path}", s.url()));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (
        r.status().as_u16(),
        quiet(r.json().await.unwrap_or(Value::Null)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mysql_flavour_answers_as_the_postgresql_one() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let maria = tokio::task::spawn_blocking(MariaDb::start)
        .await
        .unwrap()
        .unwrap();
    let pg_url = pg.create_database("shop").unwrap();
    let my_url = maria.create_database("shop").unwrap();
    let pg_pool = shop_common::connect(&pg_url, &legacy_monolith::MIGRATOR)
        .await
        .unwrap();
    let my_pool = legacy_monolith::mysql::connect(&my_url).await.unwrap();
    let a = legacy_monolith::seed::seed(&pg_pool, &args(pg_url))
        .await
        .unwrap();
    let b = legacy_monolith::mysql::seed::seed(&my_pool, &args(my_url.clone()))
        .await
        .unwrap();
    assert_eq!(
        (a.products, a.customers, a.orders, a.order_items),
        (b.products, b.customers, b.orders, b.order_items)
    );
    // Seeding twice is refused, as on PostgreSQL.
    assert!(legacy_monolith::mysql::seed::seed(&my_pool, &args(my_url))
        .await
        .is_err());
    let (p, m) = (
        serve_app(legacy_monolith::app(pg_pool)).await,
        serve_app(legacy_monolith::mysql::app(my_pool)).await,
    );
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    use reqwest::Method as M;
    let steps: Vec<(M, &str, Option<Value>)> = vec![
        (M::GET, "/healthz", None),
        (M::GET, "/products?page=2&per_page=7", None),
        (M::GET, "/products/7", None),
        (M::GET, "/products/9999", None),
        (M::GET, "/products/abc", None),
        (M::GET, "/inventory/7", None),
        (M::GET, "/orders/5", None),
        (M::GET, "/customers/3/orders?limit=5", None),
        (M::GET, "/customers/999/orders", None),
        (
            M::POST,
            "/orders",
            Some(
                json!({"customer_id": 3, "items": [{"product_id": 7, "quantity": 1}, {"product_id": 8, "quantity": 2}]}),
            ),
        ),
        (
            M::POST,
            "/orders",
            Some(json!({"customer_id": 3, "items": [{"product_id": 7, "quantity": 1000}]})),
        ),
        (
            M::POST,
            "/orders",
            Some(json!({"customer_id": 3, "items": []})),
        ),
        (M::GET, "/inventory/7", None),
        (
            M::POST,
            "/products",
            Some(json!({"sku": "NEW-1", "title": "New", "price_cents": 100, "on_hand": 5})),
        ),
        (
            M::POST,
            "/products",
            Some(json!({"sku": "NEW-1", "title": "Again", "price_cents": 100})),
        ),
        (M::PUT, "/products/7", Some(json!({"price_cents": 4242}))),
        (M::PUT, "/products/7", Some(json!({"price_cents": -1}))),
        (M::GET, "/no/such/endpoint", None),
    ];
    for (method, path, body) in steps {
        let (sp, mut bp) = call(&c, &p, method.clone(), path, body.clone()).await;
        let (sm, mut bm) = call(&c, &m, method.clone(), path, body).await;
        // Times written now differ between the two processes.
        for b in [&mut bp, &mut bm] {
            if let Some(o) = b.as_object_mut() {
                if method != M::GET {
                    o.remove("created_at");
                    o.remove("updated_at");
                }
            }
        }
        assert_eq!((sp, &bp), (sm, &bm), "{method} {path}");
    }
}
