//! Where the configuration keeps secrets, and warnings about how: a secret
//! file other users can read, or a password written inline in the config.
//! Warnings, not errors: the proxy still runs, but `check` and the start-up
//! log say what to fix before production.

use std::path::Path;

use super::Config;

/// Every secret the configuration names, as (YAML path, file) for files and
/// YAML paths of inline passwords.
fn secret_files(config: &Config) -> (Vec<(String, &Path)>, Vec<String>) {
    let mut files = Vec::new();
    let mut inline = Vec::new();
    if let Some(token) = &config.admin.token_file {
        files.push(("admin.token_file".to_owned(), token.as_path()));
    }
    if let Some(tls) = &config.admin.tls {
        files.push(("admin.tls.key_file".to_owned(), tls.key_file.as_path()));
    }
    for (i, cluster) in config.clusters.iter().enumerate() {
        let path = format!("clusters[{i}]");
        if let Some(key) = cluster.tls.as_ref().and_then(|t| t.key_file.as_deref()) {
            files.push((format!("{path}.tls.key_file"), key));
        }
        let Some(auth) = &cluster.auth else { continue };
        if let Some(file) = &auth.password_file {
            files.push((format!("{path}.auth.password_file"), file.as_path()));
        }
        if auth.password.is_some() {
            inline.push(format!("{path}.auth.password"));
        }
        for (name, user) in &auth.users {
            if let Some(file) = &user.password_file {
                files.push((format!("{path}.auth.users.{name}.password_file"), file));
            }
            if user.password.is_some() {
                inline.push(format!("{path}.auth.users.{name}.password"));
            }
        }
    }
    for (i, migration) in config.migrations.iter().enumerate() {
        let path = format!("migrations[{i}]");
        if let Some(tls) = &migration.tls {
            files.push((format!("{path}.tls.key_file"), tls.key_file.as_path()));
        }
        if let Some(accounts) = migration
            .rocketmq
            .as_ref()
            .and_then(|r| r.accounts_file.as_deref())
        {
            files.push((format!("{path}.rocketmq.accounts_file"), accounts));
        }
        if let Some(users) = migration
            .kafka
            .as_ref()
            .and_then(|k| k.users_file.as_deref())
        {
            files.push((format!("{path}.kafka.users_file"), users));
        }
        if let Some(redis) = &migration.redis {
            if let Some(users) = &redis.users_file {
                files.push((format!("{path}.redis.users_file"), users.as_path()));
            }
            if redis.client_password.is_some() {
                inline.push(format!("{path}.redis.client_password"));
            }
        }
    }
    (files, inline)
}

/// Sentences about secrets kept carelessly, one per finding.
#[must_use]
pub fn secret_warnings(config: &Config) -> Vec<String> {
    let (files, inline) = secret_files(config);
    let mut warnings: Vec<String> = files
        .into_iter()
        .filter_map(|(path, file)| {
            let mode = others_can_read(file)?;
            Some(format!(
                "{path}: {} is readable by other users (mode {mode:o}); chmod 600 it",
                file.display()
            ))
        })
        .collect();
    warnings.extend(inline.into_iter().map(|path| {
        format!("{path}: a password written in the config file; prefer the matching *_file key")
    }));
    warnings.extend(lent_accounts(config));
    warnings
}

/// RocketMQ migrations that sign for an ACL cluster but check no client:
/// any client reaching the listener then acts as the cluster's account.
fn lent_accounts(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, migration) in config.migrations.iter().enumerate() {
        if migration.protocol != super::Protocol::Rocketmq
            || migration.rocketmq_options().accounts_file.is_some()
        {
            continue;
        }
        let signing: Vec<&str> = config
            .clusters
            .iter()
            .filter(|c| {
                c.auth.is_some() && (c.name == migration.source || c.name == migration.target)
            })
            .map(|c| c.name.as_str())
            .collect();
        if !signing.is_empty() {
            warnings.push(format!(
                "migrations[{i}].rocketmq.accounts_file: not set, so unsigned clients are accepted and their requests signed as the account of {}; set it unless every client that can reach {} is trusted",
                signing.join(" and "),
                migration.listen
            ));
        }
    }
    warnings
}

#[cfg(unix)]
fn others_can_read(file: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn others_can_read(_file: &Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn loose_secret_files_and_inline_passwords_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (open, closed) = (dir.path().join("open.pw"), dir.path().join("closed.pw"));
        for (file, mode) in [(&open, 0o644), (&closed, 0o600)] {
            std::fs::write(file, "pw\n").unwrap();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let text = format!(
            "clusters:\n  - {{ name: old, protocol: redis, endpoints: [\"127.0.0.1:6379\"], auth: {{ password_file: \"{}\" }} }}\n  - {{ name: new, protocol: redis, endpoints: [\"127.0.0.1:6380\"], auth: {{ password_file: \"{}\", users: {{ a: {{ password: x }} }} }} }}\nmigrations: []\n",
            open.display(),
            closed.display()
        );
        let config = super::super::parse(&text).unwrap();
        let warnings = super::secret_warnings(&config);
        assert_eq!(
            warnings,
            vec![
                format!(
                    "clusters[0].auth.password_file: {} is readable by other users (mode 644); chmod 600 it",
                    open.display()
                ),
                "clusters[1].auth.users.a.password: a password written in the config file; prefer the matching *_file key".to_owned(),
            ]
        );
    }
}
