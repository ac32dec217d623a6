//! One source of truth: rollbacks that always apply and hold, file edits
//! that cannot undo them, `strangler plan`, a store outage, identities and
//! an audit log nobody can edit. (Long: one test per "done when" line of
//! the issue, each telling its story end to end.)

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::*;
use strangler_state::RouteStore;

fn route(stage: &str) -> String {
    let percent = match stage.split_once(' ') {
        Some(("canary", p)) => format!("percent = {p}\n"),
        _ => String::new(),
    };
    let stage = stage.split(' ').next().unwrap_or(stage);
    format!(
        "\n[[routes]]\nname = \"p\"\nmethods = [\"GET\"]\npath = \"/products/{{id}}\"\nservice = \"svc\"\nstage = \"{stage}\"\n{percent}"
    )
}

async fn admin_route(c: &reqwest::Client, p: &Proxy) -> Value {
    c.get(format!("{}/routes/p", p.admin))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json")
}

fn revision(path: &std::path::Path) -> String {
    let (code, out, err) = cli(&["route", "list", "--json"], path);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out).expect("json")["revision"]
        .as_str()
        .expect("revision")
        .to_string()
}

/// The incident from the issue: the fleet runs `p` migrated, an operator's
/// laptop has an older checkout where `p` is canary 50.
#[tokio::test]
async fn a_rollback_from_an_old_checkout_holds_the_fleet_until_resumed() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let ups = upstreams(&legacy, &[("svc", &svc)]);
    let h = Harness::new();
    let fleet = h.write_config(&format!("{ups}{}", route("migrated")));
    let laptop = h.dir.path().join("laptop.toml");
    std::fs::write(
        &laptop,
        h.config_text(&format!("{ups}{}", route("canary 50"))),
    )
    .expect("write");
    let p = h.start().await;
    let c = client();
    let url = format!("{}/products/1", p.base);
    assert_eq!(get_who(&c, &url, &[]).await, "svc");
    // The proxy reports the revision it runs.
    let (fleet_rev, laptop_rev) = (revision(&fleet), revision(&laptop));
    assert_ne!(fleet_rev, laptop_rev);
    let reported = eventually(Duration::from_secs(10), || async {
        cli(&["route", "list"], &laptop)
            .2
            .contains("but the fleet runs")
    })
    .await;
    assert!(reported.is_some(), "the proxy did not report its revision");
    assert!(!cli(&["route", "list"], &fleet)
        .2
        .contains("but the fleet runs"));

    let (code, out, err) = cli(&["route", "rollback", "p", "--reason", "incident"], &laptop);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("revision {laptop_rev}")) && err.contains(&fleet_rev),
        "the CLI says its file is not the fleet's: {err}"
    );
    assert!(
        out.contains("p: migrated → legacy"),
        "the fleet's view, not the laptop's: {out}"
    );
    let obeyed = eventually(Duration::from_secs(1), || async {
        get_who(&c, &url, &[]).await == "legacy"
    })
    .await;
    assert!(
        obeyed.is_some(),
        "the fleet still serves the service:\n{}",
        p.log_text()
    );

    // The metric shows declared, effective and origin.
    let metrics = c
        .get(format!("{}/metrics", p.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "strangler_route_state{declared=\"migrated\",effective=\"legacy\",origin=\"hold\",route=\"p\"} 0"
        ),
        "{metrics}"
    );
    let (_, out, _) = cli(&["route", "history", "p", "--json"], &fleet);
    let hist: Value = serde_json::from_str(&out).expect("json");
    let last = hist["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["reason"], "incident");
    assert_eq!(last["revision"], laptop_rev.as_str());
    assert_eq!(last["fleet_revision"], fleet_rev.as_str());
    let (_, table, _) = cli(&["route", "history", "p"], &fleet);
    assert!(
        table.contains(&format!("{laptop_rev} (fleet {fleet_rev})")),
        "{table}"
    );

    // A file edit does not lift the hold: the fleet records the ask.
    std::fs::write(
        &fleet,
        h.config_text(&format!("{ups}{}", route("canary 20"))),
    )
    .expect("write");
    let recorded = eventually(Duration::from_secs(10), || async {
        admin_route(&c, &p).await["why"]
            .as_str()
            .is_some_and(|w| w.contains("file asks canary 20%"))
    })
    .await;
    assert!(recorded.is_some(), "{}", p.log_text());
    let view = admin_route(&c, &p).await;
    assert_eq!(
        (view["stage"].as_str(), view["origin"].as_str()),
        (Some("legacy"), Some("hold")),
        "{view}"
    );
    for _ in 0..20 {
        assert_eq!(get_who(&c, &url, &[]).await, "legacy");
    }

    // Resume releases it: the file now asks shadow (no gate to enter it).
    std::fs::write(&fleet, h.config_text(&format!("{ups}{}", route("shadow")))).expect("write");
    let asked = eventually(Duration::from_secs(10), || async {
        admin_route(&c, &p).await["why"]
            .as_str()
            .is_some_and(|w| w.contains("file asks shadow"))
    })
    .await;
    assert!(asked.is_some(), "{}", p.log_text());
    let (code, out, err) = cli(&["route", "resume", "p", "--reason", "fixed"], &fleet);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("legacy → shadow"), "{out}");
    let released = eventually(Duration::from_secs(2), || async {
        let v = admin_route(&c, &p).await;
        v["stage"] == "shadow" && v["origin"] == "file"
    })
    .await;
    assert!(released.is_some(), "{}", admin_route(&c, &p).await);
    let (code, _, err) = cli(&["route", "resume", "p", "--reason", "again"], &fleet);
    assert_eq!(code, 1, "nothing to resume: {err}");
}

