//! Protocol-independent plumbing every session stands on: listeners with a
//! connection limit, TLS on either side, upstream connections with a
//! connect timeout, and one shutdown token that reaches every task.

pub mod listener;
pub mod stream;
pub mod tls;
pub mod upstream;

pub use listener::{Handler, ListenerSettings, serve};
pub use stream::Stream;
pub use upstream::{Upstream, UpstreamError};

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
