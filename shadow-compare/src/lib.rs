//! strangler-shadow: is the new service answering like the monolith?
//!
//! - [`compare`] diffs two responses (status, headers, body): JSON
//!   structurally with JSON Pointer paths, text line by line (`similar`),
//!   anything else by length and hash; [`Rules`] remove what the user says
//!   does not matter.
//! - [`RouteStats`] aggregates comparisons per route and per field, and the
//!   monolith-vs-monolith (A/A) comparisons that reveal noise, as Diffy does.
//! - [`verdict`] answers "is this endpoint safe to cut over?" with a Wilson
//!   upper bound on the real-mismatch rate.
//! - [`report`] renders Markdown, JSON and one self-contained HTML page.
//!
//! Samples are redacted before they are kept ([`redact`]).

mod diff;
pub mod noise;
pub mod redact;
pub mod report;
mod response;
mod rules;
mod stats;
pub mod verdict;

pub use diff::{compare, Comparison, Difference, Kind};
pub use response::Response;
pub use rules::Rules;
pub use stats::{FieldStats, RouteStats, Sample, Skip, MAX_SAMPLES_PER_FIELD, MAX_SIGNATURES};
