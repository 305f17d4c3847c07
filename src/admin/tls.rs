//! The TCP admin API over TLS: each accepted connection is handshaken and
//! served on its own task, so a slow or silent client never holds up the
//! others, and a handshake that does not finish in time is dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Longest a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `tcp` until `shutdown`.
pub async fn serve(
    tcp: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "admin TCP accept failed");
                continue;
            }
        };
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::info!(%peer, %error, "admin TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "admin TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(router);
            let builder = Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                served = connection => {
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "admin TLS connection ended with an error");
                    }
                }
            }
        });
    }
}
