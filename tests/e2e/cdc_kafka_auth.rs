//! The Kafka transport against a broker that requires SASL (SCRAM-SHA-512,
//! tansu with users in its SQLite storage): with the credentials passed
//! through `[cdc.transport.properties]` (the password from an environment
//! variable) every row arrives; with a wrong password `cdc run` stops with
//! a message naming the credentials (exit 2) instead of retrying forever.

use std::time::{Duration, Instant};

use crate::cdc::{cli_env, databases, plain_ledger, spawn_cdc, until_count};
use crate::support::*;

fn config(brokers: &str) -> String {
    format!(
        "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[cdc.source]\nurl_env = \"E2E_SRC\"\ntables = [\"public.ledger\"]\n\n\
         [cdc.transport]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ntopic_prefix = \"shop\"\n\n\
         [cdc.transport.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"strangler\"\n\"sasl.password.env\" = \"E2E_KAFKA_PASSWORD\"\n\n\
         [[cdc.sinks]]\nname = \"svc\"\nurl_env = \"E2E_DST\"\n[[cdc.sinks.tables]]\nsource = \"public.ledger\"\n"
    )
}

/// Runs `cdc run` on `config` to its end: (exit code, stdout, stderr).
async fn run_to_end(
    config: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(strangler_bin())
            .args(["cdc", "run", "-c"])
            .arg(config)
            .envs(env)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_requiring_scram_gets_the_credentials_and_a_wrong_password_is_named() {
    let storage = tempfile::tempdir().expect("tempdir");
    let dir = storage.path().to_path_buf();
    let broker = tokio::task::spawn_blocking(move || {
        strangler_testkit::Broker::start_with_scram(&dir, "strangler", "s3cret")
    })
    .await
    .expect("join")
    .expect("tansu with authentication");
    let db = databases().await;
    plain_ledger(&db.src, &db.dst).await;
    let h = Harness::new();
    h.write_config(&config(&broker.bootstrap()));

    // A wrong password: a clear error naming the credentials, exit 2.
    let began = Instant::now();
    let (code, out, err) = run_to_end(
        h.config_path(),
        vec![
            ("E2E_SRC", db.src_url.clone()),
            ("E2E_DST", db.dst_url.clone()),
            ("E2E_KAFKA_PASSWORD", "wrong".into()),
        ],
    )
    .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.lines().any(
            |l| l.starts_with("error: CDC stopped: kafka refused this client")
                && l.contains("SASL")
        ),
        "{err}"
    );
    let what_to_do = err
        .lines()
        .find(|l| l.starts_with("what to do:"))
        .unwrap_or_default();
    assert!(
        what_to_do.contains("sasl.username") && what_to_do.contains("sasl.password"),
        "{err}"
    );
    assert!(began.elapsed() < Duration::from_secs(120));

    // No credentials at all: the broker closes the connection; the message
    // says where credentials go.
    let bare = Harness::new();
    let text = config(&broker.bootstrap());
    let cut = text.find("[cdc.transport.properties]").expect("properties");
    let end = text.find("[[cdc.sinks]]").expect("sinks");
    bare.write_config(&format!("{}{}", &text[..cut], &text[end..]));
    let (code, out, err) = run_to_end(
        bare.config_path(),
        vec![
            ("E2E_SRC", db.src_url.clone()),
            ("E2E_DST", db.dst_url.clone()),
        ],
    )
    .await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("what to do:") && l.contains("security.protocol")),
        "{err}"
    );

    // The right one: every row arrives through the broker.
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
        ("E2E_KAFKA_PASSWORD", "s3cret"),
    ];
    let _cdc = spawn_cdc(&h, &env);
    sqlx::query(
        "INSERT INTO ledger (n, note) SELECT g, 'through SASL' FROM generate_series(1, 200) g",
    )
    .execute(&db.src)
    .await
    .expect("rows");
    until_count(&db.dst, "SELECT count(*) FROM ledger", 200, || h.cdc_log()).await;
    let (code, out, err) = cli_env(&["cdc", "verify"], &h, &env);
    assert_eq!(code, 0, "{out}{err}");
}
