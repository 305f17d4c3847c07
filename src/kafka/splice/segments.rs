//! The per-partition offset splice (DESIGN.md §2 Kafka): each partition's
//! append-only segment map `[(cluster, physical_start, virtual_start)]`
//! and the translations between the *virtual* offsets clients see and the
//! *physical* offsets of the cluster holding a segment.
//!
//! A segment runs from its starts to the next segment's virtual start; its
//! physical end is `physical_start + (next.virtual_start - virtual_start)`.
//! The last segment is open and receives the partition's writes. A
//! partition never switched has the identity map `[(source, 0, 0)]`, so in
//! `source`/`dual_read` every offset passes unchanged.
//!
//! Pure: the session asks it where an offset lives, the switch (see
//! `splice`) appends segments and persists them before traffic follows.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::kafka::cluster::Side;

/// One segment's starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Segment {
    /// The cluster holding the segment's records.
    pub(crate) side: Side,
    /// Its first physical offset in that cluster.
    pub(crate) physical_start: i64,
    /// The virtual offset clients see for `physical_start`.
    pub(crate) virtual_start: i64,
}

impl Segment {
    /// A segment on `side` whose `physical_start` is `virtual_start` for clients.
    #[must_use]
    pub(crate) const fn new(side: Side, physical_start: i64, virtual_start: i64) -> Segment {
        Segment {
            side,
            physical_start,
            virtual_start,
        }
    }
}

/// Where a virtual offset lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    /// Index of the segment in the map.
    pub(crate) index: usize,
    /// Its cluster.
    pub(crate) side: Side,
    /// The physical offset there.
    pub(crate) physical: i64,
    /// `virtual - physical` inside this segment.
    pub(crate) delta: i64,
    /// Physical end (exclusive) of a closed segment; `None` for the open one.
    pub(crate) physical_end: Option<i64>,
}

/// A segment could not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SpliceError {
    /// The closing cluster's end lies before the open segment's start.
    #[error(
        "the {side} end offset {end} is below the open segment's start {start}: the partition was truncated or recreated"
    )]
    EndBeforeStart {
        /// Closing cluster.
        side: &'static str,
        /// Its reported end.
        end: i64,
        /// The open segment's physical start.
        start: i64,
    },
    /// The partition already writes to that cluster.
    #[error("the partition already writes to the {0}")]
    AlreadyThere(&'static str),
}

/// One partition's segments, oldest first, never empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionMap {
    segments: Vec<Segment>,
}

impl Default for PartitionMap {
    fn default() -> Self {
        PartitionMap {
            segments: vec![Segment::new(Side::Source, 0, 0)],
        }
    }
}

impl PartitionMap {
    /// The segments, oldest first.
    #[must_use]
    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The identity on the target: a partition whose every offset is its
    /// own on the target.
    #[must_use]
    pub(crate) fn on_target() -> PartitionMap {
        PartitionMap {
            segments: vec![Segment::new(Side::Target, 0, 0)],
        }
    }

    /// A map of `segments` (oldest first); `None` when empty or when the
    /// virtual starts do not increase.
    #[must_use]
    pub(crate) fn from_segments(segments: Vec<Segment>) -> Option<PartitionMap> {
        let increasing = segments
            .windows(2)
            .all(|w| w[0].virtual_start < w[1].virtual_start);
        (!segments.is_empty() && increasing).then_some(PartitionMap { segments })
    }

    /// Whether every offset is its own virtual offset on the source.
    #[must_use]
    pub(crate) fn is_identity(&self) -> bool {
        *self == PartitionMap::default()
    }

    /// The open segment, which receives writes.
    #[must_use]
    pub(crate) fn open(&self) -> Segment {
        self.segments.last().copied().unwrap_or(Segment {
            side: Side::Source,
            physical_start: 0,
            virtual_start: 0,
        })
    }

    /// The cluster receiving the partition's writes.
    #[must_use]
    pub(crate) fn writer(&self) -> Side {
        self.open().side
    }

    /// The segment holding `virtual_offset`; offsets below the first
    /// segment's start (and negative sentinels) resolve to the first.
    #[must_use]
    pub(crate) fn locate(&self, virtual_offset: i64) -> Located {
        let index = self
            .segments
            .iter()
            .rposition(|s| s.virtual_start <= virtual_offset)
            .unwrap_or(0);
        self.at(index, virtual_offset)
    }

