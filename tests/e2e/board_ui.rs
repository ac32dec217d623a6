//! The web board in a real browser (headless Chromium through
//! ChromeDriver): log in, read the board, promote a route (refused by a
//! gate, then accepted), set its percent, roll it back, create a route from
//! the inventory — and the state store and the audit log say the same.
//! Screenshots of the board and a route page are kept as artifacts.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use strangler_state::route_state::{LiveRoute, Origin};
use strangler_state::RouteStore;

use crate::support::webdriver::Browser;
use crate::support::*;

const TOKEN: &str = "board-secret-token";

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts")
}

/// Opens the action dialog of `button` (a CSS selector), fills it in,
/// applies it and waits for an answer containing `want` (`Done: from → to.`
/// or `Refused (409): …`); the answer.
async fn act(b: &Browser, button: &str, reason: &str, percent: Option<&str>, want: &str) -> String {
    b.click_css(button).await;
    b.find("dialog[open]").await;
    if let Some(p) = percent {
        let input = b.find("#act-form input[name=percent]").await;
        b.type_into(&input, p).await;
    }
    let input = b.find("#act-form input[name=reason]").await;
    b.type_into(&input, reason).await;
    let go = b.find("#act-go").await;
    b.click(&go).await;
    let answer = b
        .wait_text("#act-result", want, Duration::from_secs(20))
        .await;
    let close = b.find("#act-close").await;
    b.click(&close).await;
    answer
}

/// The fleet's row of the route `product`.
async fn product(store: &strangler_state::StateStore) -> LiveRoute {
    store
        .routes()
        .await
        .expect("rows")
        .into_iter()
        .find(|r| r.route == "product")
        .expect("product row")
}

