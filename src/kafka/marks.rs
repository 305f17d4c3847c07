//! Last seen high watermark per partition of one topic, for the group lag
//! gauge. Every Fetch and Produce answer moves them, so the data plane
//! writes them without a lock: one atomic per partition in a slice
//! published with arc-swap, grown (copied) the first time a higher
//! partition number is seen.
//!
//! A write racing a growth may land in the slice being replaced and be
//! lost; the next answer for that partition writes it again. That is
//! acceptable for a gauge and keeps the request path free of locks.

use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;

/// Partitions of one topic tracked at most; higher ones are not tracked.
const MAX_PARTITIONS: usize = 1 << 16;

/// No watermark seen yet (watermarks are never negative).
const UNKNOWN: i64 = -1;

/// One topic's watermarks, by partition number.
#[derive(Default)]
pub(crate) struct PartitionMarks {
    slots: ArcSwap<Box<[AtomicI64]>>,
}

impl PartitionMarks {
    /// A watermark a Fetch answer reported: authoritative, may go down
    /// (a recreated topic).
    pub(crate) fn note(&self, partition: i32, hw: i64) {
        self.with_slot(partition, |slot| slot.store(hw.max(0), Ordering::Relaxed));
    }

    /// A log end a Produce answer (or an older segment's watermark)
    /// implies: raises the watermark only.
    pub(crate) fn raise(&self, partition: i32, end: i64) {
        self.with_slot(partition, |slot| {
            slot.fetch_max(end.max(0), Ordering::Relaxed);
        });
    }

    /// The watermark of `partition`, if one was seen.
    pub(crate) fn get(&self, partition: i32) -> Option<i64> {
        let index = usize::try_from(partition).ok()?;
        let v = self.slots.load().get(index)?.load(Ordering::Relaxed);
        (v != UNKNOWN).then_some(v)
    }

    fn with_slot(&self, partition: i32, write: impl FnOnce(&AtomicI64)) {
        let Ok(index) = usize::try_from(partition) else {
            return;
        };
        if index >= MAX_PARTITIONS {
            return;
        }
        let slots = self.slots.load();
        if let Some(slot) = slots.get(index) {
            write(slot);
            return;
        }
        drop(slots);
        self.grow(index + 1);
        if let Some(slot) = self.slots.load().get(index) {
            write(slot);
        }
    }

    /// Publishes a copy with room for at least `len` partitions.
    fn grow(&self, len: usize) {
        self.slots.rcu(|old| {
            if old.len() >= len {
                return old.clone();
            }
            let want = len.max(old.len() * 2).min(MAX_PARTITIONS);
            let grown: Box<[AtomicI64]> = (0..want)
                .map(|i| AtomicI64::new(old.get(i).map_or(UNKNOWN, |s| s.load(Ordering::Relaxed))))
                .collect();
            std::sync::Arc::new(grown)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_raise_and_grow_keeping_what_was_seen() {
        let marks = PartitionMarks::default();
        assert_eq!(marks.get(0), None);
        marks.note(2, 10);
        assert_eq!(
            (marks.get(2), marks.get(0), marks.get(3)),
            (Some(10), None, None)
        );
        marks.raise(2, 7);
        assert_eq!(marks.get(2), Some(10), "raise never lowers");
        marks.raise(2, 12);
        marks.note(40, 5);
        assert_eq!(
            (marks.get(2), marks.get(40)),
            (Some(12), Some(5)),
            "kept across growth"
        );
        marks.note(2, 3);
        assert_eq!(marks.get(2), Some(3), "a fetch's watermark may go down");
        marks.note(-1, 1);
        marks.note(i32::MAX, 1);
        assert_eq!((marks.get(-1), marks.get(i32::MAX)), (None, None));
    }
}
