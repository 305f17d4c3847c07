//! Redis ACL users clients authenticate as at the proxy: the table of
//! [`cutover_redis::acl`], loaded from `redis.users_file` and reloaded by a
//! control-plane task when the file changes, published whole so a session
//! reads it without a lock.
//!
//! With `upstream_identity: client` the clusters see each client as its own
//! user, so a user's command and key restrictions on the source keep
//! applying through the proxy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use cutover_redis::acl::UserTable;
use tokio_util::sync::CancellationToken;

/// How often the users file's modification time is looked at.
const RELOAD_POLL: Duration = Duration::from_secs(1);

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
pub struct Users {
    path: PathBuf,
    table: ArcSwap<UserTable>,
}

impl Users {
    /// Loads `path` once.
    ///
    /// # Errors
    /// As [`load`].
    pub fn open(path: &Path) -> Result<Arc<Users>, String> {
        let table = load(path)?;
        Ok(Arc::new(Users {
            path: path.to_owned(),
            table: ArcSwap::from_pointee(table),
        }))
    }

    /// The table as of now.
    #[must_use]
    pub fn current(&self) -> Arc<UserTable> {
        self.table.load_full()
    }

    /// Reloads the file whenever its modification time changes, until
    /// `shutdown`. A file that no longer parses keeps the last good table
    /// (and says so): locking everybody out on a typo would be worse.
    pub fn watch(self: &Arc<Self>, migration: Arc<str>, shutdown: &CancellationToken) {
        let users = self.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut seen = modified(&users.path);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RELOAD_POLL) => {}
                }
                let now = modified(&users.path);
                if now == seen {
                    continue;
                }
                seen = now;
                match load(&users.path) {
                    Ok(table) => {
                        tracing::info!(%migration, users = table.len(), "redis users file reloaded");
                        users.table.store(Arc::new(table));
                    }
                    Err(error) => {
                        tracing::warn!(%migration, %error, "redis users file not reloaded; the previous users stay in force");
                    }
                }
            }
        });
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
