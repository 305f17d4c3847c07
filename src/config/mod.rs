//! The YAML configuration: serde types, defaults, and `validate()` that
//! reports every error at once with the YAML path of each.
//!
//! Parsing is done per section (admin, state, each cluster, each migration)
//! from a generic YAML value, so one typo does not hide the next one.

mod duration;
mod kafka;
mod redis;
mod rocketmq;
mod secrets;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::migration::{MigrationSpec, State};
use crate::pattern::Pattern;
pub use rocketmq::{
    DEFAULT_QUIET_WINDOW, DEFAULT_ROCKETMQ_MAX_BROKERS, DEFAULT_TARGET_BROKER_SUFFIX,
    RocketmqOptions, rocketmq_broker_ports,
};
pub use secrets::secret_warnings;
pub use validate::{ConfigError, load, parse};

/// Default admin socket path, relative to the working directory.
pub const DEFAULT_SOCKET: &str = "./cutover.sock";
/// Default directory of the embedded state store.
pub const DEFAULT_STATE_DIR: &str = "./cutover-state";

/// The protocol a cluster speaks and a migration moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Redis (RESP2/RESP3).
    Redis,
    /// Apache Kafka.
    Kafka,
    /// Apache RocketMQ (remoting protocol).
    Rocketmq,
}

impl Protocol {
    /// The config spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Redis => "redis",
            Protocol::Kafka => "kafka",
            Protocol::Rocketmq => "rocketmq",
        }
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Admin API.
    pub admin: AdminConfig,
    /// State store.
    pub state: StateConfig,
    /// Limits and timeouts shared by every listener.
    pub proxy: ProxyConfig,
    /// Upstream clusters.
    pub clusters: Vec<ClusterConfig>,
    /// Migrations, each with its own client listener.
    pub migrations: Vec<MigrationConfig>,
}

impl Config {
    /// The cluster named `name`.
    #[must_use]
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The migration named `name`.
    #[must_use]
    pub fn migration(&self, name: &str) -> Option<&MigrationConfig> {
        self.migrations.iter().find(|m| m.name == name)
    }
}

/// `admin:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Unix socket for `ctl` and local tools (mode 0600).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Optional TCP listener (token required).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token; required when `listen` is set.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Serve `/metrics` on TCP without a token (for Prometheus scrapers).
    #[serde(default)]
    pub metrics_public: bool,
    /// Serve the TCP listener over TLS, so the bearer token never travels
    /// in clear; the certificate is reloaded when its files change.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: default_socket(),
            listen: None,
            token_file: None,
            metrics_public: false,
            tls: None,
        }
    }
}

/// `state:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of the embedded file store.
    #[serde(default = "default_state_dir")]
    pub file: PathBuf,
    /// A shared etcd store for fleets of proxies (not available yet).
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            file: default_state_dir(),
            etcd: None,
        }
    }
}

/// `state.etcd:` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
}

fn default_etcd_prefix() -> String {
    "/cutover".into()
}

/// `proxy:` section: limits that apply to every client listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Client connections per listener; further clients wait in the kernel backlog.
    pub max_connections: usize,
    /// Close a client connection idle this long.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Give up on a client TLS handshake after this long.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// Give up connecting to an upstream after this long.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Give up on an upstream reply after this long: Redis commands
    /// (blocking ones excepted) and the RocketMQ proxy's own lookups.
    /// Relayed Kafka/RocketMQ requests are left to the clients' timeouts.
    #[serde(with = "duration")]
    pub upstream_timeout: Duration,
    /// On SIGTERM, let in-flight requests finish for this long, then force-close.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

/// 10k idle clients fit in well under 1 GiB at our per-connection cost.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Long enough for connection pools that keep idle sockets, short enough to reclaim leaks.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A TLS handshake on loopback or LAN takes milliseconds; 10 s tolerates slow clients.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect failures should surface to the client quickly as a protocol error.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longer than any non-blocking server command should take, even under load.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Kubernetes' default termination grace is 30 s; finish well within it.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// One upstream cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Referenced by migrations' `source`/`target`.
    pub name: String,
    /// What it speaks.
    pub protocol: Protocol,
    /// `host:port` seeds (Redis: the server; Kafka: bootstrap; RocketMQ: NameServers).
    pub endpoints: Vec<String>,
    /// TLS towards the cluster.
    #[serde(default)]
    pub tls: Option<ClientTlsConfig>,
    /// Credentials the proxy presents to the cluster (Redis AUTH; Kafka
    /// SASL; RocketMQ ACL: `username` is the access key, the password the
    /// secret key every request is signed with).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

