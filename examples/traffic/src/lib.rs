//! A traffic generator for the example shop: about 80 % reads, a few
//! writes, sticky user ids in a header, at a fixed rate or as fast as
//! possible, for a duration. The demo, the end-to-end tests and the
//! benchmarks use it through [`run`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

/// What to send, where, and how much.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Where to send requests (the monolith, or the router in front of it).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Requests per second in all; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Distinct users (sticky ids `user-N` in the user header).
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    /// The header carrying the user id.
    #[arg(long, default_value = "x-user-id")]
    pub user_header: String,
    /// Product ids are drawn from 1..=products.
    #[arg(long, default_value_t = 10_000)]
    pub products: u64,
    /// Customer ids are drawn from 1..=customers.
    #[arg(long, default_value_t = 1_000)]
    pub customers: u64,
    /// Existing order ids are drawn from 1..=orders (plus the ones created).
    #[arg(long, default_value_t = 0)]
    pub orders: u64,
    /// Share of writes (POST /orders, PUT /products/{id}), 0.0..=1.0.
    #[arg(long, default_value_t = 0.2)]
    pub write_share: f64,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Send only `GET <base-url><path>` instead of the shop's mix (for benchmarks).
    #[arg(long)]
    pub path: Option<String>,
}

/// The kinds of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    GetProduct,
    ListProducts,
    GetInventory,
    GetOrder,
    CustomerOrders,
    PlaceOrder,
    UpdateProduct,
    /// `--path`
    Fixed,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::GetProduct => "GET /products/{id}",
            Endpoint::ListProducts => "GET /products",
            Endpoint::GetInventory => "GET /inventory/{product_id}",
            Endpoint::GetOrder => "GET /orders/{id}",
            Endpoint::CustomerOrders => "GET /customers/{id}/orders",
            Endpoint::PlaceOrder => "POST /orders",
            Endpoint::UpdateProduct => "PUT /products/{id}",
            Endpoint::Fixed => "GET --path",
        }
    }
}

/// Per-endpoint results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointReport {
    pub requests: u64,
    /// By status code; `0` for transport errors.
    pub statuses: BTreeMap<u16, u64>,
    /// 5xx answers and transport errors.
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub endpoints: BTreeMap<String, EndpointReport>,
    /// The first few error descriptions.
    pub sample_errors: Vec<String>,
}

/// Latencies (µs), counts by status, and errors of one endpoint.
type EndpointSamples = (Vec<u32>, BTreeMap<u16, u64>, u64);

#[derive(Default)]
struct Samples {
    by_endpoint: BTreeMap<Endpoint, EndpointSamples>,
    sample_errors: Vec<String>,
}

struct Shared {
    opts: Options,
    client: reqwest::Client,
    samples: Mutex<Samples>,
    created_orders: Mutex<Vec<i64>>,
    sent: AtomicU64,
}

/// Picks the next request kind: 80 % reads by default.
fn pick(rng: &mut fastrand::Rng, write_share: f64, have_orders: bool) -> Endpoint {
    let x = rng.f64();
    if x < write_share {
        return if rng.f64() < 0.75 {
            Endpoint::PlaceOrder
        } else {
            Endpoint::UpdateProduct
        };
    }
    match rng.u32(..100) {
        0..=49 => Endpoint::GetProduct,
        50..=61 => Endpoint::ListProducts,
        62..=79 => Endpoint::GetInventory,
        80..=89 if have_orders => Endpoint::GetOrder,
        _ => Endpoint::CustomerOrders,
    }
}

