//! The state store shared by a fleet, and the route CLI.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const ROUTES: &str = r#"
[[routes]]
name = "get-product"
methods = ["GET"]
path = "/products/{id}"
service = "svc"
stage = "migrated"
"#;

#[tokio::test]
async fn two_proxies_sharing_postgres_obey_a_rollback_within_a_second() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let url = pg.create_database("state").expect("db");
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let ups = upstreams(&legacy, &[("svc", &svc)]);
    let (ha, hb) = (
        Harness::new().with_state(&url),
        Harness::new().with_state(&url),
    );
    ha.write_config(&format!("{ups}{ROUTES}"));
    hb.write_config(&format!("{ups}{ROUTES}"));
    let (a, b) = (ha.start().await, hb.start().await);
    let c = client();
    assert_eq!(
        get_who(&c, &format!("{}/products/1", a.base), &[]).await,
        "svc"
    );
    assert_eq!(
        get_who(&c, &format!("{}/products/1", b.base), &[]).await,
        "svc"
    );

    let r = c
        .post(format!("{}/routes/get-product/rollback", a.admin))
        .send()
        .await
        .expect("rollback");
    assert_eq!(r.status(), 200);
    assert_eq!(
        get_who(&c, &format!("{}/products/1", a.base), &[]).await,
        "legacy"
    );
    let took = eventually(Duration::from_secs(1), || async {
        get_who(&c, &format!("{}/products/1", b.base), &[]).await == "legacy"
    })
    .await;
    assert!(
        took.is_some(),
        "the other proxy did not obey the rollback within 1 s; its log:\n{}",
        b.log_text()
    );

    // The rollback holds: a set is refused until the hold is lifted.
    let set_migrated = [
        "route",
        "set",
        "get-product",
        "--stage",
        "migrated",
        "--force",
        "--reason",
        "fixed",
    ];
    let (code, _, err) = cli(&set_migrated, &ha.config_path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("on hold since a rollback"), "{err}");
    let (code, out, err) = cli(
        &["route", "resume", "get-product", "--reason", "fixed"],
        &ha.config_path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    // Back toward migrated only through the gates: nothing was shadowed.
    assert!(
        out.contains("stays at legacy") && out.contains("gate shadow NOT READY"),
        "{out}"
    );
    // The CLI changes the shared store; both proxies follow.
    let (code, out, err) = cli(&set_migrated, &ha.config_path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("legacy → migrated"), "{out}");
    // Following a CLI change is not the one-second promise (that is the
    // rollback's, above); a generous deadline keeps a loaded CI box from
    // failing it, and a failure prints what the proxy did.
    for p in [&a, &b] {
        let took = eventually(Duration::from_secs(5), || async {
            get_who(&c, &format!("{}/products/1", p.base), &[]).await == "svc"
        })
        .await;
        assert!(
            took.is_some(),
            "a proxy did not follow the CLI within 5 s; its log:\n{}\naccess log:\n{}",
            p.log_text(),
            std::fs::read_to_string(&p.access_log).unwrap_or_default()
        );
    }
    let (_, out, _) = cli(
        &["route", "history", "get-product", "--json"],
        &hb.config_path(),
    );
    let hist: Value = serde_json::from_str(&out).expect("json");
    let actors: Vec<&str> = hist["history"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .map(|a| if a.starts_with("file:") { "file" } else { a })
        .collect();
    // The rollback, the resume, the fleet's file held by the shadow gate,
    // and the forced move.
    assert_eq!(actors, ["admin-api", "e2e-test", "file", "e2e-test"]);
}

#[tokio::test]
async fn route_cli_lists_sets_and_refuses_bad_input() {
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new();
    let routes = ROUTES.replace(
        "stage = \"migrated\"",
        "stage = \"migrated\"\nsticky = \"header:x-user-id\"",
    );
    let path = h.write_config(&format!("{}{routes}", upstreams(&legacy, &[("svc", &svc)])));
    let (code, out, _) = cli(&["route", "list"], &path);
    assert_eq!(code, 0);
    assert!(
        out.contains("get-product")
            && out.contains("GET /products/{id}")
            && out.contains("migrated"),
        "{out}"
    );

    let (code, _, err) = cli(&["route", "set", "get-product", "--stage", "canary"], &path);
    assert_eq!(code, 2, "canary needs a percent");
    assert!(err.contains("--percent"), "{err}");
    let (code, _, err) = cli(&["route", "set", "nope", "--stage", "legacy"], &path);
    assert_eq!(code, 2);
    assert!(
        err.contains("no route \"nope\"") && err.contains("get-product"),
        "{err}"
    );
    let (code, _, err) = cli(&["route", "set", "get-product", "--stage", "later"], &path);
    assert_eq!(code, 2);
    assert!(err.contains("unknown stage"), "{err}");

    let (code, out, _) = cli(
        &[
            "route",
            "set",
            "get-product",
            "--stage",
            "canary",
            "--percent",
            "10",
            "--json",
        ],
        &path,
    );
    assert_eq!(code, 0);
    let entry: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(entry["after"]["percent"], 10.0);
    let (_, out, _) = cli(&["route", "list", "--json"], &path);
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (
            list["routes"][0]["stage"].as_str(),
            list["routes"][0]["origin"].as_str()
        ),
        (Some("canary"), Some("runtime"))
    );

    // A proxy started now reads the stored stage before its first request.
    let p = h.start().await;
    let c = client();
    // Exactly the users whose sticky bucket is under 10 % reach the service.
    use strangler_router::table::sticky::{bucket, on_service};
    let mut on_svc = 0;
    let mut expected = 0;
    for i in 0..400 {
        let user = format!("u{i}");
        expected += usize::from(on_service(bucket("get-product", user.as_bytes()), 10.0));
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
    assert!(expected > 10 && expected < 100, "{expected}");
    assert_eq!(on_svc, expected);

    // The file changing the route wins over the stored override.
    std::fs::write(
        &path,
        h.config_text(&format!(
            "{}{}",
            upstreams(&legacy, &[("svc", &svc)]),
            routes.replace("migrated", "legacy")
        )),
    )
    .expect("write");
    let applied = eventually(Duration::from_secs(5), || async {
        let (_, out, _) = cli(&["route", "list", "--json"], &path);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| v["routes"][0]["origin"] == "file")
    })
    .await;
    assert!(applied.is_some());
    let served = eventually(Duration::from_secs(5), || async {
        get_who(&c, &format!("{}/products/1", p.base), &[]).await == "legacy"
    })
    .await;
    assert!(
        served.is_some(),
        "the proxy did not pick up the file's stage"
    );
}

