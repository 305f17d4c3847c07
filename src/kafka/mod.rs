//! Kafka migrations, `source`/`dual_read` traffic path: a bootstrap
//! listener at the migration's `listen`, one listener ("door") per source
//! broker, and per client connection one paired upstream connection whose
//! frames pass through untouched except the responses that name brokers
//! (rewritten to the proxy's doors) and ApiVersions (intersected with what
//! the proxy implements). Topics seen in Metadata responses that match the
//! migration's patterns are registered durably so `ctl` can move them.
//!
//! - [`brokers`]: node id ↔ door port, the one place virtual brokers replace;
//! - [`versions`]: the API versions offered and the admission check;
//! - [`rewrite`]: pure response rewriting;
//! - `session`: the per-connection pumps;
//! - [`probe`]: the proxy's own one-shot requests;
//! - [`driver`]: readiness checks for `ctl`.

pub mod brokers;
pub mod driver;
pub mod observe;
pub mod probe;
pub mod rewrite;
mod session;
mod topics;
pub mod versions;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, Config};
use crate::metrics;
use crate::migration::pattern::Pattern;
use crate::migration::store::StateStore;
use crate::migration::{Controller, MigrationHandle, TopicHandle, TopicRecord};
use crate::proxy::{Handler, ListenerSettings, Shutdown, StartError, Stream, Upstream, tls};
use brokers::{Assignment, BrokerError, BrokerMap};

/// First pause between start-up broker probes while the source is down;
/// doubled up to [`PROBE_BACKOFF_MAX`]. Clients meanwhile get doors lazily
/// from the Metadata they fetch through the bootstrap listener.
const PROBE_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Which listener a connection arrived at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Door {
    /// The migration's `listen`: forwards to the source's configured endpoints.
    Bootstrap,
    /// A broker's door: forwards to that source broker.
    Broker(i32),
}

/// Everything the sessions of one Kafka migration share.
pub(crate) struct Shared {
    pub migration: Arc<MigrationHandle>,
    store: Arc<dyn StateStore>,
    patterns: Vec<Pattern>,
    /// The source at its configured endpoints.
    pub bootstrap: Upstream,
    /// The target at its configured endpoints (checks only, for now).
    pub target: Upstream,
    source_config: ClusterConfig,
    target_config: ClusterConfig,
    /// Groups, commits and produce counts seen in the proxy's own traffic.
    pub observed: observe::Observed,
    brokers: Mutex<BrokerMap>,
    /// Upstreams per broker address, so TLS files are read once per broker.
    broker_upstreams: Mutex<HashMap<String, Upstream>>,
    pub advertised_host: String,
    listen: SocketAddr,
    pub max_frame: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    settings: ListenerSettings,
    shutdown: Shutdown,
}

impl Shared {
    /// The port advertised for `node_id` at `host:port`, opening its door's
    /// listener first if the node is new.
    ///
    /// # Errors
    /// [`BrokerError`] when the reserved ports are used up or the listener
    /// cannot be bound.
    pub fn door_port(
        self: &Arc<Self>,
        node_id: i32,
        host: &str,
        port: i32,
    ) -> Result<u16, BrokerError> {
        let upstream = format!("{host}:{port}");
        let mut map = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        let assigned = map.assign(node_id, &upstream)?;
        let Assignment::New(door) = assigned else {
            return Ok(assigned.port());
        };
        let addr = SocketAddr::new(self.listen.ip(), door);
        match crate::proxy::listener::bind(addr) {
            Ok(listener) => {
                tracing::info!(
                    migration = %self.migration.name, node_id, %upstream, %addr,
                    "kafka broker door open"
                );
                let handler = Arc::new(KafkaHandler {
                    shared: self.clone(),
                    door: Door::Broker(node_id),
                });
                tokio::spawn(crate::proxy::serve(
                    listener,
                    self.settings.clone(),
                    handler,
                    self.shutdown.clone(),
                ));
                Ok(door)
            }
            Err(source) => {
                map.remove(node_id);
                Err(BrokerError::Bind {
                    node_id,
                    port: door,
                    source,
                })
            }
        }
    }

    /// The upstream a connection on `door` pairs with.
    pub fn upstream_for(&self, door: Door) -> Result<Upstream, String> {
        let Door::Broker(node_id) = door else {
            return Ok(self.bootstrap.clone());
        };
        let addr = self
            .brokers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .door(node_id)
            .map(|d| d.upstream.clone())
            .ok_or_else(|| format!("broker {node_id} has no known address"))?;
        let mut cache = self
            .broker_upstreams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(upstream) = cache.get(&addr) {
            return Ok(upstream.clone());
        }
        let config = ClusterConfig {
            endpoints: vec![addr.clone()],
            ..self.source_config.clone()
        };
        let upstream = Upstream::new(&self.migration.name, &config, self.connect_timeout)
            .map_err(|e| e.to_string())?;
        cache.insert(addr, upstream.clone());
        Ok(upstream)
    }

    /// An upstream for one `host:port` of the target cluster (its
    /// controller, for CreateTopics), with the target's TLS settings.
    pub fn target_at(&self, addr: &str) -> Result<Upstream, String> {
        let config = ClusterConfig {
            endpoints: vec![addr.to_owned()],
            ..self.target_config.clone()
        };
        Upstream::new(&self.migration.name, &config, self.connect_timeout)
            .map_err(|e| e.to_string())
    }

    /// The upstream of source broker `node_id`, else the bootstrap one.
    pub fn source_broker(&self, node_id: i32) -> Upstream {
        self.upstream_for(Door::Broker(node_id))
            .unwrap_or_else(|_| self.bootstrap.clone())
    }

