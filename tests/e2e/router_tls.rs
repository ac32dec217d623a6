//! The front door's protocols: HTTPS (HTTP/1.1 and HTTP/2 through ALPN) and
//! HTTP/2 without TLS (h2c) are routed exactly as plain HTTP/1.1, and a
//! certificate swapped on disk is served to new connections without
//! dropping the open ones.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};

use crate::support::*;

/// A proxy of the TLS tests, serving `ca`'s certificate: `/orders/{id}`
/// is migrated to `svc`, the rest goes to the monolith; h2c on the plain
/// listener and `[proxy.tls]` on a port of its own.
struct TlsProxy {
    /// The monolith and the service: held, they serve while this lives.
    _upstreams: (TestUpstream, TestUpstream),
    h: Harness,
    p: Proxy,
    /// The TLS listener's port.
    port: u16,
}

async fn tls_proxy(ca: &TestCa) -> TlsProxy {
    let (legacy, svc) = (
        TestUpstream::start("legacy").await,
        TestUpstream::start("svc").await,
    );
    let h = Harness::new();
    write_pair(&h, &ca.server_cert("proxy"));
    let [port] = free_ports();
    let text = h.config_text(&format!(
        r#"{}
[[routes]]
name = "orders"
methods = ["GET"]
path = "/orders/{{id}}"
service = "svc"
stage = "migrated"

[proxy.tls]
listen = "127.0.0.1:{port}"
cert = "proxy.pem"
key = "proxy.key"
"#,
        upstreams(&legacy, &[("svc", &svc)])
    ));
    // HTTP/2 by prior knowledge on the plain listener too.
    let text = text.replacen("threads = 2\n", "threads = 2\nh2c = true\n", 1);
    std::fs::write(h.config_path(), text).expect("config");
    let p = h.start().await;
    TlsProxy {
        _upstreams: (legacy, svc),
        h,
        p,
        port,
    }
}

fn write_pair(h: &Harness, (cert, key): &(String, String)) {
    // Each file replaced whole (write, then rename), as deployment tools do.
    for (name, text) in [("proxy.key", key), ("proxy.pem", cert)] {
        let tmp = h.dir.path().join(format!("{name}.new"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, h.dir.path().join(name)).expect("rename");
    }
}

fn https_client(ca: &TestCa) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA"))
}

