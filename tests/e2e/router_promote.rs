//! Safe promotion, the migration board, and automatic rollback.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const ROUTE: &str = r#"
[[routes]]
name = "product"
methods = ["GET"]
path = "/product/{id}"
service = "svc"
stage = "legacy"
sticky = "none"
[routes.promote]
max_error_rate = 5.0
min_requests = 10
window_secs = 60
"#;

async fn setup() -> (TestUpstream, TestUpstream, Harness) {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!("{}{ROUTE}", upstreams(&legacy, &[("svc", &svc)])));
    (legacy, svc, h)
}

#[tokio::test]
async fn promotion_refuses_on_failed_gates_and_force_is_audited() {
    let (_l, _s, h) = setup().await;
    let path = h.config_path();
    // legacy → shadow needs no gate.
    let (code, out, err) = cli(&["route", "promote", "product"], &path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("legacy → shadow"), "{out}");
    // shadow → canary needs a READY shadow verdict: there is none.
    let (code, _, err) = cli(&["route", "promote", "product"], &path);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refusing to promote to canary 1%") && err.contains("gate shadow failed"),
        "{err}"
    );
    let (code, _, _) = cli(&["route", "promote", "product", "--force"], &path);
    assert_eq!(code, 2, "--force needs --reason");
    let (code, out, err) = cli(
        &[
            "route", "promote", "product", "--force", "--reason", "demo day",
        ],
        &path,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("shadow → canary 1%"), "{out}");
    let (_, out, _) = cli(&["route", "history", "product", "--json"], &path);
    let hist: Value = serde_json::from_str(&out).expect("json");
    let reason = hist["history"][1]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("FORCED past failed gates (shadow") && reason.ends_with("demo day"),
        "{reason}"
    );
    // --to jumps; 100 is migrated.
    let (code, out, _) = cli(
        &[
            "route", "promote", "product", "--to", "100", "--force", "--reason", "cut over",
        ],
        &path,
    );
    assert_eq!(code, 0);
    assert!(out.contains("→ migrated"), "{out}");
    let (code, _, err) = cli(&["route", "promote", "product"], &path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already migrated"), "{err}");
}

/// Forces the first route to canary 50 % with `strangler route set` and
/// waits until the proxy runs it.
async fn canary_50(p: &Proxy, path: &std::path::Path, reason: &str) {
    let (code, _, err) = cli(
        &[
            "route",
            "set",
            "product",
            "--stage",
            "canary",
            "--percent",
            "50",
            "--force",
            "--reason",
            reason,
        ],
        path,
    );
    assert_eq!(code, 0, "{err}");
    let c = client();
    let adopted = eventually(Duration::from_secs(10), || async {
        let v: Value = match c.get(format!("{}/routes", p.admin)).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        v["routes"][0]["stage"] == "canary" && v["routes"][0]["percent"] == 50.0
    })
    .await;
    assert!(adopted.is_some(), "the proxy adopts canary 50 %");
}