async fn one(shared: &Shared, rng: &mut fastrand::Rng) {
    let o = &shared.opts;
    let known_orders = shared
        .created_orders
        .lock()
        .map(|v| v.len() as u64)
        .unwrap_or(0);
    let endpoint = pick(rng, o.write_share, o.orders + known_orders > 0);
    let user = format!("user-{}", rng.u64(1..=o.users.max(1)));
    let product = rng.u64(1..=o.products.max(1));
    let base = o.base_url.trim_end_matches('/');
    let c = &shared.client;
    let req = match endpoint {
        Endpoint::Fixed => c.get(format!("{base}{}", o.path.as_deref().unwrap_or("/"))),
        Endpoint::GetProduct => c.get(format!("{base}/products/{product}")),
        Endpoint::ListProducts => c.get(format!(
            "{base}/products?page={}&per_page=20",
            rng.u64(1..=50)
        )),
        Endpoint::GetInventory => c.get(format!("{base}/inventory/{product}")),
        Endpoint::GetOrder => {
            let created = shared
                .created_orders
                .lock()
                .ok()
                .and_then(|v| (!v.is_empty()).then(|| v[rng.usize(..v.len())]));
            let id = match created {
                Some(id) if o.orders == 0 || rng.bool() => id,
                _ => rng.u64(1..=o.orders.max(1)) as i64,
            };
            c.get(format!("{base}/orders/{id}"))
        }
        Endpoint::CustomerOrders => c.get(format!(
            "{base}/customers/{}/orders?limit=10",
            rng.u64(1..=o.customers.max(1))
        )),
        Endpoint::PlaceOrder => c.post(format!("{base}/orders")).json(&json!({
            "customer_id": rng.u64(1..=o.customers.max(1)),
            "items": [{ "product_id": product, "quantity": rng.u32(1..=2) }],
        })),
        Endpoint::UpdateProduct => c
            .put(format!("{base}/products/{product}"))
            .json(&json!({ "price_cents": rng.u64(199..=49_999) })),
    };
    let start = Instant::now();
    let result = req.header(o.user_header.as_str(), user).send().await;
    let (status, error) = match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.bytes().await;
            if endpoint == Endpoint::PlaceOrder && status == 201 {
                if let Some(id) = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["id"].as_i64())
                {
                    if let Ok(mut v) = shared.created_orders.lock() {
                        v.push(id);
                    }
                }
            }
            (
                status,
                (status >= 500).then(|| format!("{}: status {status}", endpoint.label())),
            )
        }
        Err(e) => (0, Some(format!("{}: {e}", endpoint.label()))),
    };
    let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
    if let Ok(mut s) = shared.samples.lock() {
        let entry = s.by_endpoint.entry(endpoint).or_default();
        entry.0.push(micros);
        *entry.1.entry(status).or_default() += 1;
        if let Some(e) = error {
            entry.2 += 1;
            if s.sample_errors.len() < 10 {
                s.sample_errors.push(e);
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Runs the mix and reports what happened.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(opts.concurrency.max(1))
        .timeout(Duration::from_secs(30))
        .build()?;
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        client,
        samples: Mutex::new(Samples::default()),
        created_orders: Mutex::new(Vec::new()),
        sent: AtomicU64::new(0),
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(opts.duration.max(0.0));
    // A fixed rate is paced by one ticker; workers take tickets from it.
    let (tickets_tx, tickets_rx) = tokio::sync::mpsc::channel::<()>(opts.concurrency.max(1));
    let tickets_rx = Arc::new(tokio::sync::Mutex::new(tickets_rx));
    let pacer = (opts.rate > 0.0).then(|| {
        let period = Duration::from_secs_f64(1.0 / opts.rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while Instant::now() < deadline {
                tick.tick().await;
                if tickets_tx.send(()).await.is_err() {
                    break;
                }
            }
        })
    });
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..opts.concurrency.max(1) {
        let (shared, tickets) = (shared.clone(), tickets_rx.clone());
        let paced = opts.rate > 0.0;
        let mut rng =
            fastrand::Rng::with_seed(opts.seed.wrapping_mul(1_000_003).wrapping_add(w as u64));
        workers.spawn(async move {
            while Instant::now() < deadline {
                if paced {
                    let got = tokio::time::timeout_at(deadline.into(), async {
                        tickets.lock().await.recv().await
                    })
                    .await;
                    if !matches!(got, Ok(Some(()))) {
                        break;
                    }
                }
                one(&shared, &mut rng).await;
                shared.sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    if let Some(p) = pacer {
        p.abort();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let samples = std::mem::take(
        &mut *shared
            .samples
            .lock()
            .map_err(|_| anyhow::anyhow!("samples lock poisoned"))?,
    );
    let mut report = Report {
        elapsed_s: elapsed,
        sample_errors: samples.sample_errors,
        ..Report::default()
    };
    let mut all: Vec<u32> = Vec::new();
    for (endpoint, (mut lat, statuses, errors)) in samples.by_endpoint {
        lat.sort_unstable();
        all.extend_from_slice(&lat);
        report.requests += lat.len() as u64;
        report.errors += errors;
        report.endpoints.insert(
            endpoint.label().to_string(),
            EndpointReport {
                requests: lat.len() as u64,
                statuses,
                errors,
                p50_ms: percentile(&lat, 0.50),
                p90_ms: percentile(&lat, 0.90),
                p99_ms: percentile(&lat, 0.99),
                max_ms: lat.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
            },
        );
    }
    all.sort_unstable();
    report.p50_ms = percentile(&all, 0.50);
    report.p90_ms = percentile(&all, 0.90);
    report.p99_ms = percentile(&all, 0.99);
    report.rate = report.requests as f64 / elapsed.max(f64::EPSILON);
    Ok(report)
}

impl Report {
    /// A human summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} requests in {:.1} s ({:.0}/s), {} errors; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms\n\n",
            self.requests, self.elapsed_s, self.rate, self.errors, self.p50_ms, self.p90_ms, self.p99_ms
        );
        out.push_str(&format!(
            "{:<28} {:>8} {:>7} {:>9} {:>9} {:>9}  statuses\n",
            "endpoint", "requests", "errors", "p50 ms", "p90 ms", "p99 ms"
        ));
        for (name, e) in &self.endpoints {
            let statuses: Vec<String> = e
                .statuses
                .iter()
                .map(|(s, n)| {
                    if *s == 0 {
                        format!("transport:{n}")
                    } else {
                        format!("{s}:{n}")
                    }
                })
                .collect();
            out.push_str(&format!(
                "{name:<28} {:>8} {:>7} {:>9.2} {:>9.2} {:>9.2}  {}\n",
                e.requests,
                e.errors,
                e.p50_ms,
                e.p90_ms,
                e.p99_ms,
                statuses.join(" ")
            ));
        }
        for e in &self.sample_errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }
}
