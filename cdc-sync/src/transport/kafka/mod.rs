//! The Kafka transport (rdkafka).
//!
//! Contract: [`KafkaProducer::publish`] returns only when the broker has
//! acknowledged every record (`acks=all`, idempotent producer, so retries
//! never duplicate); only then may the slot move. Delivery to sinks is
//! at-least-once: a sink worker commits the consumer offset after the rows,
//! and the offsets it stores with the rows make replays harmless.

//!
//! `client.rs` how every client connects (brokers, group, client id,
//! `[cdc.transport.properties]` with their secrets); `producer.rs` the source side (idempotent producer, the
//! `strangler.exact` header, `{schema, payload}`); `destination.rs`
//! [`KafkaDestination`] (a resumable snapshot with a state store);
//! `consumer.rs` the sink workers (consumer group, offsets stored with the
//! rows through [`crate::sink::Sink::apply_consumed`]).

mod client;
mod consumer;
mod destination;
mod offsets;
mod producer;
mod shapes;

use rdkafka::error::KafkaError;

use crate::sink::SinkError;

pub use client::{KafkaClient, Refusals, Watch};
pub use consumer::{consume, Consumed};
pub use destination::KafkaDestination;
pub use offsets::{ConsumedRecord, PartitionOffsets};
pub use producer::KafkaProducer;

/// Errors of the Kafka transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker refused or did not acknowledge (retryable: nothing was confirmed).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Records a sink still had to apply are gone from the broker: only a
    /// new snapshot brings the target back (fatal).
    #[error("kafka: {0}")]
    Gap(String),
    /// The brokers refused the credentials or the rights (SASL
    /// authentication, ACLs): waiting does not fix it (fatal).
    #[error("kafka refused this client: {0}")]
    Refused(String),
    /// Where a published snapshot stands could not be read or written.
    #[error("state store: {0}")]
    Store(#[from] strangler_state::StoreError),
    /// A schema change a row needs could not be read yet (retryable).
    #[error("kafka: {0}")]
    Schema(String),
}

impl TransportError {
    /// Whether trying again may succeed: a broker down, a timeout, a
    /// rebalance; not a bad client configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Kafka(KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)) => {
                false
            }
            TransportError::Kafka(_) => true,
            TransportError::Sink(e) => e.is_retryable(),
            TransportError::Gap(_) | TransportError::Refused(_) => false,
            TransportError::Schema(_) => true,
            TransportError::Store(e) => e.is_retryable(),
        }
    }
}

/// The dead-letter topic of a topic prefix.
pub fn dlq_topic(prefix: &str) -> String {
    format!("{prefix}.dlq")
}