#[tokio::test]
async fn a_failing_canary_is_rolled_back_by_the_router() {
    let (_legacy, svc, h) = setup().await;
    let p = h.start().await;
    let path = h.config_path();
    canary_50(&p, &path, "no shadow phase for this test").await;
    svc.set_behaviour(Behaviour::Status(503));
    let c = client();
    for i in 0..60 {
        // The monolith answers every one (fallback); the service's failures are counted.
        assert_eq!(
            get_who(&c, &format!("{}/product/{i}", p.base), &[]).await,
            "legacy"
        );
    }
    let rolled = eventually(Duration::from_secs(15), || async {
        let (_, out, _) = cli(&["route", "list", "--json"], &path);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| {
            v["routes"][0]["stage"] == "legacy" && v["routes"][0]["origin"] == "hold"
        })
    })
    .await;
    assert!(
        rolled.is_some(),
        "the router did not roll the canary back: {}",
        p.log_text()
    );
    let (_, out, _) = cli(&["route", "history", "product", "--json"], &path);
    let hist: Value = serde_json::from_str(&out).expect("json");
    let last = hist["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["actor"], "router:auto-rollback");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("service error rate")),
        "{last}"
    );

    // The board shows what happened.
    let (code, out, _) = cli(&["status", "--json"], &path);
    assert_eq!(code, 0);
    let board: Value = serde_json::from_str(&out).expect("json");
    let row = &board["routes"][0];
    assert_eq!(row["stage"], "legacy");
    assert!(row["fallbacks"].as_u64().unwrap_or(0) >= 10, "{row}");
    assert!(
        row["service_error_rate"].as_f64().unwrap_or(0.0) > 0.5,
        "{row}"
    );
    let (code, out, _) = cli(&["status"], &path);
    assert_eq!(code, 0);
    assert!(
        out.contains("ROUTE") && out.contains("product") && out.contains("GET /product/{id}"),
        "{out}"
    );

    // Fixed, resumed and promoted again within the window: the errors
    // counted before the rollback are not held against the new canary.
    svc.set_behaviour(Behaviour::Normal);
    let (code, _, err) = cli(&["route", "resume", "product", "--reason", "fixed"], &path);
    assert_eq!(code, 0, "{err}");
    canary_50(&p, &path, "try again").await;
    let store = harness_store(&h).await;
    let state_ms = {
        use strangler_state::RouteStore;
        store
            .routes()
            .await
            .expect("rows")
            .into_iter()
            .find(|r| r.route == "product")
            .map(|r| r.updated_at_ms)
            .expect("row")
    };
    let c = client();
    // The proxy runs the new state before the requests are sent.
    for i in 0..40 {
        get_who(
            &c,
            &format!("{}/product/{i}", p.base),
            &[("x-user-id", &format!("u{i}"))],
        )
        .await;
    }
    // Counted in the store under the new state (flushed every second)...
    let since = (state_ms - 120_000).div_euclid(60_000);
    let counted = eventually(Duration::from_secs(15), || async {
        store.usage_in_state(since, state_ms).await.is_ok_and(|u| {
            u.get("product")
                .is_some_and(|c| c.requests == 40 && c.service_errors == 0)
        })
    })
    .await;
    assert!(
        counted.is_some(),
        "the new canary's requests reach the store"
    );
    // ...and the rollback loop (every 2 s) has looked at them at least
    // twice: proving that something did not happen takes waiting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, out, _) = cli(&["route", "list", "--json"], &path);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["routes"][0]["stage"],
        "canary",
        "no second rollback: {v}\n{}",
        p.log_text()
    );
    let (_, out, _) = cli(&["route", "history", "product", "--json"], &path);
    let hist: Value = serde_json::from_str(&out).expect("json");
    let rollbacks = hist["history"].as_array().map_or(0, |h| {
        h.iter()
            .filter(|e| e["actor"] == "router:auto-rollback")
            .count()
    });
    assert_eq!(rollbacks, 1, "{hist}");
}

#[tokio::test]
async fn a_canary_whose_service_fails_is_not_promoted_further() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    h.write_config(&format!(
        "{}{}",
        upstreams(&legacy, &[("svc", &svc)]),
        ROUTE
            .replace("stage = \"legacy\"", "stage = \"canary\"\npercent = 50.0")
            .replace(
                "window_secs = 60",
                "window_secs = 60\nauto_rollback = false"
            )
    ));
    let path = h.config_path();
    // The shadow verdict is READY: only the error rate can hold it back.
    let store = harness_store(&h).await;
    ready_shadow(&store, "product").await;
    let p = h.start().await;
    svc.set_behaviour(Behaviour::Status(503));
    let c = client();
    for i in 0..60 {
        assert_eq!(
            get_who(&c, &format!("{}/product/{i}", p.base), &[]).await,
            "legacy"
        );
    }
    // The fleet's counts reach the store.
    let counted = eventually(Duration::from_secs(15), || async {
        let (_, out, _) = cli(&["status", "--json"], &path);
        serde_json::from_str::<Value>(&out)
            .is_ok_and(|v| v["routes"][0]["service_error_rate"].as_f64() == Some(1.0))
    })
    .await;
    assert!(counted.is_some(), "{}", p.log_text());
    let (code, out, err) = cli(&["route", "promote", "product"], &path);
    assert_eq!(code, 1, "{out}{err}");
    let failed: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("gate ") && l.contains(" failed: "))
        .collect();
    assert_eq!(failed.len(), 1, "{err}");
    assert!(
        failed[0].contains("gate error_rate failed: service errors 100.00 %"),
        "{err}"
    );
    // Still canary 50 %: the refusal wrote nothing.
    let (_, out, _) = cli(&["route", "list", "--json"], &path);
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list["routes"][0]["stage"], "canary", "{list}");
}
