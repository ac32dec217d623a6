//! Real HTTP upstreams for tests, on `127.0.0.1:0`.
//!
//! Every response is JSON naming the upstream and echoing the request:
//! `{"upstream": NAME, "method", "path", "headers": {...}}`, with the header
//! `x-upstream: NAME`. `/slow?ms=N` answers after N ms. `/product/{id}[?pad=N]`
//! answers a product whose `nonce` is random on every answer and whose
//! `price` is off by [`TestUpstream::set_price_delta`] for even ids. The behaviour can be
//! switched at run time, and [`TestUpstream::kill`] closes the listener and
//! every open connection, as a crashed process would.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with the echo body.
    Normal,
    /// This status, with the echo body.
    Status(u16),
}

struct State {
    name: String,
    status: AtomicU16,
    requests: AtomicU64,
    /// TCP connections accepted.
    connections: AtomicU64,
    /// Connections that ended (closed by the client, or broken).
    closed: AtomicU64,
    /// Added to the price of even product ids (`/product/{id}`).
    price_delta: std::sync::atomic::AtomicI64,
    /// Requests that carried `x-strangler-shadow: 1`.
    shadow_requests: AtomicU64,
    /// Body sent, by the request's `x-request-id` (the last 10,000).
    sent: Mutex<std::collections::VecDeque<(String, Bytes)>>,
}

/// A running test upstream; stops when dropped.
pub struct TestUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl TestUpstream {
    /// Starts an upstream called `name` on a free loopback port.
    pub async fn start(name: &str) -> TestUpstream {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on a given address (to bring a killed upstream back on its port).
    pub async fn start_on(name: &str, addr: SocketAddr) -> TestUpstream {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot bind test upstream on {addr}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let state = Arc::new(State {
            name: name.to_string(),
            status: AtomicU16::new(200),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            price_delta: std::sync::atomic::AtomicI64::new(0),
            shadow_requests: AtomicU64::new(0),
            sent: Mutex::new(std::collections::VecDeque::new()),
        });
        let up = TestUpstream {
            addr,
            state,
            server: Mutex::new(None),
        };
        up.serve(listener);
        up
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                state.connections.fetch_add(1, Ordering::Relaxed);
                let state = state.clone();
                conns.spawn(async move {
                    let svc = {
                        let state = state.clone();
                        service_fn(move |req| handle(state.clone(), req))
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    state.closed.fetch_add(1, Ordering::Relaxed);
                });
                // Reap finished connections so the set does not grow.
                while conns.try_join_next().is_some() {}
            }
            // Dropping the JoinSet (on abort) aborts every connection.
        });
        *self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Connections that have ended so far (closed by the client).
    pub fn closed(&self) -> u64 {
        self.state.closed.load(Ordering::Relaxed)
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        let status = match b {
            Behaviour::Normal => 200,
            Behaviour::Status(s) => s,
        };
        self.state.status.store(status, Ordering::Relaxed);
    }

    /// Makes `/product/{id}` answer a price off by `delta` for even ids.
    pub fn set_price_delta(&self, delta: i64) {
        self.state.price_delta.store(delta, Ordering::Relaxed);
    }

    /// Requests received with `x-strangler-shadow: 1`.
    pub fn shadow_requests(&self) -> u64 {
        self.state.shadow_requests.load(Ordering::Relaxed)
    }

    /// The bodies this upstream sent for requests with this `x-request-id`.
    pub fn sent_bodies(&self, request_id: &str) -> Vec<Bytes> {
        let sent = self
            .state
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sent.iter()
            .filter(|(id, _)| id == request_id)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Closes the listener and every connection at once.
    pub fn kill(&self) {
        if let Some(task) = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if parts.uri.path() == "/slow" {
        let ms = parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if parts
        .headers
        .get("x-strangler-shadow")
        .is_some_and(|v| v == "1")
    {
        state.shadow_requests.fetch_add(1, Ordering::Relaxed);
    }
    let status = if parts.uri.path() == "/healthz" {
        200
    } else {
        state.status.load(Ordering::Relaxed)
    };
    let request_id = parts
        .headers
        .get("x-request-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(id) = parts
        .uri
        .path()
        .strip_prefix("/product/")
        .and_then(|i| i.parse::<i64>().ok())
    {
        // A product: `price` differs by `price_delta` for even ids; `nonce` is random on every answer.
        let delta = if id % 2 == 0 {
            state.price_delta.load(Ordering::Relaxed)
        } else {
            0
        };
        let padding = parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("pad="))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        let body = Bytes::from(
            serde_json::json!({"id": id, "name": "Kettle", "price": 100 + delta, "nonce": format!("{:016x}", rand_u64()), "padding": "x".repeat(padding)})
                .to_string(),
        );
        if let Some(id) = request_id {
            let mut sent = state
                .sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sent.push_back((id, body.clone()));
            if sent.len() > 10_000 {
                sent.pop_front();
            }
        }
        let resp = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("content-type", "application/json")
            .header("x-upstream", state.name.as_str())
            .body(Full::new(body))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
        return Ok(resp);
    }
    let echo = serde_json::json!({
        "upstream": state.name,
        "method": parts.method.as_str(),
        "path": parts.uri.to_string(),
        "headers": headers,
        "body_len": body.len(),
    })
    .to_string();
    let resp = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("x-upstream", state.name.as_str())
        .body(Full::new(Bytes::from(echo)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(resp)
}

/// A random number without a dependency: std's randomly keyed hasher.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}
