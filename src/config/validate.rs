//! Loading and validating a configuration, collecting every error with its
//! YAML path instead of stopping at the first.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

use super::{ClusterConfig, Config, HistoryMode, MigrationConfig, Protocol};
use crate::pattern::Pattern;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// YAML path, e.g. `migrations[1].source`.
    pub path: String,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Reads and validates `path`; relative paths inside are kept as written
/// (resolved against the working directory, like every other tool).
///
/// # Errors
/// Every problem found, each with its YAML path.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read the configuration file: {e}"),
        }]
    })?;
    parse(&text)
}

/// Parses and validates configuration text.
///
/// # Errors
/// Every problem found, each with its YAML path.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Errors::default();
    let root: Value = serde_norway::from_str(text).map_err(|e| {
        vec![ConfigError {
            path: "(file)".into(),
            message: format!("not valid YAML: {e}"),
        }]
    })?;
    let mut config = Config::default();
    let mut broken = Broken::default();
    let root = match root {
        Value::Mapping(map) => map,
        Value::Null => Mapping::new(),
        _ => {
            errors.push(
                "(root)",
                "the top level must be a mapping of admin, state, proxy, clusters, migrations",
            );
            return Err(errors.0);
        }
    };
    for (key, value) in root {
        let name = key.as_str().unwrap_or("?").to_owned();
        match name.as_str() {
            "admin" => section(&mut errors, "admin", value, &mut config.admin),
            "state" => section(&mut errors, "state", value, &mut config.state),
            "proxy" => {
                if let Value::Mapping(map) = &value {
                    broken.proxy_keys = map
                        .keys()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect();
                }
                section(&mut errors, "proxy", value, &mut config.proxy);
            }
            "clusters" => {
                let items = list(&mut errors, "clusters", value);
                config.clusters = items.parsed;
                broken.cluster_paths = items.paths;
                broken.cluster_names = items
                    .broken
                    .iter()
                    .filter_map(|(_, map)| text_field(map, "name").map(str::to_owned))
                    .collect();
            }
            "migrations" => {
                let items = list(&mut errors, "migrations", value);
                config.migrations = items.parsed;
                broken.migration_paths = items.paths;
                broken.migrations = items.broken;
            }
            other => errors.push(
                other,
                "unknown top-level key; expected admin, state, proxy, clusters or migrations",
            ),
        }
    }
    validate(&config, &broken, &mut errors);
    validate_broken_migrations(&config, &broken, &mut errors);
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(errors.0)
    }
}

fn deserialize<T: DeserializeOwned>(errors: &mut Errors, path: &str, value: Value) -> Option<T> {
    deserialize_all(errors, path, value).ok()
}

/// Deserializes `value`, reporting every bad key, not only the first: after
/// each error the offending key is dropped and the rest tried again (at
/// most once per key), so a typo in one field does not hide a bad value in
/// the next. "missing field" errors for a key dropped that way are not
/// reported again. On failure, gives back what was left of the mapping, for
/// the cross-references that can still be checked.
fn deserialize_all<T: DeserializeOwned>(
    errors: &mut Errors,
    path: &str,
    value: Value,
) -> Result<T, Mapping> {
    let Value::Mapping(mut map) = value else {
        return match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(parsed) => Ok(parsed),
            Err(e) => {
                errors.push(path, e.into_inner().to_string());
                Err(Mapping::new())
            }
        };
    };
    let mut dropped: Vec<String> = Vec::new();
    for _ in 0..=map.len() {
        let e = match serde_path_to_error::deserialize::<_, T>(Value::Mapping(map.clone())) {
            Ok(parsed) => return Ok(parsed),
            Err(e) => e,
        };
        let inner = e.path().to_string();
        let message = e.into_inner().to_string();
        let consequence = dropped
            .iter()
            .any(|key| message.starts_with(&format!("missing field `{key}`")));
        if !consequence {
            let full = if inner == "." {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            errors.push(full, message.clone());
        }
        match offending_key(&inner, &message) {
            Some(key) if map.remove(key.as_str()).is_some() => dropped.push(key),
            _ => break,
        }
    }
    Err(map)
}

/// The top-level key an error is about: the first segment of its path, or
/// the key an "unknown field" error names.
fn offending_key(inner: &str, message: &str) -> Option<String> {
    if inner != "." {
        let end = inner.find(['.', '[']).unwrap_or(inner.len());
        return Some(inner[..end].to_owned());
    }
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn section<T: DeserializeOwned>(errors: &mut Errors, path: &str, value: Value, slot: &mut T) {
    if let Some(parsed) = deserialize(errors, path, value) {
        *slot = parsed;
    }
}

/// The items of a list that parsed, and what is left of those that did not.
struct Items<T> {
    parsed: Vec<T>,
    /// The YAML path of each parsed item (its index in the file).
    paths: Vec<String>,
    broken: Vec<(String, Mapping)>,
}

fn list<T: DeserializeOwned>(errors: &mut Errors, path: &str, value: Value) -> Items<T> {
    let mut items = Items {
        parsed: Vec::new(),
        paths: Vec::new(),
        broken: Vec::new(),
    };
    let Value::Sequence(values) = value else {
        errors.push(path, "must be a list");
        return items;
    };
    for (i, item) in values.into_iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match deserialize_all(errors, &item_path, item) {
            Ok(parsed) => {
                items.parsed.push(parsed);
                items.paths.push(item_path);
            }
            Err(rest) => items.broken.push((item_path, rest)),
        }
    }
    items
}

