//! Throw-away PostgreSQL clusters with `wal_level = logical`.
//!
//! Each cluster lives in its own temp dir on its own free port, runs as the
//! `postgres` user when the tests run as root (`initdb` refuses root), and is
//! stopped and removed when dropped.

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{Context, Result};

use crate::process::{is_root, path_str, run};

/// A running PostgreSQL cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`.
fn find_bindir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates.reverse();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .context("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql (scripts/setup does) or set PG_BINDIR")
}

impl PgCluster {
    /// Creates and starts a cluster; returns once it accepts connections.
    pub fn start() -> Result<PgCluster> {
        let bin = find_bindir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("strangler-pg-").tempdir()?;
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = cluster.data_dir();
        cluster.run_pg(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        let log = cluster.dir.path().join("postgres.log");
        // A free port can be taken by another test before the server binds
        // it: try again on another one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.port = crate::free_port();
            let _ = std::fs::remove_file(&log);
            let started = cluster.pg_ctl_start();
            match started {
                Ok(_) => break,
                Err(e) => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if attempt < 5 && text.contains("could not bind") {
                        continue;
                    }
                    return Err(e)
                        .with_context(|| format!("PostgreSQL did not start; its log:\n{text}"));
                }
            }
        }
        cluster.watchdog()?;
        Ok(cluster)
    }

    /// A detached process that stops the cluster and removes its folder
    /// once this test process is gone, however it ended (a killed test
    /// never runs `Drop`).
    fn watchdog(&self) -> Result<()> {
        let data = path_str(&self.data_dir())?.to_string();
        let dir = path_str(self.dir.path())?.to_string();
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if self.as_postgres {
            format!(
                "runuser -u postgres -- {} -D '{data}' -m immediate -w stop",
                pg_ctl.display()
            )
        } else {
            format!("{} -D '{data}' -m immediate -w stop", pg_ctl.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             if [ -d '{data}' ]; then {stop} >/dev/null 2>&1; rm -rf '{dir}'; fi",
            pid = std::process::id()
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start the cluster's watchdog")?;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(self.dir.path());
        run(&mut cmd)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn pg_ctl_start(&self) -> Result<Output> {
        let opts = format!(
            "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=20 \
             -c max_wal_senders=20 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            port = self.port,
            sock = path_str(self.dir.path())?
        );
        let (data, log) = (self.data_dir(), self.dir.path().join("postgres.log"));
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown: sessions are ended), keeping its data.
    pub fn stop(&self) -> Result<()> {
        let data = self.data_dir();
        self.run_pg(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "fast", "-w", "stop"],
        )?;
        Ok(())
    }

    /// `pg_ctl restart -m fast`: connections are cut, the server comes
    /// back on the same port with the same options.
    pub fn restart(&self) -> Result<()> {
        let (data, log) = (self.data_dir(), self.dir.path().join("postgres.log"));
        // With its log file: a server writing to pg_ctl's pipe would keep
        // the pipe (and this call) open for its whole life.
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        )
        .with_context(|| format!("its log ends:\n{}", self.log_tail(40)))?;
        Ok(())
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(n).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&self) -> Result<()> {
        self.pg_ctl_start().map(|_| ())
    }

    /// URL of database `db` as the superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(name))
    }

    /// Runs SQL with `psql` and returns its output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = run(Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        if let Some(d) = data.to_str() {
            let _ = self.run_pg("pg_ctl", &["-D", d, "-m", "immediate", "-w", "stop"]);
        }
    }
}
