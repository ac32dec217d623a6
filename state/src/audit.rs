//! The audit log's entries and their hash chain.
//!
//! Every entry carries the hash of the entry before it and its own hash
//! over its fields (SHA-256). Editing an entry changes its hash; deleting
//! one breaks the next entry's link. [`verify`] walks the whole log and
//! names the first entry that does not fit. (Whoever can rewrite the whole
//! tail of the log can rebuild the chain too; the chain makes a quiet edit
//! visible, not impossible.)

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::route_state::Target;

/// A stage and percent as the audit log shows them.
pub type StageState = Target;

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub route: String,
    /// The authenticated identity (admin API), the operating-system user
    /// (CLI), `router:auto-rollback`, or `file:<revision>`.
    pub actor: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: String,
    pub before: StageState,
    pub after: StageState,
    /// Revision of the config file the caller acted from ("" when none).
    pub revision: String,
    /// Revisions the fleet's proxies ran at the time ("" when none seen).
    pub fleet_revision: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry should carry, given the one before it.
    pub fn compute_hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            prev_hash,
            &self.id.to_string(),
            &self.route,
            &self.actor,
            &self.at_ms.to_string(),
            &self.reason,
            self.before.stage.as_str(),
            &format!("{:?}", self.before.percent),
            self.after.stage.as_str(),
            &format!("{:?}", self.after.percent),
            &self.revision,
            &self.fleet_revision,
        ] {
            // Length-prefixed, so no two field lists hash alike.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Fills `prev_hash` and `hash` as the entry after `prev_hash`.
    pub fn seal(mut self, prev_hash: &str) -> AuditEntry {
        self.prev_hash = prev_hash.to_string();
        self.hash = self.compute_hash(prev_hash);
        self
    }

    /// Whether the entry changed the route's stage or percent.
    pub fn moved(&self) -> bool {
        self.before != self.after
    }
}

/// Where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainBreak {
    pub id: i64,
    pub problem: String,
}

/// Checks the whole log (oldest first); empty when intact.
pub fn verify(log: &[AuditEntry]) -> Vec<ChainBreak> {
    let mut out = Vec::new();
    let mut prev = "";
    let mut prev_id = None;
    for e in log {
        if e.prev_hash != prev {
            out.push(ChainBreak {
                id: e.id,
                problem: match prev_id {
                    Some(p) => format!(
                        "entry #{} does not follow entry #{p}: an entry between them was deleted, or #{p} was edited",
                        e.id
                    ),
                    None => format!(
                        "entry #{} is the oldest left but was written after another: earlier entries were deleted",
                        e.id
                    ),
                },
            });
        }
        if e.compute_hash(&e.prev_hash) != e.hash {
            out.push(ChainBreak {
                id: e.id,
                problem: format!("entry #{} was edited after it was written", e.id),
            });
        }
        prev = &e.hash;
        prev_id = Some(e.id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strangler_config::Stage;

    fn entry(id: i64, reason: &str) -> AuditEntry {
        AuditEntry {
            id,
            route: "p".into(),
            actor: "ops".into(),
            at_ms: id * 1000,
            at: String::new(),
            reason: reason.into(),
            before: Target::LEGACY,
            after: Target {
                stage: Stage::Canary,
                percent: 10.0,
            },
            revision: "abc".into(),
            fleet_revision: "abc".into(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut log: Vec<AuditEntry> = Vec::new();
        for id in 1..=n {
            let prev = log.last().map(|e| e.hash.clone()).unwrap_or_default();
            log.push(entry(id, "why").seal(&prev));
        }
        log
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(4)), vec![]);
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut log = chain(4);
        log[1].reason = "nothing to see".into();
        let breaks = verify(&log);
        assert_eq!(breaks.iter().map(|b| b.id).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_deleted_entry_breaks_the_next_link() {
        let mut log = chain(4);
        log.remove(2);
        let breaks = verify(&log);
        assert_eq!(breaks.len(), 1);
        assert_eq!(breaks[0].id, 4);
        assert!(breaks[0].problem.contains("#2"), "{}", breaks[0].problem);
    }
}