/// What `check` still knows of the items that did not parse, so their
/// cross-references are checked in the same run.
#[derive(Default)]
struct Broken {
    /// Names of clusters that did not parse: a migration naming one is not
    /// told the cluster is unknown.
    cluster_names: Vec<String>,
    /// Path and remaining keys of migrations that did not parse.
    migrations: Vec<(String, Mapping)>,
    /// YAML paths of the parsed clusters and migrations, in order: an item
    /// that did not parse leaves no gap in the config but keeps its index.
    cluster_paths: Vec<String>,
    migration_paths: Vec<String>,
    /// Keys written under `proxy:`: only a value the operator chose can be
    /// refused for not applying.
    proxy_keys: Vec<String>,
}

fn text_field<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// The cluster references of a migration that did not parse.
fn validate_broken_migrations(config: &Config, broken: &Broken, errors: &mut Errors) {
    for (path, map) in &broken.migrations {
        for side in ["source", "target"] {
            let Some(name) = text_field(map, side) else {
                continue;
            };
            if config.cluster(name).is_none() && !broken.cluster_names.iter().any(|n| n == name) {
                errors.push(
                    format!("{path}.{side}"),
                    format!("unknown cluster \"{name}\""),
                );
            }
        }
    }
}

fn validate(config: &Config, broken: &Broken, errors: &mut Errors) {
    validate_admin(config, errors);
    if config.state.etcd.is_some() {
        errors.push(
            "state.etcd",
            "the etcd state store is not available in this build yet; use state.file",
        );
    }
    if config.proxy.max_connections == 0 {
        errors.push("proxy.max_connections", "must be at least 1");
    }
    validate_upstream_timeout(config, broken, errors);
    let cluster_paths = item_paths("clusters", &broken.cluster_paths, config.clusters.len());
    let migration_paths = item_paths(
        "migrations",
        &broken.migration_paths,
        config.migrations.len(),
    );
    duplicates(
        errors,
        &cluster_paths,
        config.clusters.iter().map(|c| c.name.as_str()),
    );
    duplicates(
        errors,
        &migration_paths,
        config.migrations.iter().map(|m| m.name.as_str()),
    );
    for (path, cluster) in cluster_paths.iter().zip(&config.clusters) {
        validate_cluster(path, cluster, errors);
        for (p, m) in super::kafka::validate_unused_users(config, path, cluster) {
            errors.push(p, m);
        }
    }
    let mut listeners: Vec<(String, SocketAddr)> = Vec::new();
    if let Some(addr) = config.admin.listen {
        listeners.push(("admin.listen".into(), addr));
    }
    for (path, migration) in migration_paths.iter().zip(&config.migrations) {
        let path = path.as_str();
        validate_migration(config, broken, path, migration, errors);
        listeners.push((format!("{path}.listen"), migration.listen));
        listeners.extend(kafka_broker_listeners(path, migration));
        listeners.extend(super::rocketmq::broker_listeners(path, migration));
    }
    overlapping_listeners(errors, &listeners);
}

fn validate_admin(config: &Config, errors: &mut Errors) {
    let admin = &config.admin;
    match (&admin.listen, &admin.token_file) {
        (Some(_), None) => errors.push(
            "admin.token_file",
            "is required when admin.listen is set: every TCP admin request needs a bearer token",
        ),
        (_, Some(file)) => match std::fs::read_to_string(file) {
            Ok(token) if token.trim().is_empty() => {
                errors.push("admin.token_file", format!("{} is empty", file.display()));
            }
            Ok(_) => {}
            Err(e) => errors.push(
                "admin.token_file",
                format!("cannot read {}: {e}", file.display()),
            ),
        },
        (None, None) => {}
    }
    if admin.socket.as_os_str().is_empty() {
        errors.push("admin.socket", "must not be empty");
    }
    if let Some(tls) = &admin.tls {
        if admin.listen.is_none() {
            errors.push(
                "admin.tls",
                "only applies to admin.listen, which is not set (the Unix socket is never encrypted)",
            );
        }
        server_tls_readable(errors, "admin.tls", tls);
    }
}

/// The files a listener's TLS names exist and are readable.
fn server_tls_readable(errors: &mut Errors, path: &str, tls: &super::ServerTlsConfig) {
    readable(errors, &format!("{path}.cert_file"), &tls.cert_file);
    readable(errors, &format!("{path}.key_file"), &tls.key_file);
    if let Some(ca) = &tls.client_ca_file {
        readable(errors, &format!("{path}.client_ca_file"), ca);
    }
}

