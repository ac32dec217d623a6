//! A MySQL/MariaDB monolith (`[cdc.source] kind = "mysql"`) into a
//! PostgreSQL service: the snapshot, then the binlog under a write load,
//! through a `kill -9` of `cdc run` (no row lost, none applied twice),
//! `cdc verify` clean (and a planted difference found), every MySQL type
//! arriving as the service's type; and the Debezium MySQL envelope read
//! from Kafka by a plain consumer.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::cdc::{cli_env, read_topic, spawn_cdc, spawn_cdc_with, until_count};
use crate::support::*;

/// A MariaDB monolith (database `shop`) and a PostgreSQL service (`svc`).
struct Databases {
    _maria: MariaDb,
    _pg: PgCluster,
    src_url: String,
    dst_url: String,
    src: mysql_async::Pool,
    dst: sqlx::PgPool,
}

async fn databases() -> Databases {
    let maria = tokio::task::spawn_blocking(MariaDb::start)
        .await
        .expect("join")
        .expect("mariadb");
    let src_url = maria.create_database("shop").expect("shop");
    let (pg, dst_url, dst) = crate::cdc_faults::cluster().await;
    let src = mysql_async::Pool::new(src_url.as_str());
    Databases {
        _maria: maria,
        _pg: pg,
        src_url,
        dst_url,
        src,
        dst,
    }
}

async fn my(pool: &mysql_async::Pool, sql: &str) {
    let mut c = pool.get_conn().await.expect("mysql connection");
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn my_count(pool: &mysql_async::Pool, sql: &str) -> i64 {
    let mut c = pool.get_conn().await.expect("mysql connection");
    c.query_first(sql).await.expect("count").unwrap_or(0)
}

/// Every kind of MySQL column a monolith has, and the service's table
/// with the PostgreSQL type each maps to (plus `applied_log`: one row per
/// apply, so a row applied twice shows).
async fn orders(db: &Databases) {
    my(
        &db.src,
        "CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(40) CHARACTER SET latin1 NOT NULL, \
         total DECIMAL(10,2) NOT NULL, status ENUM('new','paid','shipped') NOT NULL DEFAULT 'new', \
         placed DATETIME(3) NOT NULL, paid_at TIMESTAMP NULL, flags SET('gift','rush') NOT NULL DEFAULT '', \
         note TEXT, n INT UNSIGNED NOT NULL DEFAULT 0, day DATE, ok TINYINT(1) NOT NULL DEFAULT 1, \
         raw VARBINARY(16), ratio DOUBLE, made YEAR, took TIME(6), doc JSON) ENGINE=InnoDB",
    )
    .await;
    for sql in [
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, total NUMERIC(10,2) NOT NULL, \
         status TEXT NOT NULL, placed TIMESTAMP(3) NOT NULL, paid_at TIMESTAMPTZ, flags TEXT NOT NULL, note TEXT, \
         n BIGINT NOT NULL, day DATE, ok BOOLEAN NOT NULL, raw BYTEA, ratio DOUBLE PRECISION, made INT, \
         took INTERVAL, doc JSONB)",
        "CREATE TABLE applied_log (id BIGINT NOT NULL)",
        "CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO applied_log VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER orders_applied AFTER INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION log_apply()",
    ] {
        sqlx::query(sql).execute(&db.dst).await.expect("target ddl");
    }
}

/// The one row whose every value is checked in the target.
const SPECIAL: &str = "INSERT INTO orders (id, customer, total, status, placed, paid_at, flags, note, n, day, ok, raw, ratio, made, took, doc) \
     VALUES (1, 'Zoë ''quoted''', 12.34, 'paid', '2024-02-29 13:37:03.250', FROM_UNIXTIME(1709287200), 'gift,rush', NULL, \
     4294967295, '2024-02-29', 0, X'00FF10', 0.1, 2024, '-100:00:00.000001', '{\"a\": [1, 2]}')";

fn mysql_config(transport: &str) -> String {
    format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nkind = \"mysql\"\nurl_env = \"E2E_SRC\"\ntables = [\"shop.orders\"]\n\n\
         {transport}\n\n[[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"shop.orders\"\ntarget = \"public.orders\"\n"
    )
}

