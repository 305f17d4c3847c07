//! Kafka migrations (DESIGN.md §2 Kafka): clients bootstrap at the
//! migration's `listen` and are shown a fixed set of *virtual* brokers,
//! each a listener of the proxy; every partition has a stable virtual
//! leader, and inside whichever door a request arrives at, each partition
//! is routed to the real leader of the cluster its offset splice points
//! at. Topics seen in Metadata answers that match the migration's patterns
//! are registered durably so `ctl` can move them.
//!
//! Layout: the data plane (`session`) and the control plane (`control`)
//! meet only in the routing view (`splice`), the shared leaves below and
//! [`Shared`]; neither imports the other (the test `adapter_layout` fails
//! on a cycle between files or folders). This file is the composition
//! root: it holds `Shared` and starts the listeners, the driver and the
//! watches.
//!
//! - [`session`]: one client connection and the per-API handlers (data plane);
//! - [`control`]: checks, transitions, switches, group moves, watches
//!   (control plane);
//! - [`splice`]: the per-partition offset splice both planes read;
//! - [`sasl`]: client logins and the proxy's own logins to each cluster;
//! - [`adoption`]: the one thing a request asks of the control plane;
//! - [`brokers`]: the virtual brokers (ports, leaders, coordinators);
//! - [`cluster`]: each real cluster's layout as last seen;
//! - [`group_handoff`]: members heard through the proxy and groups handing
//!   off (written by both planes);
//! - [`lag`]: group commits and the lag gauge, published off the request
//!   path;
//! - [`marks`]: each partition's last seen high watermark, written by
//!   answers without a lock;
//! - [`meters`]: metric handles resolved once, per migration and per
//!   topic, that the data plane counts with;
//! - [`observe`]: groups, commits and produce counts seen in the traffic,
//!   read by the checks;
//! - [`partition_key`]: `(topic, partition)` map keys found by `&str`;
//! - [`producers`]: idempotent producers' ids and sequences per cluster;
//! - [`probe`] and [`retry`]: the proxy's own requests and their retries;
//! - [`rewrite`]: answers naming brokers or versions;
//! - [`target_versions`]: each cluster's API versions, cached;
//! - [`versions`]: the API versions offered and the admission check.

mod adoption;
mod brokers;
mod cluster;
mod control;
mod group_handoff;
mod lag;
mod marks;
mod meters;
mod observe;
mod partition_key;
mod probe;
mod producers;
mod retry;
mod rewrite;
pub mod sasl;
mod session;
mod splice;
mod target_versions;
pub mod versions;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use cutover_kafka::kafka_protocol::messages::ApiKey;
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;
use crate::migration::store::StateStore;
use crate::migration::{Controller, MigrationHandle, State};
use crate::pattern::Pattern;
use crate::proxy::recall::{self, Recall};
use crate::proxy::{Handler, ListenerSettings, Shutdown, StartError, Stream, Upstream};
use brokers::VirtualBrokers;
use cluster::{ClusterLayout, Side};
use splice::split::Dest;

/// Which listener a connection arrived at (for logs: every door serves
/// every request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Door {
    /// The migration's `listen`.
    Bootstrap,
    /// A virtual broker's listener.
    Broker(i32),
}