/// What the upstream saw and who it was, for one request.
async fn answer(
    req: reqwest::RequestBuilder,
    version: reqwest::Version,
) -> (u16, serde_json::Value) {
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("request: {e:?}"));
    assert_eq!(resp.version(), version, "{resp:?}");
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("json");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_http2_and_h2c_are_routed_exactly_as_http1() {
    let ca = TestCa::new("strangler test CA");
    // Held whole: the upstreams serve while it lives.
    let t = tls_proxy(&ca).await;
    let (p, port) = (&t.p, t.port);
    let tls_base = format!("https://127.0.0.1:{port}");

    use reqwest::Version;
    let clients = [
        ("HTTP/1.1", client(), p.base.clone(), Version::HTTP_11),
        (
            "h2c",
            reqwest::Client::builder()
                .no_proxy()
                .http2_prior_knowledge()
                .build()
                .expect("client"),
            p.base.clone(),
            Version::HTTP_2,
        ),
        (
            "HTTPS HTTP/1.1",
            https_client(&ca).http1_only().build().expect("client"),
            tls_base.clone(),
            Version::HTTP_11,
        ),
        (
            "HTTPS h2 (ALPN)",
            https_client(&ca).build().expect("client"),
            tls_base.clone(),
            Version::HTTP_2,
        ),
    ];
    for (what, c, base, version) in &clients {
        let (status, seen) = answer(c.get(format!("{base}/orders/5?x=1")), *version).await;
        assert_eq!(status, 200, "{what}: {seen}\n{}", p.log_text());
        assert_eq!(seen["upstream"], "svc", "{what}: {seen}");
        assert_eq!(seen["path"], "/orders/5?x=1", "{what}: {seen}");
        assert!(
            seen["headers"]["host"].is_string(),
            "{what}: the upstream got no Host header: {seen}"
        );
        let (status, seen) = answer(
            c.post(format!("{base}/cart/items"))
                .body(vec![b'x'; 70_000]),
            *version,
        )
        .await;
        assert_eq!(status, 200, "{what}: {seen}");
        assert_eq!(seen["upstream"], "legacy", "{what}: {seen}");
        assert_eq!(seen["method"], "POST", "{what}: {seen}");
        assert_eq!(seen["body_len"], 70_000, "{what}: {seen}");
    }
    // Each client's two requests, counted under their routes.
    for (route, target) in [("orders", "svc"), ("default", "legacy")] {
        let series =
            format!(r#"strangler_requests_total{{code="200",route="{route}",target="{target}"}}"#);
        assert_eq!(p.metric_settled(&series).await, 4.0, "{series}");
    }
}

/// A TLS client that trusts only `ca`.
fn tls_connector(ca: &TestCa) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("CA pem"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn handshake(ca: &TestCa, port: u16) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tls_connector(ca).connect(name, tcp).await
}

/// One keep-alive HTTP/1.1 GET on an open connection: the status and the
/// upstream that answered.
async fn get_on(conn: &mut Tls, path: &str) -> (u16, String) {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed in the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = head[9..12].parse().expect("status");
    let upstream = head
        .lines()
        .find_map(|l| l.strip_prefix("x-upstream:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    (status, upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_is_served_to_new_connections_while_open_ones_keep_theirs() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let t = tls_proxy(&old_ca).await;
    let (h, p, port) = (&t.h, &t.p, t.port);

    let mut open = handshake(&old_ca, port)
        .await
        .expect("handshake with the old CA");
    assert_eq!(get_on(&mut open, "/orders/1").await, (200, "svc".into()));
    assert!(
        handshake(&new_ca, port).await.is_err(),
        "the new CA's client accepted the old certificate"
    );

    write_pair(h, &new_ca.server_cert("proxy"));
    let swapped = eventually(Duration::from_secs(10), || async {
        handshake(&new_ca, port).await.is_ok()
    })
    .await;
    assert!(
        swapped.is_some(),
        "the new certificate was not served within 10 s\n{}",
        p.log_text()
    );
    assert!(
        handshake(&old_ca, port).await.is_err(),
        "the old certificate is still served to new connections"
    );
    // The connection opened before the swap keeps working.
    assert_eq!(get_on(&mut open, "/orders/2").await, (200, "svc".into()));
    assert_eq!(get_on(&mut open, "/other").await, (200, "legacy".into()));

    // A broken certificate file is refused; the new certificate keeps serving.
    let errors = r#"strangler_tls_certificate_reloads_total{result="error"}"#;
    let before = p.metric(errors).await;
    std::fs::write(
        h.dir.path().join("proxy.pem"),
        "-----BEGIN CERTIFICATE-----\nnope\n",
    )
    .expect("write");
    let refused = eventually(Duration::from_secs(10), || async {
        p.metric(errors).await > before
    })
    .await;
    assert!(
        refused.is_some(),
        "the broken file was not noticed\n{}",
        p.log_text()
    );
    assert!(p.log_text().contains("TLS certificate not reloaded"));
    let mut conn = handshake(&new_ca, port)
        .await
        .expect("the previous certificate keeps serving");
    assert_eq!(get_on(&mut conn, "/orders/3").await, (200, "svc".into()));

    // SIGHUP reads the files again too.
    write_pair(h, &old_ca.server_cert("proxy"));
    p.signal("HUP");
    let back = eventually(Duration::from_secs(10), || async {
        handshake(&old_ca, port).await.is_ok()
    })
    .await;
    assert!(back.is_some(), "{}", p.log_text());
}

/// An `https://` upstream is reached over TLS, checked against its
/// `ca_file`, for client requests, shadow copies and health checks; one
/// whose certificate does not chain to the file is refused (the request
/// falls back to the monolith), never used unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_checked_against_their_ca_file() {
    let (legacy, svc, rogue) = (
        TestUpstream::start("legacy").await,
        TestUpstream::start("svc").await,
        TestUpstream::start("rogue").await,
    );
    let (ca, other_ca) = (TestCa::new("services CA"), TestCa::new("someone else"));
    let (svc_tls, svc_handshakes) = tls_front(svc.addr(), &ca.server_cert("svc")).await;
    let (rogue_tls, _) = tls_front(rogue.addr(), &other_ca.server_cert("rogue")).await;
    let h = Harness::new();
    std::fs::write(h.dir.path().join("services-ca.pem"), ca.pem()).expect("ca");
    h.write_config(&format!(
        r#"[upstreams.legacy]
url = "{}"

[upstreams.svc]
url = "https://127.0.0.1:{}"
ca_file = "services-ca.pem"
health_path = "/healthz"
health_interval_ms = 100

[upstreams.rogue]
url = "https://127.0.0.1:{}"
ca_file = "services-ca.pem"

[[routes]]
name = "orders"
methods = ["GET"]
path = "/orders/{{id}}"
service = "svc"
stage = "migrated"

[[routes]]
name = "carts"
methods = ["GET"]
path = "/carts/{{id}}"
service = "svc"
stage = "shadow"

[[routes]]
name = "rogue"
methods = ["GET"]
path = "/rogue/{{id}}"
service = "rogue"
stage = "migrated"
"#,
        legacy.url(),
        svc_tls.port(),
        rogue_tls.port()
    ));
    let p = h.start().await;
    let c = client();
    for i in 0..3 {
        assert_eq!(
            get_who(&c, &format!("{}/orders/{i}", p.base), &[]).await,
            "svc"
        );
        assert_eq!(
            get_who(&c, &format!("{}/carts/{i}", p.base), &[]).await,
            "legacy"
        );
    }
    let shadowed = eventually(Duration::from_secs(10), || async {
        svc.shadow_requests() == 3
    })
    .await;
    assert!(
        shadowed.is_some(),
        "shadow copies reaching the TLS service: {}\n{}",
        svc.shadow_requests(),
        p.log_text()
    );
    let healthy = eventually(Duration::from_secs(10), || async {
        p.metric(r#"strangler_upstream_up{upstream="svc"}"#).await == 1.0
    })
    .await;
    assert!(healthy.is_some(), "{}", p.log_text());
    assert!(svc_handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // A certificate from another CA: the monolith answers, the rogue
    // service never sees a request.
    assert_eq!(
        get_who(&c, &format!("{}/rogue/1", p.base), &[]).await,
        "legacy"
    );
    assert_eq!(rogue.requests(), 0);
    assert_eq!(
        p.metric_settled(r#"strangler_fallbacks_total{reason="connect_error",route="rogue"}"#)
            .await,
        1.0
    );
}

/// `[proxy.tls]` without a listener of its own: `proxy.listen` itself
/// speaks TLS, and plain HTTP is not answered there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listen_of_its_own_the_proxy_listener_speaks_tls() {
    let legacy = TestUpstream::start("legacy").await;
    let ca = TestCa::new("strangler test CA");
    let h = Harness::new();
    write_pair(&h, &ca.server_cert("proxy"));
    h.write_config(&format!(
        "{}\n[proxy.tls]\ncert = \"proxy.pem\"\nkey = \"proxy.key\"\n",
        upstreams(&legacy, &[])
    ));
    let p = h.start().await;
    let tls_base = p.base.replace("http://", "https://");
    let c = https_client(&ca).build().expect("client");
    let (status, seen) = answer(c.get(format!("{tls_base}/any")), reqwest::Version::HTTP_2).await;
    assert_eq!((status, seen["upstream"].as_str()), (200, Some("legacy")));
    assert!(
        client()
            .get(format!("{}/any", p.base))
            .send()
            .await
            .is_err(),
        "plain HTTP answered on a TLS listener"
    );
}
