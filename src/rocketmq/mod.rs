//! RocketMQ migrations: the proxy is the NameServer clients talk to (at the
//! migration's `listen`) and stands for every real broker of both clusters
//! with an endpoint of its own. Routes it answers show each topic's queues
//! per its migration state (DESIGN.md §2); broker connections are paired
//! 1:1 with upstream connections and relayed frame by frame.
//!
//! - [`endpoints`]: real broker ↔ proxy ports and names;
//! - [`route`]: the pure per-state merge of routes and cluster info;
//! - `namesrv`: the NameServer facade sessions;
//! - `session`: the broker endpoint sessions (pumps, name translation,
//!   observation, metrics);
//! - `handles`: pre-resolved per-topic metric handles, published
//!   immutably for the sessions' hot path;
//! - `pop`: server-side rebalance and pop consumption through the proxy;
//! - [`acl`]: signature checks of clients' requests and re-signing with
//!   each cluster's account;
//! - [`rpc`]: the proxy's own requests;
//! - [`observe`]: what traffic teaches the checks; [`seen`]: the clients
//!   relayed for; `heartbeat`: the heartbeat body both read;
//!   `inventory`: those joined with the source brokers' own connection
//!   lists (`ctl clients`, the bypass gate);
//! - `offsets`: queue and group offsets of a cluster (backlog and bypass
//!   checks);
//! - `metadata`, `catalog`: `ctl migrate-metadata` for one topic and for
//!   the whole source cluster;
//! - [`driver`]: readiness checks for `ctl`.

pub mod acl;
mod catalog;
pub mod driver;
pub mod endpoints;
mod handles;
mod heartbeat;
mod inventory;
mod metadata;
mod namesrv;
pub mod observe;
mod offsets;
mod pop;
pub mod route;
pub mod rpc;
pub mod seen;
mod session;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover_rocketmq::{ClusterInfo, RequestCode, ResponseCode};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, Config};
use crate::metrics;
use crate::migration::store::StateStore;
use crate::migration::{Controller, MigrationHandle};
use crate::pattern::Pattern;
use crate::proxy::recall::{self, Recall};
use crate::proxy::{Handler, ListenerSettings, Shutdown, StartError, Stream, Upstream};
use endpoints::{Assignment, Endpoint, EndpointError, EndpointMap, Side};
use route::Plan;

/// First pause between start-up cluster probes while a NameServer is down;
/// doubled up to [`PROBE_BACKOFF_MAX`]. Endpoints also open lazily from the
/// routes clients ask for.
const PROBE_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Everything the sessions of one RocketMQ migration share.
pub(crate) struct Shared {
    pub migration: Arc<MigrationHandle>,
    store: Arc<dyn StateStore>,
    patterns: Vec<Pattern>,
    source_ns: Upstream,
    target_ns: Upstream,
    source_config: ClusterConfig,
    target_config: ClusterConfig,
    pub observed: observe::Observed,
    /// Per-topic metric handles (and last-send times) the sessions read.
    pub handles: handles::Handles,
    /// Whether `observed` may miss groups a previous run saw.
    pub recall: Recall,
    catalog_follow: catalog::Follow,
    endpoints: Mutex<EndpointMap>,
    broker_upstreams: crate::proxy::BrokerUpstreams,
    pub advertised_host: String,
    listen: SocketAddr,
    pub max_frame: usize,
    pub idle_timeout: Duration,
    pub upstream_timeout: Duration,
    pub quiet_window: Duration,
    settings: ListenerSettings,
    shutdown: Shutdown,
}

impl Shared {
    /// The configured NameServers of `side`.
    pub fn nameserver(&self, side: Side) -> &Upstream {
        match side {
            Side::Source => &self.source_ns,
            Side::Target => &self.target_ns,
        }
    }

    /// The cluster name of `side`.
    pub fn cluster(&self, side: Side) -> &str {
        match side {
            Side::Source => &self.source_config.name,
            Side::Target => &self.target_config.name,
        }
    }

