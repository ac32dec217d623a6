//! [`RouteStore`] in memory, for unit tests of everything that decides on
//! route state (reconciling a file, rollbacks, holds, plans).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::audit::AuditEntry;
use crate::route_state::LiveRoute;
use crate::route_store::{
    fleet_revision, settle, Decide, ProxySeen, RouteStore, Updated, FLEET_WINDOW_MS,
};
use crate::store::{now_ms, StoreError};

/// Route rows, the audit log and proxies, behind one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    routes: BTreeMap<String, LiveRoute>,
    audit: Vec<AuditEntry>,
    proxies: BTreeMap<String, ProxySeen>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets a test tamper with the log, as someone with database rights could.
    pub fn edit_audit(&self, f: impl FnOnce(&mut Vec<AuditEntry>)) {
        f(&mut self.lock().audit);
    }
}

#[async_trait]
impl RouteStore for MemoryStore {
    async fn version(&self) -> Result<(i64, i64), StoreError> {
        let g = self.lock();
        Ok((
            g.audit.last().map_or(0, |e| e.id),
            i64::try_from(g.routes.len()).unwrap_or(i64::MAX),
        ))
    }

    async fn routes(&self) -> Result<Vec<LiveRoute>, StoreError> {
        Ok(self.lock().routes.values().cloned().collect())
    }

    async fn update(&self, route: &str, decide: &Decide) -> Result<Updated, StoreError> {
        let mut g = self.lock();
        let current = g.routes.get(route).cloned();
        let decision = decide(current.as_ref());
        let since = now_ms() - FLEET_WINDOW_MS;
        let fleet = fleet_revision(
            g.proxies
                .values()
                .filter(|p| p.seen_at_ms >= since)
                .map(|p| p.revision.as_str()),
        );
        let (last_id, prev_hash) = g
            .audit
            .last()
            .map_or((0, String::new()), |e| (e.id, e.hash.clone()));
        let settled = settle(
            route,
            current.as_ref(),
            decision,
            last_id + 1,
            &prev_hash,
            &fleet,
        );
        if let Some(row) = &settled.write {
            g.routes.insert(route.to_string(), row.clone());
        }
        if let Some(e) = &settled.entry {
            g.audit.push(e.clone());
        }
        Ok(settled.updated())
    }

    async fn audit_log(&self, route: Option<&str>) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .lock()
            .audit
            .iter()
            .filter(|e| route.is_none_or(|r| e.route == r))
            .cloned()
            .collect())
    }

    async fn proxy_seen(&self, id: &str, revision: &str) -> Result<(), StoreError> {
        self.lock().proxies.insert(
            id.to_string(),
            ProxySeen {
                id: id.to_string(),
                revision: revision.to_string(),
                seen_at_ms: now_ms(),
            },
        );
        Ok(())
    }

    async fn proxies(&self, since_ms: i64) -> Result<Vec<ProxySeen>, StoreError> {
        Ok(self
            .lock()
            .proxies
            .values()
            .filter(|p| p.seen_at_ms >= since_ms)
            .cloned()
            .collect())
    }
}