/// The YAML path of each of `count` parsed items of list `list`.
fn item_paths(list: &str, known: &[String], count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            known
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("{list}[{i}]"))
        })
        .collect()
}

fn duplicates<'a>(errors: &mut Errors, paths: &[String], names: impl Iterator<Item = &'a str>) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (path, name) in paths.iter().zip(names) {
        if let Some(first) = seen.insert(name, path) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate name \"{name}\" (also {first})"),
            );
        }
    }
}

fn validate_cluster(path: &str, cluster: &ClusterConfig, errors: &mut Errors) {
    if cluster.name.is_empty() {
        errors.push(format!("{path}.name"), "must not be empty");
    }
    if cluster.endpoints.is_empty() {
        errors.push(format!("{path}.endpoints"), "needs at least one host:port");
    }
    for (j, endpoint) in cluster.endpoints.iter().enumerate() {
        if let Err(message) = check_endpoint(endpoint) {
            errors.push(format!("{path}.endpoints[{j}]"), message);
        }
    }
    if let Some(tls) = &cluster.tls {
        readable(errors, &format!("{path}.tls.ca_file"), &tls.ca_file);
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                readable(errors, &format!("{path}.tls.cert_file"), cert);
                readable(errors, &format!("{path}.tls.key_file"), key);
            }
            (None, None) => {}
            _ => errors.push(
                format!("{path}.tls"),
                "cert_file and key_file must be given together",
            ),
        }
    }
    if let Some(auth) = &cluster.auth {
        if cluster.protocol == Protocol::Rocketmq {
            for (p, m) in super::rocketmq::validate_cluster_auth(path, auth) {
                errors.push(p, m);
            }
        }
        for (p, m) in super::kafka::validate_cluster_auth(path, cluster) {
            errors.push(p, m);
        }
        match (&auth.password, &auth.password_file) {
            (Some(_), Some(_)) => {
                errors.push(
                    format!("{path}.auth"),
                    "give password or password_file, not both",
                );
            }
            (None, Some(file)) => readable(errors, &format!("{path}.auth.password_file"), file),
            _ => {}
        }
        for (p, m) in super::redis::validate_mapped_users(path, cluster.protocol, auth) {
            errors.push(p, m);
        }
    }
}

/// `proxy.upstream_timeout` times out Redis commands and the RocketMQ
/// proxy's own lookups (routes, offsets); relayed Kafka and RocketMQ
/// requests are left to the clients' own request timeouts, because a
/// long-poll fetch or pull may rightly wait longer. Set in a file with no
/// migration it applies to, it would do nothing: refuse it.
fn validate_upstream_timeout(config: &Config, broken: &Broken, errors: &mut Errors) {
    let set = broken.proxy_keys.iter().any(|k| k == "upstream_timeout");
    let applies = config
        .migrations
        .iter()
        .any(|m| m.protocol != Protocol::Kafka);
    if set && !config.migrations.is_empty() && !applies {
        errors.push(
            "proxy.upstream_timeout",
            "applies to Redis migrations (and the RocketMQ proxy's own lookups) only; relayed Kafka requests are bounded by the clients' own request timeouts, so remove it",
        );
    }
}

/// `host:port` with a numeric port and a non-empty host.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!("\"{endpoint}\" is not host:port"));
    };
    if host.is_empty() {
        return Err(format!("\"{endpoint}\" has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("\"{endpoint}\" has no valid port (1-65535)")),
    }
}

fn readable(errors: &mut Errors, path: &str, file: &PathBuf) {
    if let Err(e) = std::fs::File::open(file) {
        errors.push(path, format!("cannot read {}: {e}", file.display()));
    }
}

fn validate_migration(
    config: &Config,
    broken: &Broken,
    path: &str,
    migration: &MigrationConfig,
    errors: &mut Errors,
) {
    for (side, name) in [("source", &migration.source), ("target", &migration.target)] {
        match config.cluster(name) {
            // Its own errors are reported; its protocol is not known.
            None if broken.cluster_names.contains(name) => {}
            None => errors.push(
                format!("{path}.{side}"),
                format!("unknown cluster \"{name}\""),
            ),
            Some(cluster) if cluster.protocol != migration.protocol => errors.push(
                format!("{path}.{side}"),
                format!(
                    "cluster \"{name}\" speaks {} but the migration is {}",
                    cluster.protocol.as_str(),
                    migration.protocol.as_str()
                ),
            ),
            Some(_) => {}
        }
    }
    if migration.source == migration.target {
        errors.push(format!("{path}.target"), "must differ from source");
    }
    validate_topics(path, migration, errors);
    validate_kafka(path, migration, errors);
    for (p, m) in super::kafka::validate_migration_auth(config, path, migration) {
        errors.push(p, m);
    }
    for (p, m) in super::rocketmq::validate(path, migration) {
        errors.push(p, m);
    }
    if let Some(tls) = &migration.tls {
        server_tls_readable(errors, &format!("{path}.tls"), tls);
    }
    for (p, m) in super::redis::validate(path, migration) {
        errors.push(p, m);
    }
}

