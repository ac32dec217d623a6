//! Type fidelity: every common PostgreSQL type arrives exactly, through the
//! snapshot and the stream, embedded and through Kafka.
//!
//! One table per family, the same schema on both sides. Rows exist before
//! the snapshot; while streaming, rows are inserted, updated (a TOASTed
//! value left unchanged among them), re-keyed and deleted. The outcome is
//! compared column by column as `col::text`, and `verify` must be clean.
//! The Kafka runs also read the topics as a Debezium consumer would and
//! check the representation of every type against `cdc-sync/TYPES.md`.
//!
//! (Longer than 400 lines on purpose: the matrix's schema, rows, changes and
//! its three runs share one set of fixtures and read best together.)

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, Row};
use strangler_cdc::pipeline::{self, NoStatus, Start};
use strangler_cdc::sink::{Sink, Sinks, TargetTable};
use strangler_cdc::source::SourceConfig;
use strangler_cdc::transport::kafka::{self, KafkaDestination, KafkaProducer};
use strangler_cdc::types::{
    BinaryHandling, DecimalHandling, EventFormat, IntervalHandling, TimePrecision,
};
use strangler_cdc::verify;
use strangler_config::{TableMapping, TableName};
use strangler_testkit::{Broker, PgCluster};
use tokio::sync::oneshot;

/// Run on both sides.
const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy "quoted"');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE DOMAIN money2 AS numeric(12,2);
CREATE TABLE t_num (id int PRIMARY KEY, b boolean, i2 int2, i4 int4, i8 int8, n numeric,
    n2 numeric(10,2), f4 real, f8 double precision, dn money2, dp positive_int);
CREATE TABLE t_text (id int PRIMARY KEY, t text, vc varchar(10), c char(5), by bytea, u uuid,
    j json, jb jsonb, e mood, big text);
CREATE TABLE t_time (id int PRIMARY KEY, d date, t time, t3 time(3), tz timetz, ts timestamp,
    ts3 timestamp(3), tstz timestamptz, iv interval);
CREATE TABLE t_arr (id int PRIMARY KEY, ip inet, net cidr, mac macaddr, ai int[], at text[],
    a2 int[][], an numeric(10,2)[], ae mood[], ats timestamptz[], ab bytea[]);
CREATE TABLE t_keys (n numeric(10,2), ts timestamptz, v text, PRIMARY KEY (n, ts));
"#;

const TABLES: [&str; 5] = ["t_num", "t_text", "t_time", "t_arr", "t_keys"];

