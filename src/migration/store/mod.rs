//! Durable storage of topic states, transition history, the log of admin
//! actions and protocol blobs (Redis repair sets, backfill cursors).
//!
//! A trait, because one proxy uses the embedded file store and a fleet of
//! proxies will share an etcd store; the controller only sees this surface.

mod file;

use std::collections::BTreeMap;

pub use file::FileStore;

use serde::{Deserialize, Serialize};

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
    /// Appends one admin action to the durable action log.
    async fn record_action(&self, action: &AdminAction) -> Result<(), StoreError>;
    /// The action log, oldest first.
    async fn actions(&self) -> Result<Vec<AdminAction>, StoreError>;
}

/// One admin action other than a state move (a shift, a metadata copy, a
/// backfill, ...): who asked, what, and what came of it. State moves are
/// [`Transition`]s; together the two logs say who did everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAction {
    /// Wall-clock time of the request, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Migration name.
    pub migration: String,
    /// Topic or keyspace, for a topic action.
    #[serde(default)]
    pub topic: Option<String>,
    /// The action's name (`shift`, `migrate_metadata`, ...).
    pub action: String,
    /// The request's parameters, large values replaced by their size.
    #[serde(default)]
    pub params: serde_json::Value,
    /// Who asked: the claimed name and the identity the admin API proved.
    pub actor: String,
    /// `done`, or `refused: <reason>`.
    pub outcome: String,
}
