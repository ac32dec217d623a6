//! Transports between the source and the sinks.
//!
//! - embedded: in-process; the pipeline hands batches straight to the sinks
//!   (`pipeline::Target::Embedded`). Durably taken = committed in every sink.
//! - kafka: topics `<topic_prefix>.<schema>.<table>`; the source side
//!   publishes with an idempotent producer (`acks=all`), durably taken =
//!   acknowledged by the broker; sink workers consume as a consumer group
//!   and store each partition's next offset with the rows.

pub mod kafka;
