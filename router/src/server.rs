//! Starting the router as `strangler proxy` does.

use std::path::Path;
use std::sync::Mutex;

use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use strangler_config::Config;

use crate::control::Control;
use crate::proxy::RouterProxy;
use crate::runtime::Shared;
use strangler_state::store::StateStore;

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
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
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
    // Read the stored route state before serving the first request.
    let overrides = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let store = StateStore::connect(&config.state.url).await?;
            let o = store.overrides().await;
            store.close().await;
            o
        })?;
    let admin =
        std::net::TcpListener::bind(config.proxy.admin).map_err(|source| StartError::Bind {
            what: "proxy.admin",
            addr: config.proxy.admin,
            source,
        })?;
    admin.set_nonblocking(true)?;
    // Pingora binds the data listener itself and would only log a failure.
    drop(
        std::net::TcpListener::bind(config.proxy.listen).map_err(|source| StartError::Bind {
            what: "proxy.listen",
            addr: config.proxy.listen,
            source,
        })?,
    );

    let listen = config.proxy.listen.to_string();
    let conf = ServerConf {
        threads: config.proxy.threads,
        // SIGTERM: the control service drains and exits before this ends.
        grace_period_seconds: Some(config.proxy.drain_timeout.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let shared = Shared::new(config, overrides);
    tracing::info!(%listen, admin = %shared.config.load().proxy.admin, routes = shared.config.load().routes.len(), "strangler router starting");

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        RouterProxy::new(shared.clone()),
        "strangler-router",
    );
    proxy.add_tcp(&listen);
    let control = background_service(
        "strangler-control",
        Control {
            shared,
            config_path: config_path.to_path_buf(),
            admin_listener: Mutex::new(Some(admin)),
            admin_token,
        },
    );
    server.add_service(proxy);
    server.add_service(control);
    server.run(RunArgs::default());
    Ok(())
}
