//! Run-time route state: what the file declares, what the fleet runs, and
//! why the two differ.
//!
//! The store keeps one [`LiveRoute`] per route: the state the file declared
//! when it was last reconciled, the effective state every proxy runs, where
//! that comes from ([`Origin`]) and why it differs from the file. Proxies
//! route by the stored row, never by their own copy of the file, so a CLI
//! run from an old checkout acts on the fleet's state, and a file edit
//! reaches traffic only through [`file_change`]:
//!
//! ```text
//!  file declares D, store row R (effective E, origin O)
//!   no row ─────────────────────────────▶ Adopt (D becomes the row, unaudited)
//!   O = hold ───────────────────────────▶ stays legacy; D recorded (UnderHold)
//!   D = R.declared, O = runtime ────────▶ Same (the operator's change stands)
//!   D = R.declared = E ─────────────────▶ Same
//!   D at or behind E ───────────────────▶ Apply D (a step back needs no gate)
//!   D ahead of E ───────────────────────▶ Forward: applied only if the gates pass
//! ```

use serde::{Deserialize, Serialize};
use strangler_config::{Route, Stage};

/// Where a route's effective stage comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The file's declaration (possibly waiting for gates: see `why`).
    File,
    /// A run-time change (CLI, admin API); stands until the file changes.
    #[serde(alias = "override")]
    Runtime,
    /// A rollback's hold at legacy; only `route resume` lifts it.
    Hold,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Runtime => "runtime",
            Origin::Hold => "hold",
        }
    }

    pub fn parse(s: &str) -> Result<Origin, String> {
        match s {
            "file" => Ok(Origin::File),
            "runtime" | "override" => Ok(Origin::Runtime),
            "hold" => Ok(Origin::Hold),
            other => Err(format!("unknown route origin {other:?}")),
        }
    }
}

/// The stage and percent a route runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    pub stage: Stage,
    pub percent: f64,
    pub origin: Origin,
}

impl Effective {
    pub fn target(&self) -> Target {
        Target {
            stage: self.stage,
            percent: self.percent,
        }
    }
}

/// A stage and percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub stage: Stage,
    pub percent: f64,
}

impl Target {
    pub const LEGACY: Target = Target {
        stage: Stage::Legacy,
        percent: 0.0,
    };

    /// What the file declares for `route`.
    pub fn declared(route: &Route) -> Target {
        Target {
            stage: route.stage,
            percent: match route.stage {
                Stage::Canary => route.percent,
                Stage::Migrated => 100.0,
                Stage::Legacy | Stage::Shadow => 0.0,
            },
        }
    }

    /// Position along legacy → shadow → canary (by percent) → migrated.
    pub fn rank(&self) -> f64 {
        match self.stage {
            Stage::Legacy => 0.0,
            Stage::Shadow => 1.0,
            Stage::Canary => 2.0 + self.percent / 100.0,
            Stage::Migrated => 4.0,
        }
    }

    /// Whether moving from `from` to here is a step forward (needs gates).
    pub fn is_ahead_of(&self, from: &Target) -> bool {
        self.rank() > from.rank()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stage {
            Stage::Canary => write!(f, "canary {}%", self.percent),
            s => write!(f, "{s}"),
        }
    }
}

/// The stored state of one route: the fleet's view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveRoute {
    pub route: String,
    /// What the file declared when it was last reconciled.
    pub declared: Target,
    /// What every proxy runs.
    pub stage: Stage,
    pub percent: f64,
    pub origin: Origin,
    /// Why the effective state differs from the declared one ("" when not).
    pub why: String,
    /// Revision of the config file that last declared.
    pub revision: String,
    /// When the effective stage and percent last changed (0: as the file
    /// first declared them); the usage counted since is what auto-rollback
    /// weighs.
    pub updated_at_ms: i64,
}

impl LiveRoute {
    pub fn effective(&self) -> Effective {
        Effective {
            stage: self.stage,
            percent: self.percent,
            origin: self.origin,
        }
    }

    pub fn target(&self) -> Target {
        Target {
            stage: self.stage,
            percent: self.percent,
        }
    }

    /// The effective state and its origin, for messages.
    pub fn explain_state(&self) -> String {
        format!("{} ({})", self.target(), self.origin.as_str())
    }

    /// Why the route runs what it runs, for people ("" when it simply
    /// follows the file).
    pub fn explain(&self) -> String {
        match self.origin {
            Origin::Hold => format!(
                "held at legacy since a rollback ({}); file asks {}; `strangler route resume {}` lifts the hold",
                self.why, self.declared, self.route
            ),
            Origin::Runtime if self.target() != self.declared => format!(
                "set at run time; file asks {} (stands until the file changes this route)",
                self.declared
            ),
            _ => self.why.clone(),
        }
    }
}

/// The effective state of `route`: the stored row when there is one (the
/// fleet's view), else what the file declares.
pub fn effective(route: &Route, live: Option<&LiveRoute>) -> Effective {
    match live {
        Some(l) => l.effective(),
        None => {
            let d = Target::declared(route);
            Effective {
                stage: d.stage,
                percent: d.percent,
                origin: Origin::File,
            }
        }
    }
}

