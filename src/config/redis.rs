//! `migrations[].redis:` checks and the Redis side of `clusters[].auth`
//! (called from `validate`): numbers in range, a users file that parses,
//! and identity settings that can work together.

use std::path::Path;

use cutover_redis::acl::UserTable;

use super::{AuthConfig, MigrationConfig, Protocol, RedisOptions, UpstreamIdentity};

impl RedisOptions {
    /// Whom sessions reach the clusters as, the default resolved.
    #[must_use]
    pub fn upstream_identity(&self) -> UpstreamIdentity {
        self.upstream_identity
            .unwrap_or(if self.users_file.is_some() {
                UpstreamIdentity::Client
            } else {
                UpstreamIdentity::Proxy
            })
    }
}

/// Errors of a migration's `redis:` section, as (path, message).
pub(super) fn validate(path: &str, migration: &MigrationConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let Some(redis) = &migration.redis else {
        return errors;
    };
    let mut push =
        |key: &str, message: String| errors.push((format!("{path}.redis{key}"), message));
    if migration.protocol != Protocol::Redis {
        push("", "only allowed on a redis migration".into());
    }
    if !(0.0..=1.0).contains(&redis.shadow_read_ratio) {
        push(".shadow_read_ratio", "must be between 0 and 1".into());
    }
    for (key, zero) in [
        (
            ".backfill_keys_per_second",
            redis.backfill_keys_per_second == 0,
        ),
        (
            ".backfill_bytes_per_second",
            redis.backfill_bytes_per_second == 0,
        ),
        (".verify_sample", redis.verify_sample == 0),
    ] {
        if zero {
            push(key, "must be at least 1".into());
        }
    }
    if let Some(file) = &redis.users_file {
        if let Err(message) = users_file_errors(file) {
            push(".users_file", message);
        }
        if redis.client_password.is_some() {
            push(
                ".client_password",
                "give users_file or client_password, not both (put the password on the `default` user in users_file)".into(),
            );
        }
    } else if redis.upstream_identity == Some(UpstreamIdentity::Client) {
        push(
            ".upstream_identity",
            "`client` needs users_file: without it clients have no user of their own to pass on"
                .into(),
        );
    }
    errors
}

fn users_file_errors(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let table = UserTable::parse(&text).map_err(|errors| {
        let lines: Vec<_> = errors.iter().map(ToString::to_string).collect();
        lines.join("; ")
    })?;
    if table.is_empty() {
        return Err(format!(
            "{} defines no user: no client could authenticate",
            file.display()
        ));
    }
    Ok(())
}

/// Errors of `clusters[].auth.users` (Redis and Kafka), as (path, message).
pub(super) fn validate_mapped_users(
    path: &str,
    protocol: Protocol,
    auth: &AuthConfig,
) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if auth.users.is_empty() {
        return errors;
    }
    if protocol == Protocol::Rocketmq {
        errors.push((
            format!("{path}.auth.users"),
            "per-user credentials are supported for redis and kafka clusters only".into(),
        ));
    }
    for (name, user) in &auth.users {
        let at = format!("{path}.auth.users.{name}");
        match (&user.password, &user.password_file) {
            (Some(_), Some(_)) => {
                errors.push((at, "give password or password_file, not both".into()));
            }
            (None, None) => errors.push((at, "needs password or password_file".into())),
            (None, Some(file)) => {
                if let Err(e) = std::fs::File::open(file) {
                    errors.push((
                        format!("{at}.password_file"),
                        format!("cannot read {}: {e}", file.display()),
                    ));
                }
            }
            (Some(_), None) => {}
        }
    }
    errors
}
