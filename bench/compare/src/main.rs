//! `compare-bench [SECONDS]`: pairs/s of `compare` on one core, for a
//! ~2 KiB and a ~64 KiB JSON pair shaped like the example shop's product
//! pages (noise fields differ, one real field differs, rules as in
//! examples/strangler.toml).

use std::time::{Duration, Instant};

// The same allocator as the `strangler` binary, whose proxy runs compare.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use serde_json::{json, Value};
use strangler_config::CompareRules;
use strangler_shadow::{compare, Response, Rules};

fn page(items: usize, candidate: bool) -> Value {
    let items: Vec<Value> = (0..items)
        .map(|i| {
            json!({
                "id": i,
                "sku": format!("SKU-{i:06}"),
                "title": format!("Classic Kettle {i}"),
                "description": if i % 20 == 0 { if candidate { Value::Null } else { json!("") } } else { json!(format!("The classic kettle {i} you have been waiting for.")) },
                "price_cents": 2599 + i,
                "updated_at": "2024-01-01T00:22:47.000000Z",
            })
        })
        .collect();
    json!({
        "items": items,
        "page": 1,
        "per_page": 20,
        "total": 10000,
        "generated_at": if candidate { "2026-11-22T01:00:00.123456Z" } else { "2026-11-22T01:00:00.123999Z" },
        "request_id": if candidate { "9b2f1c1e-2c4a-4f6e-9a57-0d2b8f0c4e11" } else { "1c2f1c1e-2c4a-4f6e-9a57-0d2b8f0c4e99" },
    })
}

fn response(v: &Value) -> Response {
    Response::new(
        200,
        vec![
            ("content-type".into(), "application/json".into()),
            ("date".into(), "Sun, 22 Nov 2026 01:00:00 GMT".into()),
        ],
        v.to_string().into_bytes(),
    )
}

fn run(label: &str, items: usize, secs: f64, rules: &Rules) {
    let (a, b) = (response(&page(items, false)), response(&page(items, true)));
    let size = a.body.len();
    let diffs = compare(rules, &a, &b).differences.len();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            std::hint::black_box(compare(
                rules,
                std::hint::black_box(&a),
                std::hint::black_box(&b),
            ));
        }
        n += 64;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "| {label} | {:.1} KiB | {diffs} | {:>10.0} | {:>8.1} MiB/s |",
        size as f64 / 1024.0,
        rate,
        rate * 2.0 * size as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rules = Rules::new(&CompareRules {
        ignore: vec!["/generated_at".into(), "/request_id".into()],
        ..CompareRules::default()
    });
    println!("| pair | body | differences | pairs/s (1 core) | JSON parsed |");
    println!("|---|---:|---:|---:|---:|");
    run("2 KiB page", 11, secs, &rules);
    run("64 KiB page", 356, secs, &rules);
}
