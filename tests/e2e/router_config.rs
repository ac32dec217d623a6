//! Config validation, hot reload (file change and SIGHUP), graceful drain.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn check_reports_file_line_col_and_key() {
    let h = Harness::new();
    let path = h.write_config("[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n\n[[routes]]\nname = \"a\"\npath = \"/a\"\nstage = \"canry\"\nservice = \"legacy2\"\n");
    let (code, _, err) = cli(&["check"], &path);
    assert_eq!(code, 2, "{err}");
    let file = path.display().to_string();
    // The harness writes 11 lines of [state] and [proxy] before the rest.
    assert!(
        err.contains(&format!(
            "{file}:18:9: routes[0].stage: unknown stage \"canry\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:19:11: routes[0].service: no upstream \"legacy2\""
        )),
        "{err}"
    );
    let (code, out, _) = cli(&["check", "--json"], &path);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["errors"][0]["line"], 18);
    assert_eq!(v["errors"][0]["key"], "routes[0].stage");
    let good = h.write_config("[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n");
    assert_eq!(cli(&["check"], &good).0, 0);
    let (code, _, err) = cli(&["check"], &h.dir.path().join("missing.toml"));
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the file"), "{err}");
}

fn routes(stage: &str) -> String {
    format!(
        "[[routes]]\nname = \"p\"\npath = \"/p/{{id}}\"\nservice = \"svc\"\nstage = \"{stage}\"\n"
    )
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_table_and_a_good_one_applies() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let ups = upstreams(&legacy, &[("svc", &svc)]);
    h.write_config(&format!("{ups}{}", routes("migrated")));
    let p = h.start().await;
    let c = client();
    let url = format!("{}/p/1", p.base);
    assert_eq!(get_who(&c, &url, &[]).await, "svc");

    // A broken file: rejected, logged with line:col, old table keeps serving.
    std::fs::write(
        h.config_path(),
        h.config_text(&format!("{ups}{}", routes("legcy"))),
    )
    .expect("write");
    let rejected = eventually(Duration::from_secs(5), || async {
        p.metric("strangler_config_reloads_total{result=\"error\"}")
            .await
            >= 1.0
    })
    .await;
    assert!(rejected.is_some(), "bad file was not noticed");
    assert!(
        p.log_text()
            .contains("routes[0].stage: unknown stage \"legcy\""),
        "{}",
        p.log_text()
    );
    for _ in 0..20 {
        assert_eq!(
            get_who(&c, &url, &[]).await,
            "svc",
            "the old table keeps serving"
        );
    }

    // A good file: applied.
    std::fs::write(
        h.config_path(),
        h.config_text(&format!("{ups}{}", routes("legacy"))),
    )
    .expect("write");
    let applied = eventually(Duration::from_secs(5), || async {
        get_who(&c, &url, &[]).await == "legacy"
    })
    .await;
    assert!(applied.is_some(), "good file was not applied");
}

#[tokio::test]
async fn sighup_reloads() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let ups = upstreams(&legacy, &[("svc", &svc)]);
    h.write_config(&format!("{ups}{}", routes("legacy")));
    let p = h.start().await;
    let c = client();
    let before = p
        .metric("strangler_config_reloads_total{result=\"ok\"}")
        .await;
    p.signal("HUP");
    let reloaded = eventually(Duration::from_secs(5), || async {
        p.metric("strangler_config_reloads_total{result=\"ok\"}")
            .await
            > before
    })
    .await;
    assert!(
        reloaded.is_some(),
        "SIGHUP did not reload: {}",
        p.log_text()
    );
    assert_eq!(
        get_who(&c, &format!("{}/p/1", p.base), &[]).await,
        "legacy",
        "still serving after SIGHUP"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let legacy = TestUpstream::start("legacy").await;
    let h = Harness::new();
    h.write_config(&upstreams(&legacy, &[]));
    let mut p = h.start().await;
    let c = client();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), format!("{}/slow?ms=800", p.base));
        async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    // Let the slow request reach the upstream before the signal.
    let reached = eventually(Duration::from_secs(5), || async { legacy.requests() >= 1 }).await;
    assert!(reached.is_some());
    p.signal("TERM");
    assert_eq!(
        slow.await
            .expect("join")
            .expect("the in-flight request completes"),
        200
    );
    let status = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(s)) = p.child.try_wait() {
                return Some(s);
            }
            if start.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("join");
    assert!(
        status.is_some_and(|s| s.success()),
        "proxy did not exit cleanly after draining: {status:?}"
    );
}

#[test]
fn the_example_migration_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/strangler.toml");
    let (code, out, err) = cli(&["check"], &path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("4 upstreams") || out.contains("3 upstreams"),
        "{out}"
    );
}

#[test]
fn init_writes_a_valid_config_from_an_openapi_document() {
    let h = Harness::new();
    let out_path = h.dir.path().join("new.toml");
    let openapi = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/legacy-monolith/openapi.yaml");
    let o = std::process::Command::new(strangler_bin())
        .args(["init", "--openapi"])
        .arg(&openapi)
        .arg("-c")
        .arg(&out_path)
        .output()
        .expect("init");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out_path).expect("written");
    assert!(
        text.contains("path = \"/customers/{id}/orders\"") && text.contains("# Place an order"),
        "{text}"
    );
    let (code, out, _) = cli(&["route", "list", "--json"], &out_path);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let routes = v["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 7);
    assert!(routes.iter().all(|r| r["stage"] == "legacy"));
    // Refuses to overwrite; without --openapi writes the commented template.
    let o = std::process::Command::new(strangler_bin())
        .args(["init", "-c"])
        .arg(&out_path)
        .output()
        .expect("init");
    assert_eq!(o.status.code(), Some(2));
    let tmpl = h.dir.path().join("template.toml");
    let o = std::process::Command::new(strangler_bin())
        .args(["init", "-c"])
        .arg(&tmpl)
        .output()
        .expect("init");
    assert!(o.status.success());
    assert_eq!(cli(&["check"], &tmpl).0, 0);
}

/// An upstream on an IPv6 address (`http://[::1]:PORT`) is accepted and
/// served through.
#[tokio::test]
async fn an_ipv6_upstream_is_served() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start_on("svc6", "[::1]:0".parse().expect("addr")).await;
    assert!(svc.url().starts_with("http://[::1]:"), "{}", svc.url());
    let h = Harness::new();
    let ups = upstreams(&legacy, &[("svc", &svc)]);
    let path = h.write_config(&format!("{ups}{}", routes("migrated")));
    assert_eq!(cli(&["check"], &path).0, 0);
    let p = h.start().await;
    assert_eq!(
        get_who(&client(), &format!("{}/p/1", p.base), &[]).await,
        "svc6"
    );
}
