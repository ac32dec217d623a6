//! strangler-router: a Pingora reverse proxy in front of the monolith that
//! shifts traffic per endpoint (method + path template) through the stages
//! legacy → shadow → canary → migrated, with fallback to the monolith,
//! instant rollback, an admin API and Prometheus metrics.
//!
//! - [`table`]: the routing decision, a pure function ([`table::RouteTable::decide`]).
//! - [`runtime`]: the immutable routing snapshot the data path reads.
//! - [`proxy`]: the Pingora `ProxyHttp` impl that wires the decision in.
//! - [`gates`]: promotion gates, and how a file, a set, a rollback (a
//!   hold) or a resume reaches the fleet's route state in the store.
//! - [`admin`], [`control`], [`health`], [`cache`]: the control plane; the
//!   cache keeps the last route state for a start while the store is down.
//! - [`server::run`]: what `strangler proxy` calls.

pub mod access_log;
pub mod admin;
pub mod board;
pub mod cache;
pub mod control;
pub mod gates;
pub mod health;
pub mod inventory;
pub mod limits;
pub mod metrics;
pub mod progress;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod shadow;
pub mod table;
pub mod tls;
pub mod traces;
pub mod usage;