/// An auto-rollback holds the same way: a percent change in the file does
/// not send users back to the failing service.
#[tokio::test]
async fn an_auto_rollback_survives_a_file_edit() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let ups = upstreams(&legacy, &[("svc", &svc)]);
    let h = Harness::new();
    let promote =
        "sticky = \"none\"\n[routes.promote]\nmax_error_rate = 5.0\nmin_requests = 10\nwindow_secs = 60\n";
    let path = h.write_config(&format!("{ups}{}{promote}", route("canary 50")));
    let p = h.start().await;
    svc.set_behaviour(Behaviour::Status(503));
    let c = client();
    for i in 0..60 {
        let _ = who(
            &c,
            reqwest::Method::GET,
            &format!("{}/products/{i}", p.base),
            &[],
        )
        .await;
    }
    let held = eventually(Duration::from_secs(15), || async {
        admin_route(&c, &p).await["origin"] == "hold"
    })
    .await;
    assert!(held.is_some(), "no auto-rollback:\n{}", p.log_text());
    svc.set_behaviour(Behaviour::Normal);
    std::fs::write(
        &path,
        h.config_text(&format!("{ups}{}{promote}", route("canary 80"))),
    )
    .expect("write");
    let recorded = eventually(Duration::from_secs(10), || async {
        admin_route(&c, &p).await["why"]
            .as_str()
            .is_some_and(|w| w.contains("file asks canary 80%"))
    })
    .await;
    assert!(recorded.is_some(), "{}", p.log_text());
    let view = admin_route(&c, &p).await;
    assert_eq!(view["stage"], "legacy", "{view}");
    // Not moved and rolled back again: nothing after the rollback left legacy.
    let (_, out, _) = cli(&["route", "history", "p", "--json"], &path);
    let hist: Value = serde_json::from_str(&out).expect("json");
    let entries = hist["history"].as_array().cloned().unwrap_or_default();
    let rollback = entries
        .iter()
        .position(|e| e["actor"] == "router:auto-rollback")
        .expect("the auto-rollback is audited");
    let after: Vec<&Value> = entries[rollback..]
        .iter()
        .map(|e| &e["after"]["stage"])
        .collect();
    assert!(after.iter().all(|s| *s == "legacy"), "{entries:?}");
    assert_eq!(
        after.len(),
        2,
        "the rollback and the recorded ask: {entries:?}"
    );
    let mut on_svc = 0;
    for i in 0..100 {
        let user = format!("u{i}");
        on_svc += usize::from(
            get_who(
                &c,
                &format!("{}/products/1", p.base),
                &[("x-user-id", &user)],
            )
            .await
                == "svc",
        );
    }
    assert_eq!(on_svc, 0);
}

