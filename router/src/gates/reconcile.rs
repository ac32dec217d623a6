//! A config file meets the fleet: what each route's declaration would do
//! to the state every proxy runs ([`plan`]), and doing it ([`apply`]).
//!
//! ```text
//!  file (declared) + store rows (effective) ─ file_change per route
//!    Same / Adopt ────────────────▶ nothing moves
//!    Apply (a step back) ─────────▶ applied, audited as file:<revision>
//!    Forward, gates pass ─────────▶ applied, audited
//!    Forward, a gate fails ───────▶ held: the row records the ask and why
//!    UnderHold (rolled back) ─────▶ held until `route resume`
//! ```
//!
//! Proxies apply at start, on every reload and every few seconds while a
//! declaration waits for its gates; `strangler plan -c NEW.toml` shows the
//! plan of a file nobody runs yet.

use serde::Serialize;
use strangler_config::{Config, Route};
use strangler_state::route_state::{file_change, FileChange, LiveRoute, Origin, Target};
use strangler_state::route_store::{Change, Decision, RouteStore, Updated, Who};
use strangler_state::store::StateStore;
use strangler_state::StoreError;

use super::evaluate::{evaluate_with_lag, gates_to};
use super::Gate;

/// What a file would do to one route.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The fleet already runs what the file says (or an operator's change
    /// the file has not touched).
    Same,
    /// A route the store has no row for yet: runs as declared.
    Adopt { to: Target },
    /// A step back, or the same stage: applies without gates.
    Apply { to: Target },
    /// A step forward whose gates pass.
    Promote { to: Target, gates: Vec<Gate> },
    /// A step forward a gate holds back.
    HeldByGates { asks: Target, gates: Vec<Gate> },
    /// The route is on hold since a rollback.
    HeldByRollback { asks: Target, why: String },
}

impl Action {
    /// Whether the file's ask would not reach traffic.
    pub fn is_held(&self) -> bool {
        matches!(
            self,
            Action::HeldByGates { .. } | Action::HeldByRollback { .. }
        )
    }

    /// The "held: …" text a route shows.
    pub fn why(&self) -> String {
        match self {
            Action::HeldByGates { asks, gates } => {
                let failed: Vec<String> = gates
                    .iter()
                    .filter(|g| !g.ok)
                    .map(|g| format!("gate {} NOT READY", g.name))
                    .collect();
                format!("held: file asks {asks}; {}", failed.join(", "))
            }
            Action::HeldByRollback { asks, why } => {
                format!("held: file asks {asks}; on hold since a rollback ({why}); `strangler route resume` lifts it")
            }
            _ => String::new(),
        }
    }
}

/// One route of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub route: String,
    pub declared: Target,
    /// What the fleet runs now.
    pub current: Target,
    pub origin: Origin,
    #[serde(flatten)]
    pub action: Action,
}

/// What `config` would do to the fleet's state, route by route.
pub async fn plan(config: &Config, store: &StateStore) -> Result<Vec<Planned>, StoreError> {
    let (reports, lag) = evaluate_with_lag(config, store).await?;
    Ok(config
        .routes
        .iter()
        .zip(&reports)
        .map(|(route, report)| {
            plan_route(route, report.live.as_ref(), |to| {
                gates_to(report, route, &lag, to)
            })
        })
        .collect())
}

/// The plan of one route given its stored row; `gates` gives the gates of
/// moving to a target.
pub fn plan_route(
    route: &Route,
    live: Option<&LiveRoute>,
    gates: impl FnOnce(Target) -> Vec<Gate>,
) -> Planned {
    let current = live.map_or(Target::declared(route), LiveRoute::target);
    let action = match file_change(route, live) {
        FileChange::Same => Action::Same,
        FileChange::Adopt(to) => Action::Adopt { to },
        FileChange::Apply(to) => Action::Apply { to },
        FileChange::Forward { to, .. } => {
            let gates = gates(to);
            if gates.iter().all(|g| g.ok) {
                Action::Promote { to, gates }
            } else {
                Action::HeldByGates { asks: to, gates }
            }
        }
        FileChange::UnderHold(asks) => Action::HeldByRollback {
            asks,
            why: live.map(|l| l.why.clone()).unwrap_or_default(),
        },
    };
    Planned {
        route: route.name.clone(),
        declared: Target::declared(route),
        current,
        origin: live.map_or(Origin::File, |l| l.origin),
        action,
    }
}

