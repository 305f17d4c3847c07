//! The live offset splice of one migration: the segment maps sessions
//! route by, and (with the switch) the produce fences. Sessions ask it two
//! things: where a partition's writes go now ([`Splice::produce_shift`])
//! and where a virtual offset is read from ([`Splice::locate`]).

use std::sync::RwLock;

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

/// One migration's splice state.
#[derive(Debug, Default)]
pub struct Splice {
    maps: RwLock<SegmentMaps>,
}

impl Splice {
    /// Starts from persisted maps.
    #[must_use]
    pub fn new(maps: SegmentMaps) -> Self {
        Splice {
            maps: RwLock::new(maps),
        }
    }

    fn with_map<T>(&self, topic: &str, partition: i32, f: impl FnOnce(&PartitionMap) -> T) -> T {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        match maps.get(topic, partition) {
            Some(map) => f(map),
            None => f(&PartitionMap::default()),
        }
    }

    /// Where `topic`/`partition`'s writes go now.
    pub async fn produce_shift(&self, topic: &str, partition: i32) -> Shift {
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
