//! Which errors are worth another try, and how long to wait between tries.
//!
//! Errors are classified where they are made (`is_retryable` on every
//! library error); this module holds the one answer for database errors
//! and the one backoff policy, so the proxy's store poller, the CDC
//! pipeline and the CLI retry alike.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Whether a database error is transient: the connection was lost or
/// refused, the server is starting or shutting down, too many connections,
/// a serialization failure or deadlock, SQLite busy or locked, a pool
/// timeout. Everything else (bad SQL, constraint violations, a missing
/// table, bad configuration) is not made right by waiting.
pub fn sqlx_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        // A connection that ended mid-message reads as a protocol error.
        sqlx::Error::Protocol(m) => m.contains("unexpected end of file") || m.contains("EOF"),
        sqlx::Error::Database(db) => db.code().is_some_and(|c| sqlstate_retryable(&c)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs and SQLite result codes worth another try.
pub fn sqlstate_retryable(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" // admin/crash shutdown, cannot connect now
                | "53300" // too many connections
                | "40001" | "40P01" // serialization failure, deadlock
                | "5" | "6" | "517" | "261" // SQLITE_BUSY, _LOCKED, _BUSY_SNAPSHOT, _BUSY_RECOVERY
        )
}

/// The backoff every retry uses: exponential from 100 ms, doubling, capped
/// at 10 s, with jitter so a fleet does not retry in step; unbounded (the
/// caller decides when to stop).
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// The delays of [`backoff`], for loops that retry by hand.
pub fn delays() -> impl Iterator<Item = Duration> {
    backoff().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_database_errors() {
        assert!(sqlx_retryable(&sqlx::Error::PoolTimedOut));
        assert!(sqlx_retryable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!sqlx_retryable(&sqlx::Error::RowNotFound));
        assert!(!sqlx_retryable(&sqlx::Error::ColumnNotFound("x".into())));
        for code in ["08006", "57P01", "40001", "40P01", "5"] {
            assert!(sqlstate_retryable(code), "{code}");
        }
        for code in ["23505", "42P01", "42601", "19"] {
            assert!(!sqlstate_retryable(code), "{code}");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let d: Vec<Duration> = delays().take(12).collect();
        assert!(
            d[0] >= Duration::from_millis(100) && d[0] < Duration::from_millis(250),
            "{d:?}"
        );
        assert!(d.windows(2).take(5).all(|w| w[1] > w[0]), "{d:?}");
        assert!(d.iter().all(|x| *x <= Duration::from_secs(20)), "{d:?}");
        assert!(d[11] >= Duration::from_secs(10), "{d:?}");
    }
}
