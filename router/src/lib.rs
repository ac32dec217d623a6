//! strangler-router: a Pingora reverse proxy in front of the monolith that
//! shifts traffic per endpoint (method + path template) through the stages
//! legacy → shadow → canary → migrated, with fallback to the monolith,
//! instant rollback, an admin API and Prometheus metrics.
//!
//! - [`table`]: the routing decision, a pure function ([`table::RouteTable::decide`]).
//! - [`runtime`]: the immutable routing snapshot the data path reads.
//! - [`proxy`]: the Pingora `ProxyHttp` impl that wires the decision in.
//! - [`store`]: run-time overrides and the audit log (SQLite or PostgreSQL).
//! - [`admin`], [`control`], [`health`]: the control plane.
//! - [`server::run`]: what `strangler proxy` calls.

pub mod access_log;
pub mod admin;
pub mod control;
pub mod gates;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod shadow;
pub mod table;
pub mod usage;
