//! The monitoring that ships in `examples/deploy/monitoring/`: the alert
//! rules pass `promtool check rules` and their own `promtool test rules`,
//! and every metric the rules and the Grafana dashboard query is exported
//! by the binary (a proxy and a `cdc run --metrics` after some traffic).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cdc::{databases, embedded_ledger_config, plain_ledger, spawn_cdc_with, until_count};
use crate::support::*;

fn monitoring() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/deploy/monitoring"
    ))
}

/// The metric names in PromQL text (`strangler_…`, histogram suffixes
/// folded onto their family).
fn names_in(expr: &str, out: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(at) = rest.find("strangler_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_string());
        rest = &tail[end..];
    }
}

fn exprs_json(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => names_in(e, out),
                    _ => exprs_json(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs_json(v, out)),
        _ => {}
    }
}

fn exprs_yaml(v: &serde_yaml_ng::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_yaml_ng::Value::Mapping(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    (Some("expr"), serde_yaml_ng::Value::String(e)) => names_in(e, out),
                    _ => exprs_yaml(v, out),
                }
            }
        }
        serde_yaml_ng::Value::Sequence(a) => a.iter().for_each(|v| exprs_yaml(v, out)),
        _ => {}
    }
}

/// The metric families in a Prometheus text exposition.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect()
}

#[test]
fn the_shipped_alert_rules_pass_promtool_and_their_tests() {
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(monitoring())
            .output()
            .expect("promtool (Debian's prometheus package; scripts/setup installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exported() {
    let mut queried = BTreeSet::new();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    exprs_json(&dashboard, &mut queried);
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(monitoring().join("alerts.yml")).expect("rules"),
    )
    .expect("rules YAML");
    exprs_yaml(&rules, &mut queried);
    assert!(queried.len() > 20, "{queried:?}");

    // A proxy with a shadowed route and a route whose service is down.
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}[upstreams.dead]\nurl = \"http://127.0.0.1:1\"\nhealth_path = \"/healthz\"\nhealth_interval_ms = 100\n\n\
         [[routes]]\nname = \"items\"\npath = \"/items/{{id}}\"\nservice = \"svc\"\nstage = \"shadow\"\n\n\
         [[routes]]\nname = \"orders\"\npath = \"/orders/{{id}}\"\nservice = \"dead\"\nstage = \"canary\"\npercent = 100\n",
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let p = h.start().await;
    let c = client();
    for i in 0..20 {
        for path in ["items", "orders"] {
            let r = c
                .get(format!("{}/{path}/{i}", p.base))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
        }
    }
    let scrape = |url: String| {
        let c = c.clone();
        async move {
            c.get(url)
                .send()
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text")
        }
    };
    let proxy_url = format!("{}/metrics", p.admin);
    let shadowed = eventually(Duration::from_secs(30), || async {
        scrape(proxy_url.clone())
            .await
            .contains("strangler_shadow_total{")
    })
    .await;
    assert!(shadowed.is_some(), "{}", scrape(proxy_url.clone()).await);
    let mut exported = families(&scrape(proxy_url).await);

    // A cdc run with its metrics, after a snapshot and some streaming.
    let db = databases().await;
    plain_ledger(&db.src, &db.dst).await;
    sqlx::query("INSERT INTO ledger (n, note) SELECT g, 'r' FROM generate_series(1, 50) g")
        .execute(&db.src)
        .await
        .expect("rows");
    let cdc_h = Harness::new();
    cdc_h.write_config(&embedded_ledger_config(""));
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [
        ("E2E_SRC", db.src_url.as_str()),
        ("E2E_DST", db.dst_url.as_str()),
    ];
    let _cdc = spawn_cdc_with(&cdc_h, &env, &["--metrics", &addr]);
    // Streaming (after the snapshot) reports each sink's tables.
    until_count(
        &db.dst,
        "SELECT count(*) FROM strangler_cdc_offsets WHERE snapshot_done",
        1,
        || cdc_h.cdc_log(),
    )
    .await;
    sqlx::query("INSERT INTO ledger (n, note) SELECT g, 's' FROM generate_series(1, 50) g")
        .execute(&db.src)
        .await
        .expect("rows");
    until_count(&db.dst, "SELECT count(*) FROM ledger", 100, || {
        cdc_h.cdc_log()
    })
    .await;
    let cdc_url = format!("http://{addr}/metrics");
    let retained = eventually(Duration::from_secs(30), || async {
        scrape(cdc_url.clone())
            .await
            .contains("strangler_cdc_slot_retained_wal_bytes{")
            && scrape(cdc_url.clone())
                .await
                .contains("strangler_cdc_sink_lag_bytes{")
    })
    .await;
    assert!(retained.is_some(), "{}", scrape(cdc_url.clone()).await);
    exported.extend(families(&scrape(cdc_url).await));

    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard or the alerts but not exported: {missing:?}\nexported: {exported:?}"
    );
}