/// Rows for ids `base + 1 …`: typical values, edge values, all NULL.
fn rows(base: i32) -> Vec<String> {
    let id = |i: i32| base + i;
    vec![
        format!("INSERT INTO t_num VALUES
            ({}, true, 1, 2, 3, 12.34, 12.34, 1.5, 2.25, 1.10, 7),
            ({}, false, -32768, -2147483648, -9223372036854775808, -0.000001, -99999999.99, 'NaN', 'NaN', -5.00, 1),
            ({}, true, 32767, 2147483647, 9223372036854775807, 'NaN', 0, 'Infinity', '-Infinity', 0, 2147483647),
            ({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            ({}, false, 0, 0, 0, 123456789012345678901234567890.123456789, 0.01, 3.4028235e38, 1.7976931348623157e308, 99.99, 1),
            ({}, true, 0, 0, 0, '-Infinity', 'NaN', 1e-45, 5e-324, -0.01, 1)",
            id(1), id(2), id(3), id(4), id(5), id(6)),
        format!(r#"INSERT INTO t_text VALUES
            ({}, 'plain', 'short', 'ab', '\x00ff0a', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"a": [1, 2]}}', '{{"b": {{"c": null}}}}', 'happy "quoted"', NULL),
            ({}, E'quote '' double " back \\ newline \n tab \t cr \r', '', '', '\x', NULL, '[]', '"s"', 'sad', NULL),
            ({}, '😀 emoji ünïcode', 'ten chars!', 'abcde', decode(repeat('ab', 3000), 'hex'), NULL, '  {{"spaced" : 1}}  ', '{{"k": "v\u00e9"}}', 'ok',
                (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g)),
            ({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            ({}, '', NULL, ' ', '\x5c', NULL, 'null', 'null', NULL, '')"#,
            id(1), id(2), id(3), id(4), id(5)),
        format!("INSERT INTO t_time VALUES
            ({}, '2024-02-29', '13:45:30.123456', '13:45:30.123', '10:00:00+02', '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.123', '2024-02-29 13:45:30.123456+00', '1 year 2 mons 3 days 04:05:06.78'),
            ({}, '0001-01-01 BC', '00:00:00', '23:59:59.999', '23:59:59.999999-14:59', '0001-01-01 00:00:00 BC', '4713-01-01 00:00:00 BC', '0001-01-01 00:00:00+00 BC', '-1 days'),
            ({}, 'infinity', '24:00:00', '00:00:00', '00:00:00+00', 'infinity', '-infinity', 'infinity', '-1 years -2 mons +3 days -04:05:06'),
            ({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            ({}, '-infinity', '00:00:00.000001', '12:00:00.5', '12:00:00.5+05:30', '10000-01-01 00:00:00', '1999-12-31 23:59:59.999', '-infinity', '00:00:00.000001'),
            ({}, '5874897-12-31', '12:00', '12:00', '12:00-00:00:01', '294276-12-31 23:59:59.999999', '1970-01-01 00:00:00', '294276-12-31 23:59:59.999999+00', '178000000 years')",
            id(1), id(2), id(3), id(4), id(5), id(6)),
        format!(r#"INSERT INTO t_arr VALUES
            ({}, '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '{{1,2,3}}', '{{"a,b","c\"d",NULL,""}}', '{{{{1,2}},{{3,4}}}}', '{{1.10,NULL}}', '{{sad,"happy \"quoted\""}}', '{{"2024-01-01 00:00:00+00"}}', '{{"\\x00ff",NULL}}'),
            ({}, '::1', '2001:db8::/32', '00:00:00:00:00:00', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}'),
            ({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            ({}, '10.1.2.3', '192.168.0.0/16', 'ff:ff:ff:ff:ff:ff', '[0:1]={{7,8}}', '{{NULL}}', '{{{{NULL,1}},{{2,NULL}}}}', '{{NaN}}', '{{ok}}', '{{infinity,NULL}}', '{{"\\x"}}')"#,
            id(1), id(2), id(3), id(4)),
        format!("INSERT INTO t_keys VALUES
            ({}.25, '2024-01-01 00:00:00+00', 'a'), ({}.50, '0044-03-15 12:00:00+00 BC', 'b'), ({}.75, 'infinity', 'c')",
            id(1), id(2), id(3)),
    ]
}

/// What happens while streaming: new rows, updates (the TOASTed `big`
/// of t_text 3 unchanged), a key change, deletes.
fn changes() -> Vec<String> {
    let mut sql = rows(100);
    sql.extend(
        [
            "UPDATE t_num SET b = NOT b, n2 = n2 + 1, f4 = f4 * 2 WHERE id IN (1, 101)",
            "UPDATE t_text SET t = 'changed', jb = '{\"new\": true}' WHERE id IN (3, 103)",
            "UPDATE t_time SET iv = iv + '1 mon', tz = '01:02:03+04' WHERE id IN (1, 2, 102)",
            "UPDATE t_arr SET ai = ai || 9, at = array_append(at, 'new') WHERE id = 1",
            "UPDATE t_num SET id = 50 WHERE id = 5",
            "UPDATE t_keys SET v = 'changed' WHERE n = 1.25",
            "DELETE FROM t_keys WHERE n = 2.50",
            "DELETE FROM t_num WHERE id IN (2, 102)",
            "DELETE FROM t_text WHERE id = 2",
            "DELETE FROM t_time WHERE id = 102",
            "DELETE FROM t_arr WHERE id = 2",
        ]
        .map(String::from),
    );
    sql
}

struct Env {
    _pg: PgCluster,
    src_url: String,
    dst_url: String,
}

async fn env() -> Env {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    let src_url = pg.create_database("monolith").unwrap();
    let dst_url = pg.create_database("service").unwrap();
    for url in [&src_url, &dst_url] {
        sqlx::raw_sql(SCHEMA)
            .execute(&mut connect(url).await)
            .await
            .unwrap();
    }
    Env {
        _pg: pg,
        src_url,
        dst_url,
    }
}

/// A session whose text output does not depend on server defaults.
async fn connect(url: &str) -> PgConnection {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::query("SET TimeZone = 'UTC'")
        .execute(&mut c)
        .await
        .unwrap();
    c
}

async fn exec_all(url: &str, statements: &[String]) {
    let mut c = connect(url).await;
    for s in statements {
        sqlx::raw_sql(s)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

fn t(s: &str) -> TableName {
    s.parse().unwrap()
}

fn mappings() -> Vec<TableMapping> {
    TABLES
        .iter()
        .map(|name| TableMapping {
            source: t(&format!("public.{name}")),
            target: t(&format!("public.{name}")),
            rename: BTreeMap::new(),
            exclude: Vec::new(),
            drop_columns: false,
        })
        .collect()
}

fn source(e: &Env, format: EventFormat) -> SourceConfig {
    SourceConfig {
        url: e.src_url.clone(),
        slot: "strangler".into(),
        publication: "strangler".into(),
        tables: TABLES.iter().map(|n| t(&format!("public.{n}"))).collect(),
        name: "m".into(),
        format,
        check_rows: 0,
        tx_memory: strangler_cdc::source::DEFAULT_TX_MEMORY,
        chunk_rows: strangler_cdc::source::chunk::CHUNK_ROWS,
        workers: strangler_config::DEFAULT_SNAPSHOT_WORKERS,
        kind: strangler_config::SourceKind::Postgres,
    }
}

/// Every column of `table` as text, in key order.
async fn as_text(c: &mut PgConnection, table: &str) -> Vec<Vec<(String, Option<String>)>> {
    let cols: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 \
         AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let list: Vec<String> = cols.iter().map(|c| format!("{c}::text")).collect();
    let sql = format!("SELECT {} FROM {table} ORDER BY 1, 2", list.join(", "));
    sqlx::query(&sql)
        .fetch_all(&mut *c)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            cols.iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), r.try_get::<Option<String>, _>(i).unwrap()))
                .collect()
        })
        .collect()
}

/// The differences between source and target, column by column.
async fn differences(e: &Env) -> Vec<String> {
    let (mut s, mut d) = (connect(&e.src_url).await, connect(&e.dst_url).await);
    let mut out = Vec::new();
    for table in TABLES {
        let (a, b) = (as_text(&mut s, table).await, as_text(&mut d, table).await);
        if a.len() != b.len() {
            out.push(format!(
                "{table}: {} rows in the source, {} in the target",
                a.len(),
                b.len()
            ));
        }
        for (ra, rb) in a.iter().zip(&b) {
            for ((col, va), (_, vb)) in ra.iter().zip(rb) {
                if va != vb {
                    out.push(format!(
                        "{table} row {:?} column {col}: source {va:?}, target {vb:?}",
                        ra[0].1
                    ));
                }
            }
        }
    }
    out
}

/// Waits until the target equals the source, then checks `verify` too.
async fn assert_identical(e: &Env) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut diffs = differences(e).await;
    while !diffs.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        diffs = differences(e).await;
    }
    assert!(diffs.is_empty(), "target differs:\n{}", diffs.join("\n"));
    let (mut s, mut d) = (connect(&e.src_url).await, connect(&e.dst_url).await);
    for m in mappings() {
        let target = TargetTable::load_for_verify(&mut d, &m).await.unwrap();
        let report = verify::table(&mut s, &mut d, &target, |_, _| {})
            .await
            .unwrap();
        assert!(
            report.differences.is_empty(),
            "verify {}: {:?}",
            m.source,
            report.differences
        );
    }
}

async fn sink(e: &Env, format: EventFormat) -> Sink {
    Sink::connect("svc", &e.dst_url, "strangler", &mappings())
        .await
        .unwrap()
        .with_format(format)
}

async fn dead_letters(e: &Env) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT reason || ' ' || coalesce(value, '') FROM strangler_cdc_dead_letters",
    )
    .fetch_all(&mut connect(&e.dst_url).await)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_type_arrives_exactly_embedded() {
    let e = env().await;
    exec_all(&e.src_url, &rows(0)).await;
    let format = EventFormat::default();
    let mut sinks = vec![sink(&e, format).await];
    let cfg = source(&e, format);
    let (stop, rx) = oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        pipeline::run(
            &cfg,
            &mut Sinks(&mut sinks),
            Start::Initial,
            &NoStatus,
            async move {
                let _ = rx.await;
            },
            |_| {},
        )
        .await
        .unwrap()
    });
    assert_identical(&e).await;
    exec_all(&e.src_url, &changes()).await;
    assert_identical(&e).await;
    let _ = stop.send(());
    let progress = run.await.unwrap();
    assert_eq!(progress.dead_letters, 0, "{:?}", dead_letters(&e).await);
    assert!(dead_letters(&e).await.is_empty());
}

