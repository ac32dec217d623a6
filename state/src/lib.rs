//! The state store every part of strangler shares, and the retry policy of
//! database calls.
//!
//! ```text
//!  proxies ──┐  overrides + audit log (route set/rollback), usage by minute,
//!  CLI ──────┼─▶ shadow statistics, CDC positions (source, published, applied)
//!  CDC ──────┘        StateStore: SQLite file, or PostgreSQL for a fleet
//! ```
//!
//! `store` is the store itself (sqlx `Any`: one SQL text for both
//! dialects where they agree, `schema.rs` where they do not);
//! `route_state` what a route runs with (file or override); `counts`,
//! `lag` the values read back; `retry` which errors are worth another try
//! and the backoff every caller uses.

pub mod counts;
pub mod lag;
pub mod retry;
pub mod route_state;
pub mod store;

pub use store::{StateStore, StoreError};
