//! A file the proxy keeps in force while it runs (a users file): loaded at
//! start, reloaded whole when its modification time changes, and published
//! through an `ArcSwap` so sessions read it without a lock. A file that no
//! longer parses keeps the last good version in force (and says so):
//! locking every client out on a typo would be worse.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

/// How often the file's modification time is looked at.
const RELOAD_POLL: Duration = Duration::from_secs(1);

/// The parsed file as of now, and how to read it again.
pub struct Reloading<T> {
    path: PathBuf,
    what: &'static str,
    load: fn(&Path) -> Result<T, String>,
    current: ArcSwap<T>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Loads `path` once with `load`; `what` names the file in logs.
    ///
    /// # Errors
    /// `load`'s message when the file cannot be read or parsed.
    pub fn open(
        path: &Path,
        what: &'static str,
        load: fn(&Path) -> Result<T, String>,
    ) -> Result<Arc<Self>, String> {
        let first = load(path)?;
        Ok(Arc::new(Reloading {
            path: path.to_owned(),
            what,
            load,
            current: ArcSwap::from_pointee(first),
        }))
    }

    /// The version in force.
    #[must_use]
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Reloads the file whenever its modification time changes, until
    /// `shutdown`.
    pub fn watch(self: &Arc<Self>, migration: Arc<str>, shutdown: &CancellationToken) {
        let this = self.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut seen = modified(&this.path);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RELOAD_POLL) => {}
                }
                let now = modified(&this.path);
                if now == seen {
                    continue;
                }
                seen = now;
                match (this.load)(&this.path) {
                    Ok(next) => {
                        tracing::info!(%migration, "{} reloaded", this.what);
                        this.current.store(Arc::new(next));
                    }
                    Err(error) => {
                        tracing::warn!(%migration, %error, "{} not reloaded; the previous version stays in force", this.what);
                    }
                }
            }
        });
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