/// The source publishes to a real broker; a sink worker applies from it.
async fn through_kafka(format: EventFormat) -> (Env, Vec<(String, Value, Option<Value>)>) {
    let e = env().await;
    let broker = tokio::task::spawn_blocking(Broker::start)
        .await
        .unwrap()
        .unwrap();
    let brokers = broker.bootstrap();
    exec_all(&e.src_url, &rows(0)).await;
    let cfg = source(&e, format);
    let producer = KafkaProducer::new(&brokers, 1).unwrap();
    let topics: Vec<String> = TABLES.iter().map(|n| format!("m.public.{n}")).collect();
    producer.ensure_topics(&topics).await.unwrap();
    let (stop_src, rx_src) = oneshot::channel::<()>();
    let src = tokio::spawn(async move {
        pipeline::run(
            &cfg,
            &mut KafkaDestination {
                producer: &producer,
                snapshot_done: false,
                store: None,
                slot: cfg.slot.clone(),
                tables: Vec::new(),
            },
            Start::Initial,
            &NoStatus,
            async move {
                let _ = rx_src.await;
            },
            |_| {},
        )
        .await
        .unwrap()
    });
    let mut worker = sink(&e, format).await;
    let (stop_sink, rx_sink) = oneshot::channel::<()>();
    let (b2, t2) = (brokers.clone(), topics.clone());
    let snk = tokio::spawn(async move {
        kafka::consume(
            &kafka::KafkaClient::new(&b2),
            "m",
            &t2,
            &mut worker,
            None,
            &NoStatus,
            "strangler",
            async move {
                let _ = rx_sink.await;
            },
            |_| {},
        )
        .await
        .unwrap()
    });
    assert_identical(&e).await;
    exec_all(&e.src_url, &changes()).await;
    assert_identical(&e).await;
    let _ = stop_src.send(());
    let _ = stop_sink.send(());
    src.await.unwrap();
    let consumed = snk.await.unwrap();
    assert_eq!(consumed.dead_letters, 0, "{:?}", dead_letters(&e).await);
    let events = read_topics(&brokers, &topics).await;
    drop(broker);
    (e, events)
}

