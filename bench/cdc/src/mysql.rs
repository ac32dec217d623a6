//! `cdc-bench mysql ROWS`: a MariaDB monolith into PostgreSQL — the
//! snapshot against the pipe a team would write by hand (`mariadb --batch
//! | psql COPY`), then catching up on a binlog of small transactions.

use std::process::Command;
use std::time::Instant;

use sqlx::postgres::PgPoolOptions;
use strangler_cdc::pipeline::{self, NoStatus, Start};
use strangler_cdc::sink::{Sink, Sinks};
use strangler_cdc::source::SourceConfig;
use strangler_config::{SourceKind, TableMapping};
use strangler_sandbox::{MariaDb, PgCluster};

use crate::row;

const SOURCE: &str = "CREATE TABLE bench (id BIGINT AUTO_INCREMENT PRIMARY KEY, a INT NOT NULL, b VARCHAR(64) NOT NULL, c TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))";
const TARGET: &str = "CREATE TABLE bench (id BIGINT PRIMARY KEY, a INT NOT NULL, b TEXT NOT NULL, c TIMESTAMPTZ NOT NULL)";

fn cfg(url: &str) -> SourceConfig {
    SourceConfig {
        url: url.to_string(),
        slot: "bench".into(),
        publication: String::new(),
        tables: vec!["bench.bench".parse().unwrap()],
        name: "bench".into(),
        format: Default::default(),
        check_rows: 0,
        tx_memory: strangler_cdc::source::DEFAULT_TX_MEMORY,
        chunk_rows: strangler_cdc::source::chunk::CHUNK_ROWS,
        workers: 1,
        kind: SourceKind::MySql { server_id: 4242 },
    }
}

fn mapping() -> TableMapping {
    TableMapping {
        source: "bench.bench".parse().unwrap(),
        target: "public.bench".parse().unwrap(),
        rename: Default::default(),
        exclude: vec![],
        drop_columns: false,
    }
}

pub async fn run(pg: &PgCluster, rows: i64) {
    let maria = tokio::task::spawn_blocking(MariaDb::start)
        .await
        .unwrap()
        .unwrap();
    let src_url = maria.create_database("bench").unwrap();
    maria.sql("bench", SOURCE).unwrap();
    maria
        .sql(
            "bench",
            &format!(
                "INSERT INTO bench (a, b) SELECT seq % 1000, CONCAT('row ', seq, ' of the monolith') FROM seq_1_to_{rows}"
            ),
        )
        .unwrap();

    // The anchor: rows out as tab-separated text, into COPY.
    let dump_url = pg.create_database("mysql_dumped").unwrap();
    let dump = PgPoolOptions::new().connect(&dump_url).await.unwrap();
    sqlx::query(TARGET).execute(&dump).await.unwrap();
    let start = Instant::now();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mariadb --no-defaults -h 127.0.0.1 -P {} -u root --batch -N -D bench -e \"SET time_zone = '+00:00'; SELECT id, a, b, c FROM bench\" \
             | psql -q -h 127.0.0.1 -p {} -U postgres -d mysql_dumped -c 'COPY bench (id, a, b, c) FROM STDIN' >/dev/null",
            maria.port(),
            pg.port()
        ))
        .status()
        .unwrap();
    assert!(ok.success());
    let anchor = start.elapsed().as_secs_f64();
    let copied: i64 = sqlx::query_scalar("SELECT count(*) FROM bench")
        .fetch_one(&dump)
        .await
        .unwrap();
    assert_eq!(copied, rows);
    row(
        "mariadb --batch | psql COPY (MariaDB → PostgreSQL by hand)",
        rows,
        anchor,
        "no positions, no conversion beyond text",
    );

    // strangler's snapshot, consistent with a binlog position.
    let dst_url = pg.create_database("mysql_snapped").unwrap();
    let dst = PgPoolOptions::new().connect(&dst_url).await.unwrap();
    sqlx::query(TARGET).execute(&dst).await.unwrap();
    let c = cfg(&src_url);
    let mut sinks = vec![Sink::connect("bench", &dst_url, &c.slot, &[mapping()])
        .await
        .unwrap()];
    let start = Instant::now();
    let mut done = None;
    pipeline::run(
        &c,
        &mut Sinks(&mut sinks),
        Start::Initial,
        &NoStatus,
        async {},
        |p| {
            if p.snapshot_rows == rows as u64 && done.is_none() {
                done = Some(start.elapsed());
            }
        },
    )
    .await
    .unwrap();
    let secs = done.expect("the snapshot completed").as_secs_f64();
    row(
        "strangler snapshot of a MariaDB table (consistent with the binlog, Debezium records)",
        rows,
        secs,
        &format!("**{:.2}×**", anchor / secs),
    );

    // Catching up: `rows` more in transactions of 10, written while no
    // `cdc run` reads; then the pipeline resumes from the sink's position.
    let txs = rows / 10;
    let mut script = String::with_capacity(txs as usize * 120);
    for t in 0..txs {
        script.push_str(&format!(
            "INSERT INTO bench (a, b) SELECT seq, 'caught up {t}' FROM seq_1_to_10;\n"
        ));
    }
    let file = std::env::temp_dir().join("cdc-bench-mysql.sql");
    std::fs::write(&file, script).unwrap();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mariadb --no-defaults -h 127.0.0.1 -P {} -u root -D bench < {}",
            maria.port(),
            file.display()
        ))
        .status()
        .unwrap();
    assert!(ok.success());
    let total = rows + txs * 10;
    let start = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = {
        let dst = dst.clone();
        tokio::spawn(async move {
            loop {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM bench")
                    .fetch_one(&dst)
                    .await
                    .unwrap();
                if n == total {
                    let secs = start.elapsed().as_secs_f64();
                    let _ = stop.send(());
                    return secs;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let mut sinks = vec![Sink::connect("bench", &dst_url, &c.slot, &[mapping()])
        .await
        .unwrap()];
    pipeline::run(
        &c,
        &mut Sinks(&mut sinks),
        Start::Initial,
        &NoStatus,
        async {
            let _ = stopped.await;
        },
        |_| {},
    )
    .await
    .unwrap();
    let secs = watch.await.unwrap();
    row(
        "strangler catching up on the binlog (transactions of 10 inserts)",
        txs * 10,
        secs,
        &format!("{txs} transactions, embedded sink, one connection"),
    );
}
