//! One active `cdc run` per slot, the others standing by.
//!
//! The lease is a session-level advisory lock on the source, keyed by the
//! slot, held on a connection of its own for as long as the process runs
//! the slot. Another `cdc run` for the same slot tries the lock every
//! [`POLL`] and waits as a standby meanwhile; when the active process dies
//! (even by `kill -9`), the server ends its sessions, the lock is free and
//! a standby takes over within about a second (plus the moments the server
//! takes to notice the dead replication session; `open` waits for that).
//!
//! ```text
//!  active:  lock connection ── SELECT 1 every POLL ── fails ─▶ lease lost:
//!           pipeline stopped as on shutdown, back to the election
//!  standby: pg_try_advisory_lock every POLL ── true ─▶ active
//! ```
//!
//! Sessions are named (`application_name`) `strangler-cdc active <slot>` or
//! `strangler-cdc standby <slot>`, so `cdc status` and `pg_stat_activity`
//! show who is which. The lock key is `hashtextextended('strangler-cdc/' ||
//! slot, 0)`; nothing else in strangler takes session-level locks on the
//! source.

use std::future::Future;
use std::time::Duration;

use sqlx::PgConnection;

use crate::pipeline::StatusReporter;
use crate::source::{self, SourceConfig, SourceError};

/// How often a standby tries the lock and the active checks its session.
pub const POLL: Duration = Duration::from_millis(500);
/// How long the active's check may take before the lease counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The lock key of `slot` (as SQL, `$1` = the slot).
const KEY: &str = "hashtextextended('strangler-cdc/' || $1, 0)";

/// The `application_name` prefix of a lease session in `role`.
pub fn application_name(role: &str, slot: &str) -> String {
    // PostgreSQL keeps 63 bytes of it.
    format!("strangler-cdc {role} {slot}")
}

/// The session holding a lease.
enum Held {
    Postgres(PgConnection),
    /// A MySQL source: `GET_LOCK('strangler-cdc/<slot>')`, released when
    /// the session ends.
    MySql(mysql_async::Conn),
}

/// The active process's hold on a slot.
pub struct Lease {
    conn: Held,
    slot: String,
}

impl Lease {
    /// Completes when the lease is lost: its session failed or did not
    /// answer within [`CHECK_TIMEOUT`]. The lock is released when the
    /// lease is dropped.
    pub async fn lost(&mut self) -> SourceError {
        loop {
            tokio::time::sleep(POLL).await;
            let check = async {
                match &mut self.conn {
                    Held::Postgres(c) => sqlx::query("SELECT 1")
                        .execute(c)
                        .await
                        .map(|_| ())
                        .map_err(SourceError::from),
                    Held::MySql(c) => {
                        use mysql_async::prelude::Queryable;
                        c.query_drop("SELECT 1").await.map_err(SourceError::from)
                    }
                }
            };
            match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return SourceError::Lease(format!(
                        "the session holding slot {}'s lease failed: {e}",
                        self.slot
                    ))
                }
                Err(_) => {
                    return SourceError::Lease(format!(
                        "the session holding slot {}'s lease did not answer for {} s",
                        self.slot,
                        CHECK_TIMEOUT.as_secs()
                    ))
                }
            }
        }
    }
}

/// Who holds `slot`'s lease now: the holder's `application_name`, client
/// address and backend pid, and how many standbys wait (sessions named as
/// standbys of the slot).
pub async fn holder(
    conn: &mut PgConnection,
    slot: &str,
) -> Result<(Option<(String, String, i32)>, i64), SourceError> {
    let active: Option<(String, String, i32)> = sqlx::query_as(&format!(
        "SELECT a.application_name, coalesce(host(a.client_addr), 'local'), a.pid \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = \
           (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND ((l.classid::bigint << 32) | l.objid::bigint) = {KEY} AND l.objsubid = 1"
    ))
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await?;
    let standbys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(application_name("standby", slot))
            .fetch_one(&mut *conn)
            .await?;
    Ok((active, standbys))
}

