//! The outbox event router (`[[cdc.outbox]]`, Kafka transport): an order
//! and its outbox row written in one transaction become exactly one event
//! on `<prefix>.outbox.<aggregatetype>`, keyed by the aggregate id, the
//! payload as value, id and type as headers — also when the service
//! deletes the row in the same transaction, and across a restart of
//! `cdc run`.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

use crate::cdc::{databases, spawn_cdc, stop_gracefully, until_count};
use crate::support::*;

/// One event as a consumer sees it.
#[derive(Debug, PartialEq)]
struct Event {
    key: String,
    value: serde_json::Value,
    id: String,
    kind: String,
}

async fn place_order(src: &sqlx::PgPool, order: i64, delete_outbox_row: bool) {
    let mut tx = src.begin().await.expect("begin");
    sqlx::query("INSERT INTO orders (id, total) VALUES ($1, $2)")
        .bind(order)
        .bind(order * 10)
        .execute(&mut *tx)
        .await
        .expect("order");
    sqlx::query(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
         VALUES (md5($1::text)::uuid, 'order', $1::text, 'OrderPlaced', jsonb_build_object('order', $1, 'total', $1 * 10))",
    )
    .bind(order)
    .execute(&mut *tx)
    .await
    .expect("outbox");
    if delete_outbox_row {
        sqlx::query("DELETE FROM outbox WHERE aggregateid = $1::text")
            .bind(order)
            .execute(&mut *tx)
            .await
            .expect("delete");
    }
    tx.commit().await.expect("commit");
}

/// Every event on `topic` (its partitions read to their high watermarks).
async fn events(brokers: &str, topic: &str, want: usize) -> Vec<Event> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("outbox-reader-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < want && std::time::Instant::now() < deadline {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
        else {
            continue;
        };
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|x| x.key == name))
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        out.push(Event {
            key: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            value: m
                .payload()
                .and_then(|p| serde_json::from_slice(p).ok())
                .unwrap_or_default(),
            id: header("id"),
            kind: header("type"),
        });
    }
    out
}

/// How many messages `topic` holds (the high watermarks, summed).
fn messages_in(brokers: &str, topic: &str) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map(|(low, high)| high - low)
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_gives_exactly_one_outbox_event_with_its_key_and_headers_across_a_restart() {
    let broker = tokio::task::spawn_blocking(strangler_testkit::Broker::start)
        .await
        .expect("join")
        .expect("tansu");
    let db = databases().await;
    for sql in [
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, total BIGINT NOT NULL)",
        "CREATE TABLE outbox (id UUID PRIMARY KEY, aggregatetype TEXT NOT NULL, aggregateid TEXT NOT NULL, type TEXT NOT NULL, payload JSONB NOT NULL)",
    ] {
        sqlx::query(sql).execute(&db.src).await.expect(sql);
    }
    sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY, total BIGINT NOT NULL)")
        .execute(&db.dst)
        .await
        .expect("target");
    let h = Harness::new();
    h.write_config(&format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.orders\", \"public.outbox\"]\n\n\
         [cdc.transport]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"shop\"\n\n\
         [[cdc.outbox]]\ntable = \"public.outbox\"\n\n\
         [[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.orders\"\n",
        broker.bootstrap()
    ));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let mut cdc = spawn_cdc(&h, &env);
    until_count(
        &db.src,
        "SELECT count(*) FROM pg_replication_slots WHERE active",
        1,
        || h.cdc_log(),
    )
    .await;
    place_order(&db.src, 1, false).await;
    // The service deletes its outbox row in the same transaction.
    place_order(&db.src, 2, true).await;
    until_count(&db.dst, "SELECT count(*) FROM orders", 2, || h.cdc_log()).await;
    stop_gracefully(&mut cdc);
    let mut cdc = spawn_cdc(&h, &env);
    place_order(&db.src, 3, false).await;
    until_count(&db.dst, "SELECT count(*) FROM orders", 3, || h.cdc_log()).await;

    let got = events(&broker.bootstrap(), "shop.outbox.order", 3).await;
    let want: Vec<Event> = (1..=3)
        .map(|n: i64| Event {
            key: n.to_string(),
            value: serde_json::json!({"order": n, "total": n * 10}),
            id: String::new(),
            kind: "OrderPlaced".into(),
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:?}\n{}", h.cdc_log());
    for w in &want {
        assert!(
            got.iter().any(|g| g.key == w.key
                && g.value == w.value
                && g.kind == w.kind
                && g.id.len() == 36),
            "no event like {w:?} in {got:?}"
        );
    }
    // Exactly one each: nothing published twice across the restart, and
    // the outbox table's own changes (the delete) are not on any topic.
    assert_eq!(messages_in(&broker.bootstrap(), "shop.outbox.order"), 3);
    let ids: std::collections::HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{got:?}");
    stop_gracefully(&mut cdc);
}
