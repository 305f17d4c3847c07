//! The users clients log in to the proxy as (`kafka.users_file`, format in
//! [`crate::credentials::kafka_users`]): reloaded by a control-plane task
//! when the file changes and published whole, so a session reads it
//! without a lock.

use std::path::Path;
use std::sync::Arc;

pub use crate::credentials::kafka_users::{DEFAULT_ITERATIONS, add};
use crate::credentials::kafka_users::{UserTable, load};
use crate::proxy::reload::Reloading;

/// The current user table, replaced whole when the file changes.
pub(super) type Users = Reloading<UserTable>;

/// Loads `path` once; [`Reloading::watch`] keeps it current.
///
/// # Errors
/// As [`load`].
pub(crate) fn open(path: &Path) -> Result<Arc<Users>, String> {
    // `Reloading` logs and returns the reason as a sentence, so the typed
    // error is rendered here, with the same text it always had.
    Reloading::open(path, "kafka users file", |p| {
        load(p).map_err(|e| e.to_string())
    })
}