#[tokio::test]
async fn plan_exits_1_when_a_promotion_would_be_held_and_0_for_a_rollback() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let ups = upstreams(&legacy, &[("svc", &svc)]);
    let h = Harness::new();
    h.write_config(&format!("{ups}{}", route("shadow")));
    let p = h.start().await;
    // The proxy adopted the file's state (its row is in the store).
    let c = client();
    assert_eq!(admin_route(&c, &p).await["stage"], "shadow");
    let store = strangler_state::StateStore::connect(&format!(
        "sqlite://{}/state.db?mode=rwc",
        h.dir.path().display()
    ))
    .await
    .expect("store");
    let adopted = eventually(Duration::from_secs(10), || async {
        store
            .routes()
            .await
            .is_ok_and(|rows| rows.iter().any(|r| r.route == "p"))
    })
    .await;
    assert!(adopted.is_some(), "the proxy never wrote the route's row");
    let new = h.dir.path().join("new.toml");

    std::fs::write(&new, h.config_text(&format!("{ups}{}", route("canary 10")))).expect("write");
    let (code, out, err) = cli(&["plan"], &new);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("held: file asks canary 10%") && out.contains("gate shadow NOT READY"),
        "{out}"
    );

    std::fs::write(&new, h.config_text(&format!("{ups}{}", route("legacy")))).expect("write");
    let (code, out, err) = cli(&["plan", "--json"], &new);
    assert_eq!(code, 0, "{out}{err}");
    let plan: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(plan["routes"][0]["action"], "apply", "{plan}");
    assert_eq!(plan["routes"][0]["to"]["stage"], "legacy", "{plan}");

    std::fs::write(&new, "[[routes]]\nname = 1\n").expect("write");
    let (code, _, err) = cli(&["plan"], &new);
    assert_eq!(code, 2, "{err}");
    // Planning changed nothing.
    assert_eq!(admin_route(&c, &p).await["stage"], "shadow");
}

#[tokio::test]
async fn a_proxy_starts_from_its_cache_while_the_store_is_down() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let url = pg.create_database("state").expect("db");
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new().with_state(&url);
    let path = h.write_config(&format!(
        "{}{}",
        upstreams(&legacy, &[("svc", &svc)]),
        route("migrated")
    ));
    let c = client();
    {
        let p = h.start().await;
        let (code, _, err) = cli(&["route", "rollback", "p", "--reason", "incident"], &path);
        assert_eq!(code, 0, "{err}");
        let obeyed = eventually(Duration::from_secs(2), || async {
            get_who(&c, &format!("{}/products/1", p.base), &[]).await == "legacy"
        })
        .await;
        assert!(obeyed.is_some());
        assert_eq!(
            c.get(format!("{}/readyz", p.admin))
                .send()
                .await
                .expect("readyz")
                .status(),
            200
        );
    }
    // On PostgreSQL too the audit log refuses edits.
    let pool = sqlx::PgPool::connect(&url).await.expect("pg");
    let refused = sqlx::query("DELETE FROM strangler_audit")
        .execute(&pool)
        .await
        .expect_err("append-only");
    assert!(refused.to_string().contains("append-only"), "{refused}");
    pool.close().await;
    pg.stop().expect("stop postgres");
    let p = h.start().await;
    // The hold came from the cache: the file says migrated.
    for _ in 0..10 {
        assert_eq!(
            get_who(&c, &format!("{}/products/1", p.base), &[]).await,
            "legacy"
        );
    }
    let r = c
        .get(format!("{}/readyz", p.admin))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap_or_default();
    assert!(
        body.contains("degraded") && body.contains("cache"),
        "{body}"
    );
    // Kubernetes' readiness asks with degraded=ok: the proxy serves (from
    // its cache) and stays in the Service; the body still names why.
    let r = c
        .get(format!("{}/readyz?degraded=ok", p.admin))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap_or_default().contains("degraded"));
    assert!(
        p.log_text().contains("state store unreachable"),
        "{}",
        p.log_text()
    );

    pg.start_again().expect("start postgres");
    let ready = eventually(Duration::from_secs(30), || async {
        c.get(format!("{}/readyz", p.admin))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready.is_some(), "{}", p.log_text());
    assert_eq!(
        get_who(&c, &format!("{}/products/1", p.base), &[]).await,
        "legacy"
    );
}

