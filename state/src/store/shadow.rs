//! Shadow statistics in the state store: one JSON document per route,
//! merged under the write lock so every proxy's deltas add up.

use sqlx::Row;
use strangler_shadow::RouteStats;

use super::{now_ms, Backend, StateStore, StoreError};

impl StateStore {
    /// Adds `delta` to the stored stats of `route`.
    pub async fn merge_shadow(&self, route: &str, delta: &RouteStats) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.write_lock(&mut tx).await?;
        let current: Option<String> =
            sqlx::query("SELECT stats FROM strangler_shadow_stats WHERE route = $1")
                .bind(route)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        let mut stats: RouteStats = match current {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("shadow stats of {route}: {e}")))?,
            None => RouteStats::default(),
        };
        stats.merge(delta);
        let text = serde_json::to_string(&stats).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO strangler_shadow_stats (route, stats, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (route) DO UPDATE SET stats = excluded.stats, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(route)
        .bind(text)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stored stats of every route that has any.
    pub async fn shadow_stats(&self) -> Result<Vec<(String, RouteStats)>, StoreError> {
        let rows = sqlx::query("SELECT route, stats FROM strangler_shadow_stats ORDER BY route")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let route: String = r.try_get(0)?;
                let text: String = r.try_get(1)?;
                let stats = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("shadow stats of {route}: {e}")))?;
                Ok((route, stats))
            })
            .collect()
    }

    /// Forgets what was learned about `route` (after the service was fixed).
    pub async fn reset_shadow(&self, route: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM strangler_shadow_stats WHERE route = $1")
            .bind(route)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Serializes writers across proxies and the CLI.
    pub(super) async fn write_lock(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), StoreError> {
        match self.backend {
            Backend::Postgres => {
                sqlx::query("SELECT pg_advisory_xact_lock(7395562001)")
                    .execute(&mut **tx)
                    .await?;
            }
            Backend::Sqlite => {
                // Any write takes SQLite's write lock for the transaction.
                sqlx::query("UPDATE strangler_routes SET route = route WHERE 1 = 0")
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }
}