fn validate_kafka(path: &str, migration: &MigrationConfig, errors: &mut Errors) {
    if migration.protocol != Protocol::Kafka {
        if migration.kafka.is_some() {
            errors.push(format!("{path}.kafka"), "only allowed on a kafka migration");
        }
        return;
    }
    let options = migration.kafka_options();
    match &options.advertised_host {
        Some(host) if host.trim().is_empty()
                || (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err()) => {
            errors.push(
                format!("{path}.kafka.advertised_host"),
                "must be a host name or IP, without a port",
            );
        }
        Some(_) => {}
        None if migration.listen.ip().is_unspecified() => errors.push(
            format!("{path}.kafka.advertised_host"),
            format!(
                "is required because listen ({}) is a wildcard address: clients must be told a host they can reach",
                migration.listen
            ),
        ),
        None => {}
    }
    if !(1..=MAX_VIRTUAL_BROKERS).contains(&options.virtual_brokers) {
        errors.push(
            format!("{path}.kafka.virtual_brokers"),
            format!("must be between 1 and {MAX_VIRTUAL_BROKERS}"),
        );
    }
    let copies = options.history == HistoryMode::Copy
        || migration
            .topics
            .iter()
            .any(|t| t.history == Some(HistoryMode::Copy));
    if copies && options.switch_start.is_some() {
        errors.push(
            format!("{path}.kafka.switch_start"),
            "applies only with history: leave (a copied partition's target segment starts where its copy ends); remove it or set history: leave on every topic",
        );
    }
    if options.history_mb_per_second == 0 {
        errors.push(
            format!("{path}.kafka.history_mb_per_second"),
            "must be at least 1 (to stop a copy, roll the topic back to source)",
        );
    }
    if options.dual_write_percent > 100 {
        errors.push(
            format!("{path}.kafka.dual_write_percent"),
            "must be between 0 and 100",
        );
    }
    if options.max_frame_bytes < MIN_KAFKA_FRAME {
        errors.push(
            format!("{path}.kafka.max_frame_bytes"),
            format!("must be at least {MIN_KAFKA_FRAME} bytes"),
        );
    }
    match migration.kafka_brokers_base() {
        Some(0) => errors.push(format!("{path}.kafka.brokers_listen_base"), "must not be 0"),
        Some(base) if u32::from(base) + u32::from(options.virtual_brokers) > 65_536 => errors.push(
            format!("{path}.kafka.brokers_listen_base"),
            format!(
                "{base} + virtual_brokers ({}) runs past port 65535",
                options.virtual_brokers
            ),
        ),
        Some(_) => {}
        None => errors.push(
            format!("{path}.kafka.brokers_listen_base"),
            "listen uses port 65535, so there is no port after it: set brokers_listen_base",
        ),
    }
}

/// Smallest `kafka.max_frame_bytes`: a Metadata response of a small cluster
/// already takes kilobytes, so anything below 64 KiB is a typo.
const MIN_KAFKA_FRAME: usize = 64 * 1024;

/// More virtual brokers than this only adds listeners nobody needs.
const MAX_VIRTUAL_BROKERS: u16 = 64;

/// The per-broker ports a Kafka migration reserves, as listeners for the
/// overlap check (every reserved port, bound or not yet).
fn kafka_broker_listeners(path: &str, migration: &MigrationConfig) -> Vec<(String, SocketAddr)> {
    if migration.protocol != Protocol::Kafka {
        return Vec::new();
    }
    let Some(base) = migration.kafka_brokers_base() else {
        return Vec::new();
    };
    (0..migration.kafka_options().virtual_brokers)
        .map_while(|i| base.checked_add(i).map(|port| (i, port)))
        .map(|(i, port)| {
            (
                format!("{path}.kafka (broker listener {i})"),
                SocketAddr::new(migration.listen.ip(), port),
            )
        })
        .collect()
}

