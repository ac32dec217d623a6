//! What to do about an error CDC cannot ride out: the message `cdc run`
//! prints under a fatal error before it exits 2.

use crate::pipeline::PipelineError;
use crate::run::KafkaRunError;
use crate::sink::SinkError;
use crate::source::SourceError;
use crate::transport::kafka::TransportError;

/// The advice for `e` (a fatal error: not `is_retryable`).
pub fn for_pipeline(e: &PipelineError) -> String {
    match e {
        PipelineError::Source(s) => for_source(s),
        PipelineError::Sink(s) => for_sink(s),
        PipelineError::Transport(t) => for_transport(t),
    }
}

pub fn for_kafka_run(e: &KafkaRunError) -> String {
    match e {
        KafkaRunError::Pipeline(p) => for_pipeline(p),
        KafkaRunError::Transport(t) => for_transport(t),
        KafkaRunError::Task(_) => GENERIC.to_string(),
    }
}

const GENERIC: &str = "fix the cause named above and run `strangler cdc run` again: it resumes from the slot's confirmed position and each sink's stored offsets, so nothing is lost or applied twice";

fn for_source(e: &SourceError) -> String {
    let text = e.to_string();
    let has = |s: &str| text.contains(s);
    if has("replication slot") && (has("does not exist") || has("42704")) {
        "the replication slot is gone (dropped, or invalidated by max_slot_wal_keep_size): the changes since its last confirmed position cannot be read any more. Run `strangler cdc snapshot` to copy the tables again (it creates a new slot), then `strangler cdc verify`".into()
    } else if has("invalidated") || has("55000") {
        "the replication slot was invalidated (it fell behind max_slot_wal_keep_size): the server dropped WAL it still needed. Drop the slot, run `strangler cdc snapshot` to copy the tables again, and raise max_slot_wal_keep_size or watch `strangler_cdc_lag_bytes`".into()
    } else if has("publication") && has("does not exist") {
        "the publication was dropped: `strangler cdc run` creates it again at start, but changes made while it was missing were not published — run it again, then `strangler cdc verify` (and `strangler cdc snapshot` if it differs)".into()
    } else if has("28P01") || has("password authentication failed") || has("28000") {
        "the source refused the credentials: check the URL in the variable `cdc.source.url_env` names, and that the role has REPLICATION".into()
    } else if has("42501") || has("permission denied") || has("must be superuser or replication") {
        "the source role lacks a right it needs: it needs REPLICATION, SELECT on the captured tables, and CREATE on the database for the publication".into()
    } else if has("wal_level") {
        "the source is not set up for logical replication: set wal_level = logical (and max_replication_slots, max_wal_senders ≥ 1) and restart PostgreSQL".into()
    } else {
        GENERIC.into()
    }
}

fn for_sink(e: &SinkError) -> String {
    match e {
        SinkError::Schema { sink, .. } => format!(
            "sink {sink}'s target table does not fit the mapping named above: change the table or `[[cdc.sinks.tables]]` (rename, exclude), then run `strangler cdc run` again; nothing after the last applied position was lost"
        ),
        SinkError::SchemaChange { sink, table, .. } => format!(
            "sink {sink} stopped before the rows of {table}'s new shape (nothing after its last applied position was lost): change the target column by hand to a type that takes the new values (ALTER TABLE … ALTER COLUMN … TYPE …), or exclude the column in `[[cdc.sinks.tables]]`, then run `strangler cdc run` again — the change is checked again and the rows follow"
        ),
        SinkError::MySql { sink, source } => match source {
            mysql_async::Error::Server(e) if e.code == 1045 => format!(
                "sink {sink} refused the credentials: check the URL in the variable its `url_env` names"
            ),
            mysql_async::Error::Server(e) if matches!(e.code, 1142 | 1143 | 1227) => format!(
                "sink {sink}'s MySQL user lacks a privilege named above: grant SELECT, INSERT, UPDATE, DELETE on the mapped tables and CREATE on the database (for strangler_cdc_offsets)"
            ),
            mysql_async::Error::Server(_) => format!(
                "the monolith refused a row from sink {sink} (named above): fix the row in the service or the mapping in `[[cdc.sinks.tables]]`, then run `strangler cdc reverse` again; nothing after the last applied position was lost"
            ),
            _ => GENERIC.into(),
        },
        SinkError::Database { sink, source } => {
            let text = source.to_string();
            if text.contains("28P01") || text.contains("password authentication failed") {
                format!("sink {sink} refused the credentials: check the URL in the variable its `url_env` names")
            } else {
                GENERIC.into()
            }
        }
    }
}

fn for_transport(e: &TransportError) -> String {
    match e {
        TransportError::Sink(s) => for_sink(s),
        TransportError::Kafka(rdkafka::error::KafkaError::AdminOp(_)) => "the broker did not create the topics (it may not allow CreateTopics for this client): create `<topic_prefix>.<schema>.<table>` for every table and `<topic_prefix>.dlq` beforehand — topics that exist are used as they are".into(),
        TransportError::Kafka(_) => "the Kafka client failed: check `[cdc.transport] brokers` (host:port, reachable from here); a broker that requires TLS or SASL closes the connection of a client without them — set `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password` (or `ssl.ca.location`…) in `[cdc.transport.properties]`".into(),
        TransportError::Store(_) => "the state store did not answer (it keeps where a snapshot published to Kafka stands): check `[state] url` and that the database is up".into(),
        TransportError::Refused(_) => "the Kafka brokers refused this client's credentials or rights: check `sasl.mechanism`, `sasl.username` and `sasl.password` (or its `.env`/`.file` source) in `[cdc.transport.properties]`, and the principal's ACLs (describe and write the topics, create them unless they exist; read and join the consumer group)".into(),
        TransportError::Schema(_) => "a row names a schema change the sink worker cannot read from `<topic_prefix>.schema-changes` (the worker tries again): check that the topic exists and keeps its records (no retention limits)".into(),
        TransportError::Gap(_) => "changes this sink had not applied were deleted from the topic (retention shorter than the sink's outage): run `strangler cdc snapshot` to copy the tables again, and keep topics longer than a sink can be down".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_slot_says_to_snapshot_again() {
        let e = PipelineError::Source(SourceError::Invalid(
            "replication slot \"strangler\" does not exist".into(),
        ));
        assert!(for_pipeline(&e).contains("strangler cdc snapshot"));
        let e = PipelineError::Sink(SinkError::Schema {
            sink: "svc".into(),
            message: "no column x".into(),
        });
        assert!(for_pipeline(&e).contains("[[cdc.sinks.tables]]"));
    }
}
