//! Starting the toolkit as a user would, for end-to-end tests.

#![allow(dead_code)] // each test module uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

mod cut;
mod tls;
pub mod webdriver;

pub use cut::Cuttable;
pub use strangler_testkit::{free_port, free_ports, Behaviour, MariaDb, PgCluster, TestUpstream};
pub use tls::{tls_front, TestCa};

/// The `strangler` binary built for these tests.
pub fn strangler_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strangler")
}

/// A temp dir with a config file and the ports of one proxy.
pub struct Harness {
    pub dir: tempfile::TempDir,
    /// Ports of the proxy's listeners (new ones are picked if another
    /// process takes them before the proxy binds them).
    listen: AtomicU16,
    admin: AtomicU16,
    pub state_url: Option<String>,
}

impl Harness {
    pub fn new() -> Harness {
        let [listen, admin] = free_ports();
        Harness {
            dir: tempfile::Builder::new()
                .prefix("strangler-e2e-")
                .tempdir()
                .expect("temp dir"),
            listen: AtomicU16::new(listen),
            admin: AtomicU16::new(admin),
            state_url: None,
        }
    }

    /// Shares a state store (e.g. PostgreSQL) instead of the default SQLite file.
    pub fn with_state(mut self, url: &str) -> Harness {
        self.state_url = Some(url.to_string());
        self
    }

    /// What `strangler cdc` runs of this harness logged (`cdc.log`).
    pub fn cdc_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cdc.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("strangler.toml")
    }

    /// The full config text: state and proxy sections, then `rest`.
    pub fn config_text(&self, rest: &str) -> String {
        let state = self
            .state_url
            .clone()
            .unwrap_or_else(|| "sqlite://state.db".into());
        format!(
            "[state]\nurl = \"{state}\"\npoll_interval_ms = 100\n\n[proxy]\nlisten = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:{}\"\noverride_header = \"x-strangler-target\"\nthreads = 2\ndrain_timeout_secs = 5\n\n{rest}",
            self.listen.load(Ordering::Relaxed),
            self.admin.load(Ordering::Relaxed)
        )
    }

    /// Writes the config file; returns its path.
    pub fn write_config(&self, rest: &str) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, self.config_text(rest)).expect("write config");
        path
    }

    /// Starts `strangler proxy` on the written config and waits until it serves.
    pub async fn start(&self) -> Proxy {
        self.start_with_env(&[]).await
    }

    /// Starts on exactly the written ports (no new ones when a port is
    /// taken); the proxy's log when it does not start.
    pub async fn start_on_same_ports(&self) -> Result<Proxy, String> {
        let mut p = self.spawn(&[]);
        p.wait_ready().await.map(|()| p)
    }

    /// The ports the proxy listens on: (data, admin).
    pub fn ports(&self) -> (u16, u16) {
        (
            self.listen.load(Ordering::Relaxed),
            self.admin.load(Ordering::Relaxed),
        )
    }

    pub async fn start_with_env(&self, env: &[(&str, &str)]) -> Proxy {
        for _ in 0..4 {
            let mut p = self.spawn(env);
            match p.wait_ready().await {
                Ok(()) => return p,
                Err(log) if log.contains("cannot listen on") => {
                    // A port was taken in between: pick new ones, keep everything else.
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    let text = std::fs::read_to_string(self.config_path()).expect("config");
                    let (old_l, old_a) = (
                        self.listen.load(Ordering::Relaxed),
                        self.admin.load(Ordering::Relaxed),
                    );
                    let [listen, admin] = free_ports();
                    self.listen.store(listen, Ordering::Relaxed);
                    self.admin.store(admin, Ordering::Relaxed);
                    let text = text
                        .replace(
                            &format!("listen = \"127.0.0.1:{old_l}\""),
                            &format!(
                                "listen = \"127.0.0.1:{}\"",
                                self.listen.load(Ordering::Relaxed)
                            ),
                        )
                        .replace(
                            &format!("admin = \"127.0.0.1:{old_a}\""),
                            &format!(
                                "admin = \"127.0.0.1:{}\"",
                                self.admin.load(Ordering::Relaxed)
                            ),
                        );
                    std::fs::write(self.config_path(), text).expect("rewrite config");
                }
                Err(log) => panic!("proxy did not start; its log:\n{log}"),
            }
        }
        panic!("proxy did not start after picking new ports four times")
    }

    fn spawn(&self, env: &[(&str, &str)]) -> Proxy {
        let log = std::fs::File::create(self.dir.path().join("proxy.log")).expect("log file");
        let access = std::fs::File::create(self.dir.path().join("access.log")).expect("access log");
        let child = Command::new(strangler_bin())
            .args(["proxy", "-c"])
            .arg(self.config_path())
            .envs(env.iter().copied())
            .env("STRANGLER_LOG", "info")
            .stdout(Stdio::from(access))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn strangler proxy");
        Proxy {
            child,
            base: format!("http://127.0.0.1:{}", self.listen.load(Ordering::Relaxed)),
            admin: format!("http://127.0.0.1:{}", self.admin.load(Ordering::Relaxed)),
            log: self.dir.path().join("proxy.log"),
            access_log: self.dir.path().join("access.log"),
        }
    }
}

