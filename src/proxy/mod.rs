//! Protocol-independent plumbing every session stands on: listeners with a
//! connection limit, TLS on either side, upstream connections with a
//! connect timeout, one shutdown token that reaches every task, and
//! [`recall`]: what a restarted proxy remembers of its own observations.

pub mod brokers;
pub mod listener;
pub mod recall;
pub mod reload;
pub mod side;
pub mod stream;
pub mod throttle;
pub mod tls;
pub mod upstream;

pub use brokers::BrokerUpstreams;
pub use listener::{Handler, ListenerSettings, serve};
pub use side::Side;
pub use stream::Stream;
pub use upstream::{Handshake, Upstream, UpstreamError};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A protocol's listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the client listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// TLS, credential files or cluster references could not be used.
    #[error("{0}")]
    Setup(String),
}

/// A migration's two clusters, with an upstream prepared for each.
pub struct MigrationClusters<'a> {
    /// The source cluster's config.
    pub source: &'a crate::config::ClusterConfig,
    /// The target cluster's config.
    pub target: &'a crate::config::ClusterConfig,
    /// `[source, target]` at their configured endpoints.
    pub upstreams: [Upstream; 2],
}

impl<'a> MigrationClusters<'a> {
    /// Looks up `migration`'s source and target in `config` (validated
    /// configs always have them) and prepares an upstream for each.
    ///
    /// # Errors
    /// [`StartError::Setup`] for a missing cluster or unusable TLS files.
    pub fn of(
        config: &'a crate::config::Config,
        migration: &crate::migration::MigrationHandle,
    ) -> Result<Self, StartError> {
        let cluster = |name: &str| {
            config
                .cluster(name)
                .ok_or_else(|| StartError::Setup(format!("unknown cluster \"{name}\"")))
        };
        let mc = migration_config(config, migration)?;
        let (source, target) = (cluster(&mc.source)?, cluster(&mc.target)?);
        let upstream = |c| {
            Upstream::new(&migration.name, c, config.proxy.connect_timeout)
                .map_err(|e| StartError::Setup(e.to_string()))
        };
        Ok(MigrationClusters {
            source,
            target,
            upstreams: [upstream(source)?, upstream(target)?],
        })
    }
}

/// `migration`'s section of `config` (a validated config has one per
/// registered migration).
///
/// # Errors
/// [`StartError::Setup`] when the config has no migration by that name.
pub fn migration_config<'a>(
    config: &'a crate::config::Config,
    migration: &crate::migration::MigrationHandle,
) -> Result<&'a crate::config::MigrationConfig, StartError> {
    config
        .migration(&migration.name)
        .ok_or_else(|| StartError::Setup(format!("unknown migration \"{}\"", migration.name)))
}

/// The one shutdown signal and the set of tasks it must drain.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Cancelled when the proxy must stop accepting and drain.
    pub token: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, uncancelled shutdown.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops accepting and waits up to `grace` for connections to finish.
    /// Returns whether every connection finished in time.
    pub async fn drain(&self, grace: std::time::Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
