//! CDC positions as the router reads them from the store, for lag-aware
//! comparison and the lag gate.
//!
//! A position only means something next to another position of the same
//! WAL: every position is stored under its stream — the source cluster's
//! system identifier, the slot and the direction (forward: monolith →
//! services, reverse: services → monolith). Lag is only ever computed
//! inside one stream, so forward and reverse sync running side by side on
//! two clusters never compare each other's LSNs.

use std::fmt;

/// A source position older than this no longer tells how far behind a
/// stream is (its CDC process stopped reporting): gates refuse on it. CDC
/// reports every 500 ms.
pub const STALE_AFTER_MS: i64 = 30_000;

/// Which way a stream carries changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Monolith → services (`strangler cdc run`).
    Forward,
    /// Services → monolith (`strangler cdc reverse`).
    Reverse,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "forward" => Some(Direction::Forward),
            "reverse" => Some(Direction::Reverse),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where positions come from: one slot on one cluster, one direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct StreamKey {
    /// The source cluster's system identifier.
    pub cluster: String,
    pub slot: String,
    pub direction: Direction,
}

/// What one sink has applied of one source table of a stream (the lowest
/// position over the sinks and Kafka partitions that write it).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableApplied {
    /// The table on the stream's source (`schema.table`).
    pub source_table: String,
    /// The table the sink writes.
    pub target_table: String,
    pub applied: i64,
}

/// One stream's positions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamLag {
    pub key: StreamKey,
    /// The source's WAL position and when it was read (ms since epoch);
    /// `None` before the source has reported.
    pub source: Option<(i64, i64)>,
    pub tables: Vec<TableApplied>,
}

/// How far one direction is behind on one of a route's tables.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableLag {
    pub direction: Direction,
    pub cluster: String,
    pub slot: String,
    /// The table on the stream's source.
    pub source_table: String,
    /// Bytes of the source's WAL not yet applied (`None`: the source has
    /// not reported a position).
    pub behind: Option<u64>,
    pub applied: i64,
    /// The source position and when it was read.
    pub source: Option<(i64, i64)>,
}

/// The latest CDC positions known to this proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LagView {
    pub streams: Vec<StreamLag>,
}

impl LagView {
    /// Every stream that carries `table` (a monolith table, `schema.table`):
    /// forward streams read it, reverse streams write it.
    pub fn for_table(&self, table: &str) -> Vec<TableLag> {
        let mut out = Vec::new();
        for s in &self.streams {
            let side = |t: &TableApplied| match s.key.direction {
                Direction::Forward => t.source_table == table,
                Direction::Reverse => t.target_table == table,
            };
            // The slowest sink that writes (or reads) the table.
            let Some(slowest) = s
                .tables
                .iter()
                .filter(|t| side(t))
                .min_by_key(|t| t.applied)
            else {
                continue;
            };
            out.push(TableLag {
                direction: s.key.direction,
                cluster: s.key.cluster.clone(),
                slot: s.key.slot.clone(),
                source_table: slowest.source_table.clone(),
                behind: s
                    .source
                    .map(|(src, _)| u64::try_from(src - slowest.applied).unwrap_or(0)),
                applied: slowest.applied,
                source: s.source,
            });
        }
        out
    }

    /// The highest lag of `direction` over `tables`: `None` when a table
    /// has no position of that direction (or its source none).
    pub fn behind(&self, tables: &[String], direction: Direction) -> Option<u64> {
        let mut max = None::<u64>;
        for t in tables {
            let lags: Vec<TableLag> = self
                .for_table(t)
                .into_iter()
                .filter(|l| l.direction == direction)
                .collect();
            if lags.is_empty() {
                return None;
            }
            for l in lags {
                max = Some(max.unwrap_or(0).max(l.behind?));
            }
        }
        max
    }

    /// Whether any stream of `direction` carries one of `tables`.
    pub fn has(&self, tables: &[String], direction: Direction) -> bool {
        tables
            .iter()
            .any(|t| self.for_table(t).iter().any(|l| l.direction == direction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(
        cluster: &str,
        direction: Direction,
        src: i64,
        tables: &[(&str, &str, i64)],
    ) -> StreamLag {
        StreamLag {
            key: StreamKey {
                cluster: cluster.into(),
                slot: format!("slot_{cluster}"),
                direction,
            },
            source: Some((src, 1)),
            tables: tables
                .iter()
                .map(|(s, t, a)| TableApplied {
                    source_table: s.to_string(),
                    target_table: t.to_string(),
                    applied: *a,
                })
                .collect(),
        }
    }

    #[test]
    fn lag_is_computed_inside_each_stream_and_direction() {
        // Cluster A's WAL is far ahead of cluster B's: comparing across
        // would report a huge reverse lag (or none forward).
        let view = LagView {
            streams: vec![
                stream(
                    "A",
                    Direction::Forward,
                    9_000_000,
                    &[("public.orders", "svc.orders", 9_000_000)],
                ),
                stream(
                    "B",
                    Direction::Reverse,
                    5_000,
                    &[("svc.orders", "public.orders", 4_000)],
                ),
            ],
        };
        let lags = view.for_table("public.orders");
        assert_eq!(lags.len(), 2);
        let t = ["public.orders".to_string()];
        assert_eq!(view.behind(&t, Direction::Forward), Some(0));
        assert_eq!(view.behind(&t, Direction::Reverse), Some(1_000));
        // A table nobody carries has no lag to show.
        assert_eq!(view.behind(&["public.x".into()], Direction::Forward), None);
    }

    #[test]
    fn the_slowest_sink_counts() {
        let view = LagView {
            streams: vec![stream(
                "A",
                Direction::Forward,
                100,
                &[("public.t", "a.t", 90), ("public.t", "b.t", 40)],
            )],
        };
        assert_eq!(
            view.behind(&["public.t".into()], Direction::Forward),
            Some(60)
        );
    }
}