/// Every message of `topics` from the start: (topic, value, exact header).
async fn read_topics(brokers: &str, topics: &[String]) -> Vec<(String, Value, Option<Value>)> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "type-matrix-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs).unwrap();
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        let Some(p) = m.payload() else { continue };
        let exact = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "strangler.exact"))
            .and_then(|h| serde_json::from_slice(h.value?).ok());
        out.push((
            m.topic().to_string(),
            serde_json::from_slice(p).unwrap(),
            exact,
        ));
    }
    out
}

/// The snapshot event of row `id` of `table` (its payload, and the exact header).
fn snapshot_row<'a>(
    events: &'a [(String, Value, Option<Value>)],
    table: &str,
    id: i64,
) -> (&'a Value, &'a Value, Option<&'a Value>) {
    let (_, v, x) = events
        .iter()
        .find(|(topic, v, _)| {
            let p = v.get("payload").unwrap_or(v);
            topic == &format!("m.public.{table}") && p["op"] == "r" && p["after"]["id"] == id
        })
        .unwrap_or_else(|| panic!("no snapshot event for {table} {id}"));
    (v.get("payload").unwrap_or(v), v, x.as_ref())
}

/// One row of the table in `cdc-sync/TYPES.md`: where the example lives
/// and its event value (with whether its text travels beside it) under the
/// default and the changed options.
struct Documented {
    table: String,
    column: String,
    default: (Value, bool),
    changed: (Value, bool),
}

fn documented() -> Vec<Documented> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/TYPES.md")).unwrap();
    let start = doc.find("<!-- matrix:start -->").unwrap();
    let end = doc.find("<!-- matrix:end -->").unwrap();
    let cell = |c: &str| -> (Value, bool) {
        let (json, text) = match c.strip_suffix(" + text") {
            Some(v) => (v, true),
            None => (c, false),
        };
        let json = json.trim().trim_matches('`');
        (
            serde_json::from_str(json).unwrap_or_else(|e| panic!("TYPES.md cell {c:?}: {e}")),
            text,
        )
    };
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| domain") || l.starts_with("| enum"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").map(str::trim).collect();
            let (table, column) = cells[1].trim_matches('`').split_once('.').unwrap();
            Documented {
                table: table.into(),
                column: column.into(),
                default: cell(cells[3]),
                changed: cell(cells[4]),
            }
        })
        .collect()
}

/// Row 1 of every table, as published, against `cdc-sync/TYPES.md`.
fn check_documented(events: &[(String, Value, Option<Value>)], changed: bool) {
    let docs = documented();
    assert!(docs.len() >= 30, "TYPES.md lists {} types", docs.len());
    for d in docs {
        let (payload, _, exact) = snapshot_row(events, &d.table, 1);
        let (value, text) = if changed { &d.changed } else { &d.default };
        assert_eq!(
            &payload["after"][&d.column], value,
            "{}.{}: the event differs from TYPES.md",
            d.table, d.column
        );
        assert_eq!(
            exact.is_some_and(|x| x.get(&d.column).is_some()),
            *text,
            "{}.{}: TYPES.md says the text travels beside it: {text}",
            d.table,
            d.column
        );
    }
}

