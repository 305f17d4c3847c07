//! Client ids as clients of the proxy see them. A client's commands reach
//! up to two upstream connections, each with its own Redis client id, so
//! the proxy gives every client one id of its own (CLIENT ID, HELLO) and
//! remembers which upstream connections stand behind it, so that
//! `CLIENT UNBLOCK <id>` from another client reaches the right one and
//! `CLIENT KILL ID <id>` closes that client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::side::Side;

/// Upstream client ids per side of one proxy client.
pub type Upstreams = [Option<u64>; 2];

/// Every live client of one migration; one entry per open client
/// connection, removed when it closes, so it is bounded by the listener's
/// connection limit.
#[derive(Default)]
pub struct Clients {
    last: AtomicU64,
    upstreams: Mutex<HashMap<u64, Entry>>,
}

/// One live client.
struct Entry {
    upstreams: Upstreams,
    /// Cancelled by CLIENT KILL ID from another client.
    kill: CancellationToken,
}

impl Clients {
    /// A fresh client id (ids start at 1, as Redis's do) and the token
    /// that [`Clients::kill`] cancels.
    pub fn register(&self) -> (u64, CancellationToken) {
        let id = self.last.fetch_add(1, Ordering::Relaxed) + 1;
        let kill = CancellationToken::new();
        self.lock().insert(
            id,
            Entry {
                upstreams: [None, None],
                kill: kill.clone(),
            },
        );
        (id, kill)
    }

    /// Records the Redis client id of `client`'s connection to `side`.
    pub fn set_upstream(&self, client: u64, side: Side, upstream: Option<u64>) {
        if let Some(entry) = self.lock().get_mut(&client) {
            entry.upstreams[side.index()] = upstream;
        }
    }

    /// The upstream ids behind a proxy client id, if it is connected.
    pub fn upstreams(&self, client: u64) -> Option<Upstreams> {
        self.lock().get(&client).map(|e| e.upstreams)
    }

    /// Asks a connected client's session to close (CLIENT KILL ID);
    /// false when no such client is connected.
    pub fn kill(&self, client: u64) -> bool {
        self.lock().get(&client).map(|e| e.kill.cancel()).is_some()
    }

    /// Forgets a client that closed its connection.
    pub fn remove(&self, client: u64) {
        self.lock().remove(&client);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // The map holds plain ids: a panic elsewhere cannot leave it invalid.
        self.upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_upstream_connections_until_removed() {
        let clients = Clients::default();
        let (a, _) = clients.register();
        let (b, killed) = clients.register();
        assert_eq!((a, b), (1, 2));
        assert!(clients.kill(b));
        assert!(killed.is_cancelled());
        clients.set_upstream(b, Side::Target, Some(77));
        assert_eq!(clients.upstreams(b), Some([None, Some(77)]));
        clients.remove(b);
        assert_eq!(clients.upstreams(b), None);
        assert!(!clients.kill(b));
        clients.set_upstream(b, Side::Source, Some(5));
        assert_eq!(clients.upstreams(b), None, "a removed client stays removed");
    }
}
