//! The deployment examples are wired to the binary they run.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_yaml_ng::Value;
use strangler::cli::Cli;
use strangler_config::Config;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy")
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy().join(file)).expect("read");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("yaml"))
        .collect()
}

use serde::Deserialize;

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn port_of(addr: &std::net::SocketAddr) -> u64 {
    u64::from(addr.port())
}

/// The ConfigMap's strangler.toml, validated.
fn config() -> Config {
    let cm = &docs("k8s/config.yaml")[0];
    let text = cm["data"]["strangler.toml"]
        .as_str()
        .expect("strangler.toml");
    Config::from_toml(text, Path::new("/etc/strangler/strangler.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn deployments(file: &str) -> Vec<Value> {
    docs(file)
        .into_iter()
        .filter(|d| d["kind"] == "Deployment")
        .collect()
}

fn container(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]["containers"][0]
}

fn args(c: &Value) -> Vec<String> {
    c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(str_of)
        .collect()
}

fn env_names(c: &Value) -> Vec<String> {
    c["env"]
        .as_sequence()
        .map(|e| e.iter().map(|v| str_of(&v["name"])).collect())
        .unwrap_or_default()
}

fn named_port(c: &Value, name: &str) -> u64 {
    c["ports"]
        .as_sequence()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or(0)
}

#[test]
fn kubernetes_router_matches_the_binary_and_its_config() {
    let cfg = config();
    let d = &deployments("k8s/router.yaml")[0];
    assert!(d["spec"]["replicas"].as_u64().unwrap_or(0) > 1, "a fleet");
    let c = container(d);
    let a = args(c);
    Cli::try_parse_from(std::iter::once("strangler".to_string()).chain(a.clone()))
        .unwrap_or_else(|e| panic!("{a:?}: {e}"));
    assert_eq!(a[..2], ["proxy", "-c"]);
    assert_eq!(named_port(c, "http"), port_of(&cfg.proxy.listen));
    assert_eq!(named_port(c, "admin"), port_of(&cfg.proxy.admin));
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        str_of(&ann["prometheus.io/port"]).parse::<u64>().ok(),
        Some(port_of(&cfg.proxy.admin))
    );
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    assert!(
        cfg.proxy.metrics_public || cfg.proxy.admin_token_env.is_none(),
        "Prometheus scrapes without a token: /metrics must be public"
    );
    let env = env_names(c);
    assert!(env.contains(&"STRANGLER_STATE_URL".to_string()));
    assert!(
        cfg.proxy
            .admin_token_env
            .as_ref()
            .is_some_and(|t| env.contains(t)),
        "the admin token variable is set"
    );
    assert!(
        !cfg.proxy.listen.ip().is_loopback() && !cfg.proxy.admin.ip().is_loopback(),
        "in a pod, listen beyond loopback"
    );
    let svc = docs("k8s/router.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Service")
        .expect("service");
    assert_eq!(
        svc["spec"]["selector"]["app"],
        d["spec"]["selector"]["matchLabels"]["app"]
    );
}

#[test]
fn kubernetes_cdc_runs_one_source_and_scaled_sinks() {
    let cfg = config();
    let cdc = cfg.cdc.as_ref().expect("[cdc]");
    let ds = deployments("k8s/cdc.yaml");
    let source = ds
        .iter()
        .find(|d| args(container(d)).contains(&"--source-only".to_string()))
        .expect("source");
    let sinks = ds
        .iter()
        .find(|d| args(container(d)).contains(&"--sinks-only".to_string()))
        .expect("sinks");
    assert_eq!(
        source["spec"]["replicas"].as_u64(),
        Some(1),
        "one reader per slot"
    );
    assert_eq!(source["spec"]["strategy"]["type"], "Recreate");
    assert!(
        sinks["spec"]["replicas"].as_u64().unwrap_or(0) > 1,
        "sinks scale as a consumer group"
    );
    for d in [source, sinks] {
        let c = container(d);
        let a = args(c);
        Cli::try_parse_from(std::iter::once("strangler".to_string()).chain(a.clone()))
            .unwrap_or_else(|e| panic!("{a:?}: {e}"));
        let metrics = a
            .iter()
            .position(|x| x == "--metrics")
            .map(|i| a[i + 1].clone())
            .expect("--metrics");
        let port: u64 = metrics
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert_eq!(named_port(c, "metrics"), port);
        assert_eq!(
            str_of(&d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
                .parse::<u64>()
                .ok(),
            Some(port)
        );
        assert!(
            env_names(c).contains(&cdc.source.url_env),
            "{}",
            cdc.source.url_env
        );
    }
    for s in &cdc.sinks {
        assert!(
            env_names(container(sinks)).contains(&s.url_env),
            "sink workers get {}",
            s.url_env
        );
    }
}

#[test]
fn systemd_units_run_valid_commands() {
    for unit in ["strangler-proxy.service", "strangler-cdc.service"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).expect("unit");
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let mut words = exec.split_whitespace();
        assert!(words.next().is_some_and(|b| b.ends_with("/strangler")));
        Cli::try_parse_from(std::iter::once("strangler").chain(words))
            .unwrap_or_else(|e| panic!("{unit}: {e}"));
        assert!(text.contains("KillSignal=SIGTERM"), "{unit} drains on stop");
    }
    let proxy =
        std::fs::read_to_string(deploy().join("systemd/strangler-proxy.service")).expect("unit");
    assert!(
        proxy.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "reload is SIGHUP"
    );
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("--bin strangler") && dockerfile.contains("cmake"));
}