/// Everything the sessions of one Kafka migration share.
pub(crate) struct Shared {
    migration: Arc<MigrationHandle>,
    store: Arc<dyn StateStore>,
    patterns: Vec<Pattern>,
    /// The source at its configured endpoints.
    bootstrap: Upstream,
    /// The target at its configured endpoints.
    target: Upstream,
    /// Groups, commits and produce counts seen in the proxy's own traffic.
    observed: observe::Observed,
    /// The metric handles sessions count with.
    meters: meters::Meters,
    /// Whether `observed` may miss groups a previous run saw.
    recall: Recall,
    /// The brokers clients see.
    brokers: VirtualBrokers,
    /// Each cluster's layout, published whole: sessions read it per
    /// partition without a lock; what learns of a change publishes a copy.
    layouts: [ArcSwap<ClusterLayout>; 2],
    /// Upstreams per broker address, so TLS files are read once per broker.
    broker_upstreams: crate::proxy::BrokerUpstreams,
    /// The segment maps sessions route by.
    splice: splice::routing::Splice,
    /// Group commits relayed, for consumer-group lag.
    commits: lag::Commits,
    /// The target's API versions, for the clients' ApiVersions.
    target_versions: target_versions::TargetVersions,
    /// The source's API versions, for the ApiVersions the proxy answers
    /// itself before a client has logged in.
    source_versions: target_versions::TargetVersions,
    /// Each cluster's own login (`clusters[].auth`), `[source, target]`.
    cluster_logins: [Arc<sasl::identity::ClusterLogins>; 2],
    /// Client logins (`kafka.users_file`); `None`: clients do not log in.
    logins: Option<Arc<sasl::server::ClientLogins>>,
    /// Client producer ids and sequences as each cluster knows them.
    producers: producers::Producers,
    /// Adoption of new groups by the target (`group_adopt`), as the
    /// request path asks for it.
    adoption: Box<dyn adoption::GroupAdoption>,
    /// Group members heard through the proxy, and groups handing off.
    handoffs: Arc<group_handoff::Handoffs>,
    /// Serializes transitions, shifts and the start-up reconciliation.
    transitions: Arc<tokio::sync::Mutex<()>>,
    /// Serializes switches, so each persists every map with its change.
    switching: tokio::sync::Mutex<()>,
    switch_start: crate::config::SwitchStart,
    /// Which topics have their source log copied to the target.
    history: control::history::Policy,
    /// The history copies running or stopped.
    copies: control::history::Copies,
    dual_write_percent: u8,
    advertised_host: String,
    max_frame: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl Shared {
    /// The upstream for `addr` of `side`, or its configured endpoints.
    ///
    /// # Errors
    /// When the cluster's TLS files cannot be used.
    fn upstream(&self, side: Side, addr: Option<&str>) -> Result<Upstream, String> {
        let Some(addr) = addr else {
            return Ok(match side {
                Side::Source => self.bootstrap.clone(),
                Side::Target => self.target.clone(),
            });
        };
        self.broker_upstreams.get(side, addr)
    }

    /// The configured name of `side`'s cluster.
    #[must_use]
    fn cluster_name(&self, side: Side) -> String {
        match side {
            Side::Source => self.bootstrap.cluster.to_string(),
            Side::Target => self.target.cluster.to_string(),
        }
    }

    /// `side`'s layout, for reading.
    fn layout(&self, side: Side) -> arc_swap::Guard<Arc<ClusterLayout>> {
        self.layouts[side as usize].load()
    }

    /// Learns into `side`'s layout: a copy with `change` applied is
    /// published (`change` runs again on the newer copy if another change
    /// was published meanwhile). Changes come from Metadata and
    /// FindCoordinator answers and leader hints, not from every request.
    fn update_layout(&self, side: Side, mut change: impl FnMut(&mut ClusterLayout)) {
        self.layouts[side as usize].rcu(|current| {
            let mut next = ClusterLayout::clone(current);
            change(&mut next);
            next
        });
    }

    /// The real leader of `topic`/`partition` on `side` (its bootstrap
    /// endpoints while unknown).
    #[must_use]
    fn dest(&self, side: Side, topic: &str, partition: i32) -> Dest {
        Dest {
            side,
            addr: self.layout(side).leader(topic, partition).cloned(),
        }
    }

    /// One request of the proxy's own to `upstream` on a fresh connection,
    /// within the connect timeout and frame limit.
    ///
    /// # Errors
    /// [`probe::ProbeError`] when the cluster cannot be reached or answers nonsense.
    async fn exchange<Req: Encodable, Resp: Decodable>(
        &self,
        upstream: &Upstream,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, probe::ProbeError> {
        probe::exchange(
            upstream,
            key,
            version,
            request,
            self.connect_timeout,
            self.max_frame,
        )
        .await
    }

    /// Persists every segment map, shift set and group home with `change`
    /// applied, and only then routes by them. Callers hold `switching`,
    /// so no other change slips in between the copy and the write.
    ///
    /// # Errors
    /// When the state store refuses the write (nothing changed then).
    async fn persist_maps(
        &self,
        what: &str,
        change: impl FnOnce(&mut splice::segments::SegmentMaps),
    ) -> Result<(), String> {
        let mut all = self.splice.snapshot();
        change(&mut all);
        let bytes = serde_json::to_vec(&all).map_err(|e| e.to_string())?;
        self.store
            .put_blob(&splice::routing::blob_name(&self.migration.name), bytes)
            .await
            .map_err(|e| format!("persisting {what}: {e}"))?;
        self.splice.replace(all);
        Ok(())
    }

    /// Whether any of the migration's topics is in `target`.
    #[must_use]
    fn any_topic_in_target(&self) -> bool {
        self.migration
            .topics()
            .iter()
            .any(|t| t.state() == State::Target)
    }

    /// Whether any topic reads or writes the target, so Metadata must ask it too.
    #[must_use]
    fn target_in_use(&self) -> bool {
        self.splice.any_on_target()
            || self
                .migration
                .topics()
                .iter()
                .any(|t| t.state() >= State::DualWrite)
    }

    /// An upstream for one `host:port` of the target cluster (its
    /// controller, for CreateTopics), with the target's TLS settings.
    fn target_at(&self, addr: &str) -> Result<Upstream, String> {
        self.upstream(Side::Target, Some(addr))
    }

    /// Registers the topics among `names` that match the migration's
    /// patterns and are not known yet: durably first (the store keeps an
    /// existing record), then in the live registry, so `ctl` can move them.
    async fn discover(&self, names: &[String]) {
        for name in names {
            if self.migration.topic(name).is_some()
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
                metrics::register_kafka_topic(
                    &self.migration.name,
                    name,
                    [
                        &self.cluster_name(Side::Source),
                        &self.cluster_name(Side::Target),
                    ],
                );
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
        session::connection::run(self.shared.clone(), self.door, client, peer, shutdown).boxed()
    }
}

/// Starts the migration's bootstrap listener and one listener per virtual
/// broker, and installs the Kafka driver.
///
/// # Errors
/// When a listener cannot bind, TLS files cannot be used or the segment
/// maps cannot be read from the state store.
pub async fn start(
    config: &Config,
    migration: Arc<MigrationHandle>,
    controller: Arc<Controller>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let (shared, settings) = build_shared(config, &migration, &controller).await?;
    if let Some(logins) = &shared.logins {
        logins.users.watch(migration.name.clone(), &shutdown.token);
    }
    remember(&shared, &shutdown).await;
    control::history::restore_rate(&shared)
        .await
        .map_err(StartError::Setup)?;
    // Taken before the driver is installed, so no transition runs until
    // routing agrees with the persisted states.
    let reconciling = shared
        .transitions
        .clone()
        .try_lock_owned()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    migration.set_driver(Arc::new(control::driver::KafkaDriver::new(shared.clone())));
    tokio::spawn(control::reconcile::run(shared.clone(), reconciling));
    tokio::spawn(control::bypass::watch(
        shared.clone(),
        shutdown.token.clone(),
    ));
    tokio::spawn(lag::publish_every(shared.clone(), shutdown.token.clone()));
    {
        let (shared, token) = (shared.clone(), shutdown.token.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            shared.copies.shut_down();
        });
    }
    metrics::register_listener(&migration.name);
    let listen = crate::proxy::migration_config(config, &migration)?.listen;
    let mut doors = vec![(listen, Door::Bootstrap)];
    doors.extend(
        shared
            .brokers
            .nodes()
            .map(|(node, port)| (SocketAddr::new(listen.ip(), port), Door::Broker(node))),
    );
    let mut listeners = Vec::new();
    for (addr, door) in doors {
        let listener = crate::proxy::listener::bind(addr)
            .map_err(|source| StartError::Bind { addr, source })?;
        listeners.push((listener, door));
    }
    tracing::info!(
        migration = %migration.name, %listen, advertised_host = %shared.advertised_host,
        virtual_brokers = listeners.len() - 1,
        "kafka listeners ready"
    );
    for (listener, door) in listeners {
        let handler = Arc::new(KafkaHandler {
            shared: shared.clone(),
            door,
        });
        tokio::spawn(crate::proxy::serve(
            listener,
            settings.clone(),
            handler,
            shutdown.clone(),
        ));
    }
    Ok(())
}

/// The persisted groups of `migration` (see `migration::recall`).
fn observed_blob(migration: &str) -> String {
    format!("kafka-observed-{migration}")
}

/// Loads the groups a previous run saw and keeps persisting them.
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
            tracing::info!(migration = %name, groups = saved.len(), "consumer groups seen before the restart restored");
            shared.observed.restore(saved);
        },
    )
    .await;
}