    /// `virtual_offset` resolved inside segment `index`.
    #[must_use]
    pub(crate) fn at(&self, index: usize, virtual_offset: i64) -> Located {
        let s = self
            .segments
            .get(index)
            .copied()
            .unwrap_or_else(|| self.open());
        let delta = s.virtual_start - s.physical_start;
        Located {
            index,
            side: s.side,
            physical: virtual_offset - delta,
            delta,
            physical_end: self
                .segments
                .get(index + 1)
                .map(|n| s.physical_start + (n.virtual_start - s.virtual_start)),
        }
    }

    #[cfg(test)]
    /// The virtual offset of `physical` in the open segment (produce
    /// answers, high watermarks of the writing cluster).
    #[must_use]
    fn open_to_virtual(&self, physical: i64) -> i64 {
        let s = self.open();
        physical + (s.virtual_start - s.physical_start)
    }

    /// The map after closing the open segment at `closing_end` (the writing
    /// cluster's log end offset, read while produce was fenced) and opening
    /// one on `side` at `physical_start`.
    ///
    /// # Errors
    /// [`SpliceError`] when `side` already writes or the end precedes the
    /// open segment's start.
    pub(crate) fn appended(
        &self,
        side: Side,
        closing_end: i64,
        physical_start: i64,
    ) -> Result<PartitionMap, SpliceError> {
        let open = self.open();
        if open.side == side {
            return Err(SpliceError::AlreadyThere(side.as_str()));
        }
        if closing_end < open.physical_start {
            return Err(SpliceError::EndBeforeStart {
                side: open.side.as_str(),
                end: closing_end,
                start: open.physical_start,
            });
        }
        let mut next = self.clone();
        let virtual_start = open.virtual_start + (closing_end - open.physical_start);
        // An empty open segment is replaced rather than kept as a
        // zero-length entry, so maps stay short across back-and-forth.
        if closing_end == open.physical_start && next.segments.len() > 1 {
            next.segments.pop();
        }
        next.segments.push(Segment {
            side,
            physical_start,
            virtual_start,
        });
        Ok(next)
    }
}

/// Every partition's map for one migration; absent partitions are identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentMaps {
    topics: HashMap<String, HashMap<i32, PartitionMap>>,
    /// Per topic, the partitions `dual_write` puts on the target (`ctl shift`).
    #[serde(default)]
    shifted: HashMap<String, BTreeSet<i32>>,
    /// Consumer groups coordinated by the target (their topics reached
    /// `target`); every other group is coordinated by the source.
    #[serde(default)]
    moved_groups: BTreeSet<String>,
    /// Every topic of the migration is in `target` with its history read
    /// from the target: requests that name no partition (Metadata,
    /// ApiVersions, groups, admin requests) go to the target, and the
    /// source may be turned off.
    #[serde(default)]
    source_retired: bool,
}

impl SegmentMaps {
    /// Whether the source is no longer needed (see the field).
    #[must_use]
    pub(crate) fn source_retired(&self) -> bool {
        self.source_retired
    }

    /// Records whether the source is no longer needed.
    pub(crate) fn set_source_retired(&mut self, retired: bool) {
        self.source_retired = retired;
    }

    /// The map of `topic`/`partition` (identity when never switched).
    #[must_use]
    pub(crate) fn get(&self, topic: &str, partition: i32) -> Option<&PartitionMap> {
        self.topics.get(topic)?.get(&partition)
    }

    #[cfg(test)]
    /// The cluster receiving writes for `topic`/`partition`.
    #[must_use]
    pub(crate) fn writer(&self, topic: &str, partition: i32) -> Side {
        self.get(topic, partition)
            .map_or(Side::Source, PartitionMap::writer)
    }

