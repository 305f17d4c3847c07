//! Durable storage of topic states, transition history and protocol blobs
//! (Redis repair sets, backfill cursors).
//!
//! A trait, because one proxy uses the embedded file store and a fleet of
//! proxies will share an etcd store; the controller only sees this surface.

mod file;

use std::collections::BTreeMap;

pub use file::FileStore;

use super::machine::{TopicRecord, Transition};

/// (migration, topic): the key of every persisted record.
pub type TopicKey = (String, String);

/// Every persisted topic record.
pub type Snapshot = BTreeMap<TopicKey, TopicRecord>;

/// A store operation failed; the message names the file or key involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the store failed.
    #[error("state store: {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file involved.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A store file exists but cannot be understood.
    #[error("state store: {path} is corrupt: {reason}")]
    Corrupt {
        /// The file involved.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the store.
    #[error("state store: {path} is locked by another cutover process")]
    Locked {
        /// The lock file.
        path: String,
    },
    /// A blob name that could escape the store directory.
    #[error("state store: invalid blob name \"{0}\"")]
    BadBlobName(String),
}

/// The durable side of the migration core.
///
/// Implementations must make `commit` durable before returning: the caller
/// only changes traffic after it returns `Ok`.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// Every persisted topic record.
    async fn load(&self) -> Result<Snapshot, StoreError>;
    /// Persists a topic seen for the first time, unless it already exists;
    /// returns the record that is now stored.
    async fn register(
        &self,
        migration: &str,
        topic: &str,
        initial: TopicRecord,
    ) -> Result<TopicRecord, StoreError>;
    /// Persists a transition: the new record and a history entry.
    async fn commit(&self, transition: &Transition) -> Result<(), StoreError>;
    /// The transition history, oldest first.
    async fn history(&self) -> Result<Vec<Transition>, StoreError>;
    /// Atomically replaces a named blob.
    async fn put_blob(&self, name: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Reads a named blob.
    async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}
