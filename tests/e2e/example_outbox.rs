//! The example orders service's transactional outbox: `POST /orders` writes
//! an `OrderPlaced` row in the order's transaction, and `strangler cdc run
//! -c examples/orders-outbox.toml` publishes exactly one event per order on
//! `shop.outbox.order` — keyed by the order id, the order as value, the
//! event id and type as headers — for an order placed before `cdc run`
//! first started and across a restart of it.

use crate::cdc::{spawn_cdc, stop_gracefully};
use crate::cdc_outbox::{events, until_confirmed};
use crate::support::*;

/// Places an order for product 1 through the service's API; its id.
async fn order(c: &reqwest::Client, base: &str, quantity: i32) -> i64 {
    let r = c
        .post(format!("{base}/orders"))
        .json(&serde_json::json!({"customer_id": 1, "items": [{"product_id": 1, "quantity": quantity}]}))
        .send()
        .await
        .expect("POST /orders");
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.expect("json");
    body["id"].as_i64().expect("order id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_placed_in_the_orders_service_is_one_event_across_a_restart() {
    let broker = tokio::task::spawn_blocking(strangler_testkit::Broker::start)
        .await
        .expect("join")
        .expect("tansu");
    let pg = tokio::task::spawn_blocking(strangler_testkit::PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let url = pg.create_database("orders").expect("db");
    let pool = shop_common::connect(&url, &orders_service::MIGRATOR)
        .await
        .expect("orders database");
    for sql in [
        "INSERT INTO customers (id, email, name, created_at) VALUES (1, 'a@example.com', 'Ada', now())",
        "INSERT INTO products (id, sku, title, price_cents, updated_at) VALUES (1, 'K-1', 'Kettle', 2599, now())",
        "INSERT INTO inventory (product_id, on_hand) VALUES (1, 100)",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(shop_common::serve(
        listener,
        orders_service::app(pool.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let h = Harness::new();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/orders-outbox.toml"),
    )
    .expect("example");
    h.write_config(&example.replace("127.0.0.1:9092", &broker.bootstrap()));
    let env = [("ORDERS_DATABASE_URL", url.as_str())];
    let c = client();

    // Placed before `cdc run` ever ran: published from the snapshot.
    let first = order(&c, &base, 1).await;
    let mut cdc = spawn_cdc(&h, &env);
    assert_eq!(
        events(&broker.bootstrap(), "shop.outbox.order", 1)
            .await
            .len(),
        1,
        "{}",
        h.cdc_log()
    );
    let second = order(&c, &base, 2).await;
    events(&broker.bootstrap(), "shop.outbox.order", 2).await;
    stop_gracefully(&mut cdc);
    let third = order(&c, &base, 3).await;
    let mut cdc = spawn_cdc(&h, &env);
    events(&broker.bootstrap(), "shop.outbox.order", 3).await;
    until_confirmed(&pool, "strangler_orders_outbox", || h.cdc_log()).await;
    let got = events(&broker.bootstrap(), "shop.outbox.order", 3).await;

    // Exactly one event per order (the topic read to its end).
    let mut keys: Vec<i64> = got.iter().map(|e| e.key.parse().expect("key")).collect();
    keys.sort_unstable();
    assert_eq!(keys, [first, second, third], "{got:?}\n{}", h.cdc_log());
    for e in &got {
        assert_eq!(e.kind, "OrderPlaced");
        assert_eq!(e.id.len(), 36, "{e:?}");
        assert_eq!(
            e.value["id"].as_i64().map(|i| i.to_string()),
            Some(e.key.clone())
        );
        assert_eq!(e.value["customer_id"], 1);
    }
    let ids: std::collections::HashSet<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    // The event carries the order as the service answered it.
    let quantities: Vec<i64> = got
        .iter()
        .map(|e| e.value["items"][0]["quantity"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(quantities.iter().sum::<i64>(), 6, "{got:?}");
    stop_gracefully(&mut cdc);
    let _ = stop.send(());
}
