//! What strangler created in the databases, found and removed: the ground
//! of `strangler doctor` (what exists, what is left over, what WAL a slot
//! holds back) and `strangler cdc teardown` (remove it).
//!
//! ```text
//!  source (monolith)   slot, publication; for each reverse sink: its origin
//!                      and bookkeeping rows (the monolith is its target)
//!  each target         the sink's origins (strangler_<sink>, _2 …) and its
//!                      rows in the bookkeeping tables (the tables once no
//!                      sink has rows left)
//!  each service (rev)  slot and publication strangler_rev_<sink>
//! ```
//!
//! Nothing is removed while a `cdc run` uses it: an active slot or an
//! origin in use is refused with who holds it.

use sqlx::{Connection, PgConnection, Row};

use crate::origin;

/// The bookkeeping tables sinks create in their targets.
pub const BOOKKEEPING: &[&str] = &[
    "strangler_cdc_offsets",
    "strangler_cdc_lane_offsets",
    "strangler_cdc_kafka_offsets",
    "strangler_cdc_chunked_snapshots",
    "strangler_cdc_dead_letters",
    "strangler_cdc_checks",
    "strangler_cdc_source_shapes",
];

/// One database object strangler made (or may have made).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Object {
    /// Where: `source`, `sink <name>`, `service of <name>`.
    pub place: String,
    /// `slot`, `publication`, `origin`, `table`, `rows`.
    pub kind: &'static str,
    pub name: String,
    /// The configuration uses it (`false`: left over).
    pub configured: bool,
    /// Slots: held by a running session.
    pub active: bool,
    /// Slots: WAL retained (current position minus the restart position).
    pub retained_wal_bytes: Option<i64>,
    /// Rows: how many (bookkeeping rows of one sink).
    pub rows: Option<i64>,
    /// Rows: whose they are (the sink, and the slot where the table has one).
    pub sink: Option<String>,
    pub slot: Option<String>,
}

/// A database to look in, and what the configuration expects there.
#[derive(Debug, Clone)]
pub struct Place {
    pub label: String,
    pub url: String,
    /// Slots and publications the configuration uses here.
    pub slots: Vec<String>,
    /// Sinks writing into this database (their origins and rows).
    pub sinks: Vec<String>,
    /// Slots whose bookkeeping rows the sinks here may hold.
    pub sink_slots: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("{place}: {source}")]
    Database { place: String, source: sqlx::Error },
    #[error("{0}")]
    InUse(String),
}

fn db(place: &str) -> impl Fn(sqlx::Error) -> TeardownError + '_ {
    move |source| TeardownError::Database {
        place: place.to_string(),
        source,
    }
}

