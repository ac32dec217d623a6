//! Shadow traffic through the real proxy, compared and reported.

use std::time::Duration;

use futures::{stream, StreamExt};
use serde_json::Value;
use strangler_state::store::StateStore;

use crate::support::*;

fn routes(extra_compare: &str, stage: &str, tables: &str) -> String {
    format!(
        r#"
[[routes]]
name = "product"
path = "/product/{{id}}"
service = "svc"
stage = "{stage}"
shadow_percent = 100.0
{tables}
[routes.compare]
aa_percent = 50.0
{extra_compare}"#
    )
}

async fn setup(
    stage: &str,
    proxy_extra: &[(&str, &str)],
    tables: &str,
) -> (TestUpstream, TestUpstream, Harness, Proxy) {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    // With tables, the random field is ignored so a re-check can match.
    let compare = if tables.is_empty() {
        ""
    } else {
        "ignore = [\"/nonce\"]"
    };
    h.write_config(&format!(
        "{}{}",
        upstreams(&legacy, &[("svc", &svc)]),
        routes(compare, stage, tables)
    ));
    if !proxy_extra.is_empty() {
        let mut cfg = std::fs::read_to_string(h.config_path()).expect("read");
        for (k, v) in proxy_extra {
            cfg = cfg.replace("[proxy]\n", &format!("[proxy]\n{k} = {v}\n"));
        }
        std::fs::write(h.config_path(), cfg).expect("write");
    }
    let p = h.start().await;
    (legacy, svc, h, p)
}

/// Waits until the proxy has flushed `n` comparisons of `route` to the store.
async fn flushed(h: &Harness, route: &str, n: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (code, out, err) = cli(
            &["shadow", "report", "--route", route, "--format", "json"],
            &h.config_path(),
        );
        assert_eq!(code, 0, "{err}");
        last = serde_json::from_str(&out).expect("json report");
        if last["routes"][0]["comparisons"].as_u64().unwrap_or(0) >= n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never flushed {n} comparisons: {last}");
}

