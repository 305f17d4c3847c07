//! Upstreams to single brokers of a migration's two clusters (Kafka
//! partition leaders and coordinators, RocketMQ brokers), made on first
//! use with the cluster's TLS and timeout settings, so a cluster's files
//! are read once per broker rather than once per connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::ClusterConfig;

use super::upstream::Handshake;
use super::{Side, Upstream};

/// The per-broker upstreams of one migration.
#[derive(Debug)]
pub struct BrokerUpstreams {
    migration: Arc<str>,
    clusters: [ClusterConfig; 2],
    connect_timeout: Duration,
    handshakes: [Option<Arc<dyn Handshake>>; 2],
    cache: Mutex<HashMap<(Side, String), Upstream>>,
}

impl BrokerUpstreams {
    /// For `migration` between `source` and `target`.
    #[must_use]
    pub fn new(
        migration: Arc<str>,
        source: &ClusterConfig,
        target: &ClusterConfig,
        connect_timeout: Duration,
    ) -> Self {
        BrokerUpstreams {
            migration,
            clusters: [source.clone(), target.clone()],
            connect_timeout,
            handshakes: [None, None],
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `handshakes` (`[source, target]`) on every new connection to
    /// a broker of that side (Kafka: the proxy's SASL login).
    #[must_use]
    pub fn with_handshakes(mut self, handshakes: [Option<Arc<dyn Handshake>>; 2]) -> Self {
        self.handshakes = handshakes;
        self
    }

    /// The upstream for the broker at `addr` of `side`'s cluster.
    ///
    /// # Errors
    /// When the cluster's TLS files cannot be used.
    pub fn get(&self, side: Side, addr: &str) -> Result<Upstream, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let key = (side, addr.to_owned());
        if let Some(upstream) = cache.get(&key) {
            return Ok(upstream.clone());
        }
        let base = &self.clusters[side as usize];
        let config = ClusterConfig {
            endpoints: vec![addr.to_owned()],
            ..base.clone()
        };
        let upstream = Upstream::new(&self.migration, &config, self.connect_timeout)
            .map_err(|e| e.to_string())?
            .with_handshake(self.handshakes[side as usize].clone());
        cache.insert(key, upstream.clone());
        Ok(upstream)
    }
}
