//! `migrations[].rocketmq:` options, their defaults, the proxy's per-broker
//! port layout, and their validation (called from `validate`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{AuthConfig, MigrationConfig, Protocol, duration};

/// `migrations[].rocketmq:` options.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RocketmqOptions {
    /// Host name or IP the proxy advertises in every broker address of the
    /// routes it answers; defaults to the IP of `listen`, which must then
    /// not be a wildcard.
    pub advertised_host: Option<String>,
    /// First port of the per-broker endpoints; defaults to the port after
    /// `listen`. Each real broker (of both clusters) gets two ports: the
    /// one advertised and, two below it, the VIP-channel port older Java
    /// clients derive from it.
    pub brokers_listen_base: Option<u16>,
    /// Real brokers (source and target together) the proxy can stand for;
    /// `2 × max_brokers` ports are reserved from `brokers_listen_base`.
    pub max_brokers: u16,
    /// Largest remoting frame accepted from a client or upstream.
    pub max_frame_bytes: usize,
    /// Appended to target broker names in the routes clients see, so a
    /// target broker never shares a name with a source broker.
    pub target_broker_suffix: String,
    /// How long the source must receive no message of a topic (through the
    /// proxy, and by its queues' max offsets) before `cutover → target`.
    #[serde(with = "duration")]
    pub quiet_window: Duration,
    /// File of the accounts clients sign their requests with (ACL), one
    /// `ACCESS_KEY SECRET_KEY` per line; when absent, clients are not
    /// checked (unsigned clients are accepted).
    pub accounts_file: Option<std::path::PathBuf>,
}

/// Enough for most pairs of clusters; every reserved port is checked
/// against the other listeners of the config.
pub const DEFAULT_ROCKETMQ_MAX_BROKERS: u16 = 16;
/// Unlikely to be a real broker name's ending; operators may pick another.
pub const DEFAULT_TARGET_BROKER_SUFFIX: &str = "-target";
/// Producers refresh routes every 30 s by default (`pollNameServerInterval`),
/// and the check watches offsets itself, so a few seconds of silence after
/// that is convincing without stalling the operator.
pub const DEFAULT_QUIET_WINDOW: Duration = Duration::from_secs(3);

impl Default for RocketmqOptions {
    fn default() -> Self {
        RocketmqOptions {
            advertised_host: None,
            brokers_listen_base: None,
            max_brokers: DEFAULT_ROCKETMQ_MAX_BROKERS,
            max_frame_bytes: cutover_rocketmq::DEFAULT_MAX_FRAME,
            target_broker_suffix: DEFAULT_TARGET_BROKER_SUFFIX.into(),
            quiet_window: DEFAULT_QUIET_WINDOW,
            accounts_file: None,
        }
    }
}

/// The two ports of the `index`-th real broker counted from `base`:
/// `(advertised, vip)` with `vip = advertised − 2`, packed so that no port
/// is wasted: brokers 0 and 1 use `base+2, base+3` with VIP ports `base,
/// base+1`, brokers 2 and 3 use `base+6, base+7` (VIP `base+4, base+5`)...
#[must_use]
pub fn rocketmq_broker_ports(base: u16, index: u16) -> Option<(u16, u16)> {
    let offset = 4 * u32::from(index / 2) + u32::from(index % 2);
    let vip = u16::try_from(u32::from(base) + offset).ok()?;
    Some((vip.checked_add(2)?, vip))
}

impl MigrationConfig {
    /// The RocketMQ options, defaults filled in when the section is absent.
    #[must_use]
    pub fn rocketmq_options(&self) -> RocketmqOptions {
        self.rocketmq.clone().unwrap_or_default()
    }

    /// The host RocketMQ clients are told brokers live at.
    #[must_use]
    pub fn rocketmq_advertised_host(&self) -> String {
        self.rocketmq
            .as_ref()
            .and_then(|r| r.advertised_host.clone())
            .unwrap_or_else(|| self.listen.ip().to_string())
    }

    /// The first per-broker port: `rocketmq.brokers_listen_base`, else the
    /// port right after `listen`; `None` past 65535.
    #[must_use]
    pub fn rocketmq_brokers_base(&self) -> Option<u16> {
        self.rocketmq
            .as_ref()
            .and_then(|r| r.brokers_listen_base)
            .or_else(|| self.listen.port().checked_add(1))
    }
}

/// Smallest `rocketmq.max_frame_bytes`: a route or cluster-info body of a
/// small deployment already takes kilobytes.
const MIN_FRAME: usize = 64 * 1024;