#[tokio::test]
async fn an_unset_state_url_variable_stops_the_proxy() {
    let h = Harness::new();
    let path = h.config_path();
    std::fs::write(
        &path,
        "[state]\nurl_env = \"E2E_UNSET_STATE_URL\"\n\n[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(strangler_bin())
        .args(["proxy", "-c"])
        .arg(&path)
        .env_remove("E2E_UNSET_STATE_URL")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("E2E_UNSET_STATE_URL") && err.contains("not set"),
        "{err}"
    );
    assert!(
        !h.dir.path().join(".strangler/state.db").exists(),
        "no silent local SQLite store"
    );
    let (code, _, err) = cli(&["route", "list"], &path);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("E2E_UNSET_STATE_URL"), "{err}");
    // The file itself is valid (a config repository's CI has no secrets).
    let (code, _, err) = cli(&["check"], &path);
    assert_eq!(code, 0, "{err}");
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn roles_decide_who_changes_routes_and_an_edited_audit_entry_is_found() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    std::fs::write(
        h.dir.path().join("tokens.toml"),
        format!(
            "[[tokens]]\nname = \"vic\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\n[[tokens]]\nname = \"olga\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
            sha256_hex("viewer-token"),
            sha256_hex("operator-token")
        ),
    )
    .expect("tokens");
    let text = h
        .config_text(&format!(
            "{}{}",
            upstreams(&legacy, &[("svc", &svc)]),
            route("migrated")
        ))
        .replace(
            "[proxy]\n",
            "[proxy]\nadmin_tokens_file = \"tokens.toml\"\n",
        );
    let path = h.config_path();
    std::fs::write(&path, text).expect("write");
    let p = h.start().await;
    let c = client();
    let put = |token: &'static str| {
        c.put(format!("{}/routes/p", p.admin))
            .bearer_auth(token)
            .json(&json!({"stage": "canary", "percent": 10, "reason": "fewer users"}))
            .send()
    };
    assert_eq!(put("viewer-token").await.expect("put").status(), 403);
    assert_eq!(put("nobody").await.expect("put").status(), 401);
    let r = c
        .get(format!("{}/routes/p", p.admin))
        .bearer_auth("viewer-token")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let r = put("operator-token").await.expect("put");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["audit"]["actor"], "olga", "the identity, not a claim");
    // Forcing past gates needs an approver.
    let r = c
        .put(format!("{}/routes/p", p.admin))
        .bearer_auth("operator-token")
        .json(&json!({"stage": "migrated", "force": true, "reason": "trust me"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 403);
    // The CLI through the admin API: a token, no database credentials.
    let via_admin = |token: &str, args: &[&str]| {
        let out = std::process::Command::new(strangler_bin())
            .args(["route", "--admin", &p.admin])
            .args(args)
            .arg("-c")
            .arg(h.dir.path().join("no-such-file.toml"))
            .env("STRANGLER_ADMIN_TOKEN", token)
            .env("STRANGLER_ACTOR", "someone-else")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = via_admin("viewer-token", &["rollback", "p", "--reason", "x"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("vic has role viewer"), "{err}");
    let (code, out, err) = via_admin("operator-token", &["rollback", "p", "--reason", "incident"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("canary 10% → legacy") && out.contains("by olga"),
        "{out}"
    );
    let (code, out, _) = via_admin("viewer-token", &["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("hold"), "{out}");

    let (code, _, err) = cli(&["route", "history", "p", "--verify"], &path);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("intact"), "{err}");
    // Someone with database rights rewrites why the route was rolled back.
    let db = h.dir.path().join("state.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("sqlite");
    let refused =
        sqlx::query("UPDATE strangler_audit SET reason = 'routine' WHERE reason = 'incident'")
            .execute(&pool)
            .await
            .expect_err("the audit log is append-only");
    assert!(refused.to_string().contains("append-only"), "{refused}");
    // They drop the guard first (every connection of strangler puts it back).
    let drop_guard = || async {
        for t in ["strangler_audit_no_update", "strangler_audit_no_delete"] {
            sqlx::query(&format!("DROP TRIGGER IF EXISTS {t}"))
                .execute(&pool)
                .await
                .expect("drop trigger");
        }
    };
    drop_guard().await;
    let edited =
        sqlx::query("UPDATE strangler_audit SET reason = 'routine' WHERE reason = 'incident'")
            .execute(&pool)
            .await
            .expect("update");
    assert_eq!(edited.rows_affected(), 1);
    let id: i64 = sqlx::query_scalar("SELECT id FROM strangler_audit WHERE reason = 'routine'")
        .fetch_one(&pool)
        .await
        .expect("id");
    let (code, _, err) = cli(&["route", "history", "p", "--verify"], &path);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("entry #{id} was edited")), "{err}");
    // Deleting the first entry breaks the link of the one after it.
    drop_guard().await;
    sqlx::query("UPDATE strangler_audit SET reason = 'incident' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("restore");
    sqlx::query("DELETE FROM strangler_audit WHERE id = 1")
        .execute(&pool)
        .await
        .expect("delete");
    let (code, _, err) = cli(&["route", "history", "p", "--verify"], &path);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("entry #2 is the oldest left but was written after another"),
        "{err}"
    );
}

/// A test-only P-256 key (generated for this test; signs nothing else).
const IDP_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQguZXOU7efO4ojyDU/
1f5+DzDgCdTlfxPAo4VJgEcvF1uhRANCAASgyR+ANXxPCD27bKJTMqJ3BlLnT9e4
46ZuAq8yw6MHZaukOo7yqlbvCjdjeFFNeh2FyZc4in6sSm8irj+ceJe5
-----END PRIVATE KEY-----
";

/// Its public half as a JWK set.
fn jwks() -> Value {
    json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": "oMkfgDV8Twg9u2yiUzKidwZS50_XuOOmbgKvMsOjB2U",
        "y": "q6Q6jvKqVu8KN2N4UU16HYXJlziKfqxKbyKuP5x4l7k",
    }]})
}

