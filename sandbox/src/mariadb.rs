//! Throw-away MariaDB (or MySQL) servers with a row-based binary log: the
//! shape of a MySQL monolith that CDC reads.
//!
//! Each server lives in its own temp dir (data directory made by
//! `mariadb-install-db`) on its own free loopback port, writes its binlog in
//! row format with full row images, and is stopped and removed when
//! dropped — or, should the test process be killed, by a watchdog.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{is_root, path_str, run};

/// A running MariaDB server. `root` logs in over TCP without a password.
pub struct MariaDb {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

/// `mariadbd` and `mariadb-install-db` (Debian's `mariadb-server`), or
/// where `MARIADB_BINDIR` says.
fn tool(name: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("MARIADB_BINDIR")
        .map(|d| vec![PathBuf::from(d)])
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin"].map(PathBuf::from));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .with_context(|| {
            format!("{name} not found: install mariadb-server (scripts/setup does) or set MARIADB_BINDIR")
        })
}

impl MariaDb {
    /// Creates and starts a server; returns once it accepts connections.
    pub fn start() -> Result<MariaDb> {
        let dir = tempfile::Builder::new()
            .prefix("strangler-mariadb-")
            .tempdir()?;
        let data = dir.path().join("data");
        // A temp dir of its own: servers bootstrapping at once in the shared
        // /tmp collide on their temporary tables ("Unknown table
        // 'mysql.tmp_user_sys'", about one install in six).
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let user = if is_root() {
            "root".to_string()
        } else {
            whoami()
        };
        run(Command::new(tool("mariadb-install-db")?)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path_str(&data)?))
            .arg(format!("--tmpdir={}", path_str(&tmp)?))
            .arg(format!("--user={user}"))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]))
        .context("mariadb-install-db")?;
        std::fs::create_dir_all(dir.path().join("binlog"))?;
        // A free port can be taken by another test before the server binds
        // it: try again on another one.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = crate::free_port();
            let mut child = Self::spawn(dir.path(), &user, port)?;
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    let server = MariaDb { dir, child, port };
                    server.watchdog()?;
                    return Ok(server);
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = tail(&dir.path().join("error.log"), 30);
                    if attempt < 5 && log.contains("Bind on TCP/IP port") {
                        continue;
                    }
                    return Err(e)
                        .with_context(|| format!("MariaDB did not start; its log:\n{log}"));
                }
            }
        }
    }

    fn spawn(dir: &Path, user: &str, port: u16) -> Result<Child> {
        let p = |name: &str| -> Result<String> { Ok(path_str(&dir.join(name))?.to_string()) };
        Command::new(tool("mariadbd")?)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", p("data")?))
            .arg(format!("--tmpdir={}", p("tmp")?))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", p("mysqld.sock")?))
            .arg(format!("--pid-file={}", p("mysqld.pid")?))
            .arg(format!("--log-error={}", p("error.log")?))
            .arg(format!("--log-bin={}", p("binlog/mysql-bin")?))
            .arg(format!("--user={user}"))
            .args([
                "--server-id=1",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_bin",
                "--default-time-zone=+00:00",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start mariadbd")
    }

    /// A detached process that stops the server and removes its folder
    /// once this process is gone, however it ended.
    fn watchdog(&self) -> Result<()> {
        let dir = path_str(self.dir.path())?.to_string();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             kill -9 {server} 2>/dev/null; rm -rf '{dir}'",
            pid = std::process::id(),
            server = self.child.id()
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the server's watchdog")?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` as `root`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.sql("mysql", &format!("CREATE DATABASE `{name}`"))?;
        Ok(self.url(name))
    }

    /// Runs SQL with the `mariadb` client and returns its output (tab
    /// separated, no column names).
    pub fn sql(&self, db: &str, sql: &str) -> Result<String> {
        client(self.port, db, sql)
    }

    /// The last `n` lines of the server's error log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.dir.path().join("error.log"), n)
    }
}

fn client(port: u16, db: &str, sql: &str) -> Result<String> {
    let out = run(Command::new(tool("mariadb")?)
        .args(["--no-defaults", "-N", "-B", "-h", "127.0.0.1", "-u", "root"])
        .arg(format!("--port={port}"))
        .args(["-D", db, "-e", sql]))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_ready(child: &mut Child, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("mariadbd exited ({status})");
        }
        if client(port, "mysql", "SELECT 1").is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("mariadbd did not accept connections within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(log: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "mysql".into())
}
