//! The example: the catalog service shadowing the monolith's product
//! endpoints; the report finds the catalog's deliberate difference.

use std::time::Duration;

use serde_json::Value;
use shop_common::connect;

use crate::support::*;

/// Copies the monolith's products into the catalog's own table, mapped
/// (title → name, price_cents → price, no internal_notes): what the CDC
/// sink does continuously.
async fn copy_catalog(monolith: &sqlx::PgPool, catalog: &sqlx::PgPool) {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT id, sku, title, description, price_cents, updated_at FROM products ORDER BY id",
    )
    .fetch_all(monolith)
    .await
    .expect("products");
    for r in rows {
        sqlx::query("INSERT INTO catalog_items (id, sku, name, description, price, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(r.get::<i64, _>(0))
            .bind(r.get::<String, _>(1))
            .bind(r.get::<String, _>(2))
            .bind(r.get::<Option<String>, _>(3))
            .bind(r.get::<i64, _>(4))
            .bind(r.get::<chrono::DateTime<chrono::Utc>, _>(5))
            .execute(catalog)
            .await
            .expect("insert");
    }
}

#[tokio::test]
async fn catalog_shadowing_the_monolith_finds_the_deliberate_difference() {
    let pg = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .expect("join")
        .expect("postgres");
    let monolith = seeded_shop(&pg, 400, 20, 200, 3).await;
    let catalog = connect(
        &pg.create_database("catalog").expect("db"),
        &catalog_service::MIGRATOR,
    )
    .await
    .expect("catalog db");
    copy_catalog(&monolith, &catalog).await;
    let without_description: i64 =
        sqlx::query_scalar("SELECT count(*) FROM products WHERE description IS NULL")
            .fetch_one(&monolith)
            .await
            .expect("count");
    assert!(without_description > 0);

    let mono_http = strangler_testkit::serve_app(legacy_monolith::app(monolith.clone())).await;
    let cat_http = strangler_testkit::serve_app(catalog_service::app(catalog.clone())).await;
    let h = Harness::new();
    h.write_config(&format!(
        r#"
[upstreams.legacy]
url = "{}"
[upstreams.catalog]
url = "{}"

[[routes]]
name = "get-product"
methods = ["GET"]
path = "/products/{{id}}"
service = "catalog"
stage = "shadow"
[routes.compare]
ignore = ["/generated_at", "/request_id"]

[[routes]]
name = "list-products"
methods = ["GET"]
path = "/products"
service = "catalog"
stage = "shadow"
[routes.compare]
ignore = ["/generated_at", "/request_id"]
"#,
        mono_http.url(),
        cat_http.url()
    ));
    let p = h.start().await;

    let report = traffic::run(traffic::Options {
        base_url: p.base.clone(),
        duration: 4.0,
        rate: 0.0,
        concurrency: 8,
        users: 200,
        user_header: "x-user-id".into(),
        products: 400,
        customers: 20,
        orders: 200,
        write_share: 0.0,
        seed: 11,
        path: None,
    })
    .await
    .expect("traffic");
    assert_eq!(report.errors, 0, "{}", report.render());
    let gets = report
        .endpoints
        .get("GET /products/{id}")
        .map_or(0, |e| e.requests);
    assert!(gets > 100, "{}", report.render());

    // Every request accounted for and flushed: compared, or shed while the
    // traffic saturated the proxy (this generator sends as fast as it can)
    // — nothing else skipped, nothing lost.
    let accounted = |r: &Value| {
        r["comparisons"].as_u64().unwrap_or(0) + r["skipped"]["shed"].as_u64().unwrap_or(0)
    };
    let mut last = Value::Null;
    for _ in 0..100 {
        let (code, out, err) = cli(&["shadow", "report", "--format", "json"], &h.config_path());
        assert_eq!(code, 0, "{err}");
        last = serde_json::from_str(&out).expect("json");
        if accounted(&last["routes"][0]) == gets {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let routes = last["routes"].as_array().expect("routes");
    let get = routes
        .iter()
        .find(|r| r["route"] == "get-product")
        .expect("get-product");
    assert_eq!(accounted(get), gets, "{get}");
    let skipped: Vec<&String> = get["skipped"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert!(skipped.iter().all(|k| *k == "shed"), "{get}");
    assert!(get["comparisons"].as_u64().unwrap_or(0) > 100, "{get}");
    let fields = get["fields"].as_array().expect("fields");
    assert_eq!(
        fields.len(),
        1,
        "only the deliberate difference: {fields:?}"
    );
    assert_eq!(fields[0]["field"], "/description");
    assert_eq!(fields[0]["kinds"]["type"], fields[0]["mismatches"]);
    assert_eq!(fields[0]["examples"][0]["legacy"], "\"\"");
    assert_eq!(fields[0]["examples"][0]["candidate"], "null");
    let share = fields[0]["share"].as_f64().unwrap_or(0.0);
    let expected = without_description as f64 / 400.0;
    assert!(
        (share - expected).abs() < 0.05,
        "{share} of requests differ, {expected} of products lack a description"
    );
    let list = routes
        .iter()
        .find(|r| r["route"] == "list-products")
        .expect("list-products");
    assert_eq!(list["fields"][0]["field"], "/items/*/description");
    // The report as a user reads it.
    let (code, md, _) = cli(
        &["shadow", "report", "--route", "get-product"],
        &h.config_path(),
    );
    assert_eq!(code, 0);
    assert!(md.contains("`/description`") && md.contains("type"), "{md}");
}
