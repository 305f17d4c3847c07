//! The live offset splice of one migration: the segment maps sessions
//! route by, and the per-partition produce gates the switch fences.
//! Sessions ask it where a partition's writes go now ([`Splice::begin`],
//! which also counts the write in flight until its answer) and where a
//! virtual offset is read from ([`Splice::locate`]).
//!
//! The gate protocol: a produce first counts itself in flight, *then*
//! checks the fence (backing out and waiting if fenced), and only then
//! reads the segment map; a switch first raises the fence, *then* waits
//! for the in-flight count to reach zero. Whichever comes second sees the
//! other, so no write reaches the closing cluster after its end offset was
//! read, and every write released after the switch sees the new map.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Notify;

use super::cluster::Side;
use super::segments::{Located, PartitionMap, SegmentMaps};
use crate::migration::store::StateStore;

/// Where a partition's writes go and how their offsets translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    /// The cluster receiving the writes.
    pub side: Side,
    /// `virtual - physical` in the open segment.
    pub delta: i64,
    /// The partition's virtual log start (its first segment's start).
    pub log_start: i64,
}

/// A read position resolved: the segment, and the partition's virtual log start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAt {
    /// Where the offset lives.
    pub located: Located,
    /// The partition's virtual log start.
    pub log_start: i64,
}

impl ReadAt {
    /// Whether reading here needs no translation at all.
    #[must_use]
    pub fn is_plain(&self) -> bool {
        self.located.delta == 0
            && self.located.physical_end.is_none()
            && self.located.side == Side::Source
    }
}

/// Longest a switch waits for in-flight produces before it aborts.
pub const FENCE_DRAIN_MAX: Duration = Duration::from_secs(5);

/// One partition's produce gate. Two wake-ups, so a produce backing out
/// of a raised fence wakes the draining switch but never itself.
#[derive(Debug, Default)]
pub struct Gate {
    inflight: AtomicUsize,
    fenced: AtomicBool,
    /// The in-flight count reached zero.
    drained: Notify,
    /// The fence came down.
    released: Notify,
}

/// A produce counted in flight on a partition until dropped (when its
/// answer arrived, or at once for acks=0).
#[derive(Debug)]
pub struct Inflight(Arc<Gate>);

impl Drop for Inflight {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// A raised fence; lowered when dropped, so every error path releases
/// the held produces.
#[derive(Debug)]
pub struct Fence {
    gate: Arc<Gate>,
    /// When it was raised (the fenced window is measured from here).
    pub since: Instant,
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.gate.fenced.store(false, Ordering::SeqCst);
        self.gate.released.notify_waiters();
    }
}