/// The groups seen through the proxy, as persisted.
struct Memory(Arc<Shared>);

impl recall::Snapshots for Memory {
    type Data = observe::GroupTopics;
    fn changes(&self) -> u64 {
        self.0.observed.changes()
    }
    fn snapshot(&self) -> (Self::Data, bool) {
        self.0.observed.snapshot()
    }
}

async fn build_shared(
    config: &Config,
    migration: &Arc<MigrationHandle>,
    controller: &Controller,
) -> Result<(Arc<Shared>, ListenerSettings), StartError> {
    let mc = crate::proxy::migration_config(config, migration)?;
    let options = mc.kafka_options();
    let crate::proxy::MigrationClusters {
        source,
        target,
        upstreams: [source_upstream, target_upstream],
    } = crate::proxy::MigrationClusters::of(config, migration)?;
    let base = mc.kafka_brokers_base().ok_or_else(|| {
        StartError::Setup(
            "no port after listen for the virtual brokers; set kafka.brokers_listen_base".into(),
        )
    })?;
    let settings = ListenerSettings::for_migration(config, &migration.name, mc.tls.as_ref())?;
    let cluster_logins = cluster_logins([source, target])?;
    let handshakes = [cluster_logins[0].handshake(), cluster_logins[1].handshake()];
    let source_upstream = source_upstream.with_handshake(handshakes[0].clone());
    let target_upstream = target_upstream.with_handshake(handshakes[1].clone());
    let logins = client_logins(&options, &migration.name, &cluster_logins)?;
    let store = controller.store().clone();
    let maps = splice::routing::load(store.as_ref(), &migration.name)
        .await
        .map_err(StartError::Setup)?;
    let meters = meters::Meters::new(
        &migration.name,
        [&source_upstream.cluster, &target_upstream.cluster],
    );
    let shared = Arc::new(Shared {
        migration: migration.clone(),
        store,
        patterns: mc
            .topics
            .iter()
            .filter_map(|t| Pattern::compile(&t.pattern).ok())
            .collect(),
        bootstrap: source_upstream,
        target: target_upstream,
        observed: observe::Observed::default(),
        meters,
        recall: Recall::default(),
        brokers: VirtualBrokers::new(base, options.virtual_brokers),
        layouts: Default::default(),
        broker_upstreams: crate::proxy::BrokerUpstreams::new(
            migration.name.clone(),
            source,
            target,
            config.proxy.connect_timeout,
        )
        .with_handshakes(handshakes),
        splice: splice::routing::Splice::new(maps),
        commits: lag::Commits::default(),
        producers: producers::Producers::default(),
        target_versions: target_versions::TargetVersions::default(),
        source_versions: target_versions::TargetVersions::default(),
        cluster_logins,
        logins,
        handoffs: Arc::default(),
        adoption: Box::new(control::group_adopt::Looked::default()),
        transitions: Arc::default(),
        switching: tokio::sync::Mutex::new(()),
        switch_start: options.switch_start.unwrap_or_default(),
        history: control::history::Policy::new(&mc.topics, options.history),
        copies: control::history::Copies::new(options.history_mb_per_second),
        dual_write_percent: options.dual_write_percent,
        advertised_host: mc.kafka_advertised_host(),
        max_frame: options.max_frame_bytes,
        idle_timeout: config.proxy.idle_timeout,
        connect_timeout: config.proxy.connect_timeout,
    });
    Ok((shared, settings))
}

