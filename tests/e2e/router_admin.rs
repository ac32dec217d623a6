//! The admin API: token, route changes, rollback, metrics.

use serde_json::{json, Value};

use crate::support::*;

const ROUTES: &str = r#"
[[routes]]
name = "get-product"
methods = ["GET"]
path = "/products/{id}"
service = "svc"
stage = "migrated"
"#;

async fn setup(token: Option<&str>) -> (TestUpstream, TestUpstream, Harness, Proxy) {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let mut text = format!("{}{ROUTES}", upstreams(&legacy, &[("svc", &svc)]));
    if token.is_some() {
        text = format!("{text}\n");
    }
    h.write_config(&text);
    if token.is_some() {
        let cfg = std::fs::read_to_string(h.config_path()).expect("read");
        std::fs::write(
            h.config_path(),
            cfg.replace(
                "[proxy]\n",
                "[proxy]\nadmin_token_env = \"E2E_ADMIN_TOKEN\"\n",
            ),
        )
        .expect("write");
    }
    let p = match token {
        Some(t) => h.start_with_env(&[("E2E_ADMIN_TOKEN", t)]).await,
        None => h.start().await,
    };
    (legacy, svc, h, p)
}

#[tokio::test]
async fn rollback_is_obeyed_on_the_very_next_request() {
    let (_l, _s, h, p) = setup(None).await;
    let c = client();
    let url = format!("{}/products/1", p.base);
    assert_eq!(get_who(&c, &url, &[]).await, "svc");
    let r = c
        .post(format!("{}/routes/get-product/rollback", p.admin))
        .json(&json!({"reason": "errors in the new service"}))
        .send()
        .await
        .expect("rollback");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["route"]["stage"], "legacy");
    assert_eq!(body["audit"]["before"]["stage"], "migrated");
    assert_eq!(
        get_who(&c, &url, &[]).await,
        "legacy",
        "the very next request"
    );
    // The audit log says who, when, why, before and after.
    let (code, out, _) = cli(
        &["route", "history", "get-product", "--json"],
        &h.config_path(),
    );
    assert_eq!(code, 0);
    let hist: Value = serde_json::from_str(&out).expect("history json");
    let e = &hist["history"][0];
    assert_eq!(
        (e["actor"].as_str(), e["reason"].as_str()),
        (Some("admin-api"), Some("errors in the new service"))
    );
    assert_eq!(
        (e["before"]["stage"].as_str(), e["after"]["stage"].as_str()),
        (Some("migrated"), Some("legacy"))
    );
    assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[tokio::test]
