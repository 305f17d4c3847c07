//! Redis ACL users clients authenticate as at the proxy: the table of
//! [`cutover_redis::acl`], loaded from `redis.users_file` and reloaded by a
//! control-plane task when the file changes, published whole so a session
//! reads it without a lock.
//!
//! With `upstream_identity: client` the clusters see each client as its own
//! user, so a user's command and key restrictions on the source keep
//! applying through the proxy.

use std::path::Path;
use std::sync::Arc;

use cutover_redis::acl::UserTable;

use crate::proxy::reload::Reloading;

/// Reads and parses a users file, errors as sentences.
///
/// # Errors
/// The file cannot be read, or some lines are invalid (all listed).
pub fn load(path: &Path) -> Result<UserTable, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    UserTable::parse(&text).map_err(|errors| {
        let lines: Vec<_> = errors.iter().map(ToString::to_string).collect();
        format!("{}: {}", path.display(), lines.join("; "))
    })
}

/// The current user table, replaced whole when the file changes.
pub type Users = Reloading<UserTable>;

/// Loads `path` once; [`Reloading::watch`] keeps it current.
///
/// # Errors
/// As [`load`].
pub fn open(path: &Path) -> Result<Arc<Users>, String> {
    Reloading::open(path, "redis users file", load)
}
