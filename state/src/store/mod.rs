//! The state store: the fleet's route state and the audit log, shared by
//! every proxy of a fleet, CDC and the CLI.
//!
//! SQLite (a file, the default) or PostgreSQL (a fleet), through sqlx's `Any`
//! driver so the same queries serve both. The data path never touches the
//! store: proxies poll the version (`RouteStore::version`) and rebuild
//! their routing table when it moves, so a change made anywhere is obeyed
//! everywhere within one poll interval. Route state is in `routes.rs`
//! (the [`crate::RouteStore`] implementation), CDC positions in `cdc.rs`,
//! shadow statistics in `shadow.rs`, usage counts in `usage.rs`, the
//! endpoint inventory in `inventory.rs`.

mod cdc;
mod inventory;
mod published_snapshot;
mod routes;
mod schema;
mod shadow;
mod usage;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use tokio::sync::OnceCell;

pub use crate::audit::{AuditEntry, StageState};
pub use published_snapshot::Unfinished;
pub use schema::{Found, Migrated, CURRENT as SCHEMA_VERSION};

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
    /// The store's schema is not the version this binary uses (`schema.rs`).
    #[error("{0}")]
    Schema(String),
}

impl StoreError {
    /// Whether trying again may succeed (the store was unreachable,
    /// restarting, busy); a bad URL, bad SQL or a corrupt row is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { source, .. } | StoreError::Query(source) => {
                crate::retry::sqlx_retryable(source)
            }
            StoreError::Corrupt(_) | StoreError::Schema(_) => false,
        }
    }
}

/// Which SQL dialect the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to the state store.
#[derive(Debug, Clone)]
pub struct StateStore {
    pool: AnyPool,
    backend: Backend,
    url: String,
    /// Set once the tables exist.
    schema: Arc<OnceCell<()>>,
}

static DRIVERS: Once = Once::new();

impl StateStore {
    /// Connects and creates the tables when missing. For SQLite the file and
    /// its folder are created.
    pub async fn connect(url: &str) -> Result<StateStore, StoreError> {
        let store = StateStore::lazy(url)?;
        store.ready().await?;
        Ok(store)
    }

    /// A store that connects (and creates its tables) on first use, so a
    /// proxy can start while the store is down.
    pub fn lazy(url: &str) -> Result<StateStore, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let connect_err = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        if backend == Backend::Sqlite {
            let file = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default();
            if let Some(dir) = Path::new(file).parent() {
                std::fs::create_dir_all(dir).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy(url)
            .map_err(connect_err)?;
        Ok(StateStore {
            pool,
            backend,
            url: url.to_string(),
            schema: Arc::new(OnceCell::new()),
        })
    }

    /// Reaches the store (once): creates its tables when it is empty,
    /// refuses a schema version other than this binary's (`schema.rs`).
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.schema
            .get_or_try_init(|| async {
                schema::open(&self.pool, self.backend, &redact_url(&self.url))
                    .await
                    .map_err(|e| match e {
                        StoreError::Query(source) => StoreError::Connect {
                            url: redact_url(&self.url),
                            source,
                        },
                        other => other,
                    })
            })
            .await
            .map(|_| ())
    }

    /// Brings the store's schema to this binary's version (`strangler
    /// migrate`); `by` is recorded with the version.
    pub async fn migrate(&self, by: &str) -> Result<Migrated, StoreError> {
        schema::migrate(&self.pool, self.backend, &redact_url(&self.url), by).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
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

/// A store in a fresh SQLite file (kept while the directory lives).
#[cfg(test)]
pub(crate) async fn temp_store() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("s.db").display()
    ))
    .await
    .expect("store");
    (dir, store)
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
