//! The state of one connection's MULTI … EXEC block: which cluster holds
//! it, the keyspaces and keys it named, how many commands it queued. The
//! session holds it; `transaction` (the MULTI/EXEC commands) changes it.

use std::sync::Arc;

use bytes::Bytes;

use super::keyspace::Keyspace;
use super::side::Side;

/// A transaction between MULTI and EXEC.
#[derive(Default)]
pub(super) struct Txn {
    /// The cluster MULTI was relayed to, once a command was queued.
    pub(super) side: Option<Side>,
    /// Every keyspace a queued command named, with its authoritative side then.
    pub(super) keyspaces: Vec<(Arc<Keyspace>, Side)>,
    /// Keys queued commands may write, converged after EXEC.
    pub(super) touched: Vec<(Arc<Keyspace>, Bytes)>,
    /// Commands queued so far.
    pub(super) queued: usize,
    /// Set when EXEC must abort: empty when the proxy answered a queued
    /// command with an error (EXEC then aborts in Redis's words, as after
    /// any queue-time error), else the proxy's reason.
    pub(super) failed: Option<String>,
}

impl Txn {
    /// The cluster holding the upstream MULTI, if one was sent.
    pub(super) fn side(&self) -> Option<Side> {
        self.side
    }
}