/// Every problem with a migration's `rocketmq` section, as (path, message).
pub(super) fn validate(path: &str, migration: &MigrationConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut push = |p: String, m: String| errors.push((p, m));
    if migration.protocol != Protocol::Rocketmq {
        if migration.rocketmq.is_some() {
            push(
                format!("{path}.rocketmq"),
                "only allowed on a rocketmq migration".into(),
            );
        }
        return errors;
    }
    let options = migration.rocketmq_options();
    if let Some(message) = advertised_host_error(migration, &options) {
        push(format!("{path}.rocketmq.advertised_host"), message);
    }
    if options.max_brokers == 0 {
        push(
            format!("{path}.rocketmq.max_brokers"),
            "must be at least 1".into(),
        );
    }
    if options.max_frame_bytes < MIN_FRAME {
        push(
            format!("{path}.rocketmq.max_frame_bytes"),
            format!("must be at least {MIN_FRAME} bytes"),
        );
    }
    let suffix = &options.target_broker_suffix;
    if suffix.is_empty() || suffix.chars().any(|c| c.is_whitespace() || c == '"') {
        push(
            format!("{path}.rocketmq.target_broker_suffix"),
            "must be non-empty, without spaces or quotes: it keeps target broker names apart from source ones".into(),
        );
    }
    if options.quiet_window.is_zero() {
        push(
            format!("{path}.rocketmq.quiet_window"),
            "must be above zero".into(),
        );
    }
    if let Some(file) = &options.accounts_file
        && let Some(message) = accounts_file_error(file)
    {
        push(format!("{path}.rocketmq.accounts_file"), message);
    }
    if let Some(message) = brokers_listen_base_error(migration, &options) {
        push(format!("{path}.rocketmq.brokers_listen_base"), message);
    }
    errors
}

/// Why `advertised_host` cannot be told to clients, if it cannot: it must
/// be a bare host, and is required when `listen` is a wildcard.
fn advertised_host_error(migration: &MigrationConfig, options: &RocketmqOptions) -> Option<String> {
    match &options.advertised_host {
        Some(host)
            if host.trim().is_empty()
                || (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err()) =>
        {
            Some("must be a host name or IP, without a port".into())
        }
        Some(_) => None,
        None if migration.listen.ip().is_unspecified() => Some(format!(
            "is required because listen ({}) is a wildcard address: clients must be told a host they can reach",
            migration.listen
        )),
        None => None,
    }
}

/// Why the accounts file cannot be used, if it cannot: unreadable, bad,
/// or empty (no client could sign).
fn accounts_file_error(file: &std::path::Path) -> Option<String> {
    match crate::credentials::rocketmq_accounts::load(file) {
        Err(e) => Some(e.to_string()),
        Ok(accounts) if accounts.is_empty() => Some(format!(
            "{} holds no account: no client could sign its requests",
            file.display()
        )),
        Ok(_) => None,
    }
}

/// Why the brokers' listen ports do not fit, if they do not: two ports
/// per broker (rounded up to pairs) must stay at or below 65535.
fn brokers_listen_base_error(
    migration: &MigrationConfig,
    options: &RocketmqOptions,
) -> Option<String> {
    match migration.rocketmq_brokers_base() {
        Some(0) => Some("must not be 0".into()),
        Some(base)
            if u32::from(base) + 2 * u32::from(options.max_brokers.div_ceil(2) * 2) > 65_536 =>
        {
            Some(format!(
                "{base} + 2 × max_brokers ({}) runs past port 65535",
                options.max_brokers
            ))
        }
        Some(_) => None,
        None => Some(
            "listen uses port 65535, so there is no port after it: set brokers_listen_base".into(),
        ),
    }
}

/// Errors of a RocketMQ cluster's `auth` (ACL: the proxy signs every
/// request to the cluster with this access key and secret), as (path,
/// message). Both halves are required: without them the proxy would send
/// unsigned requests, which an ACL broker refuses.
pub(super) fn validate_cluster_auth(path: &str, auth: &AuthConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    match auth.username.as_deref().map(str::trim) {
        None | Some("") => errors.push((
            format!("{path}.auth.username"),
            "a rocketmq cluster's auth needs username: the access key the proxy signs requests with".into(),
        )),
        Some(ak) if ak.chars().any(char::is_whitespace) => errors.push((
            format!("{path}.auth.username"),
            "an access key has no spaces".into(),
        )),
        Some(_) => {}
    }
    match (&auth.password, &auth.password_file) {
        (None, None) => errors.push((
            format!("{path}.auth"),
            "a rocketmq cluster's auth needs password_file (or password): the secret key the proxy signs requests with".into(),
        )),
        (Some(p), None) if p.is_empty() => errors.push((
            format!("{path}.auth.password"),
            "must not be empty: it is the secret key".into(),
        )),
        (None, Some(file)) => {
            if let Ok(text) = std::fs::read_to_string(file)
                && text.lines().next().is_none_or(str::is_empty)
            {
                errors.push((
                    format!("{path}.auth.password_file"),
                    format!(
                        "{} has an empty first line; it must hold the secret key",
                        file.display()
                    ),
                ));
            }
        }
        _ => {}
    }
    errors
}

