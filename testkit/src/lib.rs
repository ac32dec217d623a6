//! Test support shared by every crate's tests: a Kafka-protocol broker
//! ([`Broker`], tansu), real HTTP upstreams on `127.0.0.1:0`
//! ([`TestUpstream`]), an example's app on a loopback socket
//! ([`serve_app`]); throw-away PostgreSQL clusters ([`PgCluster`]) and free
//! ports ([`free_port`]) come from `strangler-sandbox`, which the demo uses
//! too.

mod serve;
mod tansu;
mod upstream;

pub use serve::{serve_app, Served};
pub use strangler_sandbox::{free_port, free_ports, MariaDb, PgCluster};
pub use tansu::Broker;
pub use upstream::{Behaviour, TestUpstream};