    /// The name clients see for broker `real` of `side`.
    pub fn virtual_name(&self, side: Side, real: &str) -> String {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .virtual_name(side, real)
    }

    /// The address (`host:port`) clients are told for broker `name` at
    /// `upstream` on `side`, opening its endpoint's two listeners first if
    /// the broker is new.
    ///
    /// # Errors
    /// [`EndpointError`] when the reserved ports are used up or a listener
    /// cannot be bound.
    pub fn endpoint_addr(
        self: &Arc<Self>,
        side: Side,
        name: &str,
        upstream: &str,
    ) -> Result<String, EndpointError> {
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let endpoint = match map.assign(side, upstream, name)? {
            Assignment::Known(e) => e,
            Assignment::New(e) => {
                if let Err(err) = self.open(&e) {
                    map.remove_last(side, upstream);
                    return Err(err);
                }
                e
            }
        };
        Ok(format!("{}:{}", self.advertised_host, endpoint.port))
    }

    fn open(self: &Arc<Self>, endpoint: &Endpoint) -> Result<(), EndpointError> {
        let mut listeners = Vec::new();
        for port in [endpoint.port, endpoint.vip_port] {
            let addr = SocketAddr::new(self.listen.ip(), port);
            match crate::proxy::listener::bind(addr) {
                Ok(l) => listeners.push(l),
                Err(source) => {
                    return Err(EndpointError::Bind {
                        name: endpoint.real_name.clone(),
                        addr: endpoint.upstream.clone(),
                        port,
                        source,
                    });
                }
            }
        }
        tracing::info!(
            migration = %self.migration.name, side = endpoint.side.as_str(),
            broker = %endpoint.real_name, upstream = %endpoint.upstream,
            port = endpoint.port, vip_port = endpoint.vip_port,
            "rocketmq broker endpoint open"
        );
        for listener in listeners {
            let handler = Arc::new(BrokerHandler {
                shared: self.clone(),
                endpoint: endpoint.clone(),
            });
            tokio::spawn(crate::proxy::serve(
                listener,
                self.settings.clone(),
                handler,
                self.shutdown.clone(),
            ));
        }
        Ok(())
    }

    /// The upstream for the broker at `addr` on `side`, with that cluster's
    /// TLS settings (files read once per broker).
    pub fn broker_upstream(&self, side: Side, addr: &str) -> Result<Upstream, String> {
        self.broker_upstreams.get(side, addr)
    }

    /// How `topic`'s route is built; a migrated topic met for the first
    /// time is registered first.
    pub async fn plan(&self, topic: &str) -> Plan {
        if route::is_group_topic(topic) {
            return Plan::Union;
        }
        if route::is_system_topic(topic) {
            return Plan::SourceOnly;
        }
        self.discover(&[topic.to_owned()]).await;
        match self.migration.topic(topic) {
            Some(handle) => Plan::Migrated(handle.state()),
            None => Plan::SourceOnly,
        }
    }

    /// Registers the topics among `names` that match the migration's
    /// patterns and are not known yet: durably first, then in the live
    /// registry, so `ctl` can move them.
    pub async fn discover(&self, names: &[String]) {
        for name in names {
            if self.migration.topic(name).is_some()
                || route::is_system_topic(name)
                || route::is_group_topic(name)
                || !self.patterns.iter().any(|p| p.matches(name.as_bytes()))
            {
                continue;
            }
            if self
                .migration
                .discover(self.store.as_ref(), name)
                .await
                .is_some()
            {
                metrics::register_rocketmq_topic(
                    &self.migration.name,
                    name,
                    [self.cluster(Side::Source), self.cluster(Side::Target)],
                );
                self.handles.publish_both(name);
            }
        }
    }

