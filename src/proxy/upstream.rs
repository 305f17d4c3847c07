//! Connecting to an upstream cluster, with a timeout, optional TLS, the
//! protocol's login ([`Handshake`], e.g. Kafka SASL) on every connection,
//! and an error that names the cluster and the address that failed.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::stream::Stream;
use super::tls::{self, TlsError};
use crate::config::ClusterConfig;
use crate::metrics;

/// Connecting to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed or timed out on every endpoint.
    #[error("cluster \"{cluster}\" is unreachable at {addr}: {reason}")]
    Unreachable {
        /// Cluster name.
        cluster: String,
        /// The last endpoint tried.
        addr: String,
        /// The OS error or "timed out after ...".
        reason: String,
    },
    /// The cluster refused the proxy's login (or the login failed on the
    /// wire); other endpoints are not tried, they would refuse it as well.
    #[error("cluster \"{cluster}\" at {addr}: authentication failed: {reason}")]
    Auth {
        /// Cluster name.
        cluster: String,
        /// Endpoint.
        addr: String,
        /// The cluster's own message, or what went wrong.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error("cluster \"{cluster}\" at {addr}: TLS handshake failed: {source}")]
    Tls {
        /// Cluster name.
        cluster: String,
        /// Endpoint.
        addr: String,
        /// Handshake error.
        source: std::io::Error,
    },
}

impl UpstreamError {
    /// The cluster that failed.
    #[must_use]
    pub fn cluster(&self) -> &str {
        match self {
            UpstreamError::Unreachable { cluster, .. }
            | UpstreamError::Auth { cluster, .. }
            | UpstreamError::Tls { cluster, .. } => cluster,
        }
    }
}

/// A protocol's first exchange on each fresh upstream connection, before
/// anything else is sent on it (Kafka: the SASL login).
#[async_trait::async_trait]
pub trait Handshake: Send + Sync + std::fmt::Debug {
    /// Runs the exchange on `stream`; returns how long the login holds
    /// when the cluster limits it (Kafka KIP-368 session lifetime).
    ///
    /// # Errors
    /// A sentence: the cluster's refusal, or what failed on the wire.
    async fn run(&self, stream: &mut Stream) -> Result<Option<Duration>, String>;
}

/// How to reach one cluster.
#[derive(Clone)]
pub struct Upstream {
    /// Cluster name (for errors and metrics).
    pub cluster: Arc<str>,
    /// Migration name (for metrics).
    pub migration: Arc<str>,
    endpoints: Vec<String>,
    tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    connect_timeout: Duration,
    /// Connections opened, made once so connecting allocates no labels.
    connects: ::metrics::Counter,
    handshake: Option<Arc<dyn Handshake>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("cluster", &self.cluster)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Prepares connections to `cluster` for `migration`.
    ///
    /// # Errors
    /// When the cluster's TLS files cannot be used.
    pub fn new(
        migration: &str,
        cluster: &ClusterConfig,
        connect_timeout: Duration,
    ) -> Result<Self, TlsError> {
        let tls = match &cluster.tls {
            Some(t) => Some((tls::client_config(t)?, t.server_name.clone())),
            None => None,
        };
        // Registered at zero so the series exists before the first failure.
        let _ = metrics::counter!(metrics::UPSTREAM_CONNECT_ERRORS, "migration" => migration.to_owned(), "cluster" => cluster.name.clone());
        let connects = metrics::counter!(metrics::UPSTREAM_CONNECTS, "migration" => migration.to_owned(), "cluster" => cluster.name.clone());
        Ok(Upstream {
            connects,
            cluster: Arc::from(cluster.name.as_str()),
            migration: Arc::from(migration),
            endpoints: cluster.endpoints.clone(),
            tls,
            connect_timeout,
            handshake: None,
        })
    }

    /// The same cluster, with `handshake` run on every new connection.
    #[must_use]
    pub fn with_handshake(mut self, handshake: Option<Arc<dyn Handshake>>) -> Self {
        self.handshake = handshake;
        self
    }

    /// The configured endpoints, in order.
    #[must_use]
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Connects to the first endpoint that answers, in config order.
    ///
    /// # Errors
    /// [`UpstreamError`] naming the cluster and the last address tried.
    pub async fn connect(&self) -> Result<Stream, UpstreamError> {
        self.connect_for_lifetime().await.map(|(stream, _)| stream)
    }

    /// As [`Upstream::connect`], with how long the handshake's login holds
    /// (`None`: for as long as the connection lives).
    ///
    /// # Errors
    /// [`UpstreamError`] naming the cluster and the last address tried.
    pub async fn connect_for_lifetime(&self) -> Result<(Stream, Option<Duration>), UpstreamError> {
        let mut last = None;
        for addr in &self.endpoints {
            match self.connect_one(addr).await {
                Ok(stream) => {
                    self.connects.increment(1);
                    return Ok(stream);
                }
                Err(e @ UpstreamError::Auth { .. }) => {
                    last = Some(e);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let error = last.unwrap_or_else(|| UpstreamError::Unreachable {
            cluster: self.cluster.to_string(),
            addr: "(no endpoints)".into(),
            reason: "the cluster has no endpoints".into(),
        });
        metrics::counter!(metrics::UPSTREAM_CONNECT_ERRORS, "migration" => self.migration.to_string(), "cluster" => self.cluster.to_string()).increment(1);
        tracing::warn!(migration = %self.migration, cluster = %self.cluster, error = %error, "upstream connect failed");
        Err(error)
    }

    async fn connect_one(&self, addr: &str) -> Result<(Stream, Option<Duration>), UpstreamError> {
        let unreachable = |reason: String| UpstreamError::Unreachable {
            cluster: self.cluster.to_string(),
            addr: addr.to_owned(),
            reason,
        };
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable(format!("timed out after {:?}", self.connect_timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut stream = self.secure(addr, tcp).await?;
        let mut lifetime = None;
        if let Some(handshake) = &self.handshake {
            let auth = |reason: String| UpstreamError::Auth {
                cluster: self.cluster.to_string(),
                addr: addr.to_owned(),
                reason,
            };
            lifetime = tokio::time::timeout(self.connect_timeout, handshake.run(&mut stream))
                .await
                .map_err(|_| auth(format!("no answer within {:?}", self.connect_timeout)))?
                .map_err(auth)?;
        }
        Ok((stream, lifetime))
    }

    /// TLS on `tcp` when the cluster asks for it.
    async fn secure(&self, addr: &str, tcp: TcpStream) -> Result<Stream, UpstreamError> {
        let Some((config, server_name)) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let host = server_name
            .clone()
            .unwrap_or_else(|| addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned());
        let tls_error = |source| UpstreamError::Tls {
            cluster: self.cluster.to_string(),
            addr: addr.to_owned(),
            source,
        };
        let name = ServerName::try_from(host)
            .map_err(|e| tls_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let stream = tokio::time::timeout(self.connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                tls_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "handshake timed out",
                ))
            })?
            .map_err(tls_error)?;
        Ok(Stream::TlsClient(Box::new(stream)))
    }
}
