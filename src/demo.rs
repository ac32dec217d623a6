//! `strangler demo`: the whole migration story, locally, end to end.
//!
//! Throw-away PostgreSQL (one cluster: the monolith's, the catalog's and the
//! orders service's databases), the example shop in-process, CDC with the
//! embedded transport, the router as a child process (`strangler proxy`),
//! and the traffic generator. The product endpoints walk through shadow →
//! canary 10 % → 50 % → migrated, CDC flips to reverse for `products`, and
//! the board is printed at each step. Everything it starts is stopped and
//! removed at the end, on Ctrl-C too.
//!
//! (Longer than 400 lines on purpose: the demo is one story told step by
//! step, and reads top to bottom.)

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strangler_cdc::pipeline::Start;
use strangler_cdc::run::{self as cdc_run, SinkSpec};
use strangler_cdc::sink::TargetTable;
use strangler_cdc::source::SourceConfig;
use strangler_config::{Config, Stage, TableMapping, TableName};
use strangler_sandbox::{MariaDb, PgCluster};
use strangler_state::route_state::effective;
use strangler_state::store::StateStore;
use tokio::sync::{oneshot, watch};

use crate::cli::DemoArgs;
use crate::Exit;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn say(s: &str) {
    println!("\n\x1b[1m== {s}\x1b[0m");
}

fn note(s: &str) {
    println!("   {s}");
}

fn t(s: &str) -> TableName {
    s.parse()
        .unwrap_or_else(|_| unreachable!("static table name {s}"))
}

fn map(source: &str, target: &str, rename: &[(&str, &str)], exclude: &[&str]) -> TableMapping {
    TableMapping {
        source: t(source),
        target: t(target),
        rename: rename
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        drop_columns: false,
    }
}

/// The monolith's database: PostgreSQL, or the MySQL flavour.
enum Monolith {
    Postgres(legacy_monolith::PgPool),
    MySql(legacy_monolith::mysql::Pool),
}

impl Monolith {
    fn app(&self) -> axum::Router {
        match self {
            Monolith::Postgres(p) => legacy_monolith::app(p.clone()),
            Monolith::MySql(p) => legacy_monolith::mysql::app(p.clone()),
        }
    }

    async fn price_cents(&self, id: i64) -> i64 {
        match self {
            Monolith::Postgres(p) => legacy_monolith::products::price_cents(p, id)
                .await
                .unwrap_or(0),
            Monolith::MySql(p) => legacy_monolith::mysql::products::price_cents(p, id)
                .await
                .unwrap_or(0),
        }
    }
}

/// The schema the monolith's tables are named in: PostgreSQL's `public`,
/// or the MySQL database `shop`.
fn schema(mysql: bool) -> &'static str {
    if mysql {
        "shop"
    } else {
        "public"
    }
}

fn catalog_mapping(mysql: bool) -> TableMapping {
    map(
        &format!("{}.products", schema(mysql)),
        "public.catalog_items",
        &[("title", "name"), ("price_cents", "price")],
        &["internal_notes"],
    )
}

fn orders_mappings(mysql: bool) -> Vec<TableMapping> {
    let mut v = vec![map(
        &format!("{}.products", schema(mysql)),
        "public.products",
        &[],
        &["description", "internal_notes"],
    )];
    for tb in [
        "inventory",
        "customers",
        "orders",
        "order_items",
        "payments",
    ] {
        v.push(map(
            &format!("{}.{tb}", schema(mysql)),
            &format!("public.{tb}"),
            &[],
            &[],
        ));
    }
    v
}