    /// Asks `side`'s NameServer for its cluster info.
    pub async fn cluster_info(&self, side: Side) -> Result<ClusterInfo, String> {
        let mut conn = rpc::Conn::open(self.nameserver(side), self.max_frame)
            .await
            .map_err(|e| e.to_string())?;
        let answer = conn
            .call(
                rpc::request(RequestCode::GET_BROKER_CLUSTER_INFO, &[]),
                &[],
                self.upstream_timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        if answer.header.code != ResponseCode::SUCCESS {
            return Err(format!(
                "cluster \"{}\" answered GET_BROKER_CLUSTER_INFO with code {}: {}",
                self.cluster(side),
                answer.header.code,
                answer.header.remark.unwrap_or_default()
            ));
        }
        ClusterInfo::decode(&answer.body).map_err(|e| e.to_string())
    }
}

struct NamesrvHandler {
    shared: Arc<Shared>,
}

impl Handler for NamesrvHandler {
    fn handle(
        self: Arc<Self>,
        client: Stream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        namesrv::run(self.shared.clone(), client, peer, shutdown).boxed()
    }
}

struct BrokerHandler {
    shared: Arc<Shared>,
    endpoint: Endpoint,
}

impl Handler for BrokerHandler {
    fn handle(
        self: Arc<Self>,
        client: Stream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        session::run(
            self.shared.clone(),
            self.endpoint.clone(),
            client,
            peer,
            shutdown,
        )
        .boxed()
    }
}

/// Starts the migration's NameServer facade, opens an endpoint per broker
/// of both clusters and installs the RocketMQ driver.
///
/// A NameServer that is down at start-up does not stop the proxy: its
/// brokers are probed again in the background, and endpoints also open
/// lazily from the routes clients ask for.
///
/// # Errors
/// When the facade's listener cannot bind or TLS files cannot be used.
pub async fn start(
    config: &Config,
    migration: Arc<MigrationHandle>,
    controller: Arc<Controller>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let shared = build_shared(config, &migration, &controller, &shutdown)?;
    remember(&shared, &shutdown).await;
    catalog::resume_following(&shared).await;
    migration.set_driver(Arc::new(driver::RocketmqDriver::new(shared.clone())));
    metrics::register_listener(&migration.name);
    for topic in migration.topics() {
        metrics::register_rocketmq_topic(
            &migration.name,
            &topic.name,
            [shared.cluster(Side::Source), shared.cluster(Side::Target)],
        );
        shared.handles.publish_both(&topic.name);
    }
    let listen = crate::proxy::migration_config(config, &migration)?.listen;
    let listener = crate::proxy::listener::bind(listen).map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let mut pending = Vec::new();
    for side in [Side::Source, Side::Target] {
        if !learn_brokers(&shared, side).await {
            pending.push(side);
        }
    }
    if !pending.is_empty() {
        let shared = shared.clone();
        let token = shutdown.token.clone();
        tokio::spawn(async move {
            let mut backoff = PROBE_BACKOFF_FIRST;
            while !pending.is_empty() {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                let mut still = Vec::new();
                for side in pending {
                    if !learn_brokers(&shared, side).await {
                        still.push(side);
                    }
                }
                pending = still;
                backoff = (backoff * 2).min(PROBE_BACKOFF_MAX);
            }
        });
    }
    tracing::info!(
        migration = %migration.name, %listen, advertised_host = %shared.advertised_host,
        "rocketmq nameserver facade ready"
    );
    tokio::spawn(crate::proxy::serve(
        listener,
        shared.settings.clone(),
        Arc::new(NamesrvHandler { shared }),
        shutdown,
    ));
    Ok(())
}

/// One start-up probe of a cluster's brokers; opens an endpoint for each,
/// in broker-name then broker-id order. Returns whether the NameServer answered.
async fn learn_brokers(shared: &Arc<Shared>, side: Side) -> bool {
    match shared.cluster_info(side).await {
        Ok(info) => {
            for broker in info.broker_addr_table.values() {
                for addr in broker.broker_addrs.values() {
                    if let Err(e) = shared.endpoint_addr(side, &broker.broker_name, addr) {
                        tracing::error!(migration = %shared.migration.name, error = %e, "rocketmq broker endpoint not opened");
                    }
                }
            }
            true
        }
        Err(e) => {
            tracing::warn!(
                migration = %shared.migration.name, side = side.as_str(), error = %e,
                "cannot learn the cluster's brokers yet; retrying in the background"
            );
            false
        }
    }
}

/// The persisted groups and members of `migration` (see `migration::recall`).
fn observed_blob(migration: &str) -> String {
    format!("rocketmq-observed-{migration}")
}

/// Loads the groups and members a previous run saw and keeps persisting them.
async fn remember(shared: &Arc<Shared>, shutdown: &Shutdown) {
    let name = &shared.migration.name;
    let memory = Arc::new(Memory(shared.clone()));
    recall::resume(
        shared.store.clone(),
        name,
        observed_blob(name),
        &shared.recall,
        memory,
        shutdown,
        |saved| {
            tracing::info!(migration = %name, topics = saved.topics.len(), groups = saved.members.len(), "consumer groups and members seen before the restart restored");
            shared.observed.restore(saved);
        },
    )
    .await;
}

/// The groups and members seen through the proxy, as persisted.
struct Memory(Arc<Shared>);

impl recall::Snapshots for Memory {
    type Data = observe::Saved;
    fn changes(&self) -> u64 {
        self.0.observed.changes()
    }
    fn snapshot(&self) -> (Self::Data, bool) {
        // Members restored but silent for a whole heartbeat interval are gone.
        let settled = self.0.recall.uptime() >= recall::REJOIN;
        (self.0.observed.snapshot(settled), true)
    }
}

fn build_shared(
    config: &Config,
    migration: &Arc<MigrationHandle>,
    controller: &Controller,
    shutdown: &Shutdown,
) -> Result<Arc<Shared>, StartError> {
    let mc = crate::proxy::migration_config(config, migration)?;
    let options = mc.rocketmq_options();
    let crate::proxy::MigrationClusters {
        source,
        target,
        upstreams: [source_upstream, target_upstream],
    } = crate::proxy::MigrationClusters::of(config, migration)?;
    let base = mc.rocketmq_brokers_base().ok_or_else(|| {
        StartError::Setup(
            "no port after listen for broker endpoints; set rocketmq.brokers_listen_base".into(),
        )
    })?;
    let settings = ListenerSettings::for_migration(config, &migration.name, mc.tls.as_ref())?;
    acl::register(
        &migration.name,
        [source, target],
        options.accounts_file.as_deref(),
    )
    .map_err(|e| StartError::Setup(e.to_string()))?;
    Ok(Arc::new(Shared {
        migration: migration.clone(),
        store: controller.store().clone(),
        patterns: mc
            .topics
            .iter()
            .filter_map(|t| Pattern::compile(&t.pattern).ok())
            .collect(),
        source_ns: source_upstream,
        target_ns: target_upstream,
        source_config: source.clone(),
        target_config: target.clone(),
        observed: observe::Observed::default(),
        handles: handles::Handles::new(&migration.name, [&source.name, &target.name]),
        recall: Recall::default(),
        catalog_follow: catalog::Follow::default(),
        endpoints: Mutex::new(EndpointMap::new(
            base,
            options.max_brokers,
            &options.target_broker_suffix,
        )),
        broker_upstreams: crate::proxy::BrokerUpstreams::new(
            migration.name.clone(),
            source,
            target,
            config.proxy.connect_timeout,
        ),
        advertised_host: mc.rocketmq_advertised_host(),
        listen: mc.listen,
        max_frame: options.max_frame_bytes,
        idle_timeout: config.proxy.idle_timeout,
        upstream_timeout: config.proxy.upstream_timeout.min(UPSTREAM_RPC_TIMEOUT),
        quiet_window: options.quiet_window,
        settings,
        shutdown: shutdown.clone(),
    }))
}

/// The proxy's own NameServer and broker requests answer in milliseconds;
/// a client waits 3 s for a route by default, so give up well before.
const UPSTREAM_RPC_TIMEOUT: Duration = Duration::from_secs(2);
