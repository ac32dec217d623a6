//! The outbox event router (`[[cdc.outbox]]`, Kafka transport): an order
//! and its outbox row written in one transaction become exactly one event
//! on `<prefix>.outbox.<aggregatetype>`, keyed by the aggregate id, the
//! payload as value, id and type as headers — also when the service
//! deletes the row in the same transaction, for a row written before
//! `cdc run` first started (through the snapshot), and across a restart of
//! `cdc run`.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};

use crate::cdc::{databases, spawn_cdc, stop_gracefully, until_count};
use crate::support::*;

/// One event as a consumer sees it.
#[derive(Debug, PartialEq)]
pub(crate) struct Event {
    pub key: String,
    pub value: serde_json::Value,
    pub id: String,
    pub kind: String,
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

/// Waits until `slot` has confirmed everything written on `pool` so far:
/// every event before is acknowledged by the broker (a replay after a
/// restart included), so reading the topic to its end sees them all.
pub(crate) async fn until_confirmed(pool: &sqlx::PgPool, slot: &str, log: impl Fn() -> String) {
    let now: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await
        .expect("wal position");
    crate::cdc::until_count(
        pool,
        &format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND confirmed_flush_lsn >= '{now}'::pg_lsn"
        ),
        1,
        log,
    )
    .await;
}

/// Every event on `topic`: each partition read from its start until at
/// least `want` events are in and every partition is at its end (a plain
/// consumer, assigned every partition, no group).
pub(crate) async fn events(brokers: &str, topic: &str, want: usize) -> Vec<Event> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "outbox-reader")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    // The topic is made with its first event.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let partitions = loop {
        let n = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata")
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        if n > 0 {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} was never made"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < want || at_end.len() < partitions {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: {} events of {want}, {} partitions of {partitions} at their end: {out:?}",
            out.len(),
            at_end.len()
        );
        let m = match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                continue;
            }
            Ok(Err(e)) => panic!("{topic}: {e}"),
            Err(_) => continue,
        };
        at_end.remove(&m.partition());
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
    // An order placed before `cdc run` ever started: its outbox row is
    // still in the table and becomes an event through the snapshot.
    place_order(&db.src, 1, false).await;
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
    // The first order has arrived through the snapshot: the slot's
    // consistent point is behind us, and what is written from now on is
    // streamed.
    until_count(&db.dst, "SELECT count(*) FROM orders", 1, || h.cdc_log()).await;
    place_order(&db.src, 2, false).await;
    // The service deletes its outbox row in the same transaction.
    place_order(&db.src, 3, true).await;
    until_count(&db.dst, "SELECT count(*) FROM orders", 3, || h.cdc_log()).await;
    stop_gracefully(&mut cdc);
    let mut cdc = spawn_cdc(&h, &env);
    place_order(&db.src, 4, false).await;
    until_count(&db.dst, "SELECT count(*) FROM orders", 4, || h.cdc_log()).await;
    until_confirmed(&db.src, "strangler", || h.cdc_log()).await;

    let got = events(&broker.bootstrap(), "shop.outbox.order", 4).await;
    let want: Vec<Event> = (1..=4)
        .map(|n: i64| Event {
            key: n.to_string(),
            value: serde_json::json!({"order": n, "total": n * 10}),
            id: String::new(),
            kind: "OrderPlaced".into(),
        })
        .collect();
    assert_eq!(got.len(), 4, "{got:?}\n{}", h.cdc_log());
    for w in &want {
        assert!(
            got.iter().any(|g| g.key == w.key
                && g.value == w.value
                && g.kind == w.kind
                && g.id.len() == 36),
            "no event like {w:?} in {got:?}"
        );
    }
    // Exactly one each (the topic was read to its end): nothing published
    // twice across the restart, and the outbox table's own changes (the
    // delete) are not events.
    let ids: std::collections::HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "{got:?}");
    stop_gracefully(&mut cdc);
}