fn validate_topics(path: &str, migration: &MigrationConfig, errors: &mut Errors) {
    if migration.topics.is_empty() {
        errors.push(format!("{path}.topics"), "needs at least one pattern");
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (j, topic) in migration.topics.iter().enumerate() {
        let topic_path = format!("{path}.topics[{j}]");
        if let Err(e) = Pattern::compile(&topic.pattern) {
            errors.push(format!("{topic_path}.match"), e.to_string());
        }
        match (&topic.name, migration.protocol) {
            (None, Protocol::Redis) => errors.push(
                format!("{topic_path}.name"),
                "a Redis keyspace needs a name: it is the topic ctl moves",
            ),
            (Some(name), _) => {
                if let Some(first) = names.insert(name.as_str(), j) {
                    errors.push(
                        format!("{topic_path}.name"),
                        format!("duplicate keyspace name \"{name}\" (also {path}.topics[{first}])"),
                    );
                }
            }
            (None, _) => {}
        }
        if topic.history.is_some() && migration.protocol != Protocol::Kafka {
            errors.push(
                format!("{topic_path}.history"),
                "only allowed on a kafka migration (it says whether a topic's source log is copied to the target)",
            );
        }
    }
}

/// Two listeners clash on the same port when the addresses are equal or either is a wildcard.
fn overlapping_listeners(errors: &mut Errors, listeners: &[(String, SocketAddr)]) {
    for (i, (path, addr)) in listeners.iter().enumerate() {
        let clash = listeners[..i].iter().find(|(_, other)| {
            other.port() == addr.port()
                && (other.ip() == addr.ip()
                    || other.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some((other_path, other)) = clash {
            errors.push(
                path.clone(),
                format!("{addr} overlaps {other_path} ({other})"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
clusters:
  - { name: old, protocol: redis, endpoints: ["127.0.0.1:6379"] }
  - { name: new, protocol: redis, endpoints: ["127.0.0.1:6380"] }
migrations:
  - name: cache
    protocol: redis
    listen: 127.0.0.1:7379
    source: old
    target: new
    topics: [ { name: sessions, match: "session:*" }, { name: rest, match: "*" } ]
"#;

    fn messages(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn valid_config_parses_with_defaults() {
        let config = parse(VALID).unwrap();
        assert_eq!(config.migrations[0].topics.len(), 2);
        assert_eq!(
            config.admin.socket,
            PathBuf::from(super::super::DEFAULT_SOCKET)
        );
        assert_eq!(
            config.proxy.max_connections,
            super::super::DEFAULT_MAX_CONNECTIONS
        );
    }

    #[test]
    fn three_independent_mistakes_are_all_reported() {
        let text = VALID
            .replace("target: new", "target: nowhere")
            .replace("{ name: new,", "{ name: old,")
            .replace("\"session:*\"", "\"session:[*\"");
        let errors = messages(&text);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("clusters[1].name: duplicate name \"old\""))
        );
        assert!(
            errors
                .iter()
                .any(|e| e == "migrations[0].target: unknown cluster \"nowhere\"")
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("migrations[0].topics[0].match:"))
        );
    }

    #[test]
    fn unknown_fields_in_separate_items_are_both_reported_with_paths() {
        let text = VALID
            .replace(
                "endpoints: [\"127.0.0.1:6379\"]",
                "endpoint: [\"127.0.0.1:6379\"]",
            )
            .replace(
                "listen: 127.0.0.1:7379",
                "listen: 127.0.0.1:7379\n    lisen: x",
            );
        let errors = messages(&text);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("clusters[0]"), "{errors:#?}");
        assert!(
            errors[0].contains("unknown field `endpoint`"),
            "{errors:#?}"
        );
        assert_eq!(errors[1], "clusters[0]: missing field `endpoints`");
        assert!(errors[2].starts_with("migrations[0]"), "{errors:#?}");
        assert!(errors[2].contains("unknown field `lisen`"), "{errors:#?}");
    }

    /// The case a new user hit: the first two errors hid the last two.
    #[test]
    fn errors_in_items_that_do_not_parse_are_all_reported() {
        let text = VALID
            .replace(
                "{ name: new, protocol: redis,",
                "{ name: new, protocol: rediss,",
            )
            .replace(
                "endpoints: [\"127.0.0.1:6379\"]",
                "endpoint: [\"127.0.0.1:6379\"]",
            )
            .replace("listen: 127.0.0.1:7379", "listen: 127.0.0.1:99999")
            .replace("source: old", "source: olde");
        let errors = messages(&(text + "proxy: { idle_timeout: soon, connect_timeout: later }\n"));
        let expected = [
            "proxy.idle_timeout: ",
            "proxy.connect_timeout: ",
            "clusters[0].endpoint: unknown field `endpoint`",
            "clusters[0]: missing field `endpoints`",
            "clusters[1].protocol: unknown variant `rediss`",
            "migrations[0].listen: ",
            "migrations[0].source: unknown cluster \"olde\"",
        ];
        for prefix in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(prefix)),
                "missing {prefix}: {errors:#?}"
            );
        }
        // No "unknown cluster" for `new`, whose own error is reported.
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn auth_is_refused_where_it_would_be_ignored() {
        let text = KAFKA.replace(
            "endpoints: [\"127.0.0.1:9092\"] }",
            "endpoints: [\"127.0.0.1:9092\"], auth: { username: u, password: p } }",
        );
        let errors = messages(&text);
        assert_eq!(
            errors,
            vec![
                "clusters[0].auth.mechanism: is required for a kafka cluster: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
            ]
        );
        let redis = VALID.replace(
            "endpoints: [\"127.0.0.1:6379\"] }",
            "endpoints: [\"127.0.0.1:6379\"], auth: { password: p } }",
        );
        parse(&redis).unwrap();
        let redis = VALID.replace(
            "endpoints: [\"127.0.0.1:6379\"] }",
            "endpoints: [\"127.0.0.1:6379\"], auth: { password: p, mechanism: PLAIN } }",
        );
        assert_eq!(
            messages(&redis),
            vec!["clusters[0].auth.mechanism: only kafka clusters take a SASL mechanism"]
        );
    }

    #[test]
    fn kafka_sasl_settings_work_or_are_refused_precisely() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        crate::credentials::kafka_users::add(
            &users,
            "alice",
            crate::credentials::scram::Mechanism::ScramSha256,
            "pw",
            4096,
        )
        .unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        let good = KAFKA
            .replace(
                "endpoints: [\"127.0.0.1:9092\"] }",
                &format!("endpoints: [\"127.0.0.1:9092\"], auth: {{ mechanism: SCRAM-SHA-512, username: u, password_file: \"{}\", users: {{ alice: {{ username: a1, password_file: \"{}\" }} }} }} }}", pw.display(), pw.display()),
            )
            .replace(
                "endpoints: [\"127.0.0.1:9093\"] }",
                &format!("endpoints: [\"127.0.0.1:9093\"], auth: {{ mechanism: PLAIN, username: u, password_file: \"{}\" }} }}", pw.display()),
            )
            + &format!("    kafka: {{ users_file: \"{}\", upstream_identity: client }}\n", users.display());
        let config = parse(&good).unwrap();
        assert_eq!(
            config.migrations[0].kafka_options().upstream_identity(),
            super::super::UpstreamIdentity::Client
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "# nobody\n").unwrap();
        let bad = KAFKA.replace(
            "endpoints: [\"127.0.0.1:9092\"] }",
            "endpoints: [\"127.0.0.1:9092\"], auth: { mechanism: GSSAPI } }",
        ) + &format!(
            "    kafka: {{ users_file: \"{}\", upstream_identity: client }}\n",
            empty.display()
        );
        assert_eq!(
            messages(&bad),
            vec![
                "clusters[0].auth.mechanism: unknown SASL mechanism \"GSSAPI\": PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (GSSAPI and OAUTHBEARER are not supported)".to_owned(),
                "clusters[0].auth.username: is required for a kafka cluster's SASL login".to_owned(),
                "clusters[0].auth: needs password_file (or password) for the SASL login".to_owned(),
                format!("migrations[0].kafka.users_file: {} defines no user: no client could log in (add one with `cutover user add`)", empty.display()),
                "migrations[0].kafka.upstream_identity: `client` needs clusters \"old\" to have auth with a mechanism (how client users log in to it)".to_owned(),
                "migrations[0].kafka.upstream_identity: `client` needs clusters \"new\" to have auth with a mechanism (how client users log in to it)".to_owned(),
            ]
        );
        let unused = KAFKA.replace(
            "endpoints: [\"127.0.0.1:9092\"] }",
            "endpoints: [\"127.0.0.1:9092\"], auth: { mechanism: PLAIN, username: u, password: p, users: { alice: { password: q } } } }",
        );
        assert_eq!(
            messages(&unused),
            vec![
                "clusters[0].auth.users: no migration of this cluster has kafka.upstream_identity: client, so these users would never be used; set it or remove them"
            ]
        );
        let lifetime = KAFKA.to_owned() + "    kafka: { client_session_lifetime: 10s }\n";
        assert_eq!(
            messages(&lifetime),
            vec![
                "migrations[0].kafka.client_session_lifetime: needs users_file: without it clients do not log in"
            ]
        );
        let no_file = KAFKA.to_owned() + "    kafka: { upstream_identity: client }\n";
        assert!(messages(&no_file).contains(&"migrations[0].kafka.upstream_identity: `client` needs users_file: without it clients have no user of their own to pass on".to_owned()), "{:?}", messages(&no_file));
    }

    #[test]
    fn redis_users_and_identity_settings_that_cannot_work_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.acl");
        std::fs::write(&bad, "user ok on >p\nrole admin\nuser x on #123\n").unwrap();
        let text = format!(
            "{}    redis: {{ users_file: \"{}\", client_password: p }}\n  - {{ name: c2, protocol: redis, listen: 127.0.0.1:7380, source: old, target: new, topics: [ {{ name: all, match: \"*\" }} ], redis: {{ upstream_identity: client }} }}\n",
            VALID, bad.display()
        )
        .replace(
            "endpoints: [\"127.0.0.1:6380\"] }",
            "endpoints: [\"127.0.0.1:6380\"], auth: { users: { alice: { username: a2 } } } }",
        );
        let errors = messages(&text);
        let expected = [
            "clusters[1].auth.users.alice: needs password or password_file",
            "migrations[0].redis.users_file: line 2: expected `user NAME rule...` (Redis ACL file syntax); line 3: `#` needs 64 hex digits of SHA-256",
            "migrations[0].redis.client_password: give users_file or client_password, not both",
            "migrations[1].redis.upstream_identity: `client` needs users_file",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for prefix in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(prefix)),
                "{prefix} in {errors:#?}"
            );
        }
    }

    const ROCKETMQ: &str = r#"