/// A running `strangler proxy`; killed when dropped.
pub struct Proxy {
    pub child: Child,
    /// `http://127.0.0.1:LISTEN`
    pub base: String,
    /// `http://127.0.0.1:ADMIN`
    pub admin: String,
    pub log: PathBuf,
    pub access_log: PathBuf,
}

impl Proxy {
    /// Waits until both listeners answer; `Err(log)` if the proxy exited or never did.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log_text());
            }
            let admin_ok = c
                .get(format!("{}/healthz", self.admin))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            let listen_ok = tokio::net::TcpStream::connect(self.base.trim_start_matches("http://"))
                .await
                .is_ok();
            if admin_ok && listen_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// A counter after the requests already answered were logged: Pingora
    /// runs the logging phase after the response reaches the client, so a
    /// read right after a response can miss it. Reads until two reads 100 ms
    /// apart agree (at most 3 s).
    pub async fn metric_settled(&self, series: &str) -> f64 {
        let mut last = self.metric(series).await;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.metric(series).await;
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// The value of a metric line (exact labels as Prometheus prints them), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metric_value(&text, series)
    }
}

/// The value of `series` (name plus `{labels}` in Prometheus' order) in `text`.
/// The value of the series of `name` whose labels include `labels`, in
/// whatever order the exposition writes them (`None`: no such series).
pub fn series_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let has = |(k, v): &(&str, &str)| set.split(',').any(|p| p == format!("{k}=\"{v}\""));
        labels.iter().all(has).then(|| value.trim().parse().ok())?
    })
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            // A name without labels also matches its series with labels
            // (a CDC process labels every series with its slot and source).
            let rest = match rest.strip_prefix('{') {
                Some(labelled) if !series.contains('{') => labelled.split_once("} ")?.1,
                _ => rest.strip_prefix(' ')?,
            };
            Some(rest)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for tests (no system proxy, keep-alive).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A route's `[upstreams]` block for a legacy upstream and named services.
pub fn upstreams(legacy: &TestUpstream, services: &[(&str, &TestUpstream)]) -> String {
    let mut s = format!("[upstreams.legacy]\nurl = \"{}\"\n\n", legacy.url());
    for (name, up) in services {
        s.push_str(&format!("[upstreams.{name}]\nurl = \"{}\"\n\n", up.url()));
    }
    s
}

/// Sends a request and returns (status, the upstream that answered).
pub async fn who(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = c.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let upstream = resp
        .headers()
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, upstream)
}

/// GET through the proxy; returns the upstream that answered (asserting 2xx).
pub async fn get_who(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> String {
    let (status, up) = who(c, reqwest::Method::GET, url, headers).await;
    assert!((200..300).contains(&status), "GET {url}: status {status}");
    up
}

/// Runs the `strangler` CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = Command::new(strangler_bin())
        .args(args)
        .arg("-c")
        .arg(config)
        .env("STRANGLER_ACTOR", "e2e-test")
        .output()
        .expect("run strangler");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `f` until it returns true or `timeout` passes; returns the time it took.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// A child process killed when dropped: a test that fails (panics) leaves
/// no `strangler cdc` running behind it.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SQLite state store a harness's proxy and commands share.
pub async fn harness_store(h: &Harness) -> strangler_state::StateStore {
    strangler_state::StateStore::connect(&format!(
        "sqlite://{}/state.db?mode=rwc",
        h.dir.path().display()
    ))
    .await
    .expect("store")
}

/// Records a READY shadow verdict for `route` (10,000 matching
/// comparisons), so that only the other gates can hold it back.
pub async fn ready_shadow(store: &strangler_state::StateStore, route: &str) {
    store
        .merge_shadow(
            route,
            &strangler_shadow::RouteStats {
                comparisons: 10_000,
                matches: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("stats");
}

/// The example monolith's database on `pg` (database `shop`), seeded
/// with `seed`: what the example tests put behind the router.
pub async fn seeded_shop(
    pg: &PgCluster,
    products: usize,
    customers: usize,
    orders: usize,
    seed: u64,
) -> sqlx::PgPool {
    let monolith = shop_common::connect(
        &pg.create_database("shop").expect("db"),
        &legacy_monolith::MIGRATOR,
    )
    .await
    .expect("monolith db");
    let args = legacy_monolith::seed::SeedArgs {
        database_url: String::new(),
        products,
        customers,
        orders,
        seed,
        reset: false,
    };
    legacy_monolith::seed::seed(&monolith, &args)
        .await
        .expect("seed");
    monolith
}
