//! The admin API: HTTP/JSON for `ctl`, the live console page, dashboards
//! and Prometheus, on a Unix socket (mode 0600, no token: file permissions
//! are the access control) and optionally on TCP, where every request needs
//! the bearer token.

mod api;
mod auth;
pub mod client;
pub mod console;
pub mod ctl;
mod ctl_clients;
mod ctl_metadata;
mod identity;
mod table;
mod tls;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;
use crate::migration::Controller;
pub use api::{StatusView, TopicView, TransitionBody};

/// The admin listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Another process answers on the socket.
    #[error("admin socket {0} is in use by another running cutover")]
    SocketInUse(PathBuf),
    /// The TLS certificate or key cannot be used.
    #[error("admin.tls: {0}")]
    Tls(String),
    /// Binding or preparing a listener failed.
    #[error("admin: cannot {action} {what}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path or address.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Shared state of the admin handlers.
#[derive(Clone)]
pub struct AdminState {
    /// The migration core.
    pub controller: Arc<Controller>,
    /// The configuration the proxy runs (migrations' protocol, clusters
    /// and listeners, which the core does not know).
    pub config: Arc<crate::config::Config>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

/// Binds the admin listeners (socket first, so a clash fails fast), starts
/// the console's sampler, and serves until `shutdown` is cancelled; returns
/// the serving and sampling tasks.
///
/// # Errors
/// When a listener cannot be bound or the token file cannot be read.
pub async fn start(
    config: &AdminConfig,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, AdminError> {
    let tls_config = match &config.tls {
        Some(tls) => Some(
            crate::proxy::tls::server_config(tls).map_err(|e| AdminError::Tls(e.to_string()))?,
        ),
        None => None,
    };
    // TCP first: tools (and tests) treat the socket's appearance as "admin is ready".
    let tcp = match config.listen {
        Some(addr) => Some((addr, bind_tcp(config, addr).await?)),
        None => None,
    };
    let unix = bind_socket(&config.socket).await?;
    let mut tasks = Vec::new();
    let sampler = Arc::new(console::Sampler::default());
    let routes = |state: &AdminState| {
        api::router(state.clone()).merge(console::router(state.clone(), sampler.clone()))
    };
    let router = routes(&state);
    let token = shutdown.clone();
    let socket_path = config.socket.clone();
    tasks.push(tokio::spawn(async move {
        let router = router.into_make_service_with_connect_info::<identity::SocketPeer>();
        let served = axum::serve(unix, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin socket server stopped");
        }
        let _ = std::fs::remove_file(&socket_path);
    }));
    if let Some((addr, (tcp, secret))) = tcp {
        let token_name = config
            .token_file
            .as_deref()
            .and_then(Path::file_name)
            .map_or_else(|| "admin".into(), |n| n.to_string_lossy().into_owned());
        let router = auth::protect(
            routes(&state),
            secret.trim().to_owned(),
            token_name,
            config.metrics_public,
        );
        let token = shutdown.clone();
        if let Some(tls) = tls_config {
            tasks.push(tokio::spawn(tls::serve(tcp, tls, router, token)));
            tracing::info!(%addr, "admin API listening on TCP with TLS (bearer token required)");
        } else {
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(tcp, router)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "admin TCP server stopped");
                }
            }));
            tracing::warn!(%addr, "admin API listening on TCP without TLS: the bearer token travels in clear (set admin.tls)");
        }
    }
    tasks.push(console::spawn_sampler(state, sampler, shutdown));
    tracing::info!(socket = %config.socket.display(), "admin API listening on Unix socket");
    Ok(tasks)
}

/// Reads the token and binds the TCP admin listener.
async fn bind_tcp(
    config: &AdminConfig,
    addr: std::net::SocketAddr,
) -> Result<(TcpListener, String), AdminError> {
    let token_file = config.token_file.as_deref().unwrap_or(Path::new(""));
    let secret = std::fs::read_to_string(token_file).map_err(|source| AdminError::Io {
        action: "read",
        what: token_file.display().to_string(),
        source,
    })?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Io {
            action: "bind",
            what: addr.to_string(),
            source,
        })?;
    Ok((tcp, secret))
}

/// Binds the socket with mode 0600, replacing a stale file left by a crash
/// but refusing to steal a socket a live process still answers on.
async fn bind_socket(path: &Path) -> Result<UnixListener, AdminError> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(AdminError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(|source| AdminError::Io {
            action: "remove stale socket",
            what: path.display().to_string(),
            source,
        })?;
    }
    let io = |action| {
        move |source| AdminError::Io {
            action,
            what: path.display().to_string(),
            source,
        }
    };
    // Bind inside a fresh 0700 directory, tighten the socket to 0600, then
    // move it into place: no moment exists where others could connect.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = parent.join(format!(".cutover-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io("create private directory for"))?;
    let staged = private.join("sock");
    let bound = UnixListener::bind(&staged)
        .and_then(|listener| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&staged, path)?;
            Ok(listener)
        })
        .map_err(io("bind"));
    let _ = std::fs::remove_dir_all(&private);
    let listener = bound?;
    Ok(listener)
}