clusters:
  - { name: old, protocol: rocketmq, endpoints: ["127.0.0.1:9876"] }
  - { name: new, protocol: rocketmq, endpoints: ["127.0.0.1:9877"] }
migrations:
  - name: orders
    protocol: rocketmq
    listen: 127.0.0.1:19876
    source: old
    target: new
    topics: [ { match: "*" } ]
"#;

    #[test]
    fn rocketmq_acl_settings_that_cannot_sign_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (secret, blank) = (write("ok.secret", "sk\n"), write("blank.secret", "\n"));
        let (accounts, empty, bad) = (
            write("accounts", "# clients\nalice s3cret\n"),
            write("empty", "# nobody\n"),
            write("bad", "alice\n"),
        );
        let good = ROCKETMQ
            .replace(
                "endpoints: [\"127.0.0.1:9876\"] }",
                &format!("endpoints: [\"127.0.0.1:9876\"], auth: {{ username: ak, password_file: \"{secret}\" }} }}"),
            )
            .replace(
                "endpoints: [\"127.0.0.1:9877\"] }",
                "endpoints: [\"127.0.0.1:9877\"], auth: { username: ak2, password: sk2 } }",
            );
        let config = parse(&format!(
            "{good}    rocketmq: {{ accounts_file: \"{accounts}\" }}\n"
        ))
        .unwrap();
        assert!(
            config.migrations[0]
                .rocketmq_options()
                .accounts_file
                .is_some()
        );

        let broken = ROCKETMQ
            .replace(
                "endpoints: [\"127.0.0.1:9876\"] }",
                &format!("endpoints: [\"127.0.0.1:9876\"], auth: {{ password_file: \"{blank}\" }} }}"),
            )
            .replace(
                "endpoints: [\"127.0.0.1:9877\"] }",
                "endpoints: [\"127.0.0.1:9877\"], auth: { username: \"a k\", users: { u: { password: p } } } }",
            );
        let errors = messages(&format!(
            "{broken}    rocketmq: {{ accounts_file: \"{bad}\" }}\n  - {{ name: o2, protocol: rocketmq, listen: 127.0.0.1:29876, source: old, target: new, topics: [ {{ match: \"*\" }} ], rocketmq: {{ accounts_file: \"{empty}\" }} }}\n"
        ));
        let expected = [
            "clusters[0].auth.username: a rocketmq cluster's auth needs username: the access key the proxy signs requests with".to_owned(),
            format!("clusters[0].auth.password_file: {blank} has an empty first line; it must hold the secret key"),
            "clusters[1].auth.username: an access key has no spaces".to_owned(),
            "clusters[1].auth: a rocketmq cluster's auth needs password_file (or password): the secret key the proxy signs requests with".to_owned(),
            "clusters[1].auth.users: per-user credentials are supported for redis and kafka clusters only".to_owned(),
            format!("migrations[0].rocketmq.accounts_file: {bad} line 1: expected ACCESS_KEY SECRET_KEY"),
            format!("migrations[1].rocketmq.accounts_file: {empty} holds no account: no client could sign its requests"),
        ];
        for want in &expected {
            assert!(errors.contains(want), "missing {want}: {errors:#?}");
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn rocketmq_signing_without_client_accounts_is_warned_about() {
        let text = ROCKETMQ.replace(
            "endpoints: [\"127.0.0.1:9877\"] }",
            "endpoints: [\"127.0.0.1:9877\"], auth: { username: ak, password: sk } }",
        );
        let warnings = super::super::secret_warnings(&parse(&text).unwrap());
        assert!(
            warnings.iter().any(|w| w.starts_with(
                "migrations[0].rocketmq.accounts_file: not set, so unsigned clients are accepted and their requests signed as the account of new;"
            )),
            "{warnings:#?}"
        );
    }

    #[test]
    fn upstream_timeout_is_refused_where_nothing_honours_it() {
        let errors = messages(&format!("{KAFKA}proxy: {{ upstream_timeout: 5s }}\n"));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("proxy.upstream_timeout: applies to Redis migrations"),
            "{errors:#?}"
        );
        parse(&format!("{KAFKA}proxy: {{ shutdown_grace: 5s }}\n")).unwrap();
        parse(&format!("{VALID}proxy: {{ upstream_timeout: 5s }}\n")).unwrap();
    }

    #[test]
    fn zero_rates_are_refused() {
        let text = format!(
            "{VALID}    redis: {{ backfill_keys_per_second: 0, backfill_bytes_per_second: 0 }}\n"
        );
        let errors = messages(&text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0]
                .starts_with("migrations[0].redis.backfill_keys_per_second: must be at least 1")
        );
        assert!(
            errors[1]
                .starts_with("migrations[0].redis.backfill_bytes_per_second: must be at least 1")
        );
    }

    #[test]
    fn nested_type_errors_carry_the_full_path() {
        let text = format!("{VALID}    redis: {{ shadow_read_ratio: lots }}\n");
        let errors = messages(&text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("migrations[0].redis.shadow_read_ratio: "),
            "{errors:#?}"
        );
    }

    #[test]
    fn protocol_mismatch_overlap_tls_and_token_are_reported() {
        let text = r#"
admin: { listen: 127.0.0.1:7379 }
clusters:
  - { name: old, protocol: kafka, endpoints: ["127.0.0.1:9092"] }
  - { name: new, protocol: redis, endpoints: ["nohost"], tls: { ca_file: /nonexistent/ca.pem } }
migrations:
  - { name: m, protocol: redis, listen: 0.0.0.0:7379, source: old, target: new, topics: [ { match: "*" } ] }
"#;
        let errors = messages(text);
        let expected = [
            "admin.token_file: is required",
            "clusters[1].endpoints[0]: \"nohost\" is not host:port",
            "clusters[1].tls.ca_file: cannot read /nonexistent/ca.pem",
            "migrations[0].source: cluster \"old\" speaks kafka but the migration is redis",
            "migrations[0].topics[0].name: a Redis keyspace needs a name",
            "migrations[0].listen: 0.0.0.0:7379 overlaps admin.listen (127.0.0.1:7379)",
        ];
        for prefix in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(prefix)),
                "missing {prefix}: {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    const KAFKA: &str = r#"