/// How the proxy logs in to `[source, target]` (its own login and the
/// ones mapped from client users).
fn cluster_logins(
    clusters: [&crate::config::ClusterConfig; 2],
) -> Result<[Arc<sasl::identity::ClusterLogins>; 2], StartError> {
    let logins = |c| {
        sasl::identity::ClusterLogins::of(c)
            .map(Arc::new)
            .map_err(StartError::Setup)
    };
    Ok([logins(clusters[0])?, logins(clusters[1])?])
}

/// The client logins of a listener with a users file; `None` when clients
/// do not log in to the proxy.
fn client_logins(
    options: &crate::config::KafkaOptions,
    migration: &str,
    cluster_logins: &[Arc<sasl::identity::ClusterLogins>; 2],
) -> Result<Option<Arc<sasl::server::ClientLogins>>, StartError> {
    let Some(file) = &options.users_file else {
        return Ok(None);
    };
    Ok(Some(Arc::new(sasl::server::ClientLogins {
        users: sasl::users::open(file).map_err(StartError::Setup)?,
        throttle: crate::proxy::throttle::AuthThrottle::default(),
        failures: metrics::counter!(metrics::REQUEST_ERRORS, "migration" => migration.to_owned(), "cluster" => "client", "kind" => "auth"),
        identity: sasl::identity::ClientIdentity::new(
            options.upstream_identity(),
            cluster_logins.clone(),
        ),
        session_lifetime: options.client_session_lifetime,
    })))
}
