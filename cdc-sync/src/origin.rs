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
