//! A real Kafka-protocol broker for tests: tansu, memory storage, loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running tansu broker; killed when dropped.
pub struct Broker {
    child: Child,
    port: u16,
}

/// Where scripts/setup installs tansu, or `TANSU_BIN`, or the PATH.
fn tansu_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    let cached = PathBuf::from("/var/cache/strangler/tools/bin/tansu");
    if cached.exists() {
        return Ok(cached);
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(p) = std::env::split_paths(&path)
            .map(|d| d.join("tansu"))
            .find(|p| p.exists())
        {
            return Ok(p);
        }
    }
    bail!("tansu not found: scripts/setup installs it (cargo install tansu --locked --features dynostore,libsql), or set TANSU_BIN")
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    pub fn start() -> Result<Broker> {
        let port = crate::free_port();
        Broker::start_on(port, port)
    }

    /// A broker on `port` that tells clients to connect to `advertised`
    /// (a proxy in front of it, to cut the network to the broker).
    pub fn start_on(port: u16, advertised: u16) -> Result<Broker> {
        Broker::spawn(port, advertised, ("memory://tansu/", None), false)
    }

    fn spawn(
        port: u16,
        advertised: u16,
        (storage, dir): (&str, Option<&std::path::Path>),
        authentication: bool,
    ) -> Result<Broker> {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(tansu_bin()?)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                storage,
            ])
            .args(authentication.then_some("--authentication"))
            .current_dir(dir.unwrap_or(std::path::Path::new("/")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start tansu")?;
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("tansu did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    /// A broker that requires SASL (SCRAM-SHA-512) from every client and
    /// knows `user` with `password`. Users live in a SQLite storage in
    /// `dir` (tansu's memory storage forgets them): the broker is started
    /// once open to create the user, then again requiring authentication.
    pub fn start_with_scram(dir: &std::path::Path, user: &str, password: &str) -> Result<Broker> {
        let port = crate::free_port();
        // tansu reads a SQLite path relative to its working directory.
        let storage = ("sqlite://tansu.db", Some(dir));
        let open = Broker::spawn(port, port, storage, false)?;
        let created = Command::new(tansu_bin()?)
            .args([
                "user",
                "create",
                user,
                password,
                "--mechanism",
                "scram512",
                "--broker",
            ])
            .arg(format!("tcp://127.0.0.1:{port}"))
            .output()
            .context("tansu user create")?;
        if !created.status.success() {
            bail!(
                "tansu user create: {}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
        drop(open);
        Broker::spawn(port, port, storage, true)
    }

    /// `127.0.0.1:PORT`
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