/// TLS the proxy uses when connecting to a cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM bundle of CAs to trust (required: there is no system trust store here).
    pub ca_file: PathBuf,
    /// Client certificate for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Key for `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify; defaults to the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// TLS the proxy offers to clients on a migration's listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM bundle of CAs: when given, every client must present a
    /// certificate one of them signed (mutual TLS), or its handshake fails.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Credentials (Redis AUTH, Kafka SASL).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Kafka: the SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
    #[serde(default)]
    pub mechanism: Option<String>,
    /// User name; Redis `default` when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Password inline (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// File whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// With `upstream_identity: client` (Redis and Kafka): the credentials
    /// this cluster knows a client user by, when they differ from the
    /// client's own (client user name → cluster user and password).
    #[serde(default)]
    pub users: BTreeMap<String, MappedUser>,
}

/// A client user's credentials on one cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappedUser {
    /// User name on the cluster; the client's own when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Password inline (prefer `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// File whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Whom a session's upstream connections authenticate as (Redis, Kafka).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamIdentity {
    /// The cluster's `auth` (one principal for every client).
    Proxy,
    /// The user the client authenticated as (mapped per cluster by
    /// `clusters[].auth.users`), so the clusters' ACLs keep applying.
    Client,
}

/// One migration: a listener, a source, a target and the topics it moves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationConfig {
    /// Unique name used by `ctl`.
    pub name: String,
    /// Must match both clusters' protocol.
    pub protocol: Protocol,
    /// Where clients connect instead of the source.
    pub listen: SocketAddr,
    /// Cluster name moved from.
    pub source: String,
    /// Cluster name moved to.
    pub target: String,
    /// Topic patterns (Redis: named keyspaces, first match wins).
    pub topics: Vec<TopicPattern>,
    /// State of topics never moved before.
    #[serde(default = "default_initial_state")]
    pub initial_state: State,
    /// TLS offered to clients.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Redis-specific options.
    #[serde(default)]
    pub redis: Option<RedisOptions>,
    /// Kafka-specific options.
    #[serde(default)]
    pub kafka: Option<KafkaOptions>,
    /// RocketMQ-specific options.
    #[serde(default)]
    pub rocketmq: Option<RocketmqOptions>,
}

impl MigrationConfig {
    /// What the migration core needs of this migration: its named
    /// keyspaces (Redis), compiled, and whether its topics are discovered
    /// from traffic (Kafka, RocketMQ). Validation has compiled every
    /// pattern already, so none is dropped here.
    #[must_use]
    pub fn spec(&self) -> MigrationSpec {
        MigrationSpec {
            name: self.name.clone(),
            initial_state: self.initial_state,
            keyspaces: self
                .topics
                .iter()
                .filter_map(|t| Some((t.name.clone()?, Pattern::compile(&t.pattern).ok()?)))
                .collect(),
            discovers_topics: self.protocol != Protocol::Redis,
        }
    }

    /// The Kafka options, defaults filled in when the section is absent.
    #[must_use]
    pub fn kafka_options(&self) -> KafkaOptions {
        self.kafka.clone().unwrap_or_default()
    }

    /// The host Kafka clients are told to connect to: `kafka.advertised_host`,
    /// else the listen address's IP.
    #[must_use]
    pub fn kafka_advertised_host(&self) -> String {
        self.kafka
            .as_ref()
            .and_then(|k| k.advertised_host.clone())
            .unwrap_or_else(|| self.listen.ip().to_string())
    }

    /// The first per-broker port of a Kafka migration: `kafka.brokers_listen_base`,
    /// else the port right after `listen` (DESIGN.md §3). `None` when that
    /// would be above 65535.
    #[must_use]
    pub fn kafka_brokers_base(&self) -> Option<u16> {
        self.kafka
            .as_ref()
            .and_then(|k| k.brokers_listen_base)
            .or_else(|| self.listen.port().checked_add(1))
    }
}

fn default_initial_state() -> State {
    State::Source
}

/// One entry of `topics:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPattern {
    /// Keyspace name (required for Redis, where it names the topic).
    #[serde(default)]
    pub name: Option<String>,
    /// Glob pattern (`*`, `?`, `[a-z]`, `\` escapes), Redis `MATCH` semantics.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Kafka: whether the matching topics' source history is copied to the
    /// target (`kafka.history` when unset; the first matching pattern that
    /// sets it wins).
    #[serde(default)]
    pub history: Option<HistoryMode>,
}

/// `migrations[].redis:` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOptions {
    /// Password clients must AUTH with to use the proxy (none by default).
    pub client_password: Option<String>,
    /// Redis ACL users clients authenticate as (Redis ACL file syntax,
    /// e.g. the source's `ACL LIST` output); reloaded when it changes.
    pub users_file: Option<PathBuf>,
    /// Whom sessions reach the clusters as: `client` by default with
    /// `users_file`, else `proxy`.
    pub upstream_identity: Option<UpstreamIdentity>,
    /// Fraction of reads shadow-read from the other side in `dual_read`/`dual_write`.
    pub shadow_read_ratio: f64,
    /// Largest bulk string accepted from a client or upstream.
    pub max_bulk_len: usize,
    /// Backfill speed limit, keys scanned per second.
    pub backfill_keys_per_second: u32,
    /// Backfill speed limit in bytes copied per second (all copies of the
    /// migration count, so live write traffic slows the backfill down).
    pub backfill_bytes_per_second: u64,
    /// Start a backfill automatically when a keyspace starts converging
    /// (entering `dual_write`, or `cutover` on the way back from `target`).
    pub backfill_on_enter: bool,
    /// Keys sampled by the `verify_clean` readiness check.
    pub verify_sample: usize,
}