/// The representations of `cdc-sync/TYPES.md`, default options.
#[tokio::test]
async fn every_type_arrives_exactly_through_kafka_with_debeziums_defaults() {
    let (_e, events) = through_kafka(EventFormat::default()).await;
    check_documented(&events, false);
    let (_, _, x) = snapshot_row(&events, "t_num", 1);
    assert_eq!(x, Some(&json!({"n2": "12.34", "dn": "1.10"})));
    let (num2, _, x2) = snapshot_row(&events, "t_num", 2);
    assert_eq!(
        (&num2["after"]["f4"], &num2["after"]["f8"]),
        (&json!("NaN"), &json!("NaN"))
    );
    assert_eq!(num2["after"]["i8"], json!(i64::MIN));
    assert_eq!(x2.unwrap()["n2"], "-99999999.99");
    let (num3, _, x3) = snapshot_row(&events, "t_num", 3);
    assert_eq!(num3["after"]["n"], Value::Null);
    assert_eq!(x3.unwrap()["n"], "NaN");
    let (time2, _, _) = snapshot_row(&events, "t_time", 2);
    assert_eq!(time2["after"]["tstz"], "0000-01-01T00:00:00Z");
    assert_eq!(time2["after"]["d"], -719_528);
    let (time3, _, _) = snapshot_row(&events, "t_time", 3);
    assert_eq!(
        (
            &time3["after"]["d"],
            &time3["after"]["ts"],
            &time3["after"]["tstz"]
        ),
        (&json!(i32::MAX), &json!(i64::MAX), &json!("infinity"))
    );
    let (time6, _, x6) = snapshot_row(&events, "t_time", 6);
    assert_eq!(time6["after"]["tstz"], "294276-12-31 23:59:59.999999+00");
    assert_eq!(x6.unwrap()["tstz"], "294276-12-31 23:59:59.999999+00");
    let (arr4, _, x4) = snapshot_row(&events, "t_arr", 4);
    assert_eq!(arr4["after"]["ai"], "[0:1]={7,8}");
    assert_eq!(x4.unwrap()["ai"], "[0:1]={7,8}");
}

/// Every option at its non-default value, with Kafka Connect schemas.
#[tokio::test]
async fn every_type_arrives_exactly_through_kafka_with_every_option_changed() {
    let format = EventFormat {
        decimal: DecimalHandling::String,
        time: TimePrecision::Connect,
        interval: IntervalHandling::String,
        binary: BinaryHandling::Hex,
        schemas: true,
    };
    let (_e, events) = through_kafka(format).await;
    check_documented(&events, true);
    let (num, whole, x) = snapshot_row(&events, "t_num", 1);
    assert_eq!(
        (&num["after"]["n"], &num["after"]["n2"]),
        (&json!("12.34"), &json!("12.34"))
    );
    assert_eq!(x, None);
    let field = |whole: &Value, name: &str| -> Value {
        whole["schema"]["fields"][1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(whole["schema"]["name"], "m.public.t_num.Envelope");
    assert_eq!(field(whole, "n2")["type"], "string");
    assert_eq!(field(whole, "i8")["type"], "int64");
    let (text, _, _) = snapshot_row(&events, "t_text", 1);
    assert_eq!(text["after"]["by"], "00ff0a");
    let (time, whole, x) = snapshot_row(&events, "t_time", 1);
    assert_eq!(time["after"]["iv"], "P1Y2M3DT4H5M6.78S");
    assert_eq!(time["after"]["t"], 49_530_123);
    assert_eq!(time["after"]["ts"], 1_709_214_330_123i64);
    assert_eq!(
        (
            field(whole, "d")["name"].clone(),
            field(whole, "ts")["name"].clone()
        ),
        (
            json!("org.apache.kafka.connect.data.Date"),
            json!("org.apache.kafka.connect.data.Timestamp")
        )
    );
    assert_eq!(
        field(whole, "tstz")["name"],
        "io.debezium.time.ZonedTimestamp"
    );
    assert_eq!(field(whole, "iv")["name"], "io.debezium.time.Interval");
    assert_eq!(x.unwrap()["t"], "13:45:30.123456");
    let (time2, _, _) = snapshot_row(&events, "t_time", 2);
    assert_eq!(time2["after"]["iv"], "P0Y0M-1DT0H0M0S");
}
