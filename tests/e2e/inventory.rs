//! The endpoint inventory against the example monolith: with no route
//! configured, the router finds the shop's endpoints in its traffic, counts
//! each exactly as the traffic generator sent it, and `--emit-routes`
//! writes routes `strangler check` accepts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// `GET /inventory/{product_id}` → `GET /inventory/{id}`: the generator's
/// labels with every parameter named as the inventory names them.
fn as_inferred(label: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for (i, seg) in label.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if seg.starts_with('{') {
            n += 1;
            out.push_str(&if n == 1 {
                "{id}".to_string()
            } else {
                format!("{{id{n}}}")
            });
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn inventory_json(path: &std::path::Path) -> Value {
    let (code, out, err) = cli(&["inventory", "--json"], path);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).expect("inventory json")
}

#[tokio::test]
async fn the_monoliths_endpoints_are_found_in_its_traffic_and_become_routes() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let monolith = seeded_shop(&pg, 300, 40, 150, 5).await;
    let shop = strangler_testkit::serve_app(legacy_monolith::app(monolith.clone())).await;
    let h = Harness::new();
    // The monolith behind the router, and not one route.
    let path = h.write_config(&format!(
        "# the shop, day one\n[upstreams.legacy]\nurl = \"{}\" # the monolith\n",
        shop.url()
    ));
    let before = std::fs::read_to_string(&path).expect("config");
    let p = h.start().await;

    let sent = traffic::run(traffic::Options {
        base_url: p.base.clone(),
        duration: 4.0,
        rate: 0.0,
        concurrency: 8,
        users: 100,
        user_header: "x-user-id".into(),
        products: 300,
        customers: 40,
        orders: 150,
        write_share: 0.2,
        seed: 11,
        path: None,
    })
    .await
    .expect("traffic");
    assert_eq!(sent.errors, 0, "{}", sent.render());
    assert!(sent.requests > 500, "{}", sent.render());
    assert_eq!(
        sent.endpoints.len(),
        7,
        "every kind of request was sent: {}",
        sent.render()
    );

    // Saved every 5 s: wait until every request sent is in the store.
    let store = harness_store(&h).await;
    let found = eventually(Duration::from_secs(30), || async {
        let total = store
            .inventory()
            .await
            .map_or(0, |t| t.values().map(|e| e.requests).sum::<u64>());
        tokio::time::sleep(Duration::from_millis(200)).await;
        total == sent.requests
    })
    .await;
    let inv = inventory_json(&path);
    assert!(
        found.is_some(),
        "inventory never reached {} requests: {inv}",
        sent.requests
    );
    assert_eq!(inv["requests"].as_u64(), Some(sent.requests), "{inv}");

    let by_template: BTreeMap<String, &Value> = inv["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .map(|t| {
            (
                format!(
                    "{} {}",
                    t["method"].as_str().unwrap_or(""),
                    t["template"].as_str().unwrap_or("")
                ),
                t,
            )
        })
        .collect();
    let expected: BTreeMap<String, u64> = sent
        .endpoints
        .iter()
        .map(|(label, e)| (as_inferred(label), e.requests))
        .collect();
    assert_eq!(
        by_template.keys().cloned().collect::<Vec<_>>(),
        expected.keys().cloned().collect::<Vec<_>>(),
        "the templates are the shop's endpoints: {inv}"
    );
    for (key, want) in &expected {
        let t = by_template[key];
        // Every request counted: exact, not just within 1 %.
        assert_eq!(t["requests"].as_u64(), Some(*want), "{key}: {t}");
        let share = t["share"].as_f64().unwrap_or(0.0);
        assert!(
            (share - *want as f64 / sent.requests as f64).abs() < 1e-9,
            "{key}: {t}"
        );
        assert!(t["p50_ms"].as_f64().unwrap_or(0.0) > 0.0, "{key}: {t}");
        assert!(t["p99_ms"].as_f64() >= t["p50_ms"].as_f64(), "{key}: {t}");
        assert_eq!(t["error_rate"].as_f64(), Some(0.0), "{key}: {t}");
        assert!(t["route"].is_null(), "no route covers anything yet: {t}");
        let example = t["example"].as_str().unwrap_or("");
        let template = key.split_once(' ').map(|(_, t)| t).unwrap_or("");
        assert!(
            strangler_config::PathTemplate::parse(template)
                .expect("template")
                .matches(example),
            "{key}: example {example:?}"
        );
    }
    // GETs answered with bodies; the bytes are counted.
    assert!(
        by_template["GET /products/{id}"]["bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );

    // The admin API serves the same inventory.
    let api: Value = client()
        .get(format!("{}/inventory", p.admin))
        .send()
        .await
        .expect("GET /inventory")
        .json()
        .await
        .expect("json");
    assert_eq!(api["requests"].as_u64(), Some(sent.requests), "{api}");

    // The table names them, and says nothing covers them.
    let (code, out, _) = cli(&["inventory"], &path);
    assert_eq!(code, 0);
    assert!(
        out.contains("/customers/{id}/orders") && out.contains("(not covered)"),
        "{out}"
    );
    assert!(out.contains("7 templates, 0 covered by a route"), "{out}");

    // Routes for all of them, appended to the file with its comments.
    let (code, out, err) = cli(&["inventory", "--emit-routes"], &path);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("added 7 routes in stage legacy"), "{out}");
    let after = std::fs::read_to_string(&path).expect("config");
    assert!(
        after.starts_with(before.trim_end()),
        "the file before is kept:\n{after}"
    );
    let (code, out, err) = cli(&["check"], &path);
    assert_eq!(
        code, 0,
        "strangler check accepts the emitted routes: {out}{err}\n{after}"
    );
    let config = strangler_config::Config::load(&path).expect("config");
    let mut routes: Vec<(String, String, String)> = config
        .routes
        .iter()
        .map(|r| {
            (
                r.methods.join(","),
                r.path.as_str().to_string(),
                r.stage.to_string(),
            )
        })
        .collect();
    routes.sort();
    let mut want: Vec<(String, String, String)> = expected
        .keys()
        .map(|k| {
            let (m, t) = k.split_once(' ').expect("method and template");
            (m.to_string(), t.to_string(), "legacy".to_string())
        })
        .collect();
    want.sort();
    assert_eq!(routes, want);

    // Now every template is covered, by the route made for it.
    let inv = inventory_json(&path);
    for t in inv["templates"].as_array().expect("templates") {
        let name = t["route"]
            .as_str()
            .unwrap_or_else(|| panic!("covered: {t}"));
        let r = config.route(name).expect("route");
        assert_eq!(r.path.as_str(), t["template"].as_str().unwrap_or(""), "{t}");
    }
    let (code, out, _) = cli(&["inventory", "--emit-routes"], &path);
    assert_eq!(code, 0);
    assert!(out.contains("nothing added"), "{out}");
    drop(p);
}
