//! The Kafka transport under broker faults (rdkafka's mock cluster).

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use serde_json::json;
use strangler_cdc::event::Record;
use strangler_cdc::lsn::Lsn;
use strangler_cdc::transport::kafka::KafkaProducer;

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            topic: "shop.public.ledger".into(),
            table: "public.ledger".into(),
            key: Some(json!({"id": i})),
            value: Some(json!({"op": "c", "after": {"id": i}})),
            commit_lsn: Lsn(1),
            seq: i as u32,
            exact: None,
            schemas: None,
            shape: None,
        })
        .collect()
}

/// While the broker is down, `publish` does not return (so the slot is not
/// confirmed); when it is back, everything is delivered, once.
#[tokio::test]
async fn publish_waits_for_a_broker_that_is_down_and_loses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("shop.public.ledger", 3, 1).unwrap();
    let producer = KafkaProducer::new(&cluster.bootstrap_servers(), 3).unwrap();
    producer.publish(&records(10)).await.unwrap();

    cluster.broker_down(1).unwrap();
    let p = std::sync::Arc::new(producer);
    let task = {
        let p = p.clone();
        tokio::spawn(async move { p.publish(&records(50)).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !task.is_finished(),
        "publish returned while the broker was down"
    );
    cluster.broker_up(1).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["shop.public.ledger"]).unwrap();
    let mut n = 0;
    while n < 60 {
        let m = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(m.key().is_some());
        n += 1;
    }
    // Nothing more: the idempotent producer did not duplicate on retry.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), consumer.recv())
            .await
            .is_err(),
        "a duplicate was delivered"
    );
}
