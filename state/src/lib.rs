//! The state store every part of strangler shares, and the retry policy of
//! database calls.
//!
//! ```text
//!  proxies ──┐  route rows (declared, effective, hold) + hash-chained audit
//!  CLI ──────┼─▶ log, proxies' config revisions, usage by minute, shadow
//!  CDC ──────┘  statistics, CDC positions (source, published, applied)
//!               StateStore: SQLite file, or PostgreSQL for a fleet
//! ```
//!
//! `route_state` is the model of a route's state (declared, effective,
//! held) and how a file edit reaches it; `route_store` the trait every
//! store of it implements (`store`: SQL through sqlx `Any`, `schema.rs`
//! where the dialects differ; `memory`: in memory for unit tests);
//! `audit` the hash-chained audit log; `counts`, `lag` the values read
//! back; `retry` which errors are worth another try and the backoff every
//! caller uses.

pub mod audit;
pub mod counts;
pub mod inventory;
pub mod lag;
pub mod memory;
pub mod retry;
pub mod route_state;
pub mod route_store;
pub mod store;

pub use route_store::RouteStore;
pub use store::{StateStore, StoreError};
