//! The endpoint inventory in the state store (`crate::inventory`): one row
//! per method and template, merged from every proxy under the write lock,
//! the fleet's view bounded like each proxy's.

use std::collections::HashSet;

use sqlx::Row;

use super::{now_ms, StateStore, StoreError};
use crate::inventory::{bound, Entry, Templates, MAX_TEMPLATES};

impl StateStore {
    /// Adds a proxy's counts: merged with what is stored, then bounded
    /// (collapsed siblings, overflow past [`MAX_TEMPLATES`]).
    pub async fn merge_inventory(&self, delta: &Templates) -> Result<(), StoreError> {
        if delta.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        self.write_lock(&mut tx).await?;
        let before = read(&mut tx).await?;
        let mut merged = before.clone();
        for (k, e) in delta {
            merged.entry(k.clone()).or_default().merge(e);
        }
        bound(&mut merged, MAX_TEMPLATES);
        let kept: HashSet<&(String, String)> = merged.keys().collect();
        for gone in before.keys().filter(|k| !kept.contains(k)) {
            sqlx::query("DELETE FROM strangler_inventory WHERE method = $1 AND template = $2")
                .bind(&gone.0)
                .bind(&gone.1)
                .execute(&mut *tx)
                .await?;
        }
        let now = now_ms();
        for (k, e) in &merged {
            if before.get(k) == Some(e) {
                continue;
            }
            let stats = serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO strangler_inventory (method, template, requests, stats, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (method, template) DO UPDATE SET \
                 requests = excluded.requests, stats = excluded.stats, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(&k.0)
            .bind(&k.1)
            .bind(i64::try_from(e.requests).unwrap_or(i64::MAX))
            .bind(stats)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The fleet's inventory.
    pub async fn inventory(&self) -> Result<Templates, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn).await
    }

    /// Forgets the inventory (`strangler inventory --reset`).
    pub async fn reset_inventory(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM strangler_inventory")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

async fn read(conn: &mut sqlx::AnyConnection) -> Result<Templates, StoreError> {
    let rows = sqlx::query("SELECT method, template, stats FROM strangler_inventory")
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Templates::with_capacity(rows.len());
    for r in &rows {
        let method: String = r.try_get(0)?;
        let template: String = r.try_get(1)?;
        let text: String = r.try_get(2)?;
        let e: Entry = serde_json::from_str(&text).map_err(|e| {
            StoreError::Corrupt(format!("inventory entry {method} {template}: {e}"))
        })?;
        out.insert((method, template), e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn proxies_counts_add_up_and_stay_bounded() {
        let (_dir, store) = crate::store::temp_store().await;
        let k = |m: &str, t: &str| (m.to_string(), t.to_string());
        let one = |path: &str, ms: u64, at: i64| Entry::one(path, 200, 100, ms * 1000, at);
        let a = Templates::from([
            (k("GET", "/products/{id}"), one("/products/1", 2, 10)),
            (k("GET", "/products"), one("/products", 5, 11)),
        ]);
        let mut b = Templates::from([(k("GET", "/products/{id}"), one("/products/7", 4, 20))]);
        b.get_mut(&k("GET", "/products/{id}"))
            .expect("entry")
            .errors = 1;
        store.merge_inventory(&a).await.expect("merge a");
        store.merge_inventory(&b).await.expect("merge b");
        let inv = store.inventory().await.expect("read");
        let p = &inv[&k("GET", "/products/{id}")];
        assert_eq!((p.requests, p.errors, p.bytes), (2, 1, 200));
        assert_eq!((p.first_seen_ms, p.last_seen_ms), (10, 20));
        assert_eq!(p.example, "/products/7");
        assert_eq!(inv[&k("GET", "/products")].requests, 1);

        // Two proxies each under the collapse bound, together above it:
        // the store collapses them.
        let names = |from: usize, to: usize| -> Templates {
            (from..to)
                .map(|i| {
                    let name: String = format!("{i:03}")
                        .bytes()
                        .map(|d| (b'a' + d - b'0') as char)
                        .collect();
                    (
                        k("GET", &format!("/users/{name}")),
                        one(&format!("/users/{name}"), 1, 30),
                    )
                })
                .collect()
        };
        store
            .merge_inventory(&names(0, 30))
            .await
            .expect("first half");
        store
            .merge_inventory(&names(30, 60))
            .await
            .expect("second half");
        let inv = store.inventory().await.expect("read");
        assert_eq!(inv[&k("GET", "/users/{name}")].requests, 60);
        assert_eq!(inv.len(), 3, "{:?}", inv.keys().collect::<Vec<_>>());
        assert_eq!(store.reset_inventory().await.expect("reset"), 3);
    }
}