fn console_errors(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn the_board_in_a_browser_moves_a_route_through_the_gates_and_the_audit_log_says_who_and_why()
{
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let tokens = h.dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[tokens]]\nname = \"alice\"\nrole = \"approver\"\nsha256 = \"{:x}\"\n",
            sha2::Sha256::digest(TOKEN.as_bytes())
        ),
    )
    .expect("tokens");
    let path = h.write_config(&format!(
        "{}\n[[routes]]\nname = \"product\"\nmethods = [\"GET\"]\npath = \"/products/{{id}}\"\nservice = \"svc\"\nstage = \"legacy\"\nsticky = \"header:x-user-id\"\n[routes.promote]\ncanary_steps = [10, 50]\n",
        upstreams(&legacy, &[("svc", &svc)])
    ));
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replace(
            "[proxy]\n",
            &format!("[proxy]\nadmin_tokens_file = \"{}\"\n", tokens.display()),
        ),
    )
    .expect("config");
    let p = h.start().await;
    let store = harness_store(&h).await;

    // Traffic the inventory sees: the product route, and orders no route covers.
    let c = client();
    for i in 1..=20 {
        for url in [
            format!("{}/products/{i}", p.base),
            format!("{}/orders/{i}", p.base),
        ] {
            assert_eq!(c.get(url).send().await.expect("get").status(), 200);
        }
    }
    let counted = eventually(Duration::from_secs(30), || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        store
            .inventory()
            .await
            .is_ok_and(|t| t.values().map(|e| e.requests).sum::<u64>() == 40)
    })
    .await;
    assert!(counted.is_some(), "the proxy saved its inventory");

    let b = Browser::start().await;
    // Not logged in: the board sends the browser to the login form.
    b.goto(&format!("{}/ui", p.admin)).await;
    b.find("#token").await;
    assert!(b.url().await.ends_with("/ui/login"), "{}", b.url().await);
    let input = b.find("#token").await;
    b.type_into(&input, "not-the-token").await;
    let login = b.find("#login").await;
    b.click(&login).await;
    b.wait_text("main.login", "not accepted", Duration::from_secs(10))
        .await;
    // The refused login is answered 401 (the browser logs that); nothing else.
    let refused = console_errors(&b.console().await);
    assert!(
        refused.len() == 1 && refused[0].contains("/ui/login") && refused[0].contains("401"),
        "{refused:?}"
    );
    let input = b.find("#token").await;
    b.type_into(&input, TOKEN).await;
    let login = b.find("#login").await;
    b.click(&login).await;

    // The board: the route, its stage and the gate of its next step; the
    // inventory with the uncovered template; the progress charts.
    let routes = b
        .wait_text("#routes", "product", Duration::from_secs(20))
        .await;
    assert!(
        routes.contains("legacy") && routes.contains("GET /products/{id}"),
        "{routes}"
    );
    assert!(b
        .text(&b.find("header .who").await)
        .await
        .contains("alice (approver)"));
    let inventory = b
        .wait_text("#inventory", "/orders/{id}", Duration::from_secs(10))
        .await;
    assert!(inventory.contains("Create route"), "{inventory}");
    assert!(
        inventory.contains("2 templates, 1 covered by a route, 40 requests seen"),
        "{inventory}"
    );
    b.find("svg#chart-requests").await;
    b.find("svg#chart-routes").await;
    let errors = console_errors(&b.console().await);
    assert!(
        errors.is_empty(),
        "the board renders without console errors: {errors:?}"
    );
    b.screenshot(&artifacts().join("board.png")).await;

    let row = "tr[data-route=product]";
    // legacy → shadow needs no gate.
    let done = act(
        &b,
        &format!("{row} button[data-act=promote]"),
        "start comparing",
        None,
        "Done",
    )
    .await;
    assert!(done.contains("legacy → shadow"), "{done}");
    b.wait_text(
        &format!("{row} .stage-cell"),
        "shadow",
        Duration::from_secs(10),
    )
    .await;
    // shadow → canary: refused by the shadow gate (no comparisons yet).
    let refused = act(
        &b,
        &format!("{row} button[data-act=promote]"),
        "try canary",
        None,
        "Refused",
    )
    .await;
    assert!(
        refused.contains("Refused (409)") && refused.contains("shadow"),
        "{refused}"
    );
    assert_eq!(
        product(&store).await.target().stage.to_string(),
        "shadow",
        "a refused promotion changes nothing"
    );
    // The board names what blocks it.
    let blocked = b.wait_text(row, "blocked", Duration::from_secs(10)).await;
    assert!(blocked.contains("shadow"), "{blocked}");
    // Forcing needs a reason: the dialog refuses before anything is sent.
    b.click_css(&format!("{row} button[data-act=promote]"))
        .await;
    b.find("dialog[open]").await;
    b.click_css("#act-form input[name=force]").await;
    b.click_css("#act-go").await;
    b.wait_text("#act-result", "needs a reason", Duration::from_secs(10))
        .await;
    b.click_css("#act-close").await;
    // With a READY verdict the same button is accepted.
    ready_shadow(&store, "product").await;
    b.wait_text(row, "ready to promote", Duration::from_secs(15))
        .await;
    let done = act(
        &b,
        &format!("{row} button[data-act=promote]"),
        "shadow is clean",
        None,
        "Done",
    )
    .await;
    assert!(done.contains("shadow → canary"), "{done}");
    // Set the percent.
    let done = act(
        &b,
        &format!("{row} button[data-act=percent]"),
        "half the users",
        Some("50"),
        "Done",
    )
    .await;
    assert!(done.contains("canary"), "{done}");
    b.wait_text(
        &format!("{row} .stage-cell"),
        "canary 50%",
        Duration::from_secs(10),
    )
    .await;
    // Roll it back.
    let done = act(
        &b,
        &format!("{row} button[data-act=rollback]"),
        "errors in the new service",
        None,
        "Done",
    )
    .await;
    assert!(done.contains("→ legacy"), "{done}");
    b.wait_text(
        &format!("{row} .stage-cell"),
        "legacy",
        Duration::from_secs(10),
    )
    .await;

    // The store holds the route at legacy, and the audit log names alice
    // and each reason typed on the board.
    let row_state = product(&store).await;
    assert_eq!(row_state.target().stage.to_string(), "legacy");
    assert!(matches!(row_state.origin, Origin::Hold), "{row_state:?}");
    let history: Vec<(String, String, String)> = store
        .audit_log(Some("product"))
        .await
        .expect("history")
        .into_iter()
        .filter(|e| e.actor == "alice")
        .map(|e| (e.before.to_string(), e.after.to_string(), e.reason))
        .collect();
    assert_eq!(
        history,
        vec![
            (
                "legacy".to_string(),
                "shadow".to_string(),
                "start comparing".to_string()
            ),
            (
                "shadow".to_string(),
                "canary 10%".to_string(),
                "shadow is clean".to_string()
            ),
            (
                "canary 10%".to_string(),
                "canary 50%".to_string(),
                "half the users".to_string()
            ),
            (
                "canary 50%".to_string(),
                "legacy".to_string(),
                "errors in the new service".to_string()
            ),
        ],
        "every action on the board, with its actor and reason"
    );
    let (_, out, _) = cli(&["route", "history", "product"], &path);
    assert!(
        out.contains("alice") && out.contains("errors in the new service"),
        "{out}"
    );

    // A held route offers Resume, which lifts the hold (audited).
    let resumed = act(
        &b,
        &format!("{row} button[data-act=resume]"),
        "fixed it",
        None,
        "Done",
    )
    .await;
    assert!(resumed.starts_with("Done"), "{resumed}");
    let last = store
        .audit_log(Some("product"))
        .await
        .expect("history")
        .pop()
        .expect("an entry");
    assert_eq!(
        (last.actor.as_str(), last.reason.as_str()),
        ("alice", "fixed it")
    );
    let row_state = product(&store).await;
    assert!(
        !matches!(row_state.origin, Origin::Hold),
        "the hold is lifted: {row_state:?}"
    );

    // The route page: gates, and the history the actions wrote.
    b.goto(&format!("{}/ui/routes/product", p.admin)).await;
    let hist = b
        .wait_text(
            "#history",
            "errors in the new service",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        hist.contains("alice") && hist.contains("shadow is clean"),
        "{hist}"
    );
    let gates = b.text(&b.find("#gates").await).await;
    assert!(gates.contains("entering shadow needs none"), "{gates}");
    b.screenshot(&artifacts().join("route-product.png")).await;

    // Create a route for the uncovered template, from the inventory.
    b.goto(&format!("{}/ui", p.admin)).await;
    let done = act(
        &b,
        "#inventory button[data-act=create][data-template='/orders/{id}']",
        "orders are next",
        None,
        "Done",
    )
    .await;
    assert!(done.starts_with("Done"), "{done}");
    let (code, out, err) = cli(&["check"], &path);
    assert_eq!(code, 0, "the file the board wrote is valid: {out}{err}");
    let config = strangler_config::Config::load(&path).expect("config");
    let created = config
        .route("get-orders-id")
        .expect("route written to the file");
    assert_eq!(created.path.as_str(), "/orders/{id}");
    assert_eq!(created.stage.to_string(), "legacy");
    b.wait_text("#routes", "get-orders-id", Duration::from_secs(15))
        .await;
    let notes = store
        .audit_log(Some("get-orders-id"))
        .await
        .expect("history");
    assert!(
        notes
            .iter()
            .any(|e| e.actor == "alice" && e.reason.contains("orders are next")),
        "{notes:?}"
    );

    // The one console error is the refused promotion's 409.
    let errors = console_errors(&b.console().await);
    assert!(
        errors.len() == 1 && errors[0].contains("409"),
        "only the refused promotion: {errors:?}"
    );

    // The session cookie holds no token, counts only under /ui, and a
    // change on it alone needs the board's header.
    let session = b
        .cookie("strangler_admin_session")
        .await
        .expect("a session cookie");
    assert!(!session.contains(TOKEN) && session.len() == 64, "{session}");
    let with_cookie = |method: reqwest::Method, path: &str| {
        client()
            .request(method, format!("{}{path}", p.admin))
            .header("cookie", format!("strangler_admin_session={session}"))
    };
    let r = with_cookie(reqwest::Method::POST, "/ui/api/routes/product/rollback")
        .json(&serde_json::json!({"reason": "csrf"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "no x-strangler-ui header");
    let r = with_cookie(reqwest::Method::GET, "/routes")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "the cookie counts under /ui only");
    let r = with_cookie(reqwest::Method::GET, "/ui/live")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    // Without a session the board's pages send the browser to the login.
    let r = client()
        .get(format!("{}/ui/routes/product/live", p.admin))
        .send()
        .await
        .expect("get");
    assert!(r.url().path().ends_with("/ui/login"), "{}", r.url());
    // Logged out, the session is gone.
    b.goto(&format!("{}/ui", p.admin)).await;
    b.click_css("header form button").await;
    b.find("#token").await;
    let r = with_cookie(reqwest::Method::GET, "/ui/live")
        .send()
        .await
        .expect("get");
    assert!(
        r.url().path().ends_with("/ui/login"),
        "logged out: {}",
        r.url()
    );
    drop(b);
    drop(p);
}