/// Every port a RocketMQ migration reserves for broker endpoints, as
/// listeners for the overlap check.
pub(super) fn broker_listeners(
    path: &str,
    migration: &MigrationConfig,
) -> Vec<(String, SocketAddr)> {
    if migration.protocol != Protocol::Rocketmq {
        return Vec::new();
    }
    let Some(base) = migration.rocketmq_brokers_base() else {
        return Vec::new();
    };
    let max = migration.rocketmq_options().max_brokers;
    (0..max)
        .filter_map(|i| rocketmq_broker_ports(base, i).map(|ports| (i, ports)))
        .flat_map(|(i, (port, vip))| {
            [
                (
                    format!("{path}.rocketmq (broker endpoint {i})"),
                    SocketAddr::new(migration.listen.ip(), port),
                ),
                (
                    format!("{path}.rocketmq (broker endpoint {i}, VIP channel)"),
                    SocketAddr::new(migration.listen.ip(), vip),
                ),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_ports_pack_vip_ports_two_below_without_gaps() {
        let ports: Vec<_> = (0..4)
            .map(|i| rocketmq_broker_ports(100, i).unwrap())
            .collect();
        assert_eq!(ports, vec![(102, 100), (103, 101), (106, 104), (107, 105)]);
        assert_eq!(rocketmq_broker_ports(65534, 0), None);
        assert_eq!(rocketmq_broker_ports(65532, 1), Some((65535, 65533)));
    }

    fn errors(migrations: &str) -> Vec<String> {
        let text = format!(
            "clusters:\n  - {{ name: old, protocol: rocketmq, endpoints: [\"127.0.0.1:9876\"] }}\n  - {{ name: new, protocol: rocketmq, endpoints: [\"127.0.0.1:9877\"] }}\nmigrations:\n{migrations}"
        );
        match super::super::parse(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_follow_listen_and_options_are_validated() {
        let ok = "  - { name: o, protocol: rocketmq, listen: 127.0.0.1:19876, source: old, target: new, topics: [ { match: \"*\" } ] }\n";
        assert!(errors(ok).is_empty(), "{:?}", errors(ok));
        let config = super::super::parse(&format!(
            "clusters:\n  - {{ name: old, protocol: rocketmq, endpoints: [\"h:1\"] }}\n  - {{ name: new, protocol: rocketmq, endpoints: [\"h:2\"] }}\nmigrations:\n{ok}"
        ))
        .unwrap();
        let m = &config.migrations[0];
        assert_eq!(m.rocketmq_brokers_base(), Some(19877));
        assert_eq!(m.rocketmq_advertised_host(), "127.0.0.1");
        assert_eq!(
            m.rocketmq_options().target_broker_suffix,
            DEFAULT_TARGET_BROKER_SUFFIX
        );

        let bad = "  - { name: o, protocol: rocketmq, listen: 0.0.0.0:19876, source: old, target: new, topics: [ { match: \"*\" } ],\n      rocketmq: { max_brokers: 0, max_frame_bytes: 10, target_broker_suffix: \"\", quiet_window: 0s } }\n  - { name: p, protocol: rocketmq, listen: 127.0.0.1:19880, source: old, target: new, topics: [ { match: \"*\" } ], rocketmq: { brokers_listen_base: 65530 } }\n";
        let got = errors(bad);
        for want in [
            "migrations[0].rocketmq.advertised_host: is required because listen (0.0.0.0:19876) is a wildcard",
            "migrations[0].rocketmq.max_brokers: must be at least 1",
            "migrations[0].rocketmq.max_frame_bytes: must be at least",
            "migrations[0].rocketmq.target_broker_suffix: must be non-empty",
            "migrations[0].rocketmq.quiet_window: must be above zero",
            "migrations[1].rocketmq.brokers_listen_base: 65530 + 2 × max_brokers (16) runs past port 65535",
        ] {
            assert!(
                got.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {got:#?}"
            );
        }
        // The second migration's listen sits among the first one's broker ports.
        let clash = "  - { name: o, protocol: rocketmq, listen: 127.0.0.1:19876, source: old, target: new, topics: [ { match: \"*\" } ] }\n  - { name: p, protocol: rocketmq, listen: 127.0.0.1:19880, source: old, target: new, topics: [ { match: \"*\" } ], rocketmq: { brokers_listen_base: 30000 } }\n";
        let got = errors(clash);
        assert!(
            got.iter().any(|e| e.starts_with("migrations[1].listen: 127.0.0.1:19880 overlaps migrations[0].rocketmq (broker endpoint")),
            "{got:#?}"
        );
    }
}
