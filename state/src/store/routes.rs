//! [`RouteStore`] over SQL: `strangler_routes` (one row per route),
//! `strangler_audit` (the hash-chained log), `strangler_proxies` (who runs
//! which config revision).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use strangler_config::Stage;

use super::{now_ms, rfc3339, StateStore, StoreError};
use crate::audit::AuditEntry;
use crate::route_state::{LiveRoute, Origin, Target};
use crate::route_store::{fleet_revision, settle, Decide, RouteStore, Updated, FLEET_WINDOW_MS};

const ROUTE_COLUMNS: &str =
    "route, declared_stage, declared_percent, stage, percent, origin, why, revision, updated_at_ms";
const AUDIT_COLUMNS: &str = "id, route, actor, at_ms, reason, before_stage, before_percent, \
     after_stage, after_percent, revision, fleet_revision, prev_hash, hash";

fn stage(row: &AnyRow, i: usize) -> Result<Stage, StoreError> {
    let s: String = row.try_get(i)?;
    s.parse().map_err(StoreError::Corrupt)
}

fn read_route(r: &AnyRow) -> Result<LiveRoute, StoreError> {
    Ok(LiveRoute {
        route: r.try_get(0)?,
        declared: Target {
            stage: stage(r, 1)?,
            percent: r.try_get(2)?,
        },
        stage: stage(r, 3)?,
        percent: r.try_get(4)?,
        origin: Origin::parse(&r.try_get::<String, _>(5)?).map_err(StoreError::Corrupt)?,
        why: r.try_get(6)?,
        revision: r.try_get(7)?,
        updated_at_ms: r.try_get(8)?,
    })
}

fn read_entry(r: &AnyRow) -> Result<AuditEntry, StoreError> {
    let at_ms: i64 = r.try_get(3)?;
    Ok(AuditEntry {
        id: r.try_get(0)?,
        route: r.try_get(1)?,
        actor: r.try_get(2)?,
        at_ms,
        at: rfc3339(at_ms),
        reason: r.try_get(4)?,
        before: Target {
            stage: stage(r, 5)?,
            percent: r.try_get(6)?,
        },
        after: Target {
            stage: stage(r, 7)?,
            percent: r.try_get(8)?,
        },
        revision: r.try_get(9)?,
        fleet_revision: r.try_get(10)?,
        prev_hash: r.try_get(11)?,
        hash: r.try_get(12)?,
    })
}

#[async_trait]
impl RouteStore for StateStore {
    async fn version(&self) -> Result<(i64, i64), StoreError> {
        self.ready().await?;
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM strangler_audit), \
                    (SELECT COUNT(*) FROM strangler_routes)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn routes(&self) -> Result<Vec<LiveRoute>, StoreError> {
        self.ready().await?;
        let rows = sqlx::query(&format!("SELECT {ROUTE_COLUMNS} FROM strangler_routes"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read_route).collect()
    }

    async fn update(&self, route: &str, decide: &Decide) -> Result<Updated, StoreError> {
        self.ready().await?;
        let mut tx = self.pool.begin().await?;
        // Serialize writers: take the write lock before reading.
        self.write_lock(&mut tx).await?;
        let current = sqlx::query(&format!(
            "SELECT {ROUTE_COLUMNS} FROM strangler_routes WHERE route = $1"
        ))
        .bind(route)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| read_route(&r))
        .transpose()?;
        let decision = decide(current.as_ref());
        let last = sqlx::query("SELECT id, hash FROM strangler_audit ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (last_id, prev_hash) = match last {
            Some(r) => (r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?),
            None => (0, String::new()),
        };
        let revisions =
            sqlx::query("SELECT revision FROM strangler_proxies WHERE seen_at_ms >= $1")
                .bind(now_ms() - FLEET_WINDOW_MS)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<Vec<_>, _>>()?;
        let fleet = fleet_revision(revisions.iter().map(String::as_str));
        let settled = settle(
            route,
            current.as_ref(),
            decision,
            last_id + 1,
            &prev_hash,
            &fleet,
        );
        if let Some(row) = &settled.write {
            sqlx::query(&format!(
                "INSERT INTO strangler_routes ({ROUTE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (route) DO UPDATE SET declared_stage = excluded.declared_stage, \
                 declared_percent = excluded.declared_percent, stage = excluded.stage, \
                 percent = excluded.percent, origin = excluded.origin, why = excluded.why, \
                 revision = excluded.revision, updated_at_ms = excluded.updated_at_ms"
            ))
            .bind(&row.route)
            .bind(row.declared.stage.as_str())
            .bind(row.declared.percent)
            .bind(row.stage.as_str())
            .bind(row.percent)
            .bind(row.origin.as_str())
            .bind(&row.why)
            .bind(&row.revision)
            .bind(row.updated_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(e) = &settled.entry {
            sqlx::query(&format!(
                "INSERT INTO strangler_audit ({AUDIT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .bind(e.id)
            .bind(&e.route)
            .bind(&e.actor)
            .bind(e.at_ms)
            .bind(&e.reason)
            .bind(e.before.stage.as_str())
            .bind(e.before.percent)
            .bind(e.after.stage.as_str())
            .bind(e.after.percent)
            .bind(&e.revision)
            .bind(&e.fleet_revision)
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(settled.updated())
    }

    async fn audit_log(&self, route: Option<&str>) -> Result<Vec<AuditEntry>, StoreError> {
        self.ready().await?;
        let rows = match route {
            Some(r) => {
                sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM strangler_audit WHERE route = $1 ORDER BY id"
                ))
                .bind(r)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM strangler_audit ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(read_entry).collect()
    }

    async fn proxy_seen(&self, id: &str, revision: &str) -> Result<(), StoreError> {
        self.ready().await?;
        sqlx::query(
            "INSERT INTO strangler_proxies (id, revision, seen_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, seen_at_ms = excluded.seen_at_ms",
        )
        .bind(id)
        .bind(revision)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn proxies(
        &self,
        since_ms: i64,
    ) -> Result<Vec<crate::route_store::ProxySeen>, StoreError> {
        self.ready().await?;
        let rows = sqlx::query(
            "SELECT id, revision, seen_at_ms FROM strangler_proxies WHERE seen_at_ms >= $1 ORDER BY id",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::route_store::ProxySeen {
                    id: r.try_get(0)?,
                    revision: r.try_get(1)?,
                    seen_at_ms: r.try_get(2)?,
                })
            })
            .collect()
    }
}
