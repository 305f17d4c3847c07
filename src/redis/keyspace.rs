//! Per-keyspace runtime shared by every session of a migration: the write
//! fence used while authority moves between clusters, and the count of
//! writes forwarded but not yet answered.
//!
//! The fence protocol is a Dekker pair: a session increments `inflight`
//! *then* reads `fenced`; the driver sets `fenced` *then* waits for
//! `inflight` to reach zero. With sequentially consistent atomics, either
//! the driver sees the write in flight or the session sees the fence.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::migration::TopicHandle;

/// One keyspace's shared runtime.
#[derive(Debug)]
pub struct Keyspace {
    /// The migration core's handle (state, epoch).
    pub topic: Arc<TopicHandle>,
    /// Position in the migration's keyspace list.
    pub index: usize,
    inflight: AtomicUsize,
    fence: watch::Sender<bool>,
}

impl Keyspace {
    /// A keyspace with no fence and nothing in flight.
    #[must_use]
    pub fn new(topic: Arc<TopicHandle>, index: usize) -> Self {
        Keyspace {
            topic,
            index,
            inflight: AtomicUsize::new(0),
            fence: watch::Sender::new(false),
        }
    }

    /// Registers a write about to be forwarded. Returns `false` (and
    /// registers nothing) when the keyspace is fenced: the caller must wait
    /// with [`Keyspace::fence_lifted`] and try again.
    #[must_use]
    pub fn begin_write(&self) -> bool {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        if *self.fence.borrow() {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// A write registered by [`Keyspace::begin_write`] was answered (or its
    /// connection failed); its key has already been queued for convergence.
    pub fn end_write(&self) {
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Writes forwarded and not yet answered.
    #[must_use]
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Holds new writes (the cutover fence).
    pub fn raise_fence(&self) {
        self.fence.send_replace(true);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Releases held writes.
    pub fn lower_fence(&self) {
        self.fence.send_replace(false);
    }

    /// Whether writes are held.
    #[must_use]
    pub fn is_fenced(&self) -> bool {
        *self.fence.borrow()
    }

    /// Resolves once the fence is down.
    pub async fn fence_lifted(&self) {
        let mut receiver = self.fence.subscribe();
        let _ = receiver.wait_for(|fenced| !fenced).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::State;

    fn keyspace() -> Keyspace {
        Keyspace::new(
            Arc::new(TopicHandle::new(
                "m".into(),
                "k".into(),
                State::DualWrite,
                1,
            )),
            0,
        )
    }

    #[test]
    fn fenced_writes_are_refused_and_not_counted() {
        let ks = keyspace();
        assert!(ks.begin_write());
        ks.raise_fence();
        assert!(!ks.begin_write());
        assert_eq!(ks.inflight(), 1, "only the write begun before the fence");
        ks.end_write();
        assert_eq!(ks.inflight(), 0);
        ks.lower_fence();
        assert!(ks.begin_write());
    }

    #[tokio::test]
    async fn waiters_wake_when_the_fence_is_lowered() {
        let ks = Arc::new(keyspace());
        ks.raise_fence();
        let waiter = tokio::spawn({
            let ks = ks.clone();
            async move { ks.fence_lifted().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        ks.lower_fence();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