/// What a file's declaration asks of the fleet's state of one route.
#[derive(Debug, Clone, PartialEq)]
pub enum FileChange {
    /// Nothing to do.
    Same,
    /// No stored row yet: the declaration becomes the row as it is.
    Adopt(Target),
    /// Back or sideways: applies without gates.
    Apply(Target),
    /// Ahead of the effective state: applies only if the gates pass.
    Forward { from: Target, to: Target },
    /// The route is on hold: the declaration is recorded, nothing moves.
    UnderHold(Target),
}

/// What `route`'s declaration in the file asks, given the stored row.
pub fn file_change(route: &Route, live: Option<&LiveRoute>) -> FileChange {
    let declared = Target::declared(route);
    let Some(live) = live else {
        return FileChange::Adopt(declared);
    };
    let current = live.target();
    let unchanged = live.declared == declared;
    match live.origin {
        Origin::Hold if unchanged => FileChange::Same,
        Origin::Hold => FileChange::UnderHold(declared),
        Origin::Runtime if unchanged => FileChange::Same,
        Origin::File if unchanged && current == declared => FileChange::Same,
        _ if declared.is_ahead_of(&current) => FileChange::Forward {
            from: current,
            to: declared,
        },
        _ => FileChange::Apply(declared),
    }
}

/// Checks a requested change against the route; the error is for the user.
pub fn check_target(
    route: &Route,
    stage: Stage,
    percent: Option<f64>,
    current: Effective,
) -> Result<Target, String> {
    if stage != Stage::Legacy && route.service.is_none() {
        return Err(format!(
            "route {:?} has no service; only stage legacy is possible",
            route.name
        ));
    }
    let percent = match (stage, percent) {
        (_, Some(p)) if !(0.0..=100.0).contains(&p) => {
            return Err(format!("percent {p} is outside 0..=100"))
        }
        (Stage::Canary, Some(p)) => p,
        (Stage::Canary, None) if current.stage == Stage::Canary => current.percent,
        (Stage::Canary, None) => return Err("stage canary needs --percent".to_string()),
        (Stage::Migrated, _) => 100.0,
        (_, _) => 0.0,
    };
    Ok(Target { stage, percent })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(stage: Stage, percent: f64) -> Route {
        let text = format!(
            "[upstreams.legacy]\nurl = \"http://127.0.0.1:1\"\n[upstreams.svc]\nurl = \"http://127.0.0.1:2\"\n\
             [[routes]]\nname = \"p\"\npath = \"/p\"\nservice = \"svc\"\nstage = \"{stage}\"\n{}",
            if stage == Stage::Canary {
                format!("percent = {percent}\n")
            } else {
                String::new()
            }
        );
        strangler_config::Config::from_toml(&text, std::path::Path::new("/tmp/s.toml"))
            .expect("config")
            .routes
            .remove(0)
    }

    fn live(declared: Target, now: Target, origin: Origin) -> LiveRoute {
        LiveRoute {
            route: "p".into(),
            declared,
            stage: now.stage,
            percent: now.percent,
            origin,
            why: String::new(),
            revision: String::new(),
            updated_at_ms: 0,
        }
    }

    const fn t(stage: Stage, percent: f64) -> Target {
        Target { stage, percent }
    }

    #[test]
    fn a_hold_survives_any_file_edit() {
        let held = live(t(Stage::Canary, 50.0), Target::LEGACY, Origin::Hold);
        let r = route(Stage::Canary, 10.0);
        assert_eq!(
            file_change(&r, Some(&held)),
            FileChange::UnderHold(t(Stage::Canary, 10.0))
        );
        assert_eq!(
            effective(&r, Some(&held)).target(),
            Target::LEGACY,
            "the proxy runs the row, not the file"
        );
    }

    #[test]
    fn steps_back_apply_and_steps_forward_need_gates() {
        let row = live(t(Stage::Canary, 50.0), t(Stage::Canary, 50.0), Origin::File);
        assert_eq!(
            file_change(&route(Stage::Canary, 10.0), Some(&row)),
            FileChange::Apply(t(Stage::Canary, 10.0))
        );
        assert_eq!(
            file_change(&route(Stage::Migrated, 100.0), Some(&row)),
            FileChange::Forward {
                from: t(Stage::Canary, 50.0),
                to: t(Stage::Migrated, 100.0)
            }
        );
        assert_eq!(
            file_change(&route(Stage::Canary, 50.0), Some(&row)),
            FileChange::Same
        );
    }

    #[test]
    fn a_runtime_change_stands_until_the_file_changes_that_route() {
        let row = live(Target::LEGACY, t(Stage::Canary, 20.0), Origin::Runtime);
        assert_eq!(
            file_change(&route(Stage::Legacy, 0.0), Some(&row)),
            FileChange::Same
        );
        assert_eq!(
            file_change(&route(Stage::Shadow, 0.0), Some(&row)),
            FileChange::Apply(t(Stage::Shadow, 0.0))
        );
    }

    #[test]
    fn a_declaration_held_by_gates_is_tried_again() {
        let waiting = live(t(Stage::Canary, 10.0), t(Stage::Shadow, 0.0), Origin::File);
        assert_eq!(
            file_change(&route(Stage::Canary, 10.0), Some(&waiting)),
            FileChange::Forward {
                from: t(Stage::Shadow, 0.0),
                to: t(Stage::Canary, 10.0)
            }
        );
        assert_eq!(
            file_change(&route(Stage::Shadow, 0.0), None),
            FileChange::Adopt(t(Stage::Shadow, 0.0))
        );
    }
}
