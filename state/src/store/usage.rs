//! Route usage by minute in the state store (merged from every proxy).

use std::collections::HashMap;

use sqlx::Row;

use super::{StateStore, StoreError};
use crate::counts::Counts;

impl StateStore {
    /// Adds this proxy's counts.
    pub async fn merge_usage(
        &self,
        deltas: &HashMap<(String, i64), Counts>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for ((route, minute), c) in deltas {
            sqlx::query(
                "INSERT INTO strangler_route_usage (route, minute, requests, service_requests, service_errors, fallbacks) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (route, minute) DO UPDATE SET \
                 requests = strangler_route_usage.requests + excluded.requests, \
                 service_requests = strangler_route_usage.service_requests + excluded.service_requests, \
                 service_errors = strangler_route_usage.service_errors + excluded.service_errors, \
                 fallbacks = strangler_route_usage.fallbacks + excluded.fallbacks",
            )
            .bind(route)
            .bind(*minute)
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
        let rows = sqlx::query(
            "SELECT route, CAST(SUM(requests) AS BIGINT), CAST(SUM(service_requests) AS BIGINT), \
             CAST(SUM(service_errors) AS BIGINT), CAST(SUM(fallbacks) AS BIGINT) \
             FROM strangler_route_usage WHERE minute >= $1 GROUP BY route",
        )
        .bind(since_minute)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for r in &rows {
            let n = |i: usize| -> Result<u64, sqlx::Error> {
                Ok(u64::try_from(r.try_get::<i64, _>(i)?).unwrap_or(0))
            };
            out.insert(
                r.try_get::<String, _>(0)?,
                Counts {
                    requests: n(1)?,
                    service_requests: n(2)?,
                    service_errors: n(3)?,
                    fallbacks: n(4)?,
                },
            );
        }
        Ok(out)
    }
}
