//! The initial snapshot through Kafka, killed between tables, resumes: the
//! state store records where it stands, so the tables already published
//! are not published again and the unfinished one is copied in chunks while
//! the stream replays what changed since the slot's consistent point.
//! Sink workers, started afterwards, apply each row of the finished tables
//! once.

use std::time::Duration;

use crate::cdc::{cli_env, spawn_cdc_with};
use crate::cdc_chunked::{restart_and_resume, three_tables};
use crate::support::{eventually, Harness};

/// Tables `cdc status` shows as published by the initial snapshot.
fn published(h: &Harness, env: &[(&str, &str)]) -> (Option<bool>, Vec<String>) {
    let (_, out, _) = cli_env(&["cdc", "status", "--json"], h, env);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let p = &status["published_snapshot"];
    let tables = p["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "published")
        .filter_map(|t| t["table"].as_str().map(String::from))
        .collect();
    (p["complete"].as_bool(), tables)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_snapshot_to_kafka_killed_between_tables_resumes_without_publishing_them_again()
{
    let broker = tokio::task::spawn_blocking(strangler_testkit::Broker::start)
        .await
        .expect("join")
        .expect("tansu");
    let db = three_tables().await;
    // More rows in orders: the lock below comes well before the snapshot
    // reaches items.
    sqlx::query("INSERT INTO orders (n, note) SELECT g, 'more' FROM generate_series(1, 30000) g")
        .execute(&db.src)
        .await
        .expect("rows");
    let h = Harness::new();
    let mut tables = String::new();
    for t in ["ledger", "orders", "items"] {
        tables += &format!("[[cdc.sinks.tables]]\nsource = \"public.{t}\"\n");
    }
    h.write_config(&format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\", \"public.orders\", \"public.items\"]\nsnapshot_chunk_rows = 5000\n\n[cdc.transport]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"shop\"\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n{tables}",
        broker.bootstrap()
    ));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    // The publishing side alone is killed: a sink worker killed with it
    // would stay a member of its group on tansu for minutes.
    let mut cdc = spawn_cdc_with(&h, &env, &["--source-only"]);
    // The snapshot reads the tables in order on one connection. Once the
    // slot (and its snapshot) exists, items is locked: its read waits, so
    // the kill always lands after the other two tables. (The lock takes a
    // transaction id, so taken earlier it would hold back the slot.)
    let slot = eventually(Duration::from_secs(60), || async {
        crate::cdc_faults::count(&db.src, "SELECT count(*) FROM pg_replication_slots").await == 1
    })
    .await;
    assert!(slot.is_some(), "{}", log());
    let mut hold = db.src.begin().await.expect("begin");
    sqlx::query("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .expect("lock");
    let two_done = eventually(Duration::from_secs(120), || async {
        published(&h, &env).1.len() == 2
    })
    .await;
    assert!(two_done.is_some(), "{}", log());
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    let (complete, mut tables) = published(&h, &env);
    tables.sort();
    assert_eq!(
        (complete, tables),
        (
            Some(false),
            vec!["public.ledger".to_string(), "public.orders".to_string()]
        ),
        "{}",
        log()
    );
    hold.rollback().await.expect("unlock");
    let _cdc = restart_and_resume(&h, &env, &db.src).await;
    assert_eq!(published(&h, &env).0, Some(true), "{}", log());
    // The finished tables were published once: the ledger's topic holds
    // each of its 2,000 rows as a snapshot read exactly once.
    let ops = topic_ops(&broker.bootstrap(), "shop.public.ledger");
    assert_eq!(ops.get("r"), Some(&2_000), "{ops:?}\n{}", log());
}

/// How many messages of each op `topic` holds, read from the start of
/// every partition to its end ("-" for tombstones).
fn topic_ops(brokers: &str, topic: &str) -> std::collections::BTreeMap<String, usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::types::RDKafkaErrorCode;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-topic-ops")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut ops = std::collections::BTreeMap::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: no end in sight"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let op = m
                    .payload()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| v["op"].as_str().map(String::from))
                    .unwrap_or_else(|| "-".into());
                *ops.entry(op).or_insert(0) += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) => {}
            Some(Err(e)) => panic!("{topic}: {e}"),
            None => {}
        }
    }
    ops
}
