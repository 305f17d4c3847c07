//! The Kafka side of authentication in the config (called from
//! `validate`): `clusters[].auth` as a SASL login, `kafka.users_file` and
//! `kafka.upstream_identity`, so `check` accepts exactly what the proxy
//! can do and names what it cannot.

use crate::credentials::kafka_users::load as load_users;
use crate::credentials::scram::Mechanism;

use super::{AuthConfig, ClusterConfig, Config, MigrationConfig, Protocol, UpstreamIdentity};

impl super::KafkaOptions {
    /// Whom sessions reach the clusters as, the default resolved.
    #[must_use]
    pub fn upstream_identity(&self) -> UpstreamIdentity {
        self.upstream_identity.unwrap_or(UpstreamIdentity::Proxy)
    }
}

impl AuthConfig {
    /// The Kafka SASL mechanism, when given and known.
    #[must_use]
    pub fn sasl_mechanism(&self) -> Option<Mechanism> {
        self.mechanism.as_deref().and_then(Mechanism::parse)
    }
}

/// Errors of a cluster's `auth` for its protocol, as (path, message).
pub(super) fn validate_cluster_auth(path: &str, cluster: &ClusterConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let Some(auth) = &cluster.auth else {
        return errors;
    };
    let mut push = |key: &str, message: String| errors.push((format!("{path}.auth{key}"), message));
    if cluster.protocol != Protocol::Kafka {
        if auth.mechanism.is_some() {
            push(
                ".mechanism",
                "only kafka clusters take a SASL mechanism".into(),
            );
        }
        return errors;
    }
    match auth.mechanism.as_deref() {
        None => push(
            ".mechanism",
            "is required for a kafka cluster: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into(),
        ),
        Some(name) if Mechanism::parse(name).is_none() => push(
            ".mechanism",
            format!(
                "unknown SASL mechanism \"{name}\": PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (GSSAPI and OAUTHBEARER are not supported)"
            ),
        ),
        Some(_) => {}
    }
    if auth.username.as_deref().is_none_or(str::is_empty) {
        push(
            ".username",
            "is required for a kafka cluster's SASL login".into(),
        );
    }
    if auth.password.is_none() && auth.password_file.is_none() {
        push(
            "",
            "needs password_file (or password) for the SASL login".into(),
        );
    }
    errors
}

/// A Kafka cluster's `auth.users` that no migration would use (they apply
/// only with `kafka.upstream_identity: client`), as (path, message).
pub(super) fn validate_unused_users(
    config: &Config,
    path: &str,
    cluster: &ClusterConfig,
) -> Vec<(String, String)> {
    let has_users = cluster.auth.as_ref().is_some_and(|a| !a.users.is_empty());
    if cluster.protocol != Protocol::Kafka || !has_users {
        return Vec::new();
    }
    let used = config.migrations.iter().any(|m| {
        m.protocol == Protocol::Kafka
            && (m.source == cluster.name || m.target == cluster.name)
            && m.kafka_options().upstream_identity() == UpstreamIdentity::Client
    });
    if used {
        return Vec::new();
    }
    vec![(
        format!("{path}.auth.users"),
        "no migration of this cluster has kafka.upstream_identity: client, so these users would never be used; set it or remove them".into(),
    )]
}

/// Errors of a Kafka migration's `users_file` and `upstream_identity`, as
/// (path, message).
pub(super) fn validate_migration_auth(
    config: &Config,
    path: &str,
    migration: &MigrationConfig,
) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let Some(kafka) = migration
        .kafka
        .as_ref()
        .filter(|_| migration.protocol == Protocol::Kafka)
    else {
        return errors;
    };
    let mut push =
        |key: &str, message: String| errors.push((format!("{path}.kafka{key}"), message));
    if let Some(file) = &kafka.users_file {
        match load_users(file) {
            Ok(table) if table.is_empty() => push(
                ".users_file",
                format!(
                    "{} defines no user: no client could log in (add one with `cutover user add`)",
                    file.display()
                ),
            ),
            Ok(_) => {}
            Err(e) => push(".users_file", e.to_string()),
        }
    }
    let lifetime = kafka.client_session_lifetime;
    if !lifetime.is_zero() {
        if kafka.users_file.is_none() {
            push(
                ".client_session_lifetime",
                "needs users_file: without it clients do not log in".into(),
            );
        } else if lifetime < std::time::Duration::from_secs(1) {
            push(
                ".client_session_lifetime",
                "must be 0s (no expiry) or at least 1s".into(),
            );
        }
    }
    if kafka.upstream_identity() == UpstreamIdentity::Client {
        if kafka.users_file.is_none() {
            push(
                ".upstream_identity",
                "`client` needs users_file: without it clients have no user of their own to pass on".into(),
            );
        }
        for side in [&migration.source, &migration.target] {
            let Some(cluster) = config.cluster(side) else {
                continue;
            };
            if cluster
                .auth
                .as_ref()
                .and_then(AuthConfig::sasl_mechanism)
                .is_none()
            {
                push(
                    ".upstream_identity",
                    format!(
                        "`client` needs clusters \"{side}\" to have auth with a mechanism (how client users log in to it)"
                    ),
                );
            }
        }
    }
    errors
}