impl Fence {
    /// Waits until no produce is in flight on the partition.
    ///
    /// # Errors
    /// How many were still in flight at the deadline.
    pub async fn drained(&self, within: Duration) -> Result<(), usize> {
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

/// One migration's splice state.
#[derive(Debug, Default)]
pub struct Splice {
    maps: RwLock<SegmentMaps>,
    gates: DashMap<(String, i32), Arc<Gate>>,
    /// Per cluster and partition, the physical end of what the proxy has
    /// been acknowledged there.
    ends: DashMap<(Side, String, i32), i64>,
}

impl Splice {
    /// Starts from persisted maps.
    #[must_use]
    pub fn new(maps: SegmentMaps) -> Self {
        Splice {
            maps: RwLock::new(maps),
            gates: DashMap::new(),
            ends: DashMap::new(),
        }
    }

    fn with_map<T>(&self, topic: &str, partition: i32, f: impl FnOnce(&PartitionMap) -> T) -> T {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        match maps.get(topic, partition) {
            Some(map) => f(map),
            None => f(&PartitionMap::default()),
        }
    }

    fn gate(&self, topic: &str, partition: i32) -> Arc<Gate> {
        if let Some(g) = self.gates.get(&(topic.to_owned(), partition)) {
            return g.clone();
        }
        self.gates
            .entry((topic.to_owned(), partition))
            .or_default()
            .clone()
    }

    /// Counts a produce in flight on `topic`/`partition` and says where it
    /// goes, unless the partition is fenced (then nothing is counted and
    /// the caller waits with [`Splice::begin`]).
    pub fn try_begin(&self, topic: &str, partition: i32) -> Option<(Shift, Inflight)> {
        let gate = self.gate(topic, partition);
        gate.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = Inflight(gate);
        if guard.0.fenced.load(Ordering::SeqCst) {
            return None;
        }
        Some((self.produce_shift(topic, partition), guard))
    }

    /// [`Splice::try_begin`], waiting while the partition is fenced. There
    /// is no give-up: a produce let through while fenced could land on the
    /// closing cluster after its end offset was read. Every switch lowers
    /// its fence on every path, bounded by its own time limits.
    pub async fn begin(&self, topic: &str, partition: i32) -> (Shift, Inflight) {
        loop {
            let gate = self.gate(topic, partition);
            let notified = gate.released.notified();
            if let Some(ready) = self.try_begin(topic, partition) {
                return ready;
            }
            notified.await;
        }
    }

    /// Records that `side`'s log of `topic`/`partition` reaches at least
    /// `end` (an acknowledged produce ended there).
    pub fn written(&self, side: Side, topic: &str, partition: i32, end: i64) {
        let mut e = self
            .ends
            .entry((side, topic.to_owned(), partition))
            .or_insert(end);
        *e = (*e).max(end);
    }

    /// The end of what the proxy was acknowledged on `side`'s
    /// `topic`/`partition`, if it wrote there since it started.
    #[must_use]
    pub fn acknowledged_end(&self, side: Side, topic: &str, partition: i32) -> Option<i64> {
        self.ends
            .get(&(side, topic.to_owned(), partition))
            .map(|e| *e)
    }

    /// Raises `topic`/`partition`'s fence.
    #[must_use]
    pub fn fence(&self, topic: &str, partition: i32) -> Fence {
        let gate = self.gate(topic, partition);
        gate.fenced.store(true, Ordering::SeqCst);
        Fence {
            gate,
            since: Instant::now(),
        }
    }

    /// Installs a new map for one partition (after it was persisted).
    pub fn install(&self, topic: &str, partition: i32, map: PartitionMap) {
        self.maps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set(topic, partition, map);
    }

    /// Replaces every map and shift set (after they were persisted).
    pub fn replace(&self, maps: SegmentMaps) {
        *self.maps.write().unwrap_or_else(|e| e.into_inner()) = maps;
    }

    /// A copy of every map, to persist with one change applied.
    #[must_use]
    pub fn snapshot(&self) -> SegmentMaps {
        self.maps.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where `topic`/`partition`'s writes go now.
    #[must_use]
    pub fn produce_shift(&self, topic: &str, partition: i32) -> Shift {
        self.with_map(topic, partition, |map| {
            let open = map.open();
            Shift {
                side: open.side,
                delta: open.virtual_start - open.physical_start,
                log_start: map.segments().first().map_or(0, |s| s.virtual_start),
            }
        })
    }

    /// Where `virtual_offset` of `topic`/`partition` is read from.
    #[must_use]
    pub fn locate(&self, topic: &str, partition: i32, virtual_offset: i64) -> ReadAt {
        self.with_map(topic, partition, |map| ReadAt {
            located: map.locate(virtual_offset),
            log_start: map.segments().first().map_or(0, |s| s.virtual_start),
        })
    }

    /// Whether `topic`/`partition` has never switched (no copy of its map).
    #[must_use]
    pub fn is_identity(&self, topic: &str, partition: i32) -> bool {
        self.with_map(topic, partition, PartitionMap::is_identity)
    }

    /// A copy of one partition's map.
    #[must_use]
    pub fn map(&self, topic: &str, partition: i32) -> PartitionMap {
        self.with_map(topic, partition, Clone::clone)
    }

    /// Whether any partition of the migration reads or writes the target.
    #[must_use]
    pub fn any_on_target(&self) -> bool {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.any_spliced()
    }
}

/// Name of the state-store blob holding a migration's segment maps.
#[must_use]
pub fn blob_name(migration: &str) -> String {
    format!("kafka-segments-{migration}")
}

/// The persisted segment maps of `migration` (empty when none were written).
///
/// # Errors
/// When the store cannot be read or holds maps that do not parse: routing
/// by a guess could lose or repeat records, so the proxy refuses to start.
pub async fn load(store: &dyn StateStore, migration: &str) -> Result<SegmentMaps, String> {
    let name = blob_name(migration);
    match store.get_blob(&name).await {
        Ok(None) => Ok(SegmentMaps::default()),
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("segment maps \"{name}\" in the state store do not parse: {e}")),
        Err(e) => Err(format!("reading segment maps \"{name}\": {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fence_waits_for_inflight_produces_and_holds_new_ones() {
        let splice = Arc::new(Splice::default());
        let (shift, inflight) = splice.try_begin("t", 0).unwrap();
        assert_eq!(shift.side, Side::Source);
        let fence = splice.fence("t", 0);
        assert!(
            splice.try_begin("t", 0).is_none(),
            "fenced: nothing new passes"
        );
        assert!(splice.try_begin("t", 1).is_some(), "other partitions flow");
        assert_eq!(fence.drained(Duration::from_millis(20)).await, Err(1));
        drop(inflight);
        fence.drained(Duration::from_secs(1)).await.unwrap();
        let waiting = tokio::spawn({
            let splice = splice.clone();
            async move { splice.begin("t", 0).await.0 }
        });
        let map = PartitionMap::default()
            .appended(Side::Target, 10, 0)
            .unwrap();
        splice.install("t", 0, map);
        drop(fence);
        let shift = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (shift.side, shift.delta),
            (Side::Target, 10),
            "released onto the new map"
        );
    }
}