/// The shared store's PostgreSQL restarts under a running proxy: the proxy
/// serves throughout from its last known state, retries with backoff
/// (counted in `strangler_store_retries_total`), and obeys a rollback made
/// after the restart.
#[tokio::test]
async fn a_proxy_rides_out_a_state_store_restart_and_obeys_a_later_rollback() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let url = pg.create_database("state").expect("db");
    let legacy = TestUpstream::start("legacy").await;
    let svc = TestUpstream::start("svc").await;
    let h = Harness::new().with_state(&url);
    h.write_config(&format!("{}{ROUTES}", upstreams(&legacy, &[("svc", &svc)])));
    let p = h.start().await;
    let c = client();
    let product = format!("{}/products/1", p.base);
    assert_eq!(get_who(&c, &product, &[]).await, "svc");

    pg.stop().expect("stop postgres");
    // The store is gone: requests are still served, the poller retries.
    let retried = eventually(Duration::from_secs(20), || async {
        p.metric("strangler_store_retries_total{operation=\"poll\"}")
            .await
            >= 2.0
    })
    .await;
    assert!(retried.is_some(), "no retries counted:\n{}", p.log_text());
    for _ in 0..20 {
        assert_eq!(get_who(&c, &product, &[]).await, "svc");
    }

    pg.start_again().expect("start postgres");
    let (code, out, err) = cli(
        &[
            "route",
            "rollback",
            "get-product",
            "--reason",
            "after the restart",
        ],
        &h.config_path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let obeyed = eventually(Duration::from_secs(30), || async {
        get_who(&c, &product, &[]).await == "legacy"
    })
    .await;
    assert!(
        obeyed.is_some(),
        "the proxy did not pick up the rollback:\n{}",
        p.log_text()
    );
    // The proxy's log is written by a background thread: wait for the line.
    let logged = eventually(Duration::from_secs(10), || async {
        p.log_text().contains("the state store answers again")
    })
    .await;
    assert!(logged.is_some(), "{}", p.log_text());
}
