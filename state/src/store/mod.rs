//! The state store: run-time route overrides and the audit log, shared by
//! every proxy of a fleet and by the CLI.
//!
//! SQLite (a file, the default) or PostgreSQL (a fleet), through sqlx's `Any`
//! driver so the same queries serve both. The data path never touches the
//! store: proxies poll [`StateStore::version`] (the newest audit id) and
//! rebuild their routing table when it moves, so a change made anywhere is
//! obeyed everywhere within one poll interval.

mod cdc;
mod schema;
mod shadow;
mod usage;

use std::path::Path;
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use strangler_config::{Route, Stage};

use crate::route_state::{effective, Override, Target};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or opened (retryable: the store may come back).
    #[error("state store {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    /// A query failed (retryable).
    #[error("state store query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A row holds something this version cannot read (fatal for that row).
    #[error("state store holds an unreadable value: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether trying again may succeed (the store was unreachable,
    /// restarting, busy); a bad URL, bad SQL or a corrupt row is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { source, .. } | StoreError::Query(source) => {
                crate::retry::sqlx_retryable(source)
            }
            StoreError::Corrupt(_) => false,
        }
    }
}

/// Which SQL dialect the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A stage and percent, as written in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StageState {
    pub stage: Stage,
    pub percent: f64,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub route: String,
    pub actor: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: String,
    pub before: StageState,
    pub after: StageState,
}

/// A connection pool to the state store.
#[derive(Debug, Clone)]
pub struct StateStore {
    pool: AnyPool,
    backend: Backend,
}

static DRIVERS: Once = Once::new();

impl StateStore {
    /// Connects and creates the tables when missing. For SQLite the file and
    /// its folder are created.
    pub async fn connect(url: &str) -> Result<StateStore, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            let file = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default();
            if let Some(dir) = Path::new(file).parent() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Connect {
                    url: url.to_string(),
                    source: sqlx::Error::Io(e),
                })?;
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        let store = StateStore { pool, backend };
        schema::create(&store.pool, backend).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A number that changes whenever any route state changes.
    pub async fn version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM strangler_audit_log")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Every override.
    pub async fn overrides(&self) -> Result<Vec<Override>, StoreError> {
        let rows = sqlx::query(
            "SELECT route, stage, percent, base_stage, base_percent FROM strangler_route_overrides",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read_override).collect()
    }

    /// Moves `route` to `target`, recording who, when and why. Returns the
    /// audit entry (its `before` is the state the route had).
    pub async fn set_route(
        &self,
        route: &Route,
        target: Target,
        actor: &str,
        reason: &str,
    ) -> Result<AuditEntry, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialize writers: take the write lock before reading.
        self.write_lock(&mut tx).await?;
        let current = sqlx::query(
            "SELECT route, stage, percent, base_stage, base_percent FROM strangler_route_overrides WHERE route = $1",
        )
        .bind(&route.name)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| read_override(&r))
        .transpose()?;
        let before = effective(route, current.as_ref());
        let at_ms = now_ms();
        sqlx::query(
            "INSERT INTO strangler_route_overrides (route, stage, percent, base_stage, base_percent, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (route) DO UPDATE SET stage = excluded.stage, percent = excluded.percent, \
             base_stage = excluded.base_stage, base_percent = excluded.base_percent, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&route.name)
        .bind(target.stage.as_str())
        .bind(target.percent)
        .bind(route.stage.as_str())
        .bind(route.percent)
        .bind(at_ms)
        .execute(&mut *tx)
        .await?;
        let id_row = sqlx::query(
            "INSERT INTO strangler_audit_log (route, actor, at_ms, reason, before_stage, before_percent, after_stage, after_percent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&route.name)
        .bind(actor)
        .bind(at_ms)
        .bind(reason)
        .bind(before.stage.as_str())
        .bind(before.percent)
        .bind(target.stage.as_str())
        .bind(target.percent)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = id_row.try_get(0)?;
        tx.commit().await?;
        Ok(AuditEntry {
            id,
            route: route.name.clone(),
            actor: actor.to_string(),
            at_ms,
            at: rfc3339(at_ms),
            reason: reason.to_string(),
            before: StageState {
                stage: before.stage,
                percent: before.percent,
            },
            after: StageState {
                stage: target.stage,
                percent: target.percent,
            },
        })
    }

    /// The audit log of `route`, oldest first.
    pub async fn history(&self, route: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, route, actor, at_ms, reason, before_stage, before_percent, after_stage, after_percent \
             FROM strangler_audit_log WHERE route = $1 ORDER BY id",
        )
        .bind(route)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let at_ms: i64 = r.try_get(3)?;
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    route: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    at_ms,
                    at: rfc3339(at_ms),
                    reason: r.try_get(4)?,
                    before: StageState {
                        stage: stage(r, 5)?,
                        percent: r.try_get(6)?,
                    },
                    after: StageState {
                        stage: stage(r, 7)?,
                        percent: r.try_get(8)?,
                    },
                })
            })
            .collect()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn stage(row: &AnyRow, i: usize) -> Result<Stage, StoreError> {
    let s: String = row.try_get(i)?;
    s.parse().map_err(StoreError::Corrupt)
}

fn read_override(r: &AnyRow) -> Result<Override, StoreError> {
    Ok(Override {
        route: r.try_get(0)?,
        stage: stage(r, 1)?,
        percent: r.try_get(2)?,
        base_stage: stage(r, 3)?,
        base_percent: r.try_get(4)?,
    })
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_220_000_123), "2026-11-21T00:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
