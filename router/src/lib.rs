//! strangler-router
pub mod state;
pub mod table;