/// Whether an origin name belongs to one of `sinks` (`strangler_<sink>` or
/// `strangler_<sink>_<n>`).
fn origin_of<'a>(origin: &str, sinks: &'a [String]) -> Option<&'a String> {
    sinks.iter().find(|s| {
        let base = origin::name(s);
        origin == base
            || origin
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Everything of strangler's in `place`: configured objects, and left-overs
/// (slots and publications named `strangler…`, origins `strangler_…`,
/// bookkeeping rows of sinks or slots the configuration does not have).
pub async fn inventory(place: &Place) -> Result<Vec<Object>, TeardownError> {
    let err = db(&place.label);
    let mut conn = PgConnection::connect(&place.url).await.map_err(&err)?;
    let mut out = Vec::new();
    let obj = |kind, name: String, configured| Object {
        place: place.label.clone(),
        kind,
        name,
        configured,
        active: false,
        retained_wal_bytes: None,
        rows: None,
        sink: None,
        slot: None,
    };
    let slots = sqlx::query(
        "SELECT slot_name::text, active, (pg_current_wal_lsn() - restart_lsn)::bigint \
         FROM pg_replication_slots WHERE database = current_database() ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(&err)?;
    for r in slots {
        let name: String = r.try_get(0).map_err(&err)?;
        let configured = place.slots.contains(&name);
        if configured || name.starts_with("strangler") {
            out.push(Object {
                active: r.try_get(1).map_err(&err)?,
                retained_wal_bytes: r.try_get(2).map_err(&err)?,
                ..obj("slot", name, configured)
            });
        }
    }
    let pubs: Vec<String> =
        sqlx::query_scalar("SELECT pubname::text FROM pg_publication ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .map_err(&err)?;
    for name in pubs {
        let configured = place.slots.contains(&name);
        if configured || name.starts_with("strangler") {
            out.push(obj("publication", name, configured));
        }
    }
    let origins: Vec<String> = sqlx::query_scalar(
        "SELECT roname::text FROM pg_replication_origin WHERE roname LIKE 'strangler\\_%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(&err)?;
    for name in origins {
        let configured = origin_of(&name, &place.sinks).is_some();
        out.push(obj("origin", name, configured));
    }
    for table in BOOKKEEPING {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .map_err(&err)?;
        if !exists {
            continue;
        }
        out.push(obj("table", table.to_string(), !place.sinks.is_empty()));
        // Rows per sink (and slot, where the table has one).
        let has_slot: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = 'slot' AND table_schema = current_schema())",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .map_err(&err)?;
        let slot = if has_slot { "slot" } else { "''" };
        let rows = sqlx::query(&format!(
            "SELECT sink, {slot}, count(*) FROM {table} GROUP BY 1, 2 ORDER BY 1, 2"
        ))
        .fetch_all(&mut conn)
        .await
        .map_err(&err)?;
        for r in rows {
            let (sink, slot, n): (String, String, i64) = (
                r.try_get(0).map_err(&err)?,
                r.try_get(1).map_err(&err)?,
                r.try_get(2).map_err(&err)?,
            );
            let configured = place.sinks.contains(&sink)
                && (slot.is_empty() || place.sink_slots.contains(&slot));
            let name = if slot.is_empty() {
                format!("{table}: sink {sink}")
            } else {
                format!("{table}: sink {sink}, slot {slot}")
            };
            out.push(Object {
                rows: Some(n),
                sink: Some(sink),
                slot: (!slot.is_empty()).then_some(slot),
                ..obj("rows", name, configured)
            });
        }
    }
    Ok(out)
}

/// What to remove from `place`: `slots` (with their publications), the
/// origins of `sinks` and their bookkeeping rows of `sink_slots`; with
/// `tables`, the bookkeeping tables left empty afterwards (another
/// migration's rows keep a table).
#[derive(Debug, Clone, Default)]
pub struct Removal {
    pub slots: Vec<String>,
    pub sinks: Vec<String>,
    pub sink_slots: Vec<String>,
    pub tables: bool,
}

/// The objects of `found` that `removal` takes.
pub fn selected<'a>(found: &'a [Object], removal: &Removal) -> Vec<&'a Object> {
    found
        .iter()
        .filter(|o| match o.kind {
            "slot" | "publication" => removal.slots.contains(&o.name),
            "origin" => origin_of(&o.name, &removal.sinks).is_some(),
            "table" => removal.tables,
            "rows" => {
                o.sink.as_ref().is_some_and(|s| removal.sinks.contains(s))
                    && o.slot
                        .as_ref()
                        .is_none_or(|s| removal.sink_slots.contains(s))
            }
            _ => false,
        })
        .collect()
}

/// Who uses `slot` in the database at `url` (a `cdc run` active or
/// standing by for it), if anyone: teardown waits for every one to stop.
pub async fn in_use(url: &str, slot: &str) -> Result<Option<String>, TeardownError> {
    let label = strangler_state::store::redact_url(url);
    let err = db(&label);
    let mut conn = PgConnection::connect(url).await.map_err(&err)?;
    let users: Vec<(String, i32)> = sqlx::query_as(
        "SELECT application_name, pid FROM pg_stat_activity WHERE application_name IN ($1, $2)",
    )
    .bind(crate::run::lease::application_name("active", slot))
    .bind(crate::run::lease::application_name("standby", slot))
    .fetch_all(&mut conn)
    .await
    .map_err(&err)?;
    Ok((!users.is_empty()).then(|| {
        users
            .iter()
            .map(|(name, pid)| format!("{name} (pid {pid})"))
            .collect::<Vec<_>>()
            .join(", ")
    }))
}

/// Removes what `removal` names from `place`, in one transaction where
/// PostgreSQL allows (slots are dropped one by one: they cannot be dropped
/// inside one). Refuses, changing nothing, while a slot is active or an
/// origin is in use.
pub async fn remove(place: &Place, removal: &Removal) -> Result<usize, TeardownError> {
    let err = db(&place.label);
    let found = inventory(place).await?;
    let chosen = selected(&found, removal);
    if let Some(busy) = chosen.iter().find(|o| o.kind == "slot" && o.active) {
        return Err(TeardownError::InUse(format!(
            "{}: slot {} is in use (a `cdc run` is streaming from it): stop every cdc run of this migration first",
            place.label, busy.name
        )));
    }
    let mut conn = PgConnection::connect(&place.url).await.map_err(&err)?;
    let mut removed = 0;
    for o in &chosen {
        match o.kind {
            "slot" => {
                sqlx::query("SELECT pg_drop_replication_slot($1)")
                    .bind(&o.name)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| in_use_or(e, place, &o.name))?;
                removed += 1;
            }
            "publication" => {
                sqlx::query(&format!(
                    "DROP PUBLICATION IF EXISTS \"{}\"",
                    o.name.replace('"', "\"\"")
                ))
                .execute(&mut conn)
                .await
                .map_err(&err)?;
                removed += 1;
            }
            "origin" => {
                sqlx::query("SELECT pg_replication_origin_drop($1)")
                    .bind(&o.name)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| in_use_or(e, place, &o.name))?;
                removed += 1;
            }
            _ => {}
        }
    }
    let mut tx = conn.begin().await.map_err(&err)?;
    for o in chosen.iter().filter(|o| o.kind == "rows") {
        let table = o.name.split(':').next().unwrap_or_default();
        let sql = match o.slot {
            Some(_) => format!("DELETE FROM {table} WHERE sink = $1 AND slot = $2"),
            None => format!("DELETE FROM {table} WHERE sink = $1"),
        };
        let mut q = sqlx::query(&sql).bind(o.sink.clone().unwrap_or_default());
        if let Some(slot) = &o.slot {
            q = q.bind(slot.clone());
        }
        q.execute(&mut *tx).await.map_err(&err)?;
        removed += 1;
    }
    for o in chosen.iter().filter(|o| o.kind == "table") {
        // Only a table nobody else has rows in.
        let empty: bool =
            sqlx::query_scalar(&format!("SELECT NOT EXISTS (SELECT 1 FROM {})", o.name))
                .fetch_one(&mut *tx)
                .await
                .map_err(&err)?;
        if empty {
            sqlx::query(&format!("DROP TABLE IF EXISTS {}", o.name))
                .execute(&mut *tx)
                .await
                .map_err(&err)?;
            removed += 1;
        }
    }
    tx.commit().await.map_err(&err)?;
    Ok(removed)
}

fn in_use_or(e: sqlx::Error, place: &Place, name: &str) -> TeardownError {
    let code = e
        .as_database_error()
        .and_then(|d| d.code().map(|c| c.to_string()));
    if code.as_deref() == Some("55006") {
        TeardownError::InUse(format!(
            "{}: {name} is in use by a running session (a `cdc run`): stop every cdc run of this migration first",
            place.label
        ))
    } else {
        TeardownError::Database {
            place: place.label.clone(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sinks_origins_are_its_own_and_no_one_elses() {
        let sinks = vec!["svc".to_string()];
        assert!(origin_of("strangler_svc", &sinks).is_some());
        assert!(origin_of("strangler_svc_2", &sinks).is_some());
        assert!(origin_of("strangler_svc_x", &sinks).is_none());
        assert!(origin_of("strangler_svcs", &sinks).is_none());
    }
}
