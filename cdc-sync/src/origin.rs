//! Replication origins: how a transaction written by one of our sinks is
//! recognised, so reverse sync never echoes it back.
//!
//! ```text
//!  sink "catalog" writes under origin strangler_catalog ─▶ WAL records carry the origin
//!  a source reading that database sees Origin("strangler_catalog") ─▶ drops the transaction
//! ```

/// What every origin of ours starts with.
pub const PREFIX: &str = "strangler_";

/// The replication origin sink `sink` writes under.
pub fn name(sink: &str) -> String {
    format!("{PREFIX}{sink}")
}

/// The origin of the `n`-th concurrent session of sink `sink` (0: the
/// first). PostgreSQL lets one session at a time use an origin, so several
/// Kafka workers of one sink each take the first free one of these.
pub fn name_of_session(sink: &str, n: u32) -> String {
    match n {
        0 => name(sink),
        n => format!("{PREFIX}{sink}_{}", n + 1),
    }
}

/// How many concurrent sessions (workers) of one sink may write at once.
pub const MAX_SESSIONS: u32 = 64;

/// Whether an origin name is one of our sinks'.
pub fn is_ours(origin: &str) -> bool {
    origin.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_sinks_origins_are_recognised() {
        assert!(super::is_ours(&super::name("catalog")));
        assert!(!super::is_ours("pg_other_node"));
    }
}