/// `migrations[].kafka:` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaOptions {
    /// Host name or IP the proxy advertises as every broker's host (for
    /// containers and NAT); defaults to the IP of `listen`, which must then
    /// not be a wildcard.
    pub advertised_host: Option<String>,
    /// First port of the virtual brokers' listeners; defaults to
    /// `listen`'s port + 1.
    pub brokers_listen_base: Option<u16>,
    /// How many virtual brokers clients see (one listener each, from
    /// `brokers_listen_base` on), independent of either cluster's size:
    /// every partition gets one of them as its stable leader.
    pub virtual_brokers: u16,
    /// Largest Kafka frame accepted from a client or broker.
    pub max_frame_bytes: usize,
    /// Where a partition's first segment on the target starts when its
    /// writes first switch there (`log_start` when unset); only with
    /// `history: leave`, since a copied partition starts where its copy ends.
    pub switch_start: Option<SwitchStart>,
    /// Whether each topic's source log is copied to the target
    /// (docs/kafka-history-plan.md); `topics[].history` overrides it.
    pub history: HistoryMode,
    /// The history copy's speed limit over all its partitions, in MB
    /// (10^6 bytes) of record batches per second.
    pub history_mb_per_second: u32,
    /// Share of each topic's partitions (lowest numbers first) switched to
    /// the target on entering `dual_write`; `ctl shift` changes it per topic.
    pub dual_write_percent: u8,
    /// SCRAM credentials clients must log in with (SASL PLAIN or
    /// SCRAM-SHA-256/512); none: clients connect without SASL. Reloaded
    /// when it changes; written by `cutover user add`.
    pub users_file: Option<PathBuf>,
    /// Whom sessions reach the clusters as: `proxy` (default, each
    /// cluster's `auth`) or `client` (the client's user, mapped per cluster
    /// by `clusters[].auth.users`).
    pub upstream_identity: Option<UpstreamIdentity>,
    /// How long a client's SASL login holds before the client must log in
    /// again on its connection (KIP-368); `0s`: for the connection's life.
    #[serde(with = "duration")]
    pub client_session_lifetime: Duration,
}

/// `kafka.switch_start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchStart {
    /// At the target partition's log start: records already on the target
    /// (producers moved there directly) are read after the source's.
    #[default]
    LogStart,
    /// At its log end: records already there are skipped (a target
    /// pre-seeded by offset-preserving replication).
    LogEnd,
}

/// `kafka.history` and `topics[].history`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryMode {
    /// The source keeps the records written before each partition's switch;
    /// the proxy reads them there, so the source must stay up.
    #[default]
    Leave,
    /// From `dual_read` on, every partition's source log is mirrored onto the
    /// target in order, so the target ends up holding the whole log.
    Copy,
}

/// Enough doors to spread a client's connections; more only add listeners.
pub const DEFAULT_KAFKA_VIRTUAL_BROKERS: u16 = 3;

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            advertised_host: None,
            brokers_listen_base: None,
            virtual_brokers: DEFAULT_KAFKA_VIRTUAL_BROKERS,
            max_frame_bytes: cutover_kafka::DEFAULT_MAX_FRAME,
            switch_start: None,
            history: HistoryMode::default(),
            history_mb_per_second: 50,
            dual_write_percent: 0,
            users_file: None,
            upstream_identity: None,
            client_session_lifetime: Duration::ZERO,
        }
    }
}

/// 1% keeps shadow reads cheap while catching systematic divergence within seconds.
pub const DEFAULT_SHADOW_READ_RATIO: f64 = 0.01;
/// Redis's own `proto-max-bulk-len` default.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;

/// Fast enough to copy a million keys in minutes, slow enough not to crowd out client traffic.
pub const DEFAULT_BACKFILL_KEYS_PER_SECOND: u32 = 20_000;
/// 50 MB/s: a fraction of a 1 Gbit/s link, so replication and clients keep their bandwidth.
pub const DEFAULT_BACKFILL_BYTES_PER_SECOND: u64 = 50_000_000;
/// Enough keys to catch systematic divergence; small enough to answer within a check's patience.
pub const DEFAULT_VERIFY_SAMPLE: usize = 200;

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            client_password: None,
            users_file: None,
            upstream_identity: None,
            shadow_read_ratio: DEFAULT_SHADOW_READ_RATIO,
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            backfill_keys_per_second: DEFAULT_BACKFILL_KEYS_PER_SECOND,
            backfill_bytes_per_second: DEFAULT_BACKFILL_BYTES_PER_SECOND,
            backfill_on_enter: true,
            verify_sample: DEFAULT_VERIFY_SAMPLE,
        }
    }
}
