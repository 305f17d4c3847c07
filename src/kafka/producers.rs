//! Idempotent producers across a switch. A client's producer id comes
//! from the source (InitProducerId goes there); the target has never
//! heard of it and fences it. So the proxy obtains a producer id of its
//! own on the target per client producer (id, epoch), and rewrites each
//! batch's producer id, epoch and base sequence there (recomputing the
//! CRC-32C, which covers them).
//!
//! Sequences: each cluster expects a partition's sequences from one
//! producer id to continue without gaps. A client keeps counting across
//! switches, so per partition the proxy keeps a shift per *era* (the run
//! of batches sent to one cluster): the first batch of an era fixes
//! `shift = client_sequence - next sequence that cluster expects`, and
//! every batch of the era, retries included, maps the same way. The
//! source's first era is the identity (the id is the source's own).

use std::collections::HashMap;
use std::sync::Mutex;

use super::cluster::Side;

/// Client producers remembered at most (least recently used dropped):
/// a dropped one only costs a fresh target id and sequence shift.
const MAX_PRODUCERS: usize = 16_384;

#[derive(Debug, Default, Clone, Copy)]
struct Era {
    side: Option<Side>,
    shift: i32,
    /// Next sequence each cluster expects from this producer here.
    next: [i32; 2],
}

#[derive(Debug, Default)]
struct ClientProducer {
    target: Option<(i64, i16)>,
    partitions: HashMap<(String, i32), Era>,
    used: u64,
}

/// Client producers by (id, epoch), and a use clock for eviction.
type Table = (HashMap<(i64, i16), ClientProducer>, u64);

/// The producer-id and sequence state of one migration.
#[derive(Debug, Default)]
pub struct Producers {
    inner: Mutex<Table>,
}

/// How to write one batch to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Producer id there.
    pub producer_id: i64,
    /// Epoch there.
    pub epoch: i16,
    /// Base sequence there.
    pub base_sequence: i32,
}

impl Producers {
    /// The target's producer id for a client producer, if obtained.
    #[must_use]
    pub fn target_id(&self, producer_id: i64, epoch: i16) -> Option<(i64, i16)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.get(&(producer_id, epoch)).and_then(|p| p.target)
    }

    /// Records the target's producer id for a client producer.
    pub fn set_target_id(&self, producer_id: i64, epoch: i16, target: (i64, i16)) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, clock) = &mut *inner;
        *clock += 1;
        if map.len() >= MAX_PRODUCERS
            && !map.contains_key(&(producer_id, epoch))
            && let Some(oldest) = map.iter().min_by_key(|(_, p)| p.used).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        let p = map.entry((producer_id, epoch)).or_default();
        p.target = Some(target);
        p.used = *clock;
    }

    /// How a batch of `count` records with the client's `base_sequence`
    /// is written to `side`; `None` when it passes unchanged.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
        side: Side,
        base_sequence: i32,
        count: i32,
    ) -> Option<Rewrite> {
        if producer_id < 0 || base_sequence < 0 {
            return None;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, clock) = &mut *inner;
        *clock += 1;
        let p = map.entry((producer_id, epoch)).or_default();
        p.used = *clock;
        let target = p.target;
        let era = p
            .partitions
            .entry((topic.to_owned(), partition))
            .or_default();
        if era.side != Some(side) {
            era.shift = if era.side.is_none() && side == Side::Source {
                0
            } else {
                base_sequence.wrapping_sub(era.next[side as usize])
            };
            era.side = Some(side);
        }
        let mapped = base_sequence.wrapping_sub(era.shift);
        let next = &mut era.next[side as usize];
        *next = (*next).max(mapped.wrapping_add(count));
        let (producer_id, epoch) = match side {
            Side::Source => (producer_id, epoch),
            Side::Target => target?,
        };
        (side == Side::Target || mapped != base_sequence).then_some(Rewrite {
            producer_id,
            epoch,
            base_sequence: mapped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_continue_per_cluster_across_switches() {
        let p = Producers::default();
        // Source era: identity.
        assert_eq!(p.plan(7, 0, "t", 0, Side::Source, 0, 5), None);
        assert_eq!(p.plan(7, 0, "t", 0, Side::Source, 5, 5), None);
        // Switch to the target: its own id, sequences from 0.
        p.set_target_id(7, 0, (900, 3));
        let at = |seq, side| p.plan(7, 0, "t", 0, side, seq, 5);
        assert_eq!(
            at(10, Side::Target),
            Some(Rewrite {
                producer_id: 900,
                epoch: 3,
                base_sequence: 0
            })
        );
        assert_eq!(
            at(10, Side::Target).unwrap().base_sequence,
            0,
            "a retry maps the same"
        );
        assert_eq!(at(15, Side::Target).unwrap().base_sequence, 5);
        // Back to the source: it expects 10 after the first era's 0..10.
        assert_eq!(
            at(20, Side::Source),
            Some(Rewrite {
                producer_id: 7,
                epoch: 0,
                base_sequence: 10
            })
        );
        // And to the target again: it expects 10 after 0..10 there.
        assert_eq!(at(25, Side::Target).unwrap().base_sequence, 10);
        // Other partitions and plain producers are independent.
        assert_eq!(p.plan(7, 0, "t", 1, Side::Source, 40, 5), None);
        assert_eq!(p.plan(-1, -1, "t", 0, Side::Target, -1, 5), None);
    }

    #[test]
    fn a_target_batch_without_a_target_id_is_not_planned() {
        let p = Producers::default();
        assert_eq!(p.plan(7, 0, "t", 0, Side::Target, 0, 1), None);
        assert_eq!(p.target_id(7, 0), None);
    }
}
