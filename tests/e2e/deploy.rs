//! The deployment examples are wired to the binary they run.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_yaml_ng::Value;
use strangler::cli::Cli;
use strangler_config::Config;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy")
}

fn docs_of(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("yaml"))
        .collect()
}

/// The environments, each a Kustomize overlay of `k8s/base`.
const ENVS: [&str; 2] = ["overlays/staging", "overlays/production"];

/// What `kubectl kustomize k8s/<dir>` renders, for the transformers these
/// manifests use (resources, namespace, images, replicas); any other key
/// fails here, so the rendering stays what Kustomize does (and where
/// `kubectl` is installed, it is compared with Kustomize's own).
fn render(dir: &str) -> Vec<Value> {
    let dir = deploy().join("k8s").join(dir);
    let k = &docs_of(&dir.join("kustomization.yaml"))[0];
    for key in k.as_mapping().expect("kustomization").keys() {
        let key = str_of(key);
        assert!(
            [
                "apiVersion",
                "kind",
                "resources",
                "namespace",
                "images",
                "replicas"
            ]
            .contains(&key.as_str()),
            "{}: {key} is not rendered by this test",
            dir.display()
        );
    }
    let mut out = Vec::new();
    for r in k["resources"].as_sequence().expect("resources") {
        let path = dir.join(str_of(r));
        if path.is_dir() {
            out.extend(render(
                path.strip_prefix(deploy().join("k8s"))
                    .expect("under k8s")
                    .to_str()
                    .expect("utf-8"),
            ));
        } else {
            out.extend(docs_of(&path));
        }
    }
    for d in &mut out {
        if let Some(ns) = k["namespace"].as_str() {
            d["metadata"]["namespace"] = Value::from(ns);
        }
        let workload = d["kind"] == "Deployment" || d["kind"] == "Job";
        if let (Some(images), true) = (k["images"].as_sequence(), workload) {
            if let Some(cs) = d["spec"]["template"]["spec"]["containers"].as_sequence_mut() {
                for c in cs {
                    let image = str_of(&c["image"]);
                    let (name, tag) = image.rsplit_once(':').unwrap_or((&image, ""));
                    if let Some(i) = images.iter().find(|i| str_of(&i["name"]) == name) {
                        let name = i["newName"].as_str().unwrap_or(name);
                        let tag = i["newTag"].as_str().unwrap_or(tag);
                        c["image"] = Value::from(format!("{name}:{tag}"));
                    }
                }
            }
        }
        if let Some(replicas) = k["replicas"].as_sequence() {
            if let Some(r) = replicas.iter().find(|r| r["name"] == d["metadata"]["name"]) {
                if d["kind"] == "Deployment" {
                    d["spec"]["replicas"] = r["count"].clone();
                }
            }
        }
    }
    out
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
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
fn config(docs: &[Value]) -> Config {
    let cm = named(docs, "ConfigMap", "strangler-config");
    let text = cm["data"]["strangler.toml"]
        .as_str()
        .expect("strangler.toml");
    Config::from_toml(text, Path::new("/etc/strangler/strangler.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
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
    for env in ENVS {
        let docs = render(env);
        let cfg = config(&docs);
        let d = named(&docs, "Deployment", "strangler-router");
        assert!(
            d["spec"]["replicas"].as_u64().unwrap_or(0) > 1,
            "{env}: a fleet"
        );
        let c = container(d);
        let a = args(c);
        Cli::try_parse_from(std::iter::once("strangler".to_string()).chain(a.clone()))
            .unwrap_or_else(|e| panic!("{a:?}: {e}"));
        assert_eq!(a[..2], ["proxy", "-c"]);
        assert_eq!(named_port(c, "http"), port_of(&cfg.proxy.listen));
        assert_eq!(named_port(c, "admin"), port_of(&cfg.proxy.admin));
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"],
            "/readyz?degraded=ok"
        );
        for probe in ["readinessProbe", "livenessProbe"] {
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
        let env_vars = env_names(c);
        assert!(env_vars.contains(&"STRANGLER_STATE_URL".to_string()));
        assert!(
            cfg.proxy
                .admin_token_env
                .as_ref()
                .is_some_and(|t| env_vars.contains(t)),
            "the admin token variable is set"
        );
        assert!(
            !cfg.proxy.listen.ip().is_loopback() && !cfg.proxy.admin.ip().is_loopback(),
            "in a pod, listen beyond loopback"
        );
        // The route cache is written where a volume is mounted (the root
        // filesystem is read-only).
        let mounted = c["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .any(|m| {
                cfg.state.cache_file.starts_with(str_of(&m["mountPath"])) && m["readOnly"] != true
            });
        assert!(
            mounted,
            "{env}: {} is on a writable volume",
            cfg.state.cache_file.display()
        );
        let svc = named(&docs, "Service", "strangler-router");
        assert_eq!(
            svc["spec"]["selector"]["app"],
            d["spec"]["selector"]["matchLabels"]["app"]
        );
    }
}

#[test]
fn kubernetes_cdc_runs_an_active_and_a_standby_source_and_scaled_sinks() {
    for env in ENVS {
        let docs = render(env);
        let cfg = config(&docs);
        let cdc = cfg.cdc.as_ref().expect("[cdc]");
        let ds = of_kind(&docs, "Deployment");
        let source = ds
            .iter()
            .find(|d| args(container(d)).contains(&"--source-only".to_string()))
            .expect("source");
        let sinks = ds
            .iter()
            .find(|d| args(container(d)).contains(&"--sinks-only".to_string()))
            .expect("sinks");
        assert!(
            source["spec"]["replicas"].as_u64().unwrap_or(0) >= 2,
            "{env}: an active source and a standby (the lease elects one)"
        );
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
            // The probes ask `cdc run` itself (`/livez`, `/readyz`: 503
            // while the slot is lost), on the metrics port.
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez", "{env}");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{env}");
            for probe in ["livenessProbe", "readinessProbe"] {
                assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{env} {probe}");
            }
            assert_eq!(
                str_of(&d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
                    .parse::<u64>()
                    .ok(),
                Some(port)
            );
        }
        assert!(
            env_names(container(source)).contains(&cdc.source.url_env),
            "{}",
            cdc.source.url_env
        );
        assert!(
            !env_names(container(sinks)).contains(&cdc.source.url_env),
            "{env}: sink workers read the broker and get no monolith credentials"
        );
        for s in &cdc.sinks {
            assert!(
                env_names(container(sinks)).contains(&s.url_env),
                "sink workers get {}",
                s.url_env
            );
        }
    }
}

/// What a cluster admin checks before admitting the manifests.
#[test]
fn kubernetes_manifests_are_fit_for_a_cluster() {
    let mut namespaces = std::collections::BTreeSet::new();
    for env in ENVS {
        let docs = render(env);
        for d in &docs {
            let ns = str_of(&d["metadata"]["namespace"]);
            assert!(
                !ns.is_empty(),
                "{env}: {:?} has no namespace",
                d["metadata"]["name"]
            );
            namespaces.insert(ns);
        }
        let workloads: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "Deployment" || d["kind"] == "Job")
            .collect();
        for w in &workloads {
            let name = str_of(&w["metadata"]["name"]);
            let pod = &w["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{env} {name}");
            for c in pod["containers"].as_sequence().expect("containers") {
                let image = str_of(&c["image"]);
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(
                    !tag.is_empty() && tag != "latest",
                    "{env} {name}: image {image} is not pinned"
                );
                for (what, v) in [
                    ("requests.cpu", &c["resources"]["requests"]["cpu"]),
                    ("requests.memory", &c["resources"]["requests"]["memory"]),
                    ("limits.memory", &c["resources"]["limits"]["memory"]),
                ] {
                    assert!(!str_of(v).is_empty(), "{env} {name}: no {what}");
                }
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{env} {name}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{env} {name}");
                assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{env} {name}");
                let a = args(c);
                Cli::try_parse_from(std::iter::once("strangler".to_string()).chain(a.clone()))
                    .unwrap_or_else(|e| panic!("{a:?}: {e}"));
            }
        }
        // Every Deployment has a disruption budget that selects its pods.
        for d in of_kind(&docs, "Deployment") {
            let app = &d["spec"]["selector"]["matchLabels"]["app"];
            assert!(
                of_kind(&docs, "PodDisruptionBudget")
                    .iter()
                    .any(|p| &p["spec"]["selector"]["matchLabels"]["app"] == app),
                "{env}: no PodDisruptionBudget for {app:?}"
            );
        }
        // The schema is migrated by a Job, not by the pods.
        let job = named(&docs, "Job", "strangler-migrate");
        assert_eq!(args(container(job))[0], "migrate");
        // The admin port is reachable only from admin clients and the
        // monitoring namespace; the data port from anywhere.
        let policy = of_kind(&docs, "NetworkPolicy")
            .into_iter()
            .find(|p| p["spec"]["podSelector"]["matchLabels"]["app"] == "strangler-router")
            .expect("a NetworkPolicy for the router");
        let rules = policy["spec"]["ingress"].as_sequence().expect("ingress");
        let admin = rules
            .iter()
            .find(|r| r["ports"][0]["port"] == "admin")
            .expect("a rule for the admin port");
        assert!(
            admin["from"].as_sequence().is_some_and(|f| !f.is_empty()),
            "admin is not open to all"
        );
        assert!(rules
            .iter()
            .any(|r| r["ports"][0]["port"] == "http" && r["from"].is_null()));
        // Where kubectl is installed, Kustomize renders the same.
        if let Ok(out) = std::process::Command::new("kubectl")
            .args(["kustomize"])
            .arg(deploy().join("k8s").join(env))
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs: Vec<Value> = serde_yaml_ng::Deserializer::from_slice(&out.stdout)
                .map(|d| Value::deserialize(d).expect("yaml"))
                .collect();
            let key =
                |d: &Value| format!("{}/{}", str_of(&d["kind"]), str_of(&d["metadata"]["name"]));
            let mut ours = docs.clone();
            let mut theirs = theirs;
            ours.sort_by_key(key);
            theirs.sort_by_key(key);
            assert_eq!(
                ours.iter().map(key).collect::<Vec<_>>(),
                theirs.iter().map(key).collect::<Vec<_>>(),
                "{env}"
            );
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    a == b,
                    "{env}: {} renders differently here than with Kustomize:\n{}\n---\n{}",
                    key(a),
                    serde_yaml_ng::to_string(a).unwrap_or_default(),
                    serde_yaml_ng::to_string(b).unwrap_or_default()
                );
            }
        }
    }
    assert_eq!(
        namespaces.len(),
        ENVS.len(),
        "each environment in its own namespace"
    );
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