async fn put_route_validates_and_applies() {
    let (_l, _s, _h, p) = setup(None).await;
    let c = client();
    let put = |body: Value| {
        let (c, url) = (c.clone(), format!("{}/routes/get-product", p.admin));
        async move {
            let r = c.put(url).json(&body).send().await.expect("put");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, b) = put(json!({"stage": "canry"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown stage \"canry\"")),
        "{b}"
    );
    let (s, b) = put(json!({"stage": "canary"})).await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = put(json!({"stage": "canary", "percent": 101})).await;
    assert_eq!(s, 422, "{b}");
    let (s, _) = put(json!({"stage": "canary", "percent": 25, "color": "red"})).await;
    assert_eq!(s, 400, "unknown fields are refused");
    let (s, b) = put(json!({"stage": "canary", "percent": 25, "reason": "first users"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["route"]["stage"].as_str(), b["route"]["percent"].as_f64()),
        (Some("canary"), Some(25.0))
    );
    assert_eq!(b["route"]["origin"], "runtime");
    assert_eq!(b["route"]["declared"]["stage"], "migrated");
    // A step forward runs the promotion gates: nothing was shadowed.
    let (s, b) = put(json!({"stage": "canary", "percent": 50})).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["gates"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["name"] == "shadow" && g["ok"] == false)),
        "{b}"
    );
    let (s, b) = put(json!({"stage": "canary", "percent": 50, "force": true})).await;
    assert_eq!(s, 422, "a forced move needs a reason: {b}");
    let (s, b) =
        put(json!({"stage": "canary", "percent": 50, "force": true, "reason": "hotfix"})).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["audit"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("FORCED past failed gates (shadow")),
        "{b}"
    );
    let r = c
        .put(format!("{}/routes/nope", p.admin))
        .json(&json!({"stage": "legacy"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 404);
    let list: Value = c
        .get(format!("{}/routes", p.admin))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(list["routes"][0]["name"], "get-product");
    assert_eq!(list["routes"][0]["percent"], 50.0);
}

#[tokio::test]
async fn admin_token_is_enforced() {
    let (_l, _s, _h, p) = setup(Some("s3cret")).await;
    let c = client();
    assert_eq!(
        c.get(format!("{}/healthz", p.admin))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    for path in ["/metrics", "/routes", "/routes/get-product"] {
        let r = c
            .get(format!("{}{path}", p.admin))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{path} without a token");
        let r = c
            .get(format!("{}{path}", p.admin))
            .bearer_auth("wrong")
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = c
            .get(format!("{}{path}", p.admin))
            .bearer_auth("s3cret")
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    let r = c
        .post(format!("{}/routes/get-product/rollback", p.admin))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let c2 = client();
    assert_eq!(
        get_who(&c2, &format!("{}/products/1", p.base), &[]).await,
        "svc",
        "rollback without a token did nothing"
    );
}

#[tokio::test]
async fn proxy_refuses_to_start_when_the_token_variable_is_missing() {
    let legacy = TestUpstream::start("legacy").await;
    let h = Harness::new();
    h.write_config(&upstreams(&legacy, &[]));
    let cfg = std::fs::read_to_string(h.config_path()).expect("read");
    std::fs::write(
        h.config_path(),
        cfg.replace(
            "[proxy]\n",
            "[proxy]\nadmin_token_env = \"E2E_UNSET_TOKEN\"\n",
        ),
    )
    .expect("write");
    let (code, _, err) = cli(&["proxy"], &h.config_path());
    assert_eq!(code, 2);
    assert!(err.contains("E2E_UNSET_TOKEN"), "{err}");
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let (_l, _s, _h, p) = setup(None).await;
    let c = client();
    for i in 0..7 {
        get_who(&c, &format!("{}/products/{i}", p.base), &[]).await;
    }
    for _ in 0..3 {
        get_who(&c, &format!("{}/other", p.base), &[]).await;
    }
    assert_eq!(
        p.metric_settled(
            "strangler_requests_total{code=\"200\",route=\"get-product\",target=\"svc\"}"
        )
        .await,
        7.0
    );
    assert_eq!(
        p.metric_settled(
            "strangler_requests_total{code=\"200\",route=\"default\",target=\"legacy\"}"
        )
        .await,
        3.0
    );
    assert_eq!(
        p.metric_settled(
            "strangler_request_duration_seconds_count{route=\"get-product\",target=\"svc\"}"
        )
        .await,
        7.0
    );
    let view: Value = c
        .get(format!("{}/routes/get-product", p.admin))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(view["requests"]["svc"], 7);
    let summary: Value = c
        .get(format!("{}/shadow/summary", p.admin))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    // Migrated GETs are reverse-shadowed (the monolith gets copies).
    assert_eq!(summary["routes"][0]["route"], "get-product");
    assert_eq!(summary["routes"][0]["stage"], "migrated");
}

/// The admin API shows a route's next promotion from the same engine as
/// `strangler status`: the same gates, in the same state.
#[tokio::test]
async fn the_admin_api_and_the_board_show_the_same_gates() {
    let (_legacy, _svc, h, p) = setup(None).await;
    let c = client();
    let r = c
        .put(format!("{}/routes/get-product", p.admin))
        .json(&serde_json::json!({ "stage": "shadow", "reason": "compare first" }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let view: Value = c
        .get(format!("{}/routes/get-product", p.admin))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let gates = &view["promotion"]["gates"];
    assert_eq!(gates[0]["name"], "shadow", "{view}");
    assert_eq!(gates[0]["ok"], false, "no samples yet: {view}");
    let (code, out, err) = cli(&["status", "--json"], &h.config_path());
    assert_eq!(code, 0, "{err}");
    let board: Value = serde_json::from_str(&out).expect("json");
    let row = board["routes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["route"] == "get-product"))
        .cloned()
        .expect("the route on the board");
    assert_eq!(&row["gates"], gates, "board: {out}");
}

/// Local ports with connections in TIME_WAIT (from /proc/net/tcp{,6}).
fn time_wait_ports() -> Vec<u16> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) == Some(&"06") {
                if let Some(port) = cols
                    .get(1)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    out.push(port);
                }
            }
        }
    }
    out
}

/// Killed with connections open, the proxy leaves its ports in TIME_WAIT;
/// a new one binds them at once.
#[tokio::test]
async fn a_restarted_proxy_binds_its_ports_at_once() {
    let (_l, _s, h, p) = setup(None).await;
    let (data, admin) = h.ports();
    let c = client();
    for _ in 0..5 {
        assert_eq!(
            get_who(&c, &format!("{}/products/1", p.base), &[]).await,
            "svc"
        );
        let r = c
            .get(format!("{}/routes", p.admin))
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status(), 200);
    }
    // The server side closes first: its ports go to TIME_WAIT.
    drop(p);
    drop(c);
    let waiting = eventually(std::time::Duration::from_secs(5), || async {
        let tw = time_wait_ports();
        tw.contains(&data) && tw.contains(&admin)
    })
    .await;
    assert!(
        waiting.is_some(),
        "no TIME_WAIT on {data}/{admin}: {:?}",
        time_wait_ports()
    );
    let p = h
        .start_on_same_ports()
        .await
        .unwrap_or_else(|log| panic!("the restart could not bind:\n{log}"));
    assert_eq!(
        get_who(&client(), &format!("{}/products/1", p.base), &[]).await,
        "svc"
    );
}