fn config_text(dir: &Path, ports: &Ports, mysql: bool) -> String {
    format!(
        r#"# Written by `strangler demo` — the example migration, on loopback.
[state]
url = "sqlite://{dir}/state.db"
poll_interval_ms = 100

[proxy]
listen = "127.0.0.1:{listen}"
admin = "127.0.0.1:{admin}"
override_header = "x-strangler-target"
access_log = false

[upstreams.legacy]
url = "http://127.0.0.1:{mono}"
health_path = "/healthz"

[upstreams.catalog]
url = "http://127.0.0.1:{catalog}"
health_path = "/healthz"

[upstreams.orders]
url = "http://127.0.0.1:{orders}"
health_path = "/healthz"

[[routes]]
name = "get-product"
methods = ["GET"]
path = "/products/{{id}}"
service = "catalog"
sticky = "header:x-user-id"
tables = ["{s}.products"]
[routes.compare]
aa_percent = 30.0
[routes.promote]
max_mismatch = 1.0
min_samples = 300

[[routes]]
name = "list-products"
methods = ["GET"]
path = "/products"
service = "catalog"
sticky = "header:x-user-id"
tables = ["{s}.products"]
[routes.compare]
aa_percent = 30.0
# A page of 20 products meets more in-flight writes than one product:
# a looser bound, fewer samples.
[routes.promote]
max_mismatch = 3.0
min_samples = 100

[[routes]]
name = "get-order"
methods = ["GET"]
path = "/orders/{{id}}"
service = "orders"
tables = ["{s}.orders", "{s}.order_items", "{s}.payments"]
"#,
        s = schema(mysql),
        dir = dir.display(),
        listen = ports.listen,
        admin = ports.admin,
        mono = ports.monolith,
        catalog = ports.catalog,
        orders = ports.orders,
    )
}

struct Ports {
    listen: u16,
    admin: u16,
    monolith: u16,
    catalog: u16,
    orders: u16,
}

async fn serve(app: axum::Router, stop: watch::Receiver<bool>) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut stop = stop;
    tokio::spawn(shop_common::serve(listener, app, async move {
        let _ = stop.changed().await;
    }));
    Ok(port)
}

/// Sends the shop's traffic mix through the router for `secs`.
async fn traffic(base: &str, secs: f64, seed: u64) -> anyhow::Result<traffic::Report> {
    let r = traffic::run(traffic::Options {
        base_url: base.to_string(),
        duration: secs,
        rate: 250.0,
        concurrency: 8,
        users: 500,
        user_header: "x-user-id".into(),
        products: 2_000,
        customers: 200,
        orders: 3_000,
        write_share: 0.1,
        seed,
        path: None,
    })
    .await?;
    note(&format!(
        "traffic: {} requests in {:.0} s, {} errors, p50 {:.1} ms, p99 {:.1} ms",
        r.requests, r.elapsed_s, r.errors, r.p50_ms, r.p99_ms
    ));
    Ok(r)
}

/// What the router saw on day one: the endpoint inventory, once the
/// proxy has saved every request it counted (every 5 s).
async fn inventory(config_path: &Path, store: &StateStore, sent: u64) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    until("the inventory", Duration::from_secs(30), || async {
        store
            .inventory()
            .await
            .is_ok_and(|t| t.values().map(|e| e.requests).sum::<u64>() >= sent)
    })
    .await?;
    let rows = crate::inventory::list(&config, store).await?;
    note("the endpoints the monolith serves, as the router saw them (`strangler inventory`):");
    println!();
    let header: Vec<&str> = crate::inventory::HEADER[..10].to_vec();
    let table: Vec<Vec<String>> = crate::inventory::render(&rows, 10)
        .into_iter()
        .map(|mut r| {
            r.truncate(10);
            r
        })
        .collect();
    for line in crate::output::lines(&header, &table) {
        println!("   {line}");
    }
    Ok(())
}

/// Migration progress by hour, as `strangler status` shows it.
async fn progress(config_path: &Path, store: &StateStore) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let now = strangler_state::store::now_ms();
    let hours = strangler_router::progress::hourly(&config, store, now, 2).await?;
    println!();
    for line in crate::status::render_progress(&hours).lines() {
        println!("   {line}");
    }
    Ok(())
}

async fn board(config_path: &Path, store: &StateStore) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let rows = crate::status::board(&config, store).await?;
    println!();
    for line in crate::status::render(&rows).lines() {
        println!("   {line}");
    }
    Ok(())
}

/// Promotes `name` one step (or to `to`), gates first, like `strangler route promote`.
async fn promote(
    config_path: &Path,
    store: &StateStore,
    name: &str,
    to: Option<f64>,
) -> anyhow::Result<bool> {
    use strangler_router::gates::{self, Promotion};
    let config = Config::load(config_path)?;
    let outcome = gates::promote(
        &config,
        store,
        name,
        to,
        false,
        Some("demo: gates passed"),
        "strangler-demo",
    )
    .await?;
    let gates = match &outcome {
        Promotion::Promoted { gates, .. } | Promotion::Refused { gates, .. } => gates,
    };
    for g in gates {
        note(&format!(
            "gate {:<11} {} {}",
            g.name,
            if g.ok { "ok  " } else { "FAIL" },
            g.detail
        ));
    }
    let Promotion::Promoted { entry: e, .. } = outcome else {
        note(&format!("{name}: not promoted"));
        return Ok(false);
    };
    let text = |s: &strangler_state::store::StageState| {
        if s.stage == Stage::Canary {
            format!("canary {}%", s.percent)
        } else {
            s.stage.to_string()
        }
    };
    note(&format!("{name}: {} → {}", text(&e.before), text(&e.after)));
    Ok(true)
}

