//! Test support shared by every crate's tests: throw-away PostgreSQL
//! clusters ([`PgCluster`]), a Kafka-protocol broker ([`Broker`], tansu), free loopback ports ([`free_port`]) and real
//! HTTP upstreams on `127.0.0.1:0` ([`TestUpstream`]).

mod pg;
mod serve;
mod tansu;
mod upstream;

pub use pg::PgCluster;
pub use serve::{serve_app, Served};
pub use tansu::Broker;
pub use upstream::{Behaviour, TestUpstream};

/// A port that was free on 127.0.0.1 a moment ago. For programs that must be
/// given a port (the proxy binds its own listeners); servers in the test
/// process itself bind `127.0.0.1:0` instead.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}
