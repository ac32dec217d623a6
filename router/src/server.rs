//! Starting the router as `strangler proxy` does.

use std::path::Path;
use std::sync::{Arc, Mutex};

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ALPN;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use strangler_config::Config;

use crate::control::Control;
use crate::proxy::RouterProxy;
use crate::runtime::Shared;
use crate::tls::ServedCertificate;
use strangler_state::route_state::LiveRoute;
use strangler_state::store::StateStore;
use strangler_state::RouteStore;

/// How long a starting proxy waits for the store before using its cache.
const START_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] strangler_config::ConfigErrors),
    #[error("proxy.admin_token_env names {0}, which is not set (or empty): set it, or remove the key to run the admin API without a token")]
    MissingToken(String),
    #[error(transparent)]
    Store(#[from] strangler_state::store::StoreError),
    #[error("{0}")]
    Tokens(String),
    #[error("{0}")]
    StateUrl(String),
    #[error("proxy.admin is {0}, beyond loopback, and no admin credential is configured: anyone who reaches it could move traffic. Set proxy.admin_tokens_file, proxy.admin_token_env or proxy.oidc_jwks_url, or proxy.admin_insecure = true to allow it")]
    InsecureAdmin(std::net::SocketAddr),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("proxy.tls: {0}")]
    Certificate(String),
    #[error("{0}")]
    Tracing(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the router until SIGTERM (drain, then exit) or SIGINT (at once).
pub fn run(config_path: &Path) -> Result<(), StartError> {
    let config = Config::load(config_path)?;
    let admin_token = match &config.proxy.admin_token_env {
        Some(var) => match std::env::var(var) {
            Ok(t) if !t.is_empty() => Some(t),
            _ => return Err(StartError::MissingToken(var.clone())),
        },
        None => None,
    };
    let credentials = crate::admin::auth::Credentials::load(&config.proxy, admin_token.as_deref())
        .map_err(StartError::Tokens)?;
    // Read the fleet's route state before serving the first request; the
    // local cache when the store cannot be reached.
    let (live, degraded) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(initial_state(&config))?;
    if credentials.is_none()
        && !config.proxy.admin.ip().is_loopback()
        && !config.proxy.admin_insecure
    {
        return Err(StartError::InsecureAdmin(config.proxy.admin));
    }
    let admin = bind(config.proxy.admin).map_err(|source| StartError::Bind {
        what: "proxy.admin",
        addr: config.proxy.admin,
        source,
    })?;
    // Pingora binds the data listener itself (with SO_REUSEADDR) and would
    // only log a failure: check it the same way first.
    drop(
        bind(config.proxy.listen).map_err(|source| StartError::Bind {
            what: "proxy.listen",
            addr: config.proxy.listen,
            source,
        })?,
    );
    let tls = match &config.proxy.tls {
        Some(tls) => {
            if let Some(addr) = tls.listen {
                drop(bind(addr).map_err(|source| StartError::Bind {
                    what: "proxy.tls.listen",
                    addr,
                    source,
                })?);
            }
            let served = ServedCertificate::load(&tls.cert_file, &tls.key_file)
                .map_err(StartError::Certificate)?;
            Some((tls.clone(), Arc::new(served)))
        }
        None => None,
    };
    let h2c = config.proxy.h2c;

    let listen = config.proxy.listen.to_string();
    let conf = ServerConf {
        threads: config.proxy.threads,
        // SIGTERM: the control service drains and exits before this ends.
        grace_period_seconds: Some(config.proxy.drain_timeout.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let traces = config
        .telemetry
        .as_ref()
        .map(crate::traces::Traces::start)
        .transpose()
        .map_err(StartError::Tracing)?;
    let shared = Shared::new(config, live);
    if let Some(traces) = traces {
        let _ = shared.traces.set(traces);
    }
    shared.set_degraded(degraded);
    tracing::info!(%listen, admin = %shared.config.load().proxy.admin, routes = shared.config.load().routes.len(), "strangler router starting");

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        RouterProxy::new(shared.clone()),
        crate::shadow::cpu::SERVICE_NAME,
    );
    // `[proxy.tls]` without a listen of its own: proxy.listen speaks TLS.
    let tls_only = tls.as_ref().is_some_and(|(t, _)| t.listen.is_none());
    if !tls_only {
        proxy.add_tcp(&listen);
    }
    if h2c {
        if let Some(app) = proxy.app_logic_mut() {
            let mut options = HttpServerOptions::default();
            options.h2c = true;
            app.server_options = Some(options);
        }
    }
    if let Some((tls, served)) = &tls {
        let mut settings = TlsSettings::intermediate("", "")
            .map_err(|e| StartError::Certificate(e.to_string()))?;
        settings.set_cert_resolver(served.clone());
        if tls.http2 {
            settings.enable_h2();
        } else {
            settings.set_alpn(ALPN::H1);
        }
        let addr = tls.listen.map_or_else(|| listen.clone(), |a| a.to_string());
        proxy.add_tls_with_settings(&addr, None, settings);
    }
    let control = background_service(
        "strangler-control",
        Control {
            shared,
            config_path: config_path.to_path_buf(),
            admin_listener: Mutex::new(Some(admin)),
            credentials_slot: Mutex::new(credentials),
            certificate: tls.map(|(_, served)| served),
        },
    );
    server.add_service(proxy);
    server.add_service(control);
    server.run(RunArgs::default());
    Ok(())
}

/// The route rows to start with, and why the proxy is degraded if it is.
async fn initial_state(config: &Config) -> Result<(Vec<LiveRoute>, Option<String>), StartError> {
    let store = StateStore::lazy(config.state.store_url().map_err(StartError::StateUrl)?)?;
    let cache_file = &config.state.cache_file;
    let read = tokio::time::timeout(START_STORE_TIMEOUT, store.routes()).await;
    store.close().await;
    let error = match read {
        Ok(Ok(rows)) => {
            if let Err(e) = crate::cache::write(cache_file, &rows) {
                tracing::warn!(file = %cache_file.display(), error = %e, "cannot write the route-state cache");
            }
            return Ok((rows, None));
        }
        Ok(Err(e)) if !e.is_retryable() => return Err(e.into()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", START_STORE_TIMEOUT.as_secs()),
    };
    match crate::cache::read(cache_file) {
        Ok((rows, saved_at_ms)) => {
            let why = format!(
                "state store unreachable ({error}); serving the route state cached at {} ({} s old) until it answers",
                cache_file.display(),
                (strangler_state::store::now_ms() - saved_at_ms) / 1000
            );
            tracing::error!("{why}");
            Ok((rows, Some(why)))
        }
        Err(cache) => {
            let why = format!(
                "state store unreachable ({error}) and no route-state cache ({cache}); serving the stages the file declares until the store answers"
            );
            tracing::error!("{why}");
            Ok((Vec::new(), Some(why)))
        }
    }
}

/// A listening socket with `SO_REUSEADDR`, so a restart binds at once even
/// while connections of the previous process sit in TIME_WAIT (as nginx
/// and Envoy do).
fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