#[tokio::test]
async fn shadow_reports_the_known_field_and_learns_the_random_one_as_noise() {
    // Every request is compared (the in-flight bound has its own test; on a
    // loaded machine the default would skip some).
    let (legacy, svc, h, p) = setup("shadow", &[("max_shadow_inflight", "100000")], "").await;
    svc.set_price_delta(7);
    let c = client();
    let n = 600;
    let results: Vec<(String, Vec<u8>, String)> = stream::iter(0..n)
        .map(|i| {
            let (c, base) = (c.clone(), p.base.clone());
            async move {
                let id = format!("req-{i}");
                let r = c
                    .get(format!("{base}/product/{i}"))
                    .header("x-request-id", &id)
                    .send()
                    .await
                    .expect("send");
                let up = r
                    .headers()
                    .get("x-upstream")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                (id, r.bytes().await.expect("body").to_vec(), up)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    // The client gets the monolith's bytes, exactly.
    for (id, body, up) in &results {
        assert_eq!(up, "legacy");
        let sent = legacy.sent_bodies(id);
        assert!(
            sent.iter().any(|b| b[..] == body[..]),
            "request {id}: client bytes are the monolith's"
        );
    }
    let report = flushed(&h, "product", n).await;
    let route = &report["routes"][0];
    assert!(
        svc.shadow_requests() >= n,
        "every shadow request carries x-strangler-shadow: 1"
    );
    let fields = route["fields"].as_array().expect("fields");
    let price = fields
        .iter()
        .find(|f| f["field"] == "/price")
        .expect("/price is reported");
    assert_eq!(price["noise"], false);
    let mismatches = price["mismatches"].as_u64().unwrap_or(0);
    assert_eq!(mismatches, n / 2, "even ids differ in price");
    assert_eq!(
        fields[0]["field"], "/price",
        "the real difference ranks first"
    );
    let nonce = fields
        .iter()
        .find(|f| f["field"] == "/nonce")
        .expect("/nonce is seen");
    assert_eq!(nonce["noise"], true, "the random field is noise: {nonce}");
    assert!(route["aa_comparisons"].as_u64().unwrap_or(0) > 100);
    assert_eq!(route["verdict"]["status"], "NOT_READY");
    assert_eq!(route["verdict"]["real_mismatches"], n / 2);
    let (code, out, _) = cli(&["shadow", "gate", "product"], &h.config_path());
    assert_eq!(code, 1, "NOT READY exits 1: {out}");
    assert!(
        p.metric("strangler_shadow_total{outcome=\"mismatch\",route=\"product\"}")
            .await
            >= (n / 2) as f64
    );

    // The noise suggestion, accepted into the file.
    let (code, out, _) = cli(&["shadow", "noise", "product"], &h.config_path());
    assert_eq!(code, 0);
    assert!(
        out.contains("\"/nonce\"") && !out.contains("\"/price\""),
        "{out}"
    );
    let (code, _, err) = cli(
        &["shadow", "noise", "product", "--accept"],
        &h.config_path(),
    );
    assert_eq!(code, 0, "{err}");
    let cfg = std::fs::read_to_string(h.config_path()).expect("read");
    assert!(cfg.contains("\"/nonce\""), "{cfg}");
    assert_eq!(cli(&["check"], &h.config_path()).0, 0);

    // Once the service is fixed and the stats reset, the gate opens.
    svc.set_price_delta(0);
    assert_eq!(cli(&["shadow", "reset", "product"], &h.config_path()).0, 0);
    for i in 0..600 {
        get_who(&c, &format!("{}/product/{i}", p.base), &[]).await;
    }
    flushed(&h, "product", 600).await;
    let (code, out, _) = cli(
        &["shadow", "gate", "product", "--max-mismatch", "1"],
        &h.config_path(),
    );
    assert_eq!(code, 0, "READY exits 0: {out}");
    let (code, _, _) = cli(
        &["shadow", "gate", "product", "--min-samples", "100000"],
        &h.config_path(),
    );
    assert_eq!(code, 2, "too few samples exits 2");
}

#[tokio::test]
async fn unsafe_methods_are_not_shadowed_by_default() {
    let (_legacy, svc, _h, p) = setup("shadow", &[], "").await;
    let c = client();
    for i in 0..20 {
        let r = c
            .post(format!("{}/product/{i}", p.base))
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let r = c
            .delete(format!("{}/product/{i}", p.base))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 200);
    }
    get_who(&c, &format!("{}/product/1", p.base), &[]).await;
    let seen = eventually(Duration::from_secs(5), || async { svc.requests() >= 1 }).await;
    assert!(seen.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(svc.requests(), 1, "only the GET reached the service");
}

#[tokio::test]
async fn too_big_bodies_are_skipped_and_counted() {
    let (_legacy, _svc, h, p) = setup("shadow", &[("max_shadow_body_bytes", "1024")], "").await;
    let c = client();
    for i in 0..5 {
        let body = c
            .get(format!("{}/product/{i}?pad=5000", p.base))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert!(body.len() > 5000, "the client still gets the whole body");
    }
    for i in 0..3 {
        get_who(&c, &format!("{}/product/{i}", p.base), &[]).await;
    }
    let skipped = eventually(Duration::from_secs(5), || async {
        p.metric("strangler_shadow_total{outcome=\"skipped_body_too_large\",route=\"product\"}")
            .await
            == 5.0
    })
    .await;
    assert!(skipped.is_some(), "5 too-big responses counted");
    let report = flushed(&h, "product", 3).await;
    assert_eq!(report["routes"][0]["skipped"]["body_too_large"], 5);
}

#[tokio::test]
async fn shadow_inflight_is_bounded() {
    let (_legacy, _svc, _h, p) = setup("shadow", &[("max_shadow_inflight", "1")], "").await;
    // One slot and 20 concurrent requests with big bodies: most shadows find it taken.
    let c = client();
    let statuses: Vec<u16> = stream::iter(0..40)
        .map(|i| {
            let (c, base) = (c.clone(), p.base.clone());
            async move {
                c.get(format!("{base}/product/{i}?pad=200000"))
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    let skipped = eventually(Duration::from_secs(5), || async {
        p.metric("strangler_shadow_total{outcome=\"skipped_inflight\",route=\"product\"}")
            .await
            > 0.0
    })
    .await;
    assert!(
        skipped.is_some(),
        "with one slot, concurrent shadows are skipped and counted"
    );
}

#[tokio::test]
async fn migrated_routes_are_reverse_shadowed() {
    let (legacy, svc, h, p) = setup("migrated", &[], "").await;
    svc.set_price_delta(3);
    let c = client();
    for i in 0..50 {
        assert_eq!(
            get_who(&c, &format!("{}/product/{i}", p.base), &[]).await,
            "svc"
        );
    }
    let report = flushed(&h, "product", 50).await;
    let route = &report["routes"][0];
    assert!(
        legacy.shadow_requests() >= 50,
        "the monolith gets the copies"
    );
    let price = route["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["field"] == "/price")
        .expect("price");
    assert_eq!(price["mismatches"], 25);
    // Oriented monolith → service, whichever answered the client.
    assert_eq!(price["examples"][0]["legacy"], "100");
    assert_eq!(price["examples"][0]["candidate"], "103");
}

#[tokio::test]
async fn a_mismatch_that_replication_explains_is_counted_stale() {
    let (_legacy, svc, h, p) = setup("shadow", &[], "tables = [\"public.products\"]").await;
    let store = StateStore::connect(&format!(
        "sqlite://{}/state.db?mode=rwc",
        h.dir.path().display()
    ))
    .await
    .expect("store");
    // CDC is running and reporting (behind: the service still has the old price).
    let stream = strangler_state::lag::StreamKey {
        cluster: "7301".into(),
        slot: "strangler".into(),
        direction: strangler_state::lag::Direction::Forward,
    };
    let products = ("public.products", "public.products");
    store
        .report_source_position(&stream, 500)
        .await
        .expect("source");
    store
        .report_applied_position(&stream, "catalog", products, 400)
        .await
        .expect("applied");
    tokio::time::sleep(Duration::from_millis(400)).await;
    svc.set_price_delta(5);
    let c = client();
    get_who(&c, &format!("{}/product/2", p.base), &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Replication catches up: the service has the new data, and CDC says so.
    svc.set_price_delta(0);
    store
        .report_source_position(&stream, 1_000)
        .await
        .expect("source");
    store
        .report_applied_position(&stream, "catalog", products, 1_000)
        .await
        .expect("applied");
    let report = flushed(&h, "product", 1).await;
    let route = &report["routes"][0];
    assert_eq!(route["stale"], 1, "{route}");
    assert_eq!(route["verdict"]["real_mismatches"], 0);
    assert!(
        p.metric("strangler_shadow_total{outcome=\"stale\",route=\"product\"}")
            .await
            == 1.0
    );
}

#[tokio::test]
async fn the_html_report_shows_the_difference_in_a_browser() {
    let Some(chromium) = ["chromium", "chromium-browser"].iter().find(|b| {
        std::process::Command::new("which")
            .arg(b)
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        panic!("chromium is not installed: scripts/setup installs it");
    };
    let (_legacy, svc, h, p) = setup("shadow", &[], "").await;
    svc.set_price_delta(1);
    let c = client();
    for i in 0..40 {
        get_who(&c, &format!("{}/product/{i}", p.base), &[]).await;
    }
    flushed(&h, "product", 40).await;
    let out = h.dir.path().join("report.html");
    let (code, _, err) = cli(
        &["shadow", "report", "-o", out.to_str().expect("utf-8")],
        &h.config_path(),
    );
    assert_eq!(code, 0, "{err}");
    let profile = h.dir.path().join("chromium-profile");
    let dom = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", out.display()))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    // What this run measured, as the browser renders it: 40 comparisons,
    // the 20 even ids' price off by one (monolith 100, service 101), the
    // random nonce learned as noise, the verdict for 40 samples.
    assert!(
        dom.contains("<b>40</b><span>comparisons</span>"),
        "the comparison count: {dom}"
    );
    assert!(
        dom.contains("<code>/price</code></td><td class=\"num\">20</td>"),
        "the price field with its 20 mismatches: {dom}"
    );
    assert!(
        dom.contains("<pre>100</pre>") && dom.contains("<pre>101</pre>"),
        "the price example, monolith and service: {dom}"
    );
    assert!(
        dom.contains("<code>/nonce</code> <span class=\"noise\">noise</span>"),
        "the nonce is marked noise: {dom}"
    );
    assert!(
        !dom.contains("<code>/price</code> <span class=\"noise\">"),
        "the price is not noise"
    );
    assert!(
        dom.contains("INSUFFICIENT DATA"),
        "the verdict is shown (40 samples are too few)"
    );
}

/// An upstream that answers `/account` with secrets of its own (different
/// on each side, so every one of them is a difference), JSON or text.
async fn secret_upstream(side: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    use axum::response::IntoResponse;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route(
            "/account",
            axum::routing::get(move || async move {
                (
                    [
                        ("set-cookie", format!("sid=cookie-{side}-7731")),
                        ("x-upstream", side.to_string()),
                    ],
                    axum::Json(serde_json::json!({
                        "user": "bob",
                        "password": format!("pw-{side}-hunter2"),
                        "card": if side == "legacy" { "4111 1111 1111 1111" } else { "5500 0000 0000 0004" },
                        "note": format!("session token=tok-{side}-5521 issued"),
                    })),
                )
                    .into_response()
            }),
        )
        .route(
            "/notes",
            axum::routing::get(move || async move {
                format!("line one\nauth Bearer bearer-{side}-9911\napi_key={side}-key-3310\nend\n")
            }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, task)
}

/// Every secret the test sends or the upstreams answer.
const SECRETS: &[&str] = &[
    "pw-legacy-hunter2",
    "pw-svc-hunter2",
    "4111 1111 1111 1111",
    "5500 0000 0000 0004",
    "tok-legacy-5521",
    "tok-svc-5521",
    "cookie-legacy-7731",
    "cookie-svc-7731",
    "bearer-legacy-9911",
    "bearer-svc-9911",
    "legacy-key-3310",
    "svc-key-3310",
    "client-bearer-4455",
    "client-cookie-6677",
    "query-token-8899",
];

#[tokio::test]
async fn secrets_reach_no_report_no_log_and_no_stored_stat() {
    let (legacy, _l) = secret_upstream("legacy").await;
    let (svc, _s) = secret_upstream("svc").await;
    let h = Harness::new();
    let routes = r#"
[[routes]]
name = "account"
path = "/account"
service = "svc"
stage = "shadow"
shadow_percent = 100.0
[routes.compare]
aa_percent = 0.0

[[routes]]
name = "notes"
path = "/notes"
service = "svc"
stage = "shadow"
shadow_percent = 100.0
[routes.compare]
aa_percent = 0.0
"#;
    h.write_config(&format!(
        "[upstreams.legacy]\nurl = \"{legacy}\"\n\n[upstreams.svc]\nurl = \"{svc}\"\n{routes}"
    ));
    let p = h.start().await;
    let c = client();
    for path in ["/account", "/notes"] {
        for _ in 0..3 {
            let r = c
                .get(format!(
                    "{}{path}?access_token=query-token-8899&page=2",
                    p.base
                ))
                .header("authorization", "Bearer client-bearer-4455")
                .header("cookie", "sid=client-cookie-6677")
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200);
        }
    }
    flushed(&h, "account", 3).await;
    flushed(&h, "notes", 3).await;
    // The differences were seen (redacted), so the check below is not empty.
    let (_, md, _) = cli(&["shadow", "report", "--format", "md"], &h.config_path());
    assert!(
        md.contains("/password") && md.contains("[redacted]"),
        "{md}"
    );
    assert!(md.contains("header:set-cookie"), "{md}");

    let mut kept: Vec<(String, String)> = Vec::new();
    for format in ["md", "html", "json"] {
        let (code, out, err) = cli(&["shadow", "report", "--format", format], &h.config_path());
        assert_eq!(code, 0, "{err}");
        kept.push((format!("report {format}"), out));
    }
    let summary = c
        .get(format!("{}/shadow/summary", p.admin))
        .send()
        .await
        .expect("summary")
        .text()
        .await
        .expect("text");
    kept.push(("/shadow/summary".into(), summary));
    let store = StateStore::connect(&format!(
        "sqlite://{}?mode=rw",
        h.dir.path().join("state.db").display()
    ))
    .await
    .expect("store");
    let stats = store.shadow_stats().await.expect("stats");
    assert_eq!(stats.len(), 2);
    kept.push((
        "stored stats".into(),
        serde_json::to_string(&stats).expect("json"),
    ));
    kept.push(("proxy log".into(), p.log_text()));
    kept.push((
        "access log".into(),
        std::fs::read_to_string(h.dir.path().join("access.log")).unwrap_or_default(),
    ));
    for (place, text) in &kept {
        for s in SECRETS {
            assert!(!text.contains(s), "{s:?} reached the {place}:\n{text}");
        }
    }
}

/// One verdict everywhere: with the route's own thresholds the gate, every
/// report format, the admin summary and the board say NOT READY, and the
/// admin API refuses a canary unless forced (audited as FORCED).
#[tokio::test]
async fn every_surface_gives_the_same_verdict_and_put_obeys_it() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}{}\n[routes.promote]\nmin_samples = 20\nmax_mismatch = 1.0\n",
        upstreams(&legacy, &[("svc", &svc)]),
        routes("", "shadow", "")
    ));
    // Even product ids get another price from the service: a real difference.
    svc.set_price_delta(1);
    let p = h.start().await;
    let c = client();
    for i in 0..25 {
        get_who(&c, &format!("{}/product/{i}", p.base), &[]).await;
    }
    let report = flushed(&h, "product", 25).await;
    assert_eq!(
        report["routes"][0]["verdict"]["status"], "NOT_READY",
        "{report}"
    );
    assert_eq!(report["routes"][0]["stage"], "shadow");
    let (code, out, err) = cli(&["shadow", "gate", "product"], &h.config_path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("NOT READY"), "{out}");
    for format in ["md", "html"] {
        let (_, out, _) = cli(&["shadow", "report", "--format", format], &h.config_path());
        assert!(
            out.contains("NOT READY") && !out.contains("INSUFFICIENT DATA"),
            "{format}: {out}"
        );
    }
    let summary: Value = c
        .get(format!("{}/shadow/summary", p.admin))
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    assert_eq!(summary["routes"][0]["verdict"], "NOT_READY", "{summary}");
    let (_, out, _) = cli(&["status", "--json"], &h.config_path());
    let board: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        board["routes"][0]["shadow"]["verdict"], "NOT READY",
        "{board}"
    );

    let put = |body: Value| {
        c.put(format!("{}/routes/product", p.admin))
            .json(&body)
            .send()
    };
    let r = put(serde_json::json!({"stage": "canary", "percent": 10}))
        .await
        .expect("put");
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    let shadow_gate = body["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "shadow"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(shadow_gate["ok"], false, "{body}");
    assert!(
        shadow_gate["detail"]
            .as_str()
            .is_some_and(|d| d.contains("NOT READY")),
        "{body}"
    );
    let r =
        put(serde_json::json!({"stage": "canary", "percent": 10, "force": true, "reason": "demo"}))
            .await
            .expect("put");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    let reason = body["audit"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("FORCED past failed gates (shadow") && reason.ends_with("demo"),
        "{reason}"
    );
    assert_eq!(body["route"]["stage"], "canary");
}

#[tokio::test]
async fn compare_redact_keeps_a_fields_values_out_of_every_report() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}{}",
        upstreams(&legacy, &[("svc", &svc)]),
        routes("redact = [\"/price\"]", "shadow", "")
    ));
    let p = h.start().await;
    svc.set_price_delta(7);
    let c = client();
    for i in 0..20 {
        get_who(&c, &format!("{}/product/{i}", p.base), &[]).await;
    }
    let report = flushed(&h, "product", 20).await;
    // The difference is still counted; its values are not kept.
    let price = report["routes"][0]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["field"] == "/price")
        .cloned()
        .expect("/price is reported");
    assert_eq!(price["mismatches"], 10, "{price}");
    let example = &price["examples"][0];
    assert_eq!(example["legacy"], "[redacted]", "{price}");
    assert_eq!(example["candidate"], "[redacted]", "{price}");
    for format in ["markdown", "html", "json"] {
        let (code, out, err) = cli(&["shadow", "report", "--format", format], &h.config_path());
        assert_eq!(code, 0, "{err}");
        // The service's price (107) as any format would show a value.
        let shown = ["\"107\"", ">107<", "`107`", "| 107 ", "→ 107"]
            .iter()
            .any(|v| out.contains(v));
        assert!(
            out.contains("/price") && out.contains("[redacted]") && !shown,
            "{format} report shows the redacted price: {out}"
        );
    }
}

#[tokio::test]
async fn unsafe_methods_listed_in_shadow_methods_are_shadowed() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}{}",
        upstreams(&legacy, &[("svc", &svc)]),
        routes("", "shadow", "").replace(
            "shadow_percent = 100.0",
            "shadow_percent = 100.0\nshadow_methods = [\"GET\", \"POST\"]"
        )
    ));
    let p = h.start().await;
    let c = client();
    for i in 0..10 {
        let r = c
            .post(format!("{}/product/{i}", p.base))
            .body("{\"qty\": 1}")
            .send()
            .await
            .expect("post");
        // The client is answered by the monolith.
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-upstream"], "legacy");
        let r = c
            .delete(format!("{}/product/{i}", p.base))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 200);
    }
    // Every POST reached the service as a shadow copy; no DELETE did.
    let report = flushed(&h, "product", 10).await;
    assert_eq!(report["routes"][0]["comparisons"], 10, "{report}");
    assert_eq!(svc.requests(), 10, "only the 10 POSTs reached the service");
    assert_eq!(svc.shadow_requests(), 10);
}
