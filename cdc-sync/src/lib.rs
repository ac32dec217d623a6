//! strangler-cdc: keeps each new service's database filled from the
//! monolith's PostgreSQL, and after cut-over the other way round.
//!
//! - [`source`]: logical replication with pgoutput (`pgwire-replication`
//!   for the protocol, [`pgoutput`] our decoder), publication and slot
//!   management, the initial snapshot consistent with the slot.
//! - [`mysql`]: the source when the monolith runs on MySQL or MariaDB
//!   (the row-based binlog, a consistent snapshot).
//! - [`event`]: Debezium's change-event envelope, exactly.
//! - [`sink`]: applies events to a target database through `sqlx` with
//!   table/column mapping, offsets in the same transaction, dead letters,
//!   and a replication origin so reverse sync never loops.
//! - [`pipeline`]: source → sinks (the embedded transport), confirming the
//!   slot only past what every sink has committed.
//! - [`verify`]: chunked hash comparison of source and target after mapping.
//! - [`run`]: running all of it through the faults that pass (reconnect with
//!   backoff); [`remedy`]: what to do about the ones that do not.
//! - [`teardown`]: what strangler made in the databases, listed (`strangler
//!   doctor`) and removed (`strangler cdc teardown`).

pub mod event;
mod incremental;
pub mod lsn;
pub mod metrics;
pub mod mysql;
pub mod origin;
pub mod pgoutput;
pub mod pipeline;
pub mod remedy;
pub mod run;
pub mod sink;
pub mod source;
pub mod status;
pub mod teardown;
pub mod transport;
pub mod types;
pub mod verify;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
