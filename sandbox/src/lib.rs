//! The sandbox `strangler demo` runs in, and the tests build on: throw-away
//! PostgreSQL clusters ([`PgCluster`]), MariaDB servers with a row-based
//! binlog ([`MariaDb`]) and free loopback ports
//! ([`free_port`], [`free_ports`]). Product code: nothing here is test-only.

mod mariadb;
mod pg;
mod process;

pub use mariadb::MariaDb;
pub use pg::PgCluster;

/// `N` different ports that were free on 127.0.0.1 a moment ago (asked
/// for one by one, the system may hand out the same port twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
        })
        .collect();
    std::array::from_fn(|i| {
        held[i]
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
    })
}

/// A port that was free on 127.0.0.1 a moment ago. For programs that must be
/// given a port (the proxy binds its own listeners); servers in the same
/// process bind `127.0.0.1:0` instead.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}
