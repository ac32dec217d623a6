//! Route usage by minute in the state store (merged from every proxy).
//!
//! Each count also carries the route state it was made under (`state_ms`,
//! the `updated_at_ms` of the route's row when the proxy counted it), so
//! automatic rollback counts exactly what happened since the route entered
//! its current state, not the errors of the same minute before it.

use std::collections::HashMap;

use sqlx::Row;

use super::{StateStore, StoreError};
use crate::counts::Counts;

impl StateStore {
    /// Adds this proxy's counts.
    pub async fn merge_usage(
        &self,
        deltas: &HashMap<(String, i64, i64), Counts>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for ((route, minute, state_ms), c) in deltas {
            sqlx::query(
                "INSERT INTO strangler_usage (route, minute, state_ms, requests, service_requests, service_errors, fallbacks) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (route, minute, state_ms) DO UPDATE SET \
                 requests = strangler_usage.requests + excluded.requests, \
                 service_requests = strangler_usage.service_requests + excluded.service_requests, \
                 service_errors = strangler_usage.service_errors + excluded.service_errors, \
                 fallbacks = strangler_usage.fallbacks + excluded.fallbacks",
            )
            .bind(route)
            .bind(*minute)
            .bind(*state_ms)
            .bind(i64::try_from(c.requests).unwrap_or(i64::MAX))
            .bind(i64::try_from(c.service_requests).unwrap_or(i64::MAX))
            .bind(i64::try_from(c.service_errors).unwrap_or(i64::MAX))
            .bind(i64::try_from(c.fallbacks).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Counts per route since `since_minute` (inclusive).
    pub async fn usage_since(
        &self,
        since_minute: i64,
    ) -> Result<HashMap<String, Counts>, StoreError> {
        self.usage_in_state(since_minute, 0).await
    }

    /// Counts per route and minute since `since_minute` (inclusive), every
    /// route state together: what migration progress is drawn from.
    pub async fn usage_by_minute(
        &self,
        since_minute: i64,
    ) -> Result<Vec<(String, i64, Counts)>, StoreError> {
        let rows = sqlx::query(
            "SELECT route, minute, CAST(SUM(requests) AS BIGINT), CAST(SUM(service_requests) AS BIGINT), \
             CAST(SUM(service_errors) AS BIGINT), CAST(SUM(fallbacks) AS BIGINT) \
             FROM strangler_usage WHERE minute >= $1 GROUP BY route, minute ORDER BY minute",
        )
        .bind(since_minute)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((
                r.try_get::<String, _>(0)?,
                r.try_get::<i64, _>(1)?,
                counts_from(r, 2)?,
            ));
        }
        Ok(out)
    }

    /// Counts per route since `since_minute`, made under a route state no
    /// older than `state_ms`.
    pub async fn usage_in_state(
        &self,
        since_minute: i64,
        state_ms: i64,
    ) -> Result<HashMap<String, Counts>, StoreError> {
        let rows = sqlx::query(
            "SELECT route, CAST(SUM(requests) AS BIGINT), CAST(SUM(service_requests) AS BIGINT), \
             CAST(SUM(service_errors) AS BIGINT), CAST(SUM(fallbacks) AS BIGINT) \
             FROM strangler_usage WHERE minute >= $1 AND state_ms >= $2 GROUP BY route",
        )
        .bind(since_minute)
        .bind(state_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for r in &rows {
            out.insert(r.try_get::<String, _>(0)?, counts_from(r, 1)?);
        }
        Ok(out)
    }
}

/// The four sums (requests, service requests, service errors, fallbacks)
/// from column `first` on.
fn counts_from(r: &sqlx::any::AnyRow, first: usize) -> Result<Counts, sqlx::Error> {
    let n = |i: usize| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(r.try_get::<i64, _>(first + i)?).unwrap_or(0))
    };
    Ok(Counts {
        requests: n(0)?,
        service_requests: n(1)?,
        service_errors: n(2)?,
        fallbacks: n(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_of_an_earlier_route_state_are_left_out() {
        let (_dir, store) = crate::store::temp_store().await;
        let errors = Counts {
            requests: 30,
            service_requests: 30,
            service_errors: 30,
            fallbacks: 30,
        };
        let fine = Counts {
            requests: 10,
            service_requests: 10,
            service_errors: 0,
            fallbacks: 0,
        };
        // The same minute: errors under state 100, then the route changed (200).
        let deltas = HashMap::from([
            (("p".to_string(), 7, 100), errors),
            (("p".to_string(), 7, 200), fine),
        ]);
        store.merge_usage(&deltas).await.expect("merge");
        store.merge_usage(&deltas).await.expect("merge again adds");
        let all = store.usage_since(7).await.expect("all");
        assert_eq!(all["p"].requests, 80);
        let now = store
            .usage_in_state(7, 200)
            .await
            .expect("since the change");
        assert_eq!(now["p"].requests, 20);
        assert_eq!(now["p"].service_errors, 0);
        assert!(store.usage_since(8).await.expect("later").is_empty());
    }
}
