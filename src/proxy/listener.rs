//! Accept loop shared by every protocol: a permit is taken *before* accept
//! (so at the limit new clients wait in the kernel backlog instead of
//! costing memory), TLS is negotiated within a deadline, and each
//! connection runs as a tracked task that sees the shutdown token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Shutdown;
use super::stream::Stream;
use crate::metrics;

/// A protocol's per-connection entry point.
pub trait Handler: Send + Sync + 'static {
    /// Serves one client until it leaves, fails, or `shutdown` asks it to drain.
    fn handle(
        self: Arc<Self>,
        client: Stream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// Limits of one listener.
#[derive(Clone)]
pub struct ListenerSettings {
    /// Migration name, for metrics and logs.
    pub migration: Arc<str>,
    /// Open connections allowed at once.
    pub max_connections: usize,
    /// Deadline for a client TLS handshake.
    pub handshake_timeout: Duration,
    /// TLS offered to clients.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ListenerSettings {
    /// The settings of `migration`'s listeners from the proxy-wide limits
    /// and the migration's client TLS.
    ///
    /// # Errors
    /// [`super::StartError::Setup`] when the TLS files cannot be used.
    pub fn for_migration(
        config: &crate::config::Config,
        migration: &Arc<str>,
        tls: Option<&crate::config::ServerTlsConfig>,
    ) -> Result<Self, super::StartError> {
        Ok(ListenerSettings {
            migration: migration.clone(),
            max_connections: config.proxy.max_connections,
            handshake_timeout: config.proxy.handshake_timeout,
            tls: match tls {
                Some(t) => Some(
                    super::tls::server_config(t)
                        .map_err(|e| super::StartError::Setup(e.to_string()))?,
                ),
                None => None,
            },
        })
    }
}

/// Pending connections the kernel queues before the proxy accepts them.
/// tokio's default (1024) overflows when thousands of clients reconnect at
/// once after a deploy, and each overflow costs a client a 1 s SYN retry;
/// the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a client listener with [`LISTEN_BACKLOG`].
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Pause after an accept error such as EMFILE, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts until `shutdown` is cancelled.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    settings: ListenerSettings,
    handler: Arc<H>,
    shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let migration = settings.migration.to_string();
    loop {
        let permit = tokio::select! {
            () = shutdown.token.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = shutdown.token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(migration, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        metrics::counter!(metrics::CONNECTIONS_ACCEPTED, "migration" => migration.clone())
            .increment(1);
        let handler = handler.clone();
        let settings = settings.clone();
        let token = shutdown.token.clone();
        shutdown.tracker.spawn(async move {
            let open = metrics::gauge!(metrics::CONNECTIONS_OPEN, "migration" => settings.migration.to_string());
            open.increment(1.0);
            if let Some(client) = handshake(tcp, peer, &settings).await {
                handler.handle(client, peer, token).await;
            }
            open.decrement(1.0);
            drop(permit);
        });
    }
}

async fn handshake(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    settings: &ListenerSettings,
) -> Option<Stream> {
    let Some(config) = &settings.tls else {
        return Some(Stream::Plain(tcp));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
    match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(Stream::TlsServer(Box::new(stream))),
        Ok(Err(e)) if super::tls::is_client_certificate_refusal(&e) => {
            tracing::warn!(migration = %settings.migration, %peer, error = %e, "client certificate refused (mutual TLS)");
            metrics::counter!(metrics::REQUEST_ERRORS, "migration" => settings.migration.to_string(), "cluster" => "client", "kind" => "auth")
                .increment(1);
            None
        }
        Ok(Err(e)) => {
            tracing::info!(migration = %settings.migration, %peer, error = %e, "client TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(migration = %settings.migration, %peer, "client TLS handshake timed out");
            None
        }
    }
}