fn jwt(claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(IDP_KEY.as_bytes()).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[tokio::test]
async fn oidc_tokens_carry_the_identity_and_role_into_the_audit_log() {
    let idp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let idp_addr = idp.local_addr().expect("addr");
    tokio::spawn(async move {
        let app =
            axum::Router::new().route("/jwks", axum::routing::get(|| async { axum::Json(jwks()) }));
        let _ = axum::serve(idp, app).await;
    });
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let text = h
        .config_text(&format!("{}{}", upstreams(&legacy, &[("svc", &svc)]), route("migrated")))
        .replace(
            "[proxy]\n",
            &format!("[proxy]\noidc_jwks_url = \"http://{idp_addr}/jwks\"\noidc_issuer = \"https://idp.test\"\noidc_audience = \"strangler\"\n"),
        );
    std::fs::write(h.config_path(), text).expect("write");
    let p = h.start().await;
    let c = client();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = |sub: &str, roles: Value, exp: u64, aud: &str| json!({"sub": sub, "roles": roles, "exp": exp, "iss": "https://idp.test", "aud": aud});
    let put = |token: String| {
        c.put(format!("{}/routes/p", p.admin))
            .bearer_auth(token)
            .json(&json!({"stage": "canary", "percent": 10, "reason": "fewer users"}))
            .send()
    };
    let r = put(jwt(claims(
        "olivia",
        json!(["viewer", "operator"]),
        now + 300,
        "strangler",
    )))
    .await
    .expect("put");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["audit"]["actor"], "olivia");

    let r = put(jwt(claims(
        "val",
        json!(["viewer"]),
        now + 300,
        "strangler",
    )))
    .await
    .expect("put");
    assert_eq!(r.status(), 403);
    for (token, why) in [
        (
            jwt(claims(
                "olivia",
                json!(["operator"]),
                now - 600,
                "strangler",
            )),
            "ExpiredSignature",
        ),
        (
            jwt(claims(
                "olivia",
                json!(["operator"]),
                now + 300,
                "other-app",
            )),
            "InvalidAudience",
        ),
        (
            jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims("mallory", json!(["approver"]), now + 300, "strangler"),
                &jsonwebtoken::EncodingKey::from_secret(b"guess"),
            )
            .expect("sign"),
            "HS256 is not accepted",
        ),
    ] {
        let r = put(token).await.expect("put");
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.expect("json");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(why)),
            "{body}"
        );
    }
}
