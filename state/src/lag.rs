//! CDC positions as the router reads them from the store, for lag-aware
//! comparison and the lag gate.

use std::collections::HashMap;

/// The latest CDC positions known to this proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LagView {
    /// The source's WAL position and when it was read (ms since epoch).
    pub source: Option<(i64, i64)>,
    /// Per source table (`schema.table`): the lowest position applied by
    /// any sink that writes it.
    pub applied: HashMap<String, i64>,
}