    /// Replaces one partition's map.
    pub(crate) fn set(&mut self, topic: &str, partition: i32, map: PartitionMap) {
        self.topics
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, map);
    }

    /// The partitions of `topic` that `dual_write` puts on the target.
    #[must_use]
    pub(crate) fn shifted(&self, topic: &str) -> BTreeSet<i32> {
        self.shifted.get(topic).cloned().unwrap_or_default()
    }

    /// Sets them.
    pub(crate) fn set_shifted(&mut self, topic: &str, partitions: BTreeSet<i32>) {
        self.shifted.insert(topic.to_owned(), partitions);
    }

    /// The cluster coordinating consumer group `group`.
    #[must_use]
    pub(crate) fn group_home(&self, group: &str) -> Side {
        if self.source_retired || self.moved_groups.contains(group) {
            Side::Target
        } else {
            Side::Source
        }
    }

    /// Records which cluster coordinates `group`.
    pub(crate) fn set_group_home(&mut self, group: &str, home: Side) {
        match home {
            Side::Target => self.moved_groups.insert(group.to_owned()),
            Side::Source => self.moved_groups.remove(group),
        };
    }

    /// The groups the target coordinates.
    #[must_use]
    pub(crate) fn moved_groups(&self) -> &BTreeSet<String> {
        &self.moved_groups
    }

    /// Every switched partition of `topic`, sorted.
    #[must_use]
    pub(crate) fn partitions(&self, topic: &str) -> Vec<(i32, &PartitionMap)> {
        let mut out: Vec<_> = self
            .topics
            .get(topic)
            .map(|m| m.iter().map(|(p, m)| (*p, m)).collect())
            .unwrap_or_default();
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// Whether any partition of any topic is not identity.
    #[must_use]
    pub(super) fn any_spliced(&self) -> bool {
        self.topics
            .values()
            .any(|m| m.values().any(|p| !p.is_identity()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_passes_offsets_unchanged() {
        let map = PartitionMap::default();
        assert!(map.is_identity());
        let at = map.locate(42);
        assert_eq!(
            (at.side, at.physical, at.physical_end),
            (Side::Source, 42, None)
        );
        assert_eq!(
            map.locate(-1).physical,
            -1,
            "sentinels resolve to the first segment"
        );
    }

    #[test]
    fn a_switch_continues_the_virtual_space_on_the_other_cluster() {
        // Source has offsets 0..100; the target already holds 7 records
        // (log start 0), which are read after the source segment.
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 0)
            .unwrap();
        assert_eq!(map.writer(), Side::Target);
        let src = map.locate(99);
        assert_eq!(
            (src.side, src.physical, src.physical_end),
            (Side::Source, 99, Some(100))
        );
        let tgt = map.locate(100);
        assert_eq!((tgt.side, tgt.physical, tgt.delta), (Side::Target, 0, 100));
        assert_eq!(map.open_to_virtual(7), 107);
        // Rollback: target reached 30, source still ends at 100.
        let back = map.appended(Side::Source, 30, 100).unwrap();
        let seg = back.locate(130);
        assert_eq!((seg.side, seg.physical), (Side::Source, 100));
        assert_eq!(back.locate(129).physical_end, Some(30));
        assert_eq!(back.locate(129).physical, 29);
        assert_eq!(back.open_to_virtual(105), 135);
    }

    #[test]
    fn virtual_offsets_never_go_back() {
        let mut map = PartitionMap::default();
        let mut last = 0;
        for (i, end) in [10, 3, 25, 25, 40].into_iter().enumerate() {
            let side = if i % 2 == 0 {
                Side::Target
            } else {
                Side::Source
            };
            let start = map.open().physical_start;
            map = map.appended(side, start + end, 5).unwrap();
            assert!(map.open().virtual_start >= last);
            last = map.open().virtual_start;
        }
        let starts: Vec<i64> = map.segments().iter().map(|s| s.virtual_start).collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    }

    #[test]
    fn empty_segments_are_replaced_and_bad_ends_refused() {
        let map = PartitionMap::default()
            .appended(Side::Target, 50, 0)
            .unwrap();
        let back = map.appended(Side::Source, 0, 50).unwrap();
        assert_eq!(
            back.segments().len(),
            2,
            "the empty target segment is dropped"
        );
        assert_eq!(back.open().virtual_start, 50);
        assert_eq!(
            map.appended(Side::Target, 9, 0),
            Err(SpliceError::AlreadyThere("target"))
        );
        let err = map.appended(Side::Source, -5, 0).unwrap_err();
        assert!(err.to_string().contains("truncated or recreated"));
    }

    #[test]
    fn maps_default_to_identity_and_round_trip_as_json() {
        let mut maps = SegmentMaps::default();
        assert_eq!(maps.writer("t", 3), Side::Source);
        assert!(!maps.any_spliced());
        maps.set(
            "t",
            3,
            PartitionMap::default()
                .appended(Side::Target, 10, 0)
                .unwrap(),
        );
        assert_eq!(maps.writer("t", 3), Side::Target);
        assert!(maps.any_spliced());
        let json = serde_json::to_string(&maps).unwrap();
        assert_eq!(serde_json::from_str::<SegmentMaps>(&json).unwrap(), maps);
        assert_eq!(maps.partitions("t").len(), 1);
        maps.set_group_home("g", Side::Target);
        let json = serde_json::to_string(&maps).unwrap();
        let back: SegmentMaps = serde_json::from_str(&json).unwrap();
        assert_eq!(back.group_home("g"), Side::Target);
        assert_eq!(back.group_home("other"), Side::Source);
    }
}
