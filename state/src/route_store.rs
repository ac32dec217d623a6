//! What the rest of strangler needs from a store of route state: the
//! fleet's view of every route, changes to it (each one audited in a hash
//! chain), the audit log, and which config revisions the proxies run.
//!
//! [`crate::StateStore`] implements it over SQLite or PostgreSQL (one sqlx
//! `Any` pool), [`crate::memory::MemoryStore`] in memory for unit tests.
//! Both run a change the same way: the caller's [`Decide`] sees the current
//! row under the store's write lock and returns a [`Decision`]; [`settle`]
//! turns it into the new row and the sealed audit entry.

use async_trait::async_trait;
use serde::Serialize;

use crate::audit::AuditEntry;
use crate::route_state::{LiveRoute, Target};
use crate::store::{now_ms, rfc3339, StoreError};

/// Decides a change from the row as it is under the write lock.
pub type Decide = dyn Fn(Option<&LiveRoute>) -> Decision + Send + Sync;

/// What to do with a route's row.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Leave it.
    Keep,
    /// Store the row without an audit entry: it changes nothing any proxy
    /// runs (a file's declaration for a route that had no row).
    Adopt(LiveRoute),
    /// Store the row and audit the change.
    Write(Change),
    /// Audit an action that leaves the row as it is (a shadow reset, an
    /// accepted noise rule); `at` is the route's state for the entry.
    Note { at: Target, who: Who },
}

/// Who changed something, why, and from which config revision.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Who {
    pub actor: String,
    pub reason: String,
    pub revision: String,
}

/// A new row and who wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub row: LiveRoute,
    pub who: Who,
}

/// What [`RouteStore::update`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated {
    Kept(Option<LiveRoute>),
    Adopted(LiveRoute),
    Written {
        row: Option<LiveRoute>,
        entry: Box<AuditEntry>,
    },
}

impl Updated {
    pub fn entry(&self) -> Option<&AuditEntry> {
        match self {
            Updated::Written { entry, .. } => Some(entry.as_ref()),
            _ => None,
        }
    }
}

/// A proxy as it last reported itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxySeen {
    /// `host:admin-port`.
    pub id: String,
    /// Revision of the config file it runs.
    pub revision: String,
    pub seen_at_ms: i64,
}

/// How recently a proxy must have reported to count as part of the fleet.
pub const FLEET_WINDOW_MS: i64 = 30_000;

/// The store of route state.
#[async_trait]
pub trait RouteStore: Send + Sync {
    /// Changes whenever any stored route row changes.
    async fn version(&self) -> Result<(i64, i64), StoreError>;
    /// Every stored row.
    async fn routes(&self) -> Result<Vec<LiveRoute>, StoreError>;
    /// Runs `decide` on `route`'s row under the write lock and stores what
    /// it returns.
    async fn update(&self, route: &str, decide: &Decide) -> Result<Updated, StoreError>;
    /// The audit log, oldest first: every route's, or one route's.
    async fn audit_log(&self, route: Option<&str>) -> Result<Vec<AuditEntry>, StoreError>;
    /// Records that a proxy runs `revision`.
    async fn proxy_seen(&self, id: &str, revision: &str) -> Result<(), StoreError>;
    /// Proxies seen since `since_ms`.
    async fn proxies(&self, since_ms: i64) -> Result<Vec<ProxySeen>, StoreError>;
}

/// The revisions the fleet runs, as the audit log records them.
pub fn fleet_revision<'a>(revisions: impl IntoIterator<Item = &'a str>) -> String {
    let mut revs: Vec<&str> = revisions.into_iter().collect();
    revs.sort_unstable();
    revs.dedup();
    revs.join(",")
}

/// What a store writes for a decision.
pub struct Settled {
    /// The row after the decision.
    pub row: Option<LiveRoute>,
    /// The row to store, when new or changed.
    pub write: Option<LiveRoute>,
    pub entry: Option<AuditEntry>,
}

impl Settled {
    /// What the caller of `update` gets.
    pub fn updated(self) -> Updated {
        match (self.entry, self.write) {
            (Some(entry), _) => Updated::Written {
                row: self.row,
                entry: Box::new(entry),
            },
            (None, Some(row)) => Updated::Adopted(row),
            (None, None) => Updated::Kept(self.row),
        }
    }
}

/// Turns `decision` into the row to store and the sealed audit entry
/// (`next_id`, after `prev_hash`). `before` is what the route ran when no
/// row exists.
pub fn settle(
    route: &str,
    current: Option<&LiveRoute>,
    decision: Decision,
    next_id: i64,
    prev_hash: &str,
    fleet: &str,
) -> Settled {
    let at_ms = now_ms();
    let entry = |before: Target, after: Target, who: Who| {
        AuditEntry {
            id: next_id,
            route: route.to_string(),
            actor: who.actor,
            at_ms,
            at: rfc3339(at_ms),
            reason: who.reason,
            before,
            after,
            revision: who.revision,
            fleet_revision: fleet.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        }
        .seal(prev_hash)
    };
    match decision {
        Decision::Keep => Settled {
            row: current.cloned(),
            write: None,
            entry: None,
        },
        Decision::Adopt(mut row) => {
            // Adopting changes nothing any proxy runs: the route's state
            // still dates from the file (0), as the usage counted so far says.
            row.updated_at_ms = 0;
            Settled {
                row: Some(row.clone()),
                write: Some(row),
                entry: None,
            }
        }
        Decision::Write(Change { mut row, who }) => {
            // `updated_at_ms` dates the effective state (usage is counted
            // under it): a write that leaves stage and percent as they were
            // (a recorded ask, a hold at legacy already) keeps the date.
            row.updated_at_ms = match current {
                Some(c) if c.target() == row.target() => c.updated_at_ms,
                _ => at_ms,
            };
            let before = current.map_or(row.declared, LiveRoute::target);
            let e = entry(before, row.target(), who);
            Settled {
                row: Some(row.clone()),
                write: Some(row),
                entry: Some(e),
            }
        }
        Decision::Note { at, who } => Settled {
            row: current.cloned(),
            write: None,
            entry: Some(entry(at, at, who)),
        },
    }
}