/// [`mysql_config`] of `shop.TABLE` into `public.TABLE`, embedded.
fn table_config(table: &str) -> String {
    mysql_config("")
        .replace("shop.orders", &format!("shop.{table}"))
        .replace("public.orders", &format!("public.{table}"))
}

/// `cdc run`'s environment for `db`.
fn cdc_env(db: &Databases) -> [(&str, &str); 3] {
    [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ]
}

/// The special row as the target has it, each column as text.
async fn special_row(dst: &sqlx::PgPool) -> Vec<Option<String>> {
    sqlx::query_scalar(
        "SELECT ARRAY[customer, total::text, status, placed::text, paid_at::text, flags, n::text, day::text, \
         ok::text, raw::text, ratio::text, made::text, took::text, doc::text, note] FROM orders WHERE id = 1",
    )
    .fetch_one(dst)
    .await
    .expect("row 1")
}

fn expected_special() -> Vec<Option<String>> {
    [
        Some("Zoë 'quoted'"),
        Some("12.34"),
        Some("paid"),
        Some("2024-02-29 13:37:03.25"),
        Some("2024-03-01 10:00:00+00"),
        Some("gift,rush"),
        Some("4294967295"),
        Some("2024-02-29"),
        Some("false"),
        Some("\\x00ff10"),
        Some("0.1"),
        Some("2024"),
        Some("-100:00:00.000001"),
        Some("{\"a\": [1, 2]}"),
        None,
    ]
    .into_iter()
    .map(|v| v.map(String::from))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_monolith_snapshot_then_binlog_survives_kill_9_and_verifies_clean() {
    let db = databases().await;
    orders(&db).await;
    my(&db.src, SPECIAL).await;
    my(
        &db.src,
        "INSERT INTO orders (customer, total, placed, note) \
         SELECT CONCAT('seed ', seq), seq / 100, '2024-01-01 00:00:00' + INTERVAL seq SECOND, 'seed' FROM seq_2_to_2000",
    )
    .await;
    let h = Harness::new();
    h.write_config(&mysql_config(""));
    let env = cdc_env(&db);
    let (code, out, err) = cli_env(&["check"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let log = || h.cdc_log();
    let mut cdc = spawn_cdc(&h, &env);
    until_count(&db.dst, "SELECT count(*) FROM orders", 2000, log).await;
    assert_eq!(
        special_row(&db.dst).await,
        expected_special(),
        "the snapshot's conversion"
    );

    // A write load on the monolith: 300 transactions of 10 inserts, an
    // update every 10th, a delete every 20th.
    let writer = {
        let src = db.src.clone();
        tokio::spawn(async move {
            for batch in 0..300 {
                my(
                    &src,
                    &format!(
                        "INSERT INTO orders (customer, total, status, placed, paid_at, flags, n, day, ok) \
                         SELECT CONCAT('w{batch} ', seq), {batch}.5, 'new', NOW(3), NOW(), 'rush', seq, CURDATE(), 1 FROM seq_1_to_10"
                    ),
                )
                .await;
                if batch % 10 == 0 {
                    my(&src, &format!("UPDATE orders SET status = 'shipped', note = 'batch {batch}' WHERE id = {}", 100 + batch)).await;
                }
                if batch % 20 == 0 {
                    my(
                        &src,
                        &format!("DELETE FROM orders WHERE id = {}", 1000 + batch),
                    )
                    .await;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    // Killed hard once part of the stream is through, then started again.
    let some = eventually(Duration::from_secs(60), || async {
        crate::cdc_faults::count(
            &db.dst,
            "SELECT count(*) FROM orders WHERE customer LIKE 'w%'",
        )
        .await
            >= 500
    })
    .await;
    assert!(some.is_some(), "streaming did not start: {}", log());
    cdc.kill().expect("kill -9");
    let _ = cdc.wait();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut cdc = spawn_cdc_with(&h, &env, &["--metrics", &metrics_addr]);
    writer.await.expect("writer");
    let total = my_count(&db.src, "SELECT COUNT(*) FROM orders").await;
    assert_eq!(total, 2000 + 3000 - 15);
    until_count(&db.dst, "SELECT count(*) FROM orders", total, log).await;
    until_count(
        &db.dst,
        "SELECT count(*) FROM orders WHERE status = 'shipped'",
        30,
        log,
    )
    .await;
    // Each snapshot row, inserted row and update applied exactly once.
    until_count(
        &db.dst,
        "SELECT count(*) FROM applied_log",
        2000 + 3000 + 30,
        log,
    )
    .await;

    // verify: clean.
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("clean"), "{out}");
    // status: the binlog position and the sink's.
    let (code, out, err) = cli_env(&["cdc", "status", "--json"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let status: Value = serde_json::from_str(&out).expect("json");
    assert!(
        status["binlog"]["file"]
            .as_str()
            .is_some_and(|f| f.contains("bin")),
        "{status}"
    );
    assert!(status["sinks"][0]["applied"].is_string(), "{status}");
    let text = client()
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metric_value(&text, "strangler_cdc_rows_applied_total") > 0.0,
        "{text}"
    );

    // A planted difference, a missing row and an extra one are found.
    cdc.kill().expect("kill");
    let _ = cdc.wait();
    for sql in [
        "UPDATE orders SET note = 'tampered' WHERE id = 42",
        "DELETE FROM orders WHERE id = 43",
        "INSERT INTO orders (id, customer, total, status, placed, flags, n, ok) VALUES (999999, 'x', 1, 'new', now(), '', 0, true)",
    ] {
        sqlx::query(sql).execute(&db.dst).await.expect("tamper");
    }
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 1, "{out}{err}");
    for want in ["differs key (42)", "missing key (43)", "extra key (999999)"] {
        assert!(out.contains(want), "{want}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_changes_reach_kafka_as_debeziums_mysql_envelope() {
    let broker = tokio::task::spawn_blocking(strangler_testkit::Broker::start)
        .await
        .expect("join")
        .expect("tansu");
    let db = databases().await;
    orders(&db).await;
    my(&db.src, "INSERT INTO orders (id, customer, total, placed) VALUES (3, 'Bo', 1.50, '2024-05-01 08:00:00')").await;
    let h = Harness::new();
    h.write_config(&mysql_config(&format!(
        "[cdc.transport]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"legacy\"",
        broker.bootstrap()
    )));
    let env = cdc_env(&db);
    let log = || h.cdc_log();
    let _cdc = spawn_cdc(&h, &env);
    until_count(&db.dst, "SELECT count(*) FROM orders", 1, log).await;
    // Every type through the binlog.
    my(&db.src, SPECIAL).await;
    my(&db.src, "INSERT INTO orders (id, customer, total, placed) VALUES (2, 'Ann', 5.00, '2024-05-01 08:00:00')").await;
    my(&db.src, "UPDATE orders SET status = 'shipped' WHERE id = 2").await;
    my(&db.src, "DELETE FROM orders WHERE id = 2").await;
    my(
        &db.src,
        "INSERT INTO orders (id, customer, total, placed) VALUES (4, 'last', 1, NOW())",
    )
    .await;
    // Everything before the last row is through (a sink may fold changes
    // of one key in a batch: the outcome is what counts).
    until_count(&db.dst, "SELECT count(*) FROM orders WHERE id = 4", 1, log).await;
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM orders WHERE id = 2").await,
        0,
        "the delete"
    );
    assert_eq!(
        special_row(&db.dst).await,
        expected_special(),
        "through Kafka"
    );

    // r (snapshot), c (the special row), c, u, d, the delete's tombstone, c.
    let msgs = read_topic(&broker.bootstrap(), "legacy.shop.orders", 7).await;
    let ops: Vec<String> = msgs
        .iter()
        .map(|(_, v)| {
            v.as_ref().map_or("tombstone".into(), |v| {
                v["op"].as_str().unwrap_or("?").to_string()
            })
        })
        .collect();
    assert_eq!(ops.len(), 7, "{msgs:?}");
    // One partition per key: in order per key.
    let of = |id: i64| -> Vec<&str> {
        msgs.iter()
            .zip(&ops)
            .filter(|((k, _), _)| k.as_ref().is_some_and(|k| k["id"] == id))
            .map(|(_, op)| op.as_str())
            .collect()
    };
    assert_eq!(of(3), ["r"]);
    assert_eq!(of(1), ["c"]);
    assert_eq!(of(2), ["c", "u", "d", "tombstone"]);
    let by = |id: i64, op: &str| -> Value {
        msgs.iter()
            .filter(|(k, _)| k.as_ref().is_some_and(|k| k["id"] == id))
            .filter_map(|(_, v)| v.clone())
            .find(|v| v["op"] == op)
            .unwrap_or(Value::Null)
    };
    let read = by(3, "r");
    assert_eq!(read["source"]["snapshot"], "true");
    assert_eq!(read["after"]["customer"], "Bo");
    let special = by(1, "c");
    let after = &special["after"];
    // Debezium's MySQL representations.
    assert_eq!(
        after["total"], "BNI=",
        "DECIMAL(10,2) as Kafka Connect's Decimal"
    );
    assert_eq!(
        after["placed"], 1_709_213_823_250i64,
        "DATETIME(3) as epoch ms"
    );
    assert_eq!(
        after["paid_at"], "2024-03-01T10:00:00Z",
        "TIMESTAMP as ZonedTimestamp"
    );
    assert_eq!(after["day"], 19_782, "DATE as days since the epoch");
    assert_eq!(after["status"], "paid");
    assert_eq!(after["flags"], "gift,rush");
    assert_eq!(after["n"], 4_294_967_295u64);
    assert_eq!(after["made"], 2024);
    assert_eq!(after["took"], -360_000_000_001i64, "TIME as MicroTime");
    assert_eq!(after["customer"], "Zoë 'quoted'", "a latin1 column's bytes");
    assert_eq!(after["ok"], 0, "TINYINT(1) as INT8");
    assert_eq!(after["raw"], "AP8Q", "VARBINARY as base64 bytes");
    let created = by(2, "c");
    let source = &created["source"];
    assert_eq!(source["connector"], "mysql");
    assert_eq!(source["name"], "legacy");
    assert_eq!(source["db"], "shop");
    assert_eq!(source["table"], "orders");
    assert_eq!(source["snapshot"], "false");
    assert!(
        source["file"].as_str().is_some_and(|f| f.contains("bin.0")),
        "{source}"
    );
    assert!(source["pos"].as_u64().is_some_and(|p| p > 4), "{source}");
    assert!(
        source["server_id"].as_u64().is_some_and(|s| s > 0),
        "{source}"
    );
    assert!(
        source["gtid"]
            .as_str()
            .is_some_and(|g| g.split('-').count() == 3),
        "MariaDB GTID domain-server-seq: {source}"
    );
    assert!(
        source["ts_ms"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000_000),
        "{source}"
    );
    let updated = by(2, "u");
    assert_eq!(updated["before"]["status"], "new");
    assert_eq!(updated["after"]["status"], "shipped");
    let deleted = by(2, "d");
    assert_eq!(deleted["before"]["id"], 2);
    assert_eq!(deleted["after"], Value::Null);
}

/// The target column's type (`None`: no such column).
async fn column_type(pool: &sqlx::PgPool, column: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'public.items'::regclass AND attname = $1 AND NOT attisdropped",
    )
    .bind(column)
    .fetch_optional(pool)
    .await
    .expect("column type")
}

async fn pg_text(pool: &sqlx::PgPool, sql: &str) -> Option<String> {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Inserts one row on the monolith with `set` and waits for it in the
/// target; returns its id.
async fn insert_and_wait(db: &Databases, set: &str, log: impl Fn() -> String) -> i64 {
    let mut c = db.src.get_conn().await.expect("mysql connection");
    c.query_drop(format!("INSERT INTO items {set}"))
        .await
        .unwrap_or_else(|e| panic!("{set}: {e}"));
    let id = c.last_insert_id().expect("id") as i64;
    until_count(
        &db.dst,
        &format!("SELECT count(*) FROM items WHERE id = {id}"),
        1,
        log,
    )
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_schema_changes_reach_the_service_under_writes() {
    let db = databases().await;
    my(
        &db.src,
        "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40) NOT NULL DEFAULT 'item', \
         qty INT NOT NULL DEFAULT 1, note VARCHAR(10) DEFAULT 'n')",
    )
    .await;
    my(
        &db.src,
        "INSERT INTO items (note) SELECT CONCAT('seed', seq) FROM seq_1_to_100",
    )
    .await;
    sqlx::query(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, note VARCHAR(10))",
    )
    .execute(&db.dst)
    .await
    .expect("target");
    let h = Harness::new();
    h.write_config(&table_config("items"));
    let env = cdc_env(&db);
    let log = || h.cdc_log();
    let mut cdc = spawn_cdc(&h, &env);
    until_count(&db.dst, "SELECT count(*) FROM items", 100, log).await;

    // A steady writer whatever the shape: every column has a default.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (src, stop) = (db.src.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                my(&src, "INSERT INTO items () VALUES ()").await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };

    // Added: the target gets the column with its PostgreSQL type, and values.
    my(&db.src, "ALTER TABLE items ADD COLUMN price DECIMAL(10,2)").await;
    let id = insert_and_wait(&db, "(price) VALUES (12.34)", log).await;
    assert_eq!(
        column_type(&db.dst, "price").await.as_deref(),
        Some("numeric(10,2)")
    );
    assert_eq!(
        pg_text(
            &db.dst,
            &format!("SELECT price::text FROM items WHERE id = {id}")
        )
        .await,
        Some("12.34".into())
    );

    // Widened: INT → BIGINT, and a value only bigint holds.
    my(
        &db.src,
        "ALTER TABLE items MODIFY qty BIGINT NOT NULL DEFAULT 1",
    )
    .await;
    let id = insert_and_wait(&db, "(qty) VALUES (5000000000)", log).await;
    assert_eq!(column_type(&db.dst, "qty").await.as_deref(), Some("bigint"));
    assert_eq!(
        pg_text(
            &db.dst,
            &format!("SELECT qty::text FROM items WHERE id = {id}")
        )
        .await,
        Some("5000000000".into())
    );

    // Dropped: kept in the target, which holds nulls from then on.
    my(&db.src, "ALTER TABLE items DROP COLUMN name").await;
    let id = insert_and_wait(&db, "(note) VALUES ('after')", log).await;
    assert_eq!(
        pg_text(
            &db.dst,
            &format!("SELECT coalesce(name, 'NULL') FROM items WHERE id = {id}")
        )
        .await,
        Some("NULL".into())
    );
    assert_eq!(
        pg_text(&db.dst, "SELECT name FROM items WHERE id = 7").await,
        Some("item".into())
    );

    // An ENUM, then (below) a member inserted in the middle of its list.
    my(
        &db.src,
        "ALTER TABLE items ADD COLUMN state ENUM('new','paid') NOT NULL DEFAULT 'new'",
    )
    .await;
    insert_and_wait(&db, "(state) VALUES ('paid')", log).await;

    // Added while `cdc run` was down: carried when it is back.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.expect("writer") > 0);
    crate::cdc::stop_gracefully(&mut cdc);
    // Row 7 becomes `paid` (member 2), then `pending` takes place 2: the
    // update is read by the members its table had when it was written.
    my(&db.src, "UPDATE items SET state = 'paid' WHERE id = 7").await;
    my(
        &db.src,
        "ALTER TABLE items MODIFY state ENUM('new','pending','paid') NOT NULL DEFAULT 'new'",
    )
    .await;
    my(&db.src, "ALTER TABLE items ADD COLUMN tag VARCHAR(20)").await;
    let mut cdc = spawn_cdc(&h, &env);
    let id = insert_and_wait(&db, "(tag) VALUES ('while down')", log).await;
    assert_eq!(
        pg_text(&db.dst, &format!("SELECT tag FROM items WHERE id = {id}")).await,
        Some("while down".into())
    );
    assert_eq!(
        column_type(&db.dst, "tag").await.as_deref(),
        Some("character varying(20)")
    );
    assert_eq!(
        pg_text(&db.dst, "SELECT state FROM items WHERE id = 7").await,
        Some("paid".into())
    );
    // The column came with its default: every other row has it too.
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM items WHERE state IS NULL").await,
        0
    );
    // Every row, and `cdc verify` clean over the columns both sides share.
    let total = my_count(&db.src, "SELECT COUNT(*) FROM items").await;
    until_count(&db.dst, "SELECT count(*) FROM items", total, log).await;
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");

    // A type the target cannot take: the sink stops, naming the change
    // and the way out, and the row of the new shape is not applied.
    my(&db.src, "ALTER TABLE items ADD COLUMN code VARCHAR(10)").await;
    insert_and_wait(&db, "(code) VALUES ('7')", log).await;
    my(&db.src, "ALTER TABLE items MODIFY code INT").await;
    let id = insert_and_wait_not(&db, "(code) VALUES (42)").await;
    assert_eq!(crate::cdc::exit_code(&mut cdc, log).await, Some(2));
    let out = log();
    assert!(
        out.contains("shop.items")
            && out.contains("code")
            && out.contains("character varying(10) to integer")
            && out.contains("ALTER TABLE … ALTER COLUMN … TYPE"),
        "{out}"
    );
    assert_eq!(
        crate::cdc_faults::count(
            &db.dst,
            &format!("SELECT count(*) FROM items WHERE id = {id}")
        )
        .await,
        0
    );
}

/// Inserts one row on the monolith; returns its id without waiting.
async fn insert_and_wait_not(db: &Databases, set: &str) -> i64 {
    let mut c = db.src.get_conn().await.expect("mysql connection");
    c.query_drop(format!("INSERT INTO items {set}"))
        .await
        .unwrap_or_else(|e| panic!("{set}: {e}"));
    c.last_insert_id().expect("id") as i64
}

/// Reverse sync into a MySQL monolith: a change made in the service
/// reaches the monolith's table, and the forward stream does not bring it
/// back (the sink's offsets row marks its transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_changes_flow_back_into_a_mysql_monolith_without_echo() {
    let db = databases().await;
    my(
        &db.src,
        "CREATE TABLE products (id BIGINT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(80) NOT NULL, \
         price_cents BIGINT NOT NULL, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    )
    .await;
    my(
        &db.src,
        "INSERT INTO products (title, price_cents) SELECT CONCAT('product ', seq), seq * 100 FROM seq_1_to_50",
    )
    .await;
    for sql in [
        "CREATE TABLE catalog_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, price_cents BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE TABLE applied_log (id BIGINT NOT NULL)",
        "CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO applied_log VALUES (NEW.id); RETURN NEW; END $$",
        // Only the forward sink's applies count (the service's own writes
        // run as the test's session, with no replication origin).
        "CREATE TRIGGER items_applied AFTER INSERT OR UPDATE ON catalog_items FOR EACH ROW WHEN (pg_replication_origin_session_is_setup()) EXECUTE FUNCTION log_apply()",
    ] {
        sqlx::query(sql).execute(&db.dst).await.expect("service ddl");
    }
    let h = Harness::new();
    h.write_config(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nkind = \"mysql\"\nurl_env = \"E2E_SRC\"\ntables = [\"shop.products\"]\n\n\
         [[cdc.sinks]]\nname = \"catalog\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"shop.products\"\ntarget = \"public.catalog_items\"\nrename = { title = \"name\" }\n\n\
         [[cdc.sinks]]\nname = \"catalog_back\"\nurl_env = \"E2E_DST\"\nreverse = true\n[[cdc.sinks.tables]]\nsource = \"public.catalog_items\"\ntarget = \"shop.products\"\nrename = { name = \"title\" }\n",
    );
    let env = cdc_env(&db);
    let (code, out, err) = cli_env(&["check"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
    let log = || h.cdc_log();
    let _forward = spawn_cdc(&h, &env);
    until_count(&db.dst, "SELECT count(*) FROM catalog_items", 50, log).await;
    let _reverse = spawn_reverse(&h, &env);
    let slot = eventually(Duration::from_secs(60), || async {
        crate::cdc_faults::count(
            &db.dst,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'strangler_rev_catalog_back' AND active",
        )
        .await
            == 1
    })
    .await;
    assert!(slot.is_some(), "cdc reverse did not start: {}", log());

    // The service changes, adds and deletes products.
    for sql in [
        "UPDATE catalog_items SET price_cents = 4242, name = 'Changed', updated_at = '2024-03-01 10:00:00+00' WHERE id = 42",
        "INSERT INTO catalog_items VALUES (2000, 'made by the service', 7, now())",
        "DELETE FROM catalog_items WHERE id = 5",
    ] {
        sqlx::query(sql).execute(&db.dst).await.expect("service write");
    }
    let back = eventually(Duration::from_secs(60), || async {
        my_count(
            &db.src,
            "SELECT (SELECT COUNT(*) FROM products WHERE id = 42 AND price_cents = 4242 AND title = 'Changed' \
             AND updated_at = '2024-03-01 10:00:00') + (SELECT COUNT(*) FROM products WHERE id = 2000) \
             + (SELECT COUNT(*) = 0 FROM products WHERE id = 5)",
        )
        .await
            == 3
    })
    .await;
    assert!(
        back.is_some(),
        "the service's changes did not reach the monolith: {}",
        log()
    );

    // The forward stream is past them (a later monolith write arrived)…
    my(
        &db.src,
        "INSERT INTO products (id, title, price_cents) VALUES (3000, 'marker', 1)",
    )
    .await;
    until_count(
        &db.dst,
        "SELECT count(*) FROM catalog_items WHERE id = 3000",
        1,
        log,
    )
    .await;
    // …and applied none of them again: only the snapshot's applies of 42
    // and the marker's, nothing for 2000.
    assert_eq!(
        crate::cdc_faults::count(
            &db.dst,
            "SELECT count(*) FROM applied_log WHERE id IN (42, 2000, 3000)"
        )
        .await,
        2,
        "a service change came back through the forward stream: {}",
        log()
    );
}

fn spawn_reverse(h: &Harness, env: &[(&str, &str)]) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(h.dir.path().join("cdc.log"))
        .expect("log");
    std::process::Command::new(strangler_bin())
        .args(["cdc", "reverse", "-c"])
        .arg(h.config_path())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .map(KillOnDrop)
        .expect("spawn strangler cdc reverse")
}

/// Transactions of every shape a MySQL monolith writes arrive as they
/// committed: savepoints (rows before and after one, none rolled back to),
/// an update of the primary key (no old row left), one transaction of
/// 12,000 rows (in parts, yet whole or not at all in the target), and a
/// TRUNCATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_transactions_of_every_shape_arrive_as_committed() {
    let db = databases().await;
    my(
        &db.src,
        "CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL, note VARCHAR(40) NOT NULL)",
    )
    .await;
    sqlx::query("CREATE TABLE ledger (id BIGINT PRIMARY KEY, n INT NOT NULL, note TEXT NOT NULL)")
        .execute(&db.dst)
        .await
        .expect("target");
    let h = Harness::new();
    h.write_config(&table_config("ledger"));
    let env = cdc_env(&db);
    let log = || h.cdc_log();
    let _cdc = spawn_cdc(&h, &env);
    my(&db.src, "INSERT INTO ledger (n, note) VALUES (0, 'ready')").await;
    until_count(
        &db.dst,
        "SELECT count(*) FROM ledger WHERE note = 'ready'",
        1,
        log,
    )
    .await;

    // Savepoints: a and c committed, b rolled back to.
    {
        let mut c = db.src.get_conn().await.expect("conn");
        for sql in [
            "START TRANSACTION",
            "INSERT INTO ledger (n, note) VALUES (1, 'a')",
            "SAVEPOINT s1",
            "INSERT INTO ledger (n, note) VALUES (2, 'b')",
            "ROLLBACK TO SAVEPOINT s1",
            "INSERT INTO ledger (n, note) VALUES (3, 'c')",
            "RELEASE SAVEPOINT s1",
            "COMMIT",
        ] {
            c.query_drop(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
    until_count(
        &db.dst,
        "SELECT count(*) FROM ledger WHERE note IN ('a', 'c')",
        2,
        log,
    )
    .await;
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM ledger WHERE note = 'b'").await,
        0
    );

    // The key changes: the old row goes.
    my(&db.src, "UPDATE ledger SET id = 1000 WHERE note = 'a'").await;
    until_count(
        &db.dst,
        "SELECT count(*) FROM ledger WHERE id = 1000 AND note = 'a'",
        1,
        log,
    )
    .await;
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM ledger WHERE note = 'a'").await,
        1
    );

    // 12,000 rows in one transaction: never half of them in the target.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let watcher = {
        let (dst, seen) = (db.dst.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let n = crate::cdc_faults::count(
                    &dst,
                    "SELECT count(*) FROM ledger WHERE note = 'bulk'",
                )
                .await;
                seen.lock().map(|mut s| s.insert(n)).unwrap_or_default();
                if n == 12_000 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    my(
        &db.src,
        "INSERT INTO ledger (n, note) SELECT seq, 'bulk' FROM seq_1_to_12000",
    )
    .await;
    tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .unwrap_or_else(|_| panic!("the large transaction did not arrive: {}", log()))
        .expect("watcher");
    let seen: Vec<i64> = seen
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    assert_eq!(
        seen,
        [0, 12_000],
        "the target showed part of one transaction"
    );

    // TRUNCATE: the target is emptied too, then takes new rows.
    my(&db.src, "TRUNCATE TABLE ledger").await;
    my(
        &db.src,
        "INSERT INTO ledger (n, note) VALUES (9, 'after truncate')",
    )
    .await;
    until_count(
        &db.dst,
        "SELECT count(*) FROM ledger WHERE note = 'after truncate'",
        1,
        log,
    )
    .await;
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM ledger").await,
        1,
        "{}",
        log()
    );
}

/// A sink added to a running MySQL migration gets a snapshot of its own;
/// the sink that streamed keeps its position and reads what happened
/// while `cdc run` was down — deletes included — without a copy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_to_a_mysql_migration_is_snapshotted_alone() {
    let db = databases().await;
    my(
        &db.src,
        "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40) NOT NULL)",
    )
    .await;
    my(
        &db.src,
        "INSERT INTO items (note) SELECT CONCAT('seed', seq) FROM seq_1_to_100",
    )
    .await;
    let two_url = db._pg.create_database("two").expect("second service");
    let two = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&two_url)
        .await
        .expect("two");
    for sql in [
        "CREATE TABLE items (id BIGINT PRIMARY KEY, note TEXT NOT NULL)",
        "CREATE TABLE applied_log (id BIGINT NOT NULL)",
        "CREATE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO applied_log VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER items_applied AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_apply()",
    ] {
        sqlx::query(sql).execute(&db.dst).await.expect("first service");
    }
    sqlx::query("CREATE TABLE items (id BIGINT PRIMARY KEY, note TEXT NOT NULL)")
        .execute(&two)
        .await
        .expect("second service");
    let one_sink = table_config("items");
    let h = Harness::new();
    h.write_config(&one_sink);
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("E2E_DST2", two_url.as_str()),
        ("STRANGLER_LOG", "info"),
    ];
    let log = || h.cdc_log();
    let mut cdc = spawn_cdc(&h, &env);
    // The snapshot complete (its rows are in before its end is recorded).
    until_count(
        &db.dst,
        "SELECT count(*) FROM strangler_cdc_offsets WHERE snapshot_done",
        1,
        log,
    )
    .await;
    crate::cdc::stop_gracefully(&mut cdc);

    // While it is down: deletes and inserts; then a second sink.
    my(&db.src, "DELETE FROM items WHERE id <= 10").await;
    my(
        &db.src,
        "INSERT INTO items (note) SELECT CONCAT('later', seq) FROM seq_1_to_5",
    )
    .await;
    h.write_config(&format!(
        "{one_sink}\n[[cdc.sinks]]\nname = \"two\"\nurl_env = \"E2E_DST2\"\n[[cdc.sinks.tables]]\nsource = \"shop.items\"\ntarget = \"public.items\"\n"
    ));
    let _cdc = spawn_cdc(&h, &env);
    until_count(&two, "SELECT count(*) FROM items", 95, log).await;
    until_count(
        &db.dst,
        "SELECT count(*) FROM items WHERE note LIKE 'later%'",
        5,
        log,
    )
    .await;
    // The first sink: the deletes applied, no row copied again.
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM items WHERE id <= 10").await,
        0,
        "a delete made while cdc run was down: {}",
        log()
    );
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM applied_log").await,
        105,
        "the first sink was copied again"
    );
    assert_eq!(
        crate::cdc_faults::count(&two, "SELECT count(*) FROM items WHERE id <= 10").await,
        0
    );
}

/// A server that does not log what CDC reads: `cdc run` names every
/// setting to change and exits 2, copying nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_server_not_set_up_for_cdc_is_named_and_nothing_is_copied() {
    let db = databases().await;
    orders(&db).await;
    my(&db.src, SPECIAL).await;
    my(&db.src, "SET GLOBAL binlog_format = 'MIXED'").await;
    my(&db.src, "SET GLOBAL log_bin_compress = ON").await;
    let h = Harness::new();
    h.write_config(&mysql_config(""));
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let (code, out, err) = cli_env(&["cdc", "run"], &h, &env);
    assert_eq!(code, 2, "{out}{err}");
    for want in [
        "binlog_format is MIXED (set it to ROW)",
        "MariaDB's log_bin_compress is on (turn it off)",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(
        crate::cdc_faults::count(&db.dst, "SELECT count(*) FROM orders").await,
        0
    );
}
