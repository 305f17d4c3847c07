//! The live state of every keyspace's backfill: its persisted progress and
//! the flags the backfill task sets and the readiness checks read. A leaf,
//! so the migration's shared state holds it without importing the backfill
//! task (which imports the shared state).

use std::sync::atomic::{AtomicBool, AtomicU64};

use serde::{Deserialize, Serialize};

/// Persisted progress of one keyspace's backfill.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Copying from this side (`source` in dual_write, `target` in cutover).
    pub from: String,
    /// The keyspace's epoch when the backfill started; a transition voids it.
    pub epoch: u64,
    /// (side, database, cursor) still to scan: the authoritative side's
    /// keys are copied, and keys found only on the other side are deleted
    /// there (the copier finds them absent on the authoritative side).
    pub pending: Vec<(String, u32, u64)>,
    /// Keys seen by SCAN (all keyspaces).
    pub visited: u64,
    /// Keys in the scanned databases when the backfill started.
    pub total: u64,
    /// Keys of this keyspace handed to the copier.
    pub queued: u64,
    /// Every database scanned and every queued copy landed.
    pub complete: bool,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Set when complete.
    pub completed_ms: Option<u64>,
    /// Why the backfill stopped, if it failed.
    pub error: Option<String>,
}

impl Progress {
    /// Percent of keys visited (100 when complete).
    #[must_use]
    pub fn percent(&self) -> f64 {
        if self.complete {
            return 100.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let ratio = if self.total == 0 {
            0.0
        } else {
            self.visited as f64 / self.total as f64
        };
        (ratio * 100.0).min(99.9)
    }
}

/// Live backfill state per keyspace.
#[derive(Default)]
pub struct Entry {
    pub(super) progress: std::sync::Mutex<Option<Progress>>,
    pub(super) running: AtomicBool,
    /// Completed by this process (a restart may have lost un-copied writes).
    pub(super) completed_here: AtomicBool,
    /// Since the backfill completed here, the keyspace has been in a
    /// converging state only (dual_write, cutover): every write was copied.
    pub(super) converging_since: AtomicBool,
    /// [`Copier::failed_copies`] of the keyspace when the backfill completed.
    ///
    /// [`Copier::failed_copies`]: super::copier::Copier::failed_copies
    pub(super) failures_at_completion: AtomicU64,
}

/// Backfill entries for every keyspace of a migration.
pub struct Registry {
    pub(super) entries: Vec<Entry>,
}

impl Registry {
    /// One entry per keyspace.
    #[must_use]
    pub fn new(keyspaces: usize) -> Self {
        Registry {
            entries: (0..keyspaces).map(|_| Entry::default()).collect(),
        }
    }

    pub(super) fn progress(&self, keyspace: usize) -> Option<Progress> {
        self.entries[keyspace]
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set(&self, keyspace: usize, progress: Progress) {
        *self.entries[keyspace]
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(progress);
    }
}
