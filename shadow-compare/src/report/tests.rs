use serde_json::json;

use super::*;
use crate::{compare, Response, Rules};

fn stats() -> RouteStats {
    let r = |v: serde_json::Value| {
        Response::new(
            200,
            vec![("content-type".into(), "application/json".into())],
            v.to_string().into_bytes(),
        )
    };
    let mut s = RouteStats::default();
    for i in 0..50 {
        let legacy = json!({"id": i, "description": "", "t": i});
        let cand = json!({"id": i, "description": if i % 5 == 0 { serde_json::Value::Null } else { json!("") }, "t": i + 1000});
        s.record(
            &compare(&Rules::none(), &r(legacy.clone()), &r(cand)),
            "GET /products/1",
            i,
        );
        s.record_aa(
            &compare(
                &Rules::none(),
                &r(legacy),
                &r(json!({"id": i, "description": "", "t": i + 7})),
            ),
            "GET /products/1",
            i,
        );
    }
    s.skip(crate::Skip::BodyTooLarge);
    s
}

fn report() -> Vec<RouteReport> {
    let info = RouteInfo {
        route: "get-product",
        endpoint: "GET /products/{id}".into(),
        stage: "shadow",
        service: Some("catalog"),
    };
    vec![route(info, &stats(), Thresholds::default(), 0.001, 10)]
}

#[test]
fn fields_are_ranked_and_noise_is_marked() {
    let r = &report()[0];
    assert_eq!(r.fields[0].field, "/description");
    assert!(!r.fields[0].noise);
    assert_eq!(r.fields[0].mismatches, 10);
    let t = r.fields.iter().find(|f| f.field == "/t").expect("t");
    assert!(t.noise);
    assert_eq!(r.verdict.real_mismatches, 10);
    assert_eq!(r.verdict.status, crate::verdict::Status::NotReady);
}

#[test]
fn every_format_names_the_field_and_the_verdict() {
    let routes = report();
    let md = markdown(&routes, "2026-11-22T00:00:00Z");
    assert!(
        md.contains("`/description`")
            && md.contains("NOT READY")
            && md.contains("body_too_large 1"),
        "{md}"
    );
    let js: serde_json::Value = serde_json::from_str(&json(&routes, "now")).expect("json");
    assert_eq!(js["routes"][0]["fields"][0]["field"], "/description");
    let page = html(&routes, "now");
    assert!(
        page.starts_with("<!doctype html>")
            && page.contains("<code>/description</code>")
            && page.contains("NOT READY")
    );
    assert!(
        !page.contains("<script") && !page.contains("http://") && !page.contains("https://"),
        "self-contained"
    );
}

#[test]
fn html_escapes_what_services_send() {
    let mut s = RouteStats::default();
    let r = |v: serde_json::Value| {
        Response::new(
            200,
            vec![("content-type".into(), "application/json".into())],
            v.to_string().into_bytes(),
        )
    };
    s.record(
        &compare(
            &Rules::none(),
            &r(json!({"x": "<script>alert(1)</script>"})),
            &r(json!({"x": "ok"})),
        ),
        "GET /<x>",
        1,
    );
    let info = RouteInfo {
        route: "r",
        endpoint: "GET /x".into(),
        stage: "shadow",
        service: None,
    };
    let page = html(&[route(info, &s, Thresholds::default(), 0.001, 1)], "now");
    assert!(!page.contains("<script>alert"), "values are escaped");
    assert!(page.contains("&lt;script&gt;"));
}
