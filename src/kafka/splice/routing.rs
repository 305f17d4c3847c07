//! The live offset splice of one migration: the segment maps sessions
//! route by, and the per-partition produce gates the switch fences.
//! Sessions ask it where a partition's writes go now ([`Splice::begin`],
//! which also counts the write in flight until its answer) and where a
//! virtual offset is read from ([`Splice::locate`]).
//!
//! Produces pass a per-partition gate (see `gate`): a switch raises the
//! fence and drains the gate, so no write reaches the closing cluster
//! after its end offset was read, and every write released after the
//! switch sees the new map.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::gate::{Fence, Gates, Inflight};
use super::published::Published;
use super::segments::{Located, PartitionMap, SegmentMaps};
use crate::kafka::cluster::Side;
use crate::kafka::partition_key::{Key, PartitionKey, key};
use crate::migration::store::StateStore;

/// Where a partition's writes go and how their offsets translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shift {
    /// The cluster receiving the writes.
    pub(crate) side: Side,
    /// `virtual - physical` in the open segment.
    pub(crate) delta: i64,
    /// The partition's virtual log start (its first segment's start).
    pub(crate) log_start: i64,
}

/// A read position resolved: the segment, and the partition's virtual log start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadAt {
    /// Where the offset lives.
    pub(crate) located: Located,
    /// The partition's virtual log start.
    pub(crate) log_start: i64,
}

impl ReadAt {
    /// Whether reading here needs no translation at all.
    #[must_use]
    pub(crate) fn is_plain(&self) -> bool {
        self.located.delta == 0
            && self.located.physical_end.is_none()
            && self.located.side == Side::Source
    }
}

/// Longest a switch waits for in-flight produces before it aborts.
pub(crate) const FENCE_DRAIN_MAX: Duration = Duration::from_secs(5);

/// One migration's splice state.
#[derive(Debug, Default)]
pub(crate) struct Splice {
    /// Published whole: sessions read it without a lock; a change
    /// (persisted first) publishes a new one.
    maps: ArcSwap<SegmentMaps>,
    /// Per partition, its produces.
    gates: Gates<(String, i32)>,
    /// Per consumer group, its offset requests (while its coordination moves).
    pub(crate) groups: Gates<String>,
    /// Per cluster (`[source, target]`) and partition, the physical end of
    /// what the proxy has been acknowledged there.
    ends: [Published<Key, End>; 2],
}

/// The physical end of what was acknowledged on one partition, raised by
/// every acknowledged produce (`i64::MIN` until the first).
#[derive(Debug)]
struct End(AtomicI64);

impl Default for End {
    fn default() -> Self {
        End(AtomicI64::new(i64::MIN))
    }
}

impl Splice {
    /// Starts from persisted maps.
    #[must_use]
    pub(crate) fn new(maps: SegmentMaps) -> Self {
        Splice {
            maps: ArcSwap::from_pointee(maps),
            gates: Gates::default(),
            groups: Gates::default(),
            ends: Default::default(),
        }
    }

    fn with_map<T>(&self, topic: &str, partition: i32, f: impl FnOnce(&PartitionMap) -> T) -> T {
        let maps = self.maps.load();
        match maps.get(topic, partition) {
            Some(map) => f(map),
            // Once the source is retired, a partition never switched (a
            // topic outside the migration) lives on the target.
            None if maps.source_retired() => f(&PartitionMap::on_target()),
            None => f(&PartitionMap::default()),
        }
    }

    /// Counts a produce in flight on `topic`/`partition` and says where it
    /// goes, unless the partition is fenced (then nothing is counted and
    /// the caller waits with [`Splice::begin`]).
    pub(crate) fn try_begin(&self, topic: &str, partition: i32) -> Option<(Shift, Inflight)> {
        let asked = key(topic, partition);
        let guard = self.gates.try_enter_by(&asked as &dyn PartitionKey, || {
            (topic.to_owned(), partition)
        })?;
        Some((self.produce_shift(topic, partition), guard))
    }

    /// [`Splice::try_begin`], waiting while the partition is fenced
    /// (see [`Gates::enter`]).
    pub(crate) async fn begin(&self, topic: &str, partition: i32) -> (Shift, Inflight) {
        let guard = self.gates.enter(&(topic.to_owned(), partition)).await;
        (self.produce_shift(topic, partition), guard)
    }

