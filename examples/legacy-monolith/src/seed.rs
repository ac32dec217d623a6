//! `legacy-monolith seed`: fills the database deterministically (same
//! `--seed`, same rows, same timestamps), in bulk (`UNNEST` batches).

use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::{PgPool, Row};

/// What to create.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// URL of the monolith's database: `postgres://…`, or `mysql://…` for
    /// the MySQL/MariaDB flavour.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[arg(long, default_value_t = 10_000)]
    pub products: usize,
    #[arg(long, default_value_t = 1_000)]
    pub customers: usize,
    #[arg(long, default_value_t = 50_000)]
    pub orders: usize,
    /// Same seed, same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Empty the tables first (otherwise seeding a non-empty database fails).
    #[arg(long)]
    pub reset: bool,
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Heavy-Duty",
    "Mini",
    "Pro",
    "Smart",
    "Vintage",
    "Wireless",
];
const NOUNS: &[&str] = &[
    "Kettle",
    "Lamp",
    "Backpack",
    "Blender",
    "Chair",
    "Desk",
    "Headphones",
    "Mug",
    "Speaker",
    "Toaster",
    "Umbrella",
    "Watch",
];
const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kemal", "Lena",
];
const LAST: &[&str] = &[
    "Okafor", "Schmidt", "Novak", "García", "Tanaka", "Kowalski", "Dubois", "Rossi", "Larsen",
    "Silva",
];

/// Counts of what was written.
#[derive(Debug, Default)]
pub struct Seeded {
    pub products: usize,
    pub customers: usize,
    pub orders: usize,
    pub order_items: usize,
}

/// The rows a seed writes: the same for the same `--seed` on either
/// database (PostgreSQL here, MySQL in `mysql/seed.rs`).
pub struct Data {
    pub customer_ids: Vec<i64>,
    pub emails: Vec<String>,
    pub names: Vec<String>,
    pub customers_created: Vec<DateTime<Utc>>,
    pub product_ids: Vec<i64>,
    pub skus: Vec<String>,
    pub titles: Vec<String>,
    pub descriptions: Vec<Option<String>>,
    pub prices: Vec<i64>,
    pub notes: Vec<Option<String>>,
    pub updated: Vec<DateTime<Utc>>,
    pub on_hand: Vec<i32>,
    pub reserved: Vec<i32>,
    pub order_ids: Vec<i64>,
    pub order_customers: Vec<i64>,
    pub order_totals: Vec<i64>,
    pub order_status: Vec<String>,
    pub order_created: Vec<DateTime<Utc>>,
    pub item_order: Vec<i64>,
    pub item_line: Vec<i32>,
    pub item_product: Vec<i64>,
    pub item_qty: Vec<i32>,
    pub item_price: Vec<i64>,
}

impl Data {
    /// What was written, counted.
    pub fn counts(&self) -> Seeded {
        Seeded {
            products: self.product_ids.len(),
            customers: self.customer_ids.len(),
            orders: self.order_ids.len(),
            order_items: self.item_order.len(),
        }
    }
}