#[tokio::test]
async fn an_open_admin_listener_beyond_loopback_is_refused_unless_allowed() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let (_, admin) = h.ports();
    let text = h
        .config_text(&format!("{}{ROUTES}", upstreams(&legacy, &[("svc", &svc)])))
        .replace(&format!("127.0.0.1:{admin}"), &format!("0.0.0.0:{admin}"));
    std::fs::write(h.config_path(), &text).expect("write");
    let out = std::process::Command::new(strangler_bin())
        .args(["proxy", "-c"])
        .arg(h.config_path())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("beyond loopback") && err.contains("admin_insecure"),
        "{err}"
    );
    std::fs::write(
        h.config_path(),
        text.replace("[proxy]\n", "[proxy]\nadmin_insecure = true\n"),
    )
    .expect("write");
    let p = h.start_on_same_ports().await.expect("starts when allowed");
    assert_eq!(
        client()
            .get(format!("{}/routes", p.admin))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
}

#[tokio::test]
async fn metrics_can_be_public_while_routes_need_the_token() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let text = h
        .config_text(&format!("{}{ROUTES}", upstreams(&legacy, &[("svc", &svc)])))
        .replace(
            "[proxy]\n",
            "[proxy]\nadmin_token_env = \"E2E_ADMIN_TOKEN\"\nmetrics_public = true\n",
        );
    std::fs::write(h.config_path(), text).expect("write");
    let p = h.start_with_env(&[("E2E_ADMIN_TOKEN", "s3cret")]).await;
    let c = client();
    let m = c
        .get(format!("{}/metrics", p.admin))
        .send()
        .await
        .expect("get");
    assert_eq!(m.status(), 200);
    assert!(m
        .text()
        .await
        .unwrap_or_default()
        .contains("strangler_route_state"));
    let r = c
        .get(format!("{}/routes", p.admin))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
}

fn tokens_file(path: &std::path::Path, name: &str, token: &str) {
    use sha2::Digest;
    std::fs::write(
        path,
        format!(
            "[[tokens]]\nname = \"{name}\"\nrole = \"operator\"\nsha256 = \"{:x}\"\n",
            sha2::Sha256::digest(token.as_bytes())
        ),
    )
    .expect("tokens file");
}

#[tokio::test]
async fn admin_tokens_are_read_again_on_reload() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let tokens = h.dir.path().join("tokens.toml");
    tokens_file(&tokens, "old-ci", "first-token");
    let text = h
        .config_text(&format!("{}{ROUTES}", upstreams(&legacy, &[("svc", &svc)])))
        .replace(
            "[proxy]\n",
            &format!("[proxy]\nadmin_tokens_file = \"{}\"\n", tokens.display()),
        );
    std::fs::write(h.config_path(), text).expect("config");
    let p = h.start().await;
    let c = client();
    let status = |token: &'static str| {
        let c = c.clone();
        let url = format!("{}/routes", p.admin);
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("first-token").await, 200);
    assert_eq!(status("second-token").await, 401);
    // The token is rotated in the file; SIGHUP reloads it without a restart.
    tokens_file(&tokens, "new-ci", "second-token");
    p.signal("HUP");
    let rotated = eventually(std::time::Duration::from_secs(20), || async {
        status("second-token").await == 200
    })
    .await;
    assert!(
        rotated.is_some(),
        "the new token is accepted after a reload"
    );
    assert_eq!(status("first-token").await, 401, "the old token is not");
}

#[tokio::test]
async fn a_page_of_another_origin_cannot_change_routes_even_on_an_open_admin_api() {
    let (_l, _s, _h, p) = setup(None).await;
    let c = client();
    let post = |extra: Option<(&'static str, String)>| {
        let mut r = c
            .post(format!("{}/routes/get-product/rollback", p.admin))
            .json(&json!({"reason": "test"}));
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        r.send()
    };
    // What a form or fetch on another site sends.
    let r = post(Some(("origin", "http://evil.example".to_string())))
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = post(Some(("sec-fetch-site", "cross-site".to_string())))
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    let c2 = client();
    assert_eq!(
        get_who(&c2, &format!("{}/products/1", p.base), &[]).await,
        "svc",
        "nothing was rolled back"
    );
    // The board's own page (same origin), and clients that are no browser.
    let host = p.admin.trim_start_matches("http://").to_string();
    let r = post(Some(("origin", format!("http://{host}"))))
        .await
        .expect("post");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = client()
        .post(format!("{}/routes/get-product/resume", p.admin))
        .json(&json!({"reason": "back"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
}