    /// Records that `side`'s log of `topic`/`partition` reaches at least
    /// `end` (an acknowledged produce ended there).
    pub(crate) fn written(&self, side: Side, topic: &str, partition: i32, end: i64) {
        let ends = &self.ends[side as usize];
        let asked = key(topic, partition);
        let raise = |e: &End| e.0.fetch_max(end, Ordering::SeqCst);
        if ends.with(&asked as &dyn PartitionKey, raise).is_none() {
            raise(&ends.get_or_create(&asked as &dyn PartitionKey, || {
                (topic.to_owned(), partition)
            }));
        }
    }

    /// The end of what the proxy was acknowledged on `side`'s
    /// `topic`/`partition`, if it wrote there since it started.
    #[must_use]
    pub(crate) fn acknowledged_end(&self, side: Side, topic: &str, partition: i32) -> Option<i64> {
        let asked = key(topic, partition);
        self.ends[side as usize]
            .with(&asked as &dyn PartitionKey, |e| e.0.load(Ordering::SeqCst))
            .filter(|e| *e != i64::MIN)
    }

    /// Raises `topic`/`partition`'s fence.
    #[must_use]
    pub(crate) fn fence(&self, topic: &str, partition: i32) -> Fence {
        self.gates.fence(&(topic.to_owned(), partition))
    }

    #[cfg(test)]
    /// Installs a new map for one partition (after it was persisted).
    fn install(&self, topic: &str, partition: i32, map: PartitionMap) {
        let mut next = SegmentMaps::clone(&self.maps.load());
        next.set(topic, partition, map);
        self.maps.store(Arc::new(next));
    }

    /// Replaces every map and shift set (after they were persisted).
    pub(crate) fn replace(&self, maps: SegmentMaps) {
        self.maps.store(Arc::new(maps));
    }

    /// A copy of every map, to persist with one change applied.
    #[must_use]
    pub(crate) fn snapshot(&self) -> SegmentMaps {
        SegmentMaps::clone(&self.maps.load())
    }

    /// Where `topic`/`partition`'s writes go now.
    #[must_use]
    pub(crate) fn produce_shift(&self, topic: &str, partition: i32) -> Shift {
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
    pub(crate) fn locate(&self, topic: &str, partition: i32, virtual_offset: i64) -> ReadAt {
        self.with_map(topic, partition, |map| ReadAt {
            located: map.locate(virtual_offset),
            log_start: map.segments().first().map_or(0, |s| s.virtual_start),
        })
    }

    /// Whether `topic`/`partition` has never switched (no copy of its map).
    #[must_use]
    pub(crate) fn is_identity(&self, topic: &str, partition: i32) -> bool {
        self.with_map(topic, partition, PartitionMap::is_identity)
    }

    /// A copy of one partition's map.
    #[must_use]
    pub(crate) fn map(&self, topic: &str, partition: i32) -> PartitionMap {
        self.with_map(topic, partition, Clone::clone)
    }

    /// The cluster coordinating consumer group `group`.
    #[must_use]
    pub(crate) fn group_home(&self, group: &str) -> Side {
        self.maps.load().group_home(group)
    }

    /// The cluster answering requests that name no partition: the source,
    /// until it is retired.
    #[must_use]
    pub(crate) fn home(&self) -> Side {
        if self.maps.load().source_retired() {
            Side::Target
        } else {
            Side::Source
        }
    }

    /// Whether any partition of the migration reads or writes the target.
    #[must_use]
    pub(crate) fn any_on_target(&self) -> bool {
        self.maps.load().any_spliced()
    }
}

/// Name of the state-store blob holding a migration's segment maps.
#[must_use]
pub(crate) fn blob_name(migration: &str) -> String {
    format!("kafka-segments-{migration}")
}

/// The persisted segment maps of `migration` (empty when none were written).
///
/// # Errors
/// When the store cannot be read or holds maps that do not parse: routing
/// by a guess could lose or repeat records, so the proxy refuses to start.
pub(crate) async fn load(store: &dyn StateStore, migration: &str) -> Result<SegmentMaps, String> {
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
    use std::sync::Arc;

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