/// Waits (bounded) until `f` holds.
async fn until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!("waiting for {what}"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    while !f().await {
        if start.elapsed() > timeout {
            spinner.abandon();
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    spinner.finish_and_clear();
    Ok(())
}

fn pause(interactive: bool) {
    if interactive {
        print!("\n   [Enter] to go on ");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let _ = std::io::stdin().lock().read_line(&mut String::new());
    }
}

pub fn run(args: DemoArgs) -> anyhow::Result<Exit> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    rt.block_on(async move {
        tokio::select! {
            r = story(interactive, args.kafka, args.mysql) => r,
            _ = tokio::signal::ctrl_c() => {
                println!("\ninterrupted: stopping everything the demo started");
                Ok(Exit::Failed)
            }
        }
    })
}

async fn story(interactive: bool, kafka: Option<String>, mysql: bool) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("strangler-demo-")
        .tempdir()?;
    let maria = if mysql {
        say("Starting a throw-away MariaDB server for the monolith (binlog_format = ROW, binlog_row_metadata = FULL)");
        Some(tokio::task::spawn_blocking(MariaDb::start).await??)
    } else {
        None
    };
    say(if mysql {
        "Starting a throw-away PostgreSQL cluster for the services"
    } else {
        "Starting a throw-away PostgreSQL cluster (wal_level = logical)"
    });
    let pg = tokio::task::spawn_blocking(PgCluster::start).await??;
    let (shop_url, cat_url, ord_url) = (
        match &maria {
            Some(m) => m.create_database("shop")?,
            None => pg.create_database("shop")?,
        },
        pg.create_database("catalog")?,
        pg.create_database("orders")?,
    );
    let seed_args = legacy_monolith::seed::SeedArgs {
        database_url: shop_url.clone(),
        products: 2_000,
        customers: 200,
        orders: 3_000,
        seed: 7,
        reset: false,
    };
    let (shop, seeded) = if mysql {
        let pool = legacy_monolith::mysql::connect(&shop_url).await?;
        let seeded = legacy_monolith::mysql::seed::seed(&pool, &seed_args).await?;
        (Monolith::MySql(pool), seeded)
    } else {
        let pool = shop_common::connect(&shop_url, &legacy_monolith::MIGRATOR).await?;
        let seeded = legacy_monolith::seed::seed(&pool, &seed_args).await?;
        (Monolith::Postgres(pool), seeded)
    };
    let catalog = shop_common::connect(&cat_url, &catalog_service::MIGRATOR).await?;
    let orders = shop_common::connect(&ord_url, &orders_service::MIGRATOR).await?;
    note(&format!(
        "the monolith's {} database: {} products, {} customers, {} orders",
        if mysql { "MariaDB" } else { "PostgreSQL" },
        seeded.products,
        seeded.customers,
        seeded.orders
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let [listen, admin] = strangler_sandbox::free_ports();
    let ports = Ports {
        listen,
        admin,
        monolith: serve(shop.app(), stop_rx.clone()).await?,
        catalog: serve(catalog_service::app(catalog.clone()), stop_rx.clone()).await?,
        orders: serve(orders_service::app(orders.clone()), stop_rx.clone()).await?,
    };
    note(&format!(
        "monolith on :{}, catalog service on :{}, orders service on :{}",
        ports.monolith, ports.catalog, ports.orders
    ));
    let config_path: PathBuf = dir.path().join("strangler.toml");
    std::fs::write(&config_path, config_text(dir.path(), &ports, mysql))?;
    let store = crate::open_store(&Config::load(&config_path)?).await?;

    say(&format!(
        "CDC: the monolith's tables into each service's own database ({})",
        kafka
            .as_deref()
            .map_or("embedded transport".to_string(), |b| format!(
                "through Kafka at {b}"
            ))
    ));
    let source = SourceConfig {
        url: shop_url.clone(),
        slot: "strangler".into(),
        publication: "strangler".into(),
        tables: [
            "products",
            "inventory",
            "customers",
            "orders",
            "order_items",
            "payments",
        ]
        .iter()
        .map(|n| t(&format!("{}.{n}", schema(mysql))))
        .collect(),
        name: "monolith".into(),
        format: Default::default(),
        check_rows: 0,
        tx_memory: strangler_cdc::source::DEFAULT_TX_MEMORY,
        chunk_rows: strangler_cdc::source::chunk::CHUNK_ROWS,
        workers: strangler_config::DEFAULT_SNAPSHOT_WORKERS,
        kind: if mysql {
            strangler_config::SourceKind::MySql {
                server_id: strangler_config::default_server_id("strangler"),
            }
        } else {
            strangler_config::SourceKind::Postgres
        },
    };
    let sinks = vec![
        SinkSpec {
            name: "catalog".into(),
            url: cat_url.clone(),
            tables: vec![catalog_mapping(mysql)],
            connections: 1,
        },
        SinkSpec {
            name: "orders".into(),
            url: ord_url.clone(),
            tables: orders_mappings(mysql),
            connections: 1,
        },
    ];
    let (cdc_stop, cdc_rx) = oneshot::channel::<()>();
    let status = strangler_cdc::status::StoreStatus::new(
        Some(store.clone()),
        None,
        &source.slot,
        strangler_state::lag::Direction::Forward,
    );
    let mut consumers = Vec::new();
    let cdc = match kafka.clone() {
        None => tokio::spawn(async move {
            cdc_run::embedded(
                &source,
                &sinks,
                Start::Initial,
                &status,
                async {
                    let _ = cdc_rx.await;
                },
                |_| {},
            )
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from)
        }),
        Some(brokers) => {
            let producer = std::sync::Arc::new(
                strangler_cdc::transport::kafka::KafkaProducer::new(&brokers, 3)?,
            );
            let topic =
                |tb: &TableName| strangler_cdc::event::topic("monolith", &tb.schema, &tb.table);
            let mut topics: Vec<String> = source.tables.iter().map(topic).collect();
            topics.push(strangler_cdc::transport::kafka::dlq_topic("monolith"));
            producer.ensure_topics(&topics).await?;
            for sink in sinks {
                let topics: Vec<String> = sink.tables.iter().map(|m| topic(&m.source)).collect();
                let (brokers, producer, mut stop, source) = (
                    brokers.clone(),
                    producer.clone(),
                    stop_rx.clone(),
                    source.clone(),
                );
                let status = strangler_cdc::status::StoreStatus::new(
                    Some(store.clone()),
                    None,
                    &source.slot,
                    strangler_state::lag::Direction::Forward,
                );
                consumers.push(tokio::spawn(async move {
                    cdc_run::kafka_sink(
                        &source,
                        &strangler_cdc::transport::kafka::KafkaClient::new(&brokers),
                        &topics,
                        &sink,
                        Some((&producer, "monolith")),
                        &status,
                        async move {
                            let _ = stop.changed().await;
                        },
                    )
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
                }));
            }
            tokio::spawn(async move {
                cdc_run::kafka_source(
                    &source,
                    &producer,
                    None,
                    Start::Initial,
                    &status,
                    async {
                        let _ = cdc_rx.await;
                    },
                    |_| {},
                )
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
            })
        }
    };
    until("the initial snapshot", Duration::from_secs(120), || async {
        catalog_service::count_items(&catalog).await.unwrap_or(0) == 2_000
    })
    .await?;
    note("snapshot done: 2,000 products in catalog_items (title → name, price_cents → price, no internal_notes); orders, items, payments, stock and customers in the orders database");

    say("Day one: the router goes in front of the monolith, every route in stage legacy");
    let log = std::fs::File::create(dir.path().join("proxy.log"))?;
    let _router = Proc(
        Command::new(std::env::current_exe()?)
            .args(["proxy", "-c"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?,
    );
    let admin = format!("http://127.0.0.1:{}/healthz", ports.admin);
    let http = reqwest::Client::builder().no_proxy().build()?;
    until("the router", Duration::from_secs(30), || async {
        http.get(&admin)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;
    let base = format!("http://127.0.0.1:{}", ports.listen);
    let sent = traffic(&base, 3.0, 1).await?;
    inventory(&config_path, &store, sent.requests).await?;
    board(&config_path, &store).await?;
    pause(interactive);

    say("Shadow the product endpoints: the monolith answers, the catalog service gets a copy");
    for r in ["get-product", "list-products"] {
        promote(&config_path, &store, r, None).await?;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    traffic(&base, 8.0, 2).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let report_path = dir.path().join("shadow-report.html");
    let cfg = Config::load(&config_path)?;
    let stats = store.shadow_stats().await?;
    // The report shows each route's effective stage (the fleet's), not the file's.
    let rows = strangler_state::RouteStore::routes(&store).await?;
    let reports = strangler_shadow::report::summaries(
        &cfg,
        |r| effective(r, rows.iter().find(|l| l.route == r.name)).stage,
        &stats,
        None,
    );
    for rep in reports.iter().filter(|r| r.route.contains("product")) {
        note(&format!(
            "{} ({}): {} comparisons, {} matched",
            rep.route, rep.endpoint, rep.comparisons, rep.matches
        ));
        for f in rep.fields.iter().take(4) {
            note(&format!(
                "   {:<24} {:>5} mismatches  {}",
                f.field,
                f.mismatches,
                if f.noise {
                    format!(
                        "noise (also differs monolith vs monolith in {} A/A pairs)",
                        f.aa
                    )
                } else {
                    "REAL".into()
                }
            ));
        }
    }
    std::fs::write(
        &report_path,
        strangler_shadow::report::html(
            &reports,
            &strangler_state::store::rfc3339(strangler_state::store::now_ms()),
        ),
    )?;
    note(&format!("HTML report: {}", report_path.display()));
    board(&config_path, &store).await?;
    pause(interactive);

    say("Deciding what the differences mean");
    note("/generated_at and /request_id differ even between two answers of the monolith: noise → ignore rules (strangler shadow noise --accept)");
    note("/description: the catalog answers null where the monolith answers \"\" for products without a description (the deliberate difference).");
    note("Our clients treat both as 'no description', so the team records an ignore rule for it; otherwise the catalog would be fixed first.");
    let mut sugg = Vec::new();
    for r in ["get-product", "list-products"] {
        let s = stats
            .iter()
            .find(|(n, _)| n == r)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        sugg = strangler_shadow::noise::suggestions(
            &s,
            &[],
            strangler_shadow::noise::Thresholds::default(),
        );
        let mut accepted: Vec<strangler_shadow::noise::Suggestion> = sugg.clone();
        let desc = if r == "get-product" {
            "/description"
        } else {
            "/items/*/description"
        };
        accepted.push(strangler_shadow::noise::Suggestion {
            rule: "ignore".into(),
            value: desc.into(),
            reason: "decided: null and \"\" mean the same to clients".into(),
        });
        crate::shadow::accept_suggestions(&config_path, r, &accepted)?;
        store.reset_shadow(r).await?;
    }
    note(&format!("{} learned noise rule(s) accepted per route; statistics reset; the router reloads the file", sugg.len()));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    traffic(&base, 12.0, 3).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    board(&config_path, &store).await?;
    pause(interactive);

    say("Canary: 10 % of users (sticky by x-user-id), then 50 %, then everyone");
    for step in [Some(10.0), Some(50.0), Some(100.0)] {
        let mut moved = true;
        for r in ["get-product", "list-products"] {
            moved &= promote(&config_path, &store, r, step).await?;
        }
        if !moved {
            note("a gate failed: the demo stops promoting here (see the board)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        traffic(&base, 4.0, 4).await?;
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    board(&config_path, &store).await?;
    pause(interactive);

    say("Cut over: CDC flips to reverse for products (the monolith still reads them)");
    let (rev_stop, rev_rx) = oneshot::channel::<()>();
    let rev_source = SourceConfig {
        url: cat_url.clone(),
        slot: "strangler_rev_catalog".into(),
        publication: "strangler_rev_catalog".into(),
        tables: vec![t("public.catalog_items")],
        name: "catalog-reverse".into(),
        format: Default::default(),
        check_rows: 0,
        tx_memory: strangler_cdc::source::DEFAULT_TX_MEMORY,
        chunk_rows: strangler_cdc::source::chunk::CHUNK_ROWS,
        workers: strangler_config::DEFAULT_SNAPSHOT_WORKERS,
        kind: strangler_config::SourceKind::Postgres,
    };
    let rev_sinks = vec![SinkSpec {
        name: "catalog_back".into(),
        url: shop_url.clone(),
        tables: vec![map(
            "public.catalog_items",
            &format!("{}.products", schema(mysql)),
            &[("name", "title"), ("price", "price_cents")],
            &[],
        )],
        connections: 1,
    }];
    let rev = tokio::spawn(async move {
        cdc_run::embedded(
            &rev_source,
            &rev_sinks,
            Start::Never,
            &strangler_cdc::pipeline::NoStatus,
            async {
                let _ = rev_rx.await;
            },
            |_| {},
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A price change through the router now lands in the catalog service…
    let resp = http
        .put(format!("{base}/products/42"))
        .header("x-strangler-target", "service")
        .json(&serde_json::json!({ "price_cents": 4242 }))
        .send()
        .await?;
    note(&format!(
        "PUT /products/42 (answered by the catalog service): {}",
        resp.status()
    ));
    // …and flows back to the monolith's table.
    until("the reverse sync", Duration::from_secs(30), || async {
        shop.price_cents(42).await == 4242
    })
    .await?;
    note(if mysql {
        "the monolith's products.price_cents for id 42 is 4242 again: reverse sync into MariaDB, no echo (its transactions write the sink's offsets row, which the binlog reader skips)"
    } else {
        "the monolith's products.price_cents for id 42 is 4242 again: reverse sync, no echo (replication origins)"
    });

    say("Verify: the catalog's table against the monolith's, after mapping");
    let mut d = strangler_cdc::verify::connect(&cat_url).await?;
    let target = TargetTable::load_for_verify(&mut d, &catalog_mapping(mysql)).await?;
    let mut clean = false;
    for _ in 0..50 {
        let r = verify_catalog(&shop_url, mysql, &mut d, &target).await?;
        if r.differences.is_empty() {
            note(&format!(
                "{} → public.catalog_items: {} rows, {} chunks, clean",
                target.mapping.source, r.source_rows, r.chunks
            ));
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !clean {
        note("verify found differences (see `strangler cdc verify`)");
    }

    say("The board at the end");
    board(&config_path, &store).await?;
    note("migration progress (`strangler status`; the web board at /ui charts it):");
    progress(&config_path, &store).await?;
    let cfg = Config::load(&config_path)?;
    let rows = strangler_state::RouteStore::routes(&store).await?;
    let migrated = ["get-product", "list-products"].iter().all(|n| {
        cfg.route(n).is_some_and(|r| {
            effective(r, rows.iter().find(|o| o.route == *n)).stage == Stage::Migrated
        })
    });
    note(&format!("shadow report: {}", report_path.display()));

    let _ = cdc_stop.send(());
    let _ = rev_stop.send(());
    // A CDC part that failed fails the demo (its error says why).
    cdc.await??;
    rev.await??;
    let _ = stop_tx.send(true);
    for c in consumers {
        c.await??;
    }
    store.close().await;
    let keep = dir.path().join("shadow-report.html");
    let kept = std::env::temp_dir().join("strangler-demo-report.html");
    let _ = std::fs::copy(&keep, &kept);
    drop(pg);
    drop(maria);
    println!(
        "\ndemo {} in {:.0} s: product endpoints {}, CDC verify {}. Report kept at {}; everything else was stopped and removed.",
        if migrated && clean { "finished" } else { "ended" },
        started.elapsed().as_secs_f64(),
        if migrated { "migrated" } else { "not migrated" },
        if clean { "clean" } else { "NOT clean" },
        kept.display()
    );
    Ok(if migrated && clean {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// `cdc verify` of the catalog's table against the monolith's.
async fn verify_catalog(
    shop_url: &str,
    mysql: bool,
    d: &mut strangler_cdc::verify::PgConnection,
    target: &TargetTable,
) -> anyhow::Result<strangler_cdc::verify::TableReport> {
    if mysql {
        let mut s = strangler_cdc::mysql::connect(shop_url).await?;
        let shape = strangler_cdc::mysql::columns::load(&mut s, &target.mapping.source).await?;
        Ok(strangler_cdc::mysql::verify::table(
            &mut s,
            &shape,
            d,
            target,
            &Default::default(),
            |_, _| {},
        )
        .await?)
    } else {
        let mut s = strangler_cdc::verify::connect(shop_url).await?;
        Ok(strangler_cdc::verify::table(&mut s, d, target, |_, _| {}).await?)
    }
}