    /// Registers the topics among `names` that match the migration's
    /// patterns and are not known yet: durably first (the store keeps an
    /// existing record), then in the live registry, so `ctl` can move them.
    pub async fn discover(&self, names: &[String]) {
        for name in names {
            if self.migration.topic(name).is_some()
                || !self.patterns.iter().any(|p| p.matches(name.as_bytes()))
            {
                continue;
            }
            let initial = TopicRecord::initial(self.migration.config.initial_state);
            match self
                .store
                .register(&self.migration.name, name, initial)
                .await
            {
                Ok(record) => {
                    let handle = self.migration.insert_discovered(TopicHandle::new(
                        self.migration.name.clone(),
                        Arc::from(name.as_str()),
                        record.state,
                        record.epoch,
                    ));
                    metrics::publish_topic_state(&handle);
                    metrics::register_topic(&handle);
                    tracing::info!(
                        migration = %self.migration.name, topic = %name, state = %record.state,
                        "kafka topic discovered"
                    );
                }
                Err(e) => tracing::warn!(
                    migration = %self.migration.name, topic = %name, error = %e,
                    "could not persist a discovered topic; it stays unlisted until seen again"
                ),
            }
        }
    }
}

struct KafkaHandler {
    shared: Arc<Shared>,
    door: Door,
}

impl Handler for KafkaHandler {
    fn handle(
        self: Arc<Self>,
        client: Stream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        session::run(self.shared.clone(), self.door, client, peer, shutdown).boxed()
    }
}

/// Starts the migration's bootstrap listener, learns the source's brokers
/// (opening a door per broker) and installs the Kafka driver.
///
/// A source that is down at start-up does not stop the proxy: the probe is
/// retried in the background, and doors also open lazily from the Metadata
/// clients fetch.
///
/// # Errors
/// When the bootstrap listener cannot bind or TLS files cannot be used.
pub async fn start(
    config: &Config,
    migration: Arc<MigrationHandle>,
    controller: Arc<Controller>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let shared = build_shared(config, &migration, &controller, &shutdown)?;
    migration.set_driver(Arc::new(driver::KafkaDriver::new(shared.clone())));
    metrics::register_listener(&migration.name);
    let listen = migration.config.listen;
    let listener = crate::proxy::listener::bind(listen).map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    if !learn_brokers(&shared).await {
        let shared = shared.clone();
        let token = shutdown.token.clone();
        tokio::spawn(async move {
            let mut backoff = PROBE_BACKOFF_FIRST;
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                if learn_brokers(&shared).await {
                    return;
                }
                backoff = (backoff * 2).min(PROBE_BACKOFF_MAX);
            }
        });
    }
    tracing::info!(
        migration = %migration.name, %listen, advertised_host = %shared.advertised_host,
        "kafka bootstrap listener ready"
    );
    tokio::spawn(crate::proxy::serve(
        listener,
        shared.settings.clone(),
        Arc::new(KafkaHandler {
            shared,
            door: Door::Bootstrap,
        }),
        shutdown,
    ));
    Ok(())
}

/// One start-up probe of the source's brokers; opens a door for each.
/// Returns whether the source answered.
async fn learn_brokers(shared: &Arc<Shared>) -> bool {
    match probe::brokers(&shared.bootstrap, shared.connect_timeout, shared.max_frame).await {
        Ok(brokers) => {
            for (node_id, addr) in brokers {
                let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
                if let Err(e) = shared.door_port(node_id, host, port.parse().unwrap_or(0)) {
                    tracing::error!(migration = %shared.migration.name, error = %e, "kafka broker door not opened");
                }
            }
            true
        }
        Err(e) => {
            tracing::warn!(
                migration = %shared.migration.name, error = %e,
                "cannot learn the source's brokers yet; retrying in the background"
            );
            false
        }
    }
}

fn build_shared(
    config: &Config,
    migration: &Arc<MigrationHandle>,
    controller: &Controller,
    shutdown: &Shutdown,
) -> Result<Arc<Shared>, StartError> {
    let mc = &migration.config;
    let options = mc.kafka_options();
    let cluster = |name: &str| {
        config
            .cluster(name)
            .ok_or_else(|| StartError::Setup(format!("unknown cluster {name}")))
    };
    let (source, target) = (cluster(&mc.source)?, cluster(&mc.target)?);
    let upstream = |c| {
        Upstream::new(&migration.name, c, config.proxy.connect_timeout)
            .map_err(|e| StartError::Setup(e.to_string()))
    };
    let base = mc.kafka_brokers_base().ok_or_else(|| {
        StartError::Setup(
            "no port after listen for broker doors; set kafka.brokers_listen_base".into(),
        )
    })?;
    let settings = ListenerSettings {
        migration: migration.name.clone(),
        max_connections: config.proxy.max_connections,
        handshake_timeout: config.proxy.handshake_timeout,
        tls: match &mc.tls {
            Some(t) => Some(tls::server_config(t).map_err(|e| StartError::Setup(e.to_string()))?),
            None => None,
        },
    };
    Ok(Arc::new(Shared {
        migration: migration.clone(),
        store: controller.store().clone(),
        patterns: mc
            .topics
            .iter()
            .filter_map(|t| Pattern::compile(&t.pattern).ok())
            .collect(),
        bootstrap: upstream(source)?,
        target: upstream(target)?,
        source_config: source.clone(),
        target_config: target.clone(),
        observed: observe::Observed::default(),
        brokers: Mutex::new(BrokerMap::new(base, options.max_brokers)),
        broker_upstreams: Mutex::new(HashMap::new()),
        advertised_host: mc.kafka_advertised_host(),
        listen: mc.listen,
        max_frame: options.max_frame_bytes,
        idle_timeout: config.proxy.idle_timeout,
        connect_timeout: config.proxy.connect_timeout,
        settings,
        shutdown: shutdown.clone(),
    }))
}