/// Waits until this process holds `cfg.slot`'s lease; `None` when
/// `shutdown` came first (unless `patient`: `cdc snapshot`, whose
/// shutdown is "as soon as the snapshot is taken", waits regardless). Connection failures while waiting are ridden out
/// with the shared backoff (the source may be restarting); only an error
/// that waiting cannot fix is returned.
pub async fn acquire<S: Future<Output = ()>>(
    cfg: &SourceConfig,
    status: &dyn StatusReporter,
    shutdown: &mut std::pin::Pin<&mut S>,
    patient: bool,
) -> Result<Option<Lease>, SourceError> {
    let mut delays = strangler_state::retry::delays();
    let mut said = false;
    // A standby keeps its session between tries: it names it a standby.
    let mut session = None;
    let mut my_session = None;
    loop {
        let tried = if cfg.kind.is_mysql() {
            try_lock_mysql(cfg, &mut my_session)
                .await
                .map(|c| c.map(Held::MySql))
        } else {
            try_lock(cfg, &mut session)
                .await
                .map(|c| c.map(Held::Postgres))
        };
        match tried {
            Ok(Some(conn)) => {
                if said {
                    tracing::info!(slot = %cfg.slot, "the active cdc run is gone: taking over");
                }
                status.role(&cfg.slot, true).await;
                return Ok(Some(Lease {
                    conn,
                    slot: cfg.slot.clone(),
                }));
            }
            Ok(None) => {
                if !said {
                    said = true;
                    tracing::info!(
                        slot = %cfg.slot,
                        "another cdc run is active on this slot: standing by to take over"
                    );
                    status.role(&cfg.slot, false).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.as_mut(), if !patient => return Ok(None),
                }
            }
            Err(e) if e.is_retryable() => {
                session = None;
                my_session = None;
                let wait = delays.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(slot = %cfg.slot, error = %e, wait_ms = wait.as_millis() as u64, "cannot reach the source to take the lease; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.as_mut(), if !patient => return Ok(None),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// One try on `session` (opened when absent): the lock connection when
/// the lock was granted.
async fn try_lock(
    cfg: &SourceConfig,
    session: &mut Option<PgConnection>,
) -> Result<Option<PgConnection>, SourceError> {
    if session.is_none() {
        let mut conn = source::connect(cfg).await?;
        // The server must notice a dead holder (its node gone, not just its
        // process) within seconds, not after TCP gives up (~15 min): the
        // lock is freed when the server ends the session.
        for sql in [
            "SET tcp_keepalives_idle = 5",
            "SET tcp_keepalives_interval = 2",
            "SET tcp_keepalives_count = 3",
            "SET tcp_user_timeout = 10000",
        ] {
            sqlx::query(sql).execute(&mut conn).await?;
        }
        set_name(&mut conn, &application_name("standby", &cfg.slot)).await?;
        *session = Some(conn);
    }
    let Some(conn) = session.as_mut() else {
        return Ok(None);
    };
    let got: bool = sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({KEY})"))
        .bind(&cfg.slot)
        .fetch_one(&mut *conn)
        .await?;
    if !got {
        return Ok(None);
    }
    let Some(mut conn) = session.take() else {
        return Ok(None);
    };
    set_name(&mut conn, &application_name("active", &cfg.slot)).await?;
    Ok(Some(conn))
}

/// One try for a MySQL source: `GET_LOCK` on `session` (opened when
/// absent); the session when the lock was granted.
async fn try_lock_mysql(
    cfg: &SourceConfig,
    session: &mut Option<mysql_async::Conn>,
) -> Result<Option<mysql_async::Conn>, SourceError> {
    use mysql_async::prelude::Queryable;
    if session.is_none() {
        let mut conn = crate::mysql::connect(&cfg.url).await?;
        // A holder whose host died (no reset from its side) must lose the
        // lock within a minute, not after 8 hours: its session is idle
        // between the active's checks (every 500 ms) only if it is gone.
        conn.query_drop("SET SESSION wait_timeout = 60").await?;
        *session = Some(conn);
    }
    let Some(conn) = session.as_mut() else {
        return Ok(None);
    };
    // Lock names are at most 64 characters.
    let name: String = format!("strangler-cdc/{}", cfg.slot)
        .chars()
        .take(64)
        .collect();
    let got: Option<Option<i64>> = conn.exec_first("SELECT GET_LOCK(?, 0)", (name,)).await?;
    if got.flatten() != Some(1) {
        return Ok(None);
    }
    Ok(session.take())
}

async fn set_name(conn: &mut PgConnection, name: &str) -> Result<(), SourceError> {
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_named_by_role_and_slot() {
        assert_eq!(
            application_name("standby", "strangler"),
            "strangler-cdc standby strangler"
        );
    }
}