/// Generates the rows of `args` (deterministic in `args.seed`).
pub fn generate(args: &SeedArgs) -> anyhow::Result<Data> {
    let mut rng = Rng(args.seed);
    let base: DateTime<Utc> = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .context("base time")?;

    // Customers
    let n = args.customers;
    let ids: Vec<i64> = (1..=n as i64).collect();
    let emails: Vec<String> = ids
        .iter()
        .map(|i| format!("customer{i}@example.com"))
        .collect();
    let names: Vec<String> = ids
        .iter()
        .map(|_| format!("{} {}", rng.pick(FIRST), rng.pick(LAST)))
        .collect();
    let created: Vec<DateTime<Utc>> = ids.iter().map(|i| base + Duration::minutes(*i)).collect();

    // Products and inventory. About 1 in 20 older products has no description.
    let n = args.products;
    let pids: Vec<i64> = (1..=n as i64).collect();
    let skus: Vec<String> = pids.iter().map(|i| format!("SKU-{i:06}")).collect();
    let titles: Vec<String> = pids
        .iter()
        .map(|_| format!("{} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS)))
        .collect();
    let descriptions: Vec<Option<String>> = titles
        .iter()
        .map(|t| {
            (rng.range(0, 19) != 0)
                .then(|| format!("The {} you have been waiting for.", t.to_lowercase()))
        })
        .collect();
    let prices: Vec<i64> = pids.iter().map(|_| rng.range(199, 49_999)).collect();
    let notes: Vec<Option<String>> = pids
        .iter()
        .map(|_| (rng.range(0, 3) == 0).then(|| format!("supplier #{}", rng.range(1, 40))))
        .collect();
    let updated: Vec<DateTime<Utc>> = pids
        .iter()
        .map(|i| base + Duration::seconds(*i * 37))
        .collect();
    let on_hand: Vec<i32> = pids.iter().map(|_| rng.range(0, 500) as i32).collect();
    let mut reserved: Vec<i32> = vec![0; n];

    // Orders, reserving stock as the shop would.
    let mut o_ids = Vec::with_capacity(args.orders);
    let mut o_customers = Vec::with_capacity(args.orders);
    let mut o_totals = Vec::with_capacity(args.orders);
    let mut o_status = Vec::with_capacity(args.orders);
    let mut o_created = Vec::with_capacity(args.orders);
    let (mut i_order, mut i_line, mut i_product, mut i_qty, mut i_price) =
        (vec![], vec![], vec![], vec![], vec![]);
    if n > 0 && args.customers > 0 {
        for o in 1..=args.orders as i64 {
            let mut total = 0;
            let mut line = 0;
            // An order needs one line with stock; retry a few products when sold out.
            for _ in 0..20 {
                if line > 0 {
                    break;
                }
                for _ in 0..rng.range(1, 3) {
                    let p = rng.range(0, n as i64 - 1) as usize;
                    let q = rng.range(1, 3) as i32;
                    if on_hand[p] - reserved[p] < q {
                        continue;
                    }
                    reserved[p] += q;
                    line += 1;
                    total += prices[p] * i64::from(q);
                    i_order.push(o);
                    i_line.push(line);
                    i_product.push(pids[p]);
                    i_qty.push(q);
                    i_price.push(prices[p]);
                }
            }
            if line == 0 {
                continue;
            }
            o_ids.push(o);
            o_customers.push(rng.range(1, args.customers as i64));
            o_totals.push(total);
            o_status.push(if rng.range(0, 4) == 0 {
                "placed".to_string()
            } else {
                "shipped".to_string()
            });
            o_created.push(base + Duration::seconds(o * 11));
        }
    }
    Ok(Data {
        customer_ids: ids,
        emails,
        names,
        customers_created: created,
        product_ids: pids,
        skus,
        titles,
        descriptions,
        prices,
        notes,
        updated,
        on_hand,
        reserved,
        order_ids: o_ids,
        order_customers: o_customers,
        order_totals: o_totals,
        order_status: o_status,
        order_created: o_created,
        item_order: i_order,
        item_line: i_line,
        item_product: i_product,
        item_qty: i_qty,
        item_price: i_price,
    })
}

/// Fills the (empty, or `reset`) database.
pub async fn seed(pool: &PgPool, args: &SeedArgs) -> anyhow::Result<Seeded> {
    let start = Instant::now();
    let existing: i64 =
        sqlx::query("SELECT (SELECT count(*) FROM products) + (SELECT count(*) FROM customers)")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
    if existing > 0 && !args.reset {
        bail!("the database already has {existing} products and customers; pass --reset to replace them");
    }
    let mut tx = pool.begin().await?;
    if args.reset {
        sqlx::query("TRUNCATE payments, order_items, orders, inventory, products, customers RESTART IDENTITY")
            .execute(&mut *tx)
            .await?;
    }
    let d = generate(args)?;
    let n = d.customer_ids.len();
    for c in 0..n.div_ceil(10_000) {
        let r = c * 10_000..((c + 1) * 10_000).min(n);
        sqlx::query("INSERT INTO customers (id, email, name, created_at) SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[])")
            .bind(&d.customer_ids[r.clone()]).bind(&d.emails[r.clone()]).bind(&d.names[r.clone()]).bind(&d.customers_created[r])
            .execute(&mut *tx).await?;
    }
    let n = d.product_ids.len();
    for c in 0..n.div_ceil(10_000) {
        let r = c * 10_000..((c + 1) * 10_000).min(n);
        sqlx::query(
            "INSERT INTO products (id, sku, title, description, price_cents, internal_notes, updated_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::timestamptz[])",
        )
        .bind(&d.product_ids[r.clone()]).bind(&d.skus[r.clone()]).bind(&d.titles[r.clone()]).bind(&d.descriptions[r.clone()])
        .bind(&d.prices[r.clone()]).bind(&d.notes[r.clone()]).bind(&d.updated[r.clone()])
        .execute(&mut *tx).await?;
        sqlx::query("INSERT INTO inventory (product_id, on_hand, reserved) SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::int[])")
            .bind(&d.product_ids[r.clone()]).bind(&d.on_hand[r.clone()]).bind(&d.reserved[r])
            .execute(&mut *tx).await?;
    }
    for c in 0..d.order_ids.len().div_ceil(10_000) {
        let r = c * 10_000..((c + 1) * 10_000).min(d.order_ids.len());
        sqlx::query(
            "INSERT INTO orders (id, customer_id, status, total_cents, created_at) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[])",
        )
        .bind(&d.order_ids[r.clone()]).bind(&d.order_customers[r.clone()]).bind(&d.order_status[r.clone()]).bind(&d.order_totals[r.clone()]).bind(&d.order_created[r.clone()])
        .execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO payments (order_id, amount_cents, method, status, created_at) \
             SELECT o, t, 'card', 'captured', c FROM UNNEST($1::bigint[], $2::bigint[], $3::timestamptz[]) AS x(o, t, c)",
        )
        .bind(&d.order_ids[r.clone()]).bind(&d.order_totals[r.clone()]).bind(&d.order_created[r])
        .execute(&mut *tx).await?;
    }
    for c in 0..d.item_order.len().div_ceil(20_000) {
        let r = c * 20_000..((c + 1) * 20_000).min(d.item_order.len());
        sqlx::query(
            "INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price_cents) \
             SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::bigint[], $4::int[], $5::bigint[])",
        )
        .bind(&d.item_order[r.clone()])
        .bind(&d.item_line[r.clone()])
        .bind(&d.item_product[r.clone()])
        .bind(&d.item_qty[r.clone()])
        .bind(&d.item_price[r])
        .execute(&mut *tx)
        .await?;
    }
    for (table, seq) in [
        ("customers", "customers_id_seq"),
        ("products", "products_id_seq"),
        ("orders", "orders_id_seq"),
        ("payments", "payments_id_seq"),
    ] {
        sqlx::query(&format!(
            "SELECT setval('{seq}', GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(elapsed_ms = start.elapsed().as_millis() as u64, "seeded");
    Ok(d.counts())
}