clusters:
  - { name: old, protocol: kafka, endpoints: ["127.0.0.1:9092"] }
  - { name: new, protocol: kafka, endpoints: ["127.0.0.1:9093"] }
migrations:
  - name: events
    protocol: kafka
    listen: 127.0.0.1:9192
    source: old
    target: new
    topics: [ { match: "*" } ]
"#;

    #[test]
    fn kafka_defaults_follow_listen() {
        let config = parse(KAFKA).unwrap();
        let m = &config.migrations[0];
        assert_eq!(m.kafka_brokers_base(), Some(9193));
        assert_eq!(m.kafka_advertised_host(), "127.0.0.1");
        assert_eq!(
            m.kafka_options().virtual_brokers,
            super::super::DEFAULT_KAFKA_VIRTUAL_BROKERS
        );
    }

    #[test]
    fn kafka_options_are_validated_and_broker_ports_reserved() {
        let text = KAFKA.replace("127.0.0.1:9192", "0.0.0.0:9192")
            + "    kafka: { virtual_brokers: 0, max_frame_bytes: 10 }\n"
            + "  - { name: r, protocol: redis, listen: 127.0.0.1:7000, source: a, target: b, topics: [ { name: x, match: \"*\" } ], kafka: {} }\n"
            + "  - { name: k2, protocol: kafka, listen: 127.0.0.1:9300, source: old, target: new, topics: [ { match: \"*\" } ], kafka: { brokers_listen_base: 65534, advertised_host: \"h:1\" } }\n";
        let errors = messages(&text);
        let expected = [
            "migrations[0].kafka.advertised_host: is required because listen (0.0.0.0:9192) is a wildcard",
            "migrations[0].kafka.virtual_brokers: must be between 1 and 64",
            "migrations[0].kafka.max_frame_bytes: must be at least",
            "migrations[1].source: unknown cluster",
            "migrations[1].target: unknown cluster",
            "migrations[1].kafka: only allowed on a kafka migration",
            "migrations[2].kafka.advertised_host: must be a host name or IP",
            "migrations[2].kafka.brokers_listen_base: 65534 + virtual_brokers (3) runs past port 65535",
        ];
        for prefix in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(prefix)),
                "missing {prefix}: {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");

        let clash = KAFKA.to_owned()
            + "  - { name: r, protocol: kafka, listen: 127.0.0.1:9195, source: old, target: new, topics: [ { match: \"*\" } ], kafka: { brokers_listen_base: 9300 } }\n";
        let errors = messages(&clash);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "migrations[1].listen: 127.0.0.1:9195 overlaps migrations[0].kafka (broker listener 2)"
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn history_is_kafka_only_and_excludes_switch_start() {
        let text = KAFKA.replace(
            "topics: [ { match: \"*\" } ]",
            "topics: [ { match: \"*\", history: copy } ]",
        ) + "    kafka: { switch_start: log_end, history_mb_per_second: 0 }\n"
            + "  - { name: r, protocol: redis, listen: 127.0.0.1:7000, source: a, target: b, topics: [ { name: x, match: \"*\", history: leave } ] }\n"
            + "  - { name: k2, protocol: kafka, listen: 127.0.0.1:9300, source: old, target: new, topics: [ { match: \"*\" } ], kafka: { history: kopy } }\n";
        let errors = messages(&text);
        let expected = [
            "migrations[0].kafka.switch_start: applies only with history: leave",
            "migrations[0].kafka.history_mb_per_second: must be at least 1",
            "migrations[1].source: unknown cluster",
            "migrations[1].target: unknown cluster",
            "migrations[1].topics[0].history: only allowed on a kafka migration",
            "migrations[2].kafka.history: unknown variant `kopy`",
        ];
        for prefix in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(prefix)),
                "missing {prefix}: {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        let leave = KAFKA.to_owned() + "    kafka: { switch_start: log_end, history: leave }\n";
        let config = parse(&leave).expect("switch_start with history: leave is valid");
        assert_eq!(
            config.migrations[0].kafka_options().history,
            HistoryMode::Leave
        );
    }

    #[test]
    fn yaml_syntax_and_unknown_top_level_keys() {
        assert!(messages("clusters: [")[0].starts_with("(file): not valid YAML"));
        assert!(messages("migratons: []")[0].starts_with("migratons: unknown top-level key"));
    }
}
