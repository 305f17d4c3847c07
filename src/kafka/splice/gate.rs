//! Gates that let a change wait out the requests in flight on one key and
//! hold new ones meanwhile: a partition's produces while its writes switch
//! cluster, a consumer group's offset requests while its coordination
//! moves.
//!
//! The protocol: a request first counts itself in flight, *then* checks
//! the fence (backing out and waiting if raised), and only then reads the
//! routing it depends on; a change first raises the fence, *then* waits
//! for the in-flight count to reach zero. Whichever comes second sees the
//! other, so no request routed by the old state is still travelling when
//! the change reads the upstream, and every request released afterwards
//! sees the new state.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::published::Published;

/// One key's gate. Two wake-ups, so a request backing out of a raised
/// fence wakes the draining change but never itself.
#[derive(Debug, Default)]
struct Gate {
    inflight: AtomicUsize,
    fenced: AtomicBool,
    /// The in-flight count reached zero.
    drained: Notify,
    /// The fence came down.
    released: Notify,
}

/// A request counted in flight until dropped (when its answer arrived,
/// or at once when none is expected).
#[derive(Debug)]
pub(crate) struct Inflight(Arc<Gate>);

impl Drop for Inflight {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// A raised fence; lowered when dropped, so every error path releases
/// the held requests.
#[derive(Debug)]
pub(crate) struct Fence {
    gate: Arc<Gate>,
    /// When it was raised (the fenced window is measured from here).
    pub(crate) since: Instant,
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.gate.fenced.store(false, Ordering::SeqCst);
        self.gate.released.notify_waiters();
    }
}

impl Fence {
    /// Waits until nothing is in flight on the key.
    ///
    /// # Errors
    /// How many were still in flight at the deadline.
    pub(crate) async fn drained(&self, within: Duration) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.gate.drained.notified();
            let n = self.gate.inflight.load(Ordering::SeqCst);
            if n == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return Err(self.gate.inflight.load(Ordering::SeqCst));
            }
        }
    }
}

/// The gates of one kind of key, created on first use and found without
/// a lock.
#[derive(Debug)]
pub(crate) struct Gates<K: Eq + Hash> {
    gates: Published<K, Gate>,
}

impl<K: Eq + Hash> Default for Gates<K> {
    fn default() -> Self {
        Gates {
            gates: Published::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> Gates<K> {
    fn gate(&self, key: &K) -> Arc<Gate> {
        self.gate_of(key, || key.clone())
    }

    /// The gate of `key`, asked by a borrowed form; `owned` makes the key
    /// only when the gate is created.
    fn gate_of<Q>(&self, key: &Q, owned: impl FnOnce() -> K) -> Arc<Gate>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.gates.get_or_create(key, owned)
    }

    /// Counts a request in flight on `key`, unless its fence is raised
    /// (then nothing is counted and the caller waits with [`Gates::enter`]).
    pub(crate) fn try_enter(&self, key: &K) -> Option<Inflight> {
        self.try_enter_gate(self.gate(key))
    }

    /// [`Gates::try_enter`] by a borrowed key (see [`Gates::gate_of`]).
    pub(crate) fn try_enter_by<Q>(&self, key: &Q, owned: impl FnOnce() -> K) -> Option<Inflight>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.try_enter_gate(self.gate_of(key, owned))
    }

    fn try_enter_gate(&self, gate: Arc<Gate>) -> Option<Inflight> {
        gate.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = Inflight(gate);
        if guard.0.fenced.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    /// [`Gates::try_enter`], waiting while the fence is raised. There is
    /// no give-up: a request let through while fenced could reach the
    /// upstream the change is reading. Every change lowers its fence on
    /// every path, bounded by its own time limits.
    pub(crate) async fn enter(&self, key: &K) -> Inflight {
        loop {
            let gate = self.gate(key);
            let notified = gate.released.notified();
            if let Some(ready) = self.try_enter(key) {
                return ready;
            }
            notified.await;
        }
    }

    /// Raises `key`'s fence.
    #[must_use]
    pub(crate) fn fence(&self, key: &K) -> Fence {
        let gate = self.gate(key);
        gate.fenced.store(true, Ordering::SeqCst);
        Fence {
            gate,
            since: Instant::now(),
        }
    }
}