/// Applies `config`'s plan to the store; returns what was written (audited
/// entries and adopted rows).
pub async fn apply(config: &Config, store: &StateStore) -> Result<Vec<Updated>, StoreError> {
    let planned = plan(config, store).await?;
    apply_plan(config, store, &planned).await
}

/// Writes `planned` (from [`plan`] or [`plan_route`]). Each write checks
/// under the store's lock that the row is still what the plan saw, so
/// proxies reconciling the same file at once write it once.
pub async fn apply_plan(
    config: &Config,
    store: &dyn RouteStore,
    planned: &[Planned],
) -> Result<Vec<Updated>, StoreError> {
    let mut out = Vec::new();
    for p in planned {
        let Some(route) = config.route(&p.route) else {
            continue;
        };
        if p.action == Action::Same {
            continue;
        }
        let revision = config.revision.clone();
        let route_c = route.clone();
        let action = p.action.clone();
        let decide = move |row: Option<&LiveRoute>| decide(&route_c, row, &action, &revision);
        match store.update(&route.name, &decide).await? {
            Updated::Kept(_) => {}
            u => out.push(u),
        }
    }
    Ok(out)
}

/// The row `action` leads to, if the row is still as planned.
fn decide(route: &Route, row: Option<&LiveRoute>, action: &Action, revision: &str) -> Decision {
    // Someone else changed the row since the plan: leave it to the next round.
    let still = match (file_change(route, row), action) {
        (FileChange::Adopt(_), Action::Adopt { .. }) => true,
        (FileChange::Apply(a), Action::Apply { to }) => a == *to,
        (FileChange::Forward { to, .. }, Action::Promote { to: p, .. }) => to == *p,
        (FileChange::Forward { to, .. }, Action::HeldByGates { asks, .. }) => to == *asks,
        (FileChange::UnderHold(a), Action::HeldByRollback { asks, .. }) => a == *asks,
        _ => false,
    };
    if !still {
        return Decision::Keep;
    }
    let declared = Target::declared(route);
    let base = LiveRoute {
        route: route.name.clone(),
        declared,
        stage: declared.stage,
        percent: declared.percent,
        origin: Origin::File,
        why: String::new(),
        revision: revision.to_string(),
        updated_at_ms: 0,
    };
    let who = |reason: String| Who {
        actor: format!("file:{revision}"),
        reason,
        revision: revision.to_string(),
    };
    match action {
        Action::Same => Decision::Keep,
        Action::Adopt { .. } => Decision::Adopt(base),
        Action::Apply { to } => Decision::Write(Change {
            row: base,
            who: who(format!("file declares {to}")),
        }),
        Action::Promote { to, .. } => Decision::Write(Change {
            row: base,
            who: who(format!("file declares {to}; gates passed")),
        }),
        Action::HeldByGates { .. } | Action::HeldByRollback { .. } => {
            let Some(row) = row else {
                return Decision::Keep;
            };
            let why = action.why();
            let held = LiveRoute {
                declared,
                origin: if row.origin == Origin::Hold {
                    Origin::Hold
                } else {
                    Origin::File
                },
                why: if row.origin == Origin::Hold {
                    row.why.clone()
                } else {
                    why.clone()
                },
                revision: revision.to_string(),
                ..row.clone()
            };
            // Already recorded (a proxy trying again): nothing to write.
            if held.declared == row.declared && held.why == row.why && held.origin == row.origin {
                return Decision::Keep;
            }
            Decision::Write(Change {
                row: held,
                who: who(why),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strangler_config::Stage;
    use strangler_state::memory::MemoryStore;

    fn config(stage: &str) -> Config {
        let percent = if stage == "canary" {
            "percent = 20\n"
        } else {
            ""
        };
        let text = format!(
            "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n[upstreams.svc]\nurl = \"http://127.0.0.1:2\"\n\
             [[routes]]\nname = \"p\"\npath = \"/p\"\nservice = \"svc\"\nstage = \"{stage}\"\n{percent}"
        );
        Config::from_toml(&text, std::path::Path::new("/tmp/s.toml")).expect("config")
    }

    async fn row(store: &MemoryStore) -> LiveRoute {
        store.routes().await.expect("routes").remove(0)
    }

    async fn plan_and_apply(config: &Config, store: &MemoryStore, gate_ok: bool) -> usize {
        let rows = store.routes().await.expect("routes");
        let planned: Vec<Planned> = config
            .routes
            .iter()
            .map(|r| {
                plan_route(r, rows.iter().find(|l| l.route == r.name), |_| {
                    vec![Gate {
                        name: "shadow",
                        ok: gate_ok,
                        detail: String::new(),
                    }]
                })
            })
            .collect();
        apply_plan(config, store, &planned)
            .await
            .expect("apply")
            .iter()
            .filter(|u| u.entry().is_some())
            .count()
    }

    #[tokio::test]
    async fn proxies_reconciling_one_file_write_it_once() {
        let store = MemoryStore::default();
        assert_eq!(
            plan_and_apply(&config("shadow"), &store, true).await,
            0,
            "adopted, not audited"
        );
        let file = config("canary");
        // Two proxies planned before either wrote.
        let rows = store.routes().await.expect("routes");
        let planned = vec![plan_route(&file.routes[0], rows.first(), |_| Vec::new())];
        assert!(matches!(planned[0].action, Action::Promote { .. }));
        let a = apply_plan(&file, &store, &planned).await.expect("a");
        let b = apply_plan(&file, &store, &planned).await.expect("b");
        assert_eq!((a.len(), b.len()), (1, 0));
        let r = row(&store).await;
        assert_eq!(
            (r.stage, r.percent, r.origin),
            (Stage::Canary, 20.0, Origin::File)
        );
    }

    #[tokio::test]
    async fn a_failing_gate_holds_the_route_and_records_why_once() {
        let store = MemoryStore::default();
        plan_and_apply(&config("shadow"), &store, true).await;
        assert_eq!(plan_and_apply(&config("canary"), &store, false).await, 1);
        assert_eq!(
            plan_and_apply(&config("canary"), &store, false).await,
            0,
            "no audit spam"
        );
        let r = row(&store).await;
        assert_eq!(r.stage, Stage::Shadow);
        assert_eq!(r.why, "held: file asks canary 20%; gate shadow NOT READY");
        // The gate passes later: the waiting declaration goes through.
        assert_eq!(plan_and_apply(&config("canary"), &store, true).await, 1);
        assert_eq!(row(&store).await.stage, Stage::Canary);
    }

    #[tokio::test]
    async fn a_hold_keeps_legacy_whatever_the_file_asks() {
        let store = MemoryStore::default();
        let file = config("canary");
        plan_and_apply(&file, &store, true).await;
        crate::gates::rollback(
            &store,
            &file.routes[0],
            Who {
                actor: "ops".into(),
                reason: "incident".into(),
                revision: String::new(),
            },
        )
        .await
        .expect("rollback");
        assert_eq!(plan_and_apply(&config("migrated"), &store, true).await, 1);
        let r = row(&store).await;
        assert_eq!((r.stage, r.origin), (Stage::Legacy, Origin::Hold));
        assert_eq!(r.declared.stage, Stage::Migrated);
        assert!(
            r.explain().contains("file asks migrated"),
            "{}",
            r.explain()
        );
        let log = store.audit_log(None).await.expect("log");
        assert!(strangler_state::audit::verify(&log).is_empty());
    }
}
