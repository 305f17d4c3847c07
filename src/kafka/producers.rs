//! Idempotent producers across a switch. A client's producer id comes
//! from the source (InitProducerId goes there), and a cluster only accepts
//! a producer id's sequences without gaps. While a partition has never
//! switched, its batches pass untouched. Once it has, the proxy writes them
//! under producer ids of its own, one per cluster per client producer (id,
//! epoch), obtained from that cluster, and rewrites each batch's producer
//! id, epoch and base sequence (recomputing the CRC-32C, which covers them).
//!
//! Sequences: a client keeps counting across switches, so per partition the
//! proxy keeps a shift per *era* (the run of batches sent to one cluster):
//! the first batch of an era fixes `shift = client_sequence - next sequence
//! that cluster expects from the proxy's id`, and every batch of the era,
//! retries included, maps the same way.
//!
//! The proxy's ids live in memory: after a proxy restart it asks for fresh
//! ones, whose sequences start at 0, so nothing it sends is mistaken for a
//! duplicate of what was written before (which a broker would acknowledge
//! without writing). Batches retried across the restart may then be
//! written twice: at-least-once, never lost.

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
    /// The proxy's own (id, epoch) on each cluster.
    ids: [Option<(i64, i16)>; 2],
    partitions: HashMap<(String, i32), Era>,
    used: u64,
}

/// Client producers by (id, epoch), and a use clock for eviction.
type Table = (HashMap<(i64, i16), ClientProducer>, u64);

/// The producer-id and sequence state of one migration.
#[derive(Debug, Default)]
pub(super) struct Producers {
    inner: Mutex<Table>,
    /// Per transactional id, the proxy's transaction open on the target
    /// (its producer id and epoch there), until the client's EndTxn ends it
    /// (see `txn`).
    open_on_target: Mutex<HashMap<String, (i64, i16)>>,
}

/// Why a transaction cannot be opened on the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_PRODUCERS} transactions are open on the target already")]
pub(crate) struct TooManyTransactions;

/// How to write one batch to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rewrite {
    /// Producer id there.
    pub(super) producer_id: i64,
    /// Epoch there.
    pub(super) epoch: i16,
    /// Base sequence there.
    pub(super) base_sequence: i32,
}

impl Producers {
    /// The proxy's producer id on `side` for a client producer, if obtained.
    #[must_use]
    pub(super) fn proxy_id(&self, producer_id: i64, epoch: i16, side: Side) -> Option<(i64, i16)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .0
            .get(&(producer_id, epoch))
            .and_then(|p| p.ids[side as usize])
    }

    /// Records the proxy's producer id on `side` for a client producer.
    pub(super) fn set_proxy_id(&self, producer_id: i64, epoch: i16, side: Side, id: (i64, i16)) {
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
        p.ids[side as usize] = Some(id);
        p.used = *clock;
    }

    /// Notes that the proxy's transaction `id` of transactional id `txn`
    /// has written to the target. Bounded: an entry is only dropped by the
    /// EndTxn that ends it, since dropping it would leave the target's
    /// part of the transaction to time out (aborted) while the source's
    /// commits.
    ///
    /// # Errors
    /// When [`MAX_PRODUCERS`] transactions are open on the target already.
    pub(super) fn opened_on_target(
        &self,
        txn: &str,
        id: (i64, i16),
    ) -> Result<(), TooManyTransactions> {
        let mut open = self
            .open_on_target
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if open.len() >= MAX_PRODUCERS && !open.contains_key(txn) {
            return Err(TooManyTransactions);
        }
        open.insert(txn.to_owned(), id);
        Ok(())
    }

    /// The proxy's transaction of `txn` open on the target, if any.
    #[must_use]
    pub(super) fn open_on_target(&self, txn: &str) -> Option<(i64, i16)> {
        self.open_on_target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(txn)
            .copied()
    }

    /// The proxy's transaction of `txn` on the target has ended.
    pub(super) fn closed_on_target(&self, txn: &str) {
        self.open_on_target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(txn);
    }

    /// How a batch of `count` records with the client's `base_sequence`
    /// is written to `side` of a partition that has `switched` at least
    /// once; `None` when it passes unchanged (never switched, or not
    /// idempotent) or the proxy's id on `side` is not obtained yet.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
        side: Side,
        switched: bool,
        base_sequence: i32,
        count: i32,
    ) -> Option<Rewrite> {
        if producer_id < 0 || base_sequence < 0 || !switched {
            return None;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, clock) = &mut *inner;
        *clock += 1;
        let p = map.entry((producer_id, epoch)).or_default();
        p.used = *clock;
        let (id, id_epoch) = p.ids[side as usize]?;
        let era = p
            .partitions
            .entry((topic.to_owned(), partition))
            .or_default();
        if era.side != Some(side) {
            era.shift = base_sequence.wrapping_sub(era.next[side as usize]);
            era.side = Some(side);
        }
        let mapped = base_sequence.wrapping_sub(era.shift);
        let next = &mut era.next[side as usize];
        *next = (*next).max(mapped.wrapping_add(count));
        Some(Rewrite {
            producer_id: id,
            epoch: id_epoch,
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
        // Never switched: untouched.
        assert_eq!(p.plan(7, 0, "t", 0, Side::Source, false, 0, 5), None);
        p.set_proxy_id(7, 0, Side::Target, (900, 3));
        p.set_proxy_id(7, 0, Side::Source, (800, 0));
        let at = |seq, side| p.plan(7, 0, "t", 0, side, true, seq, 5);
        // First era on the target: the proxy's id there, sequences from 0.
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
        // Back to the source under the proxy's id there: from 0.
        assert_eq!(
            at(20, Side::Source),
            Some(Rewrite {
                producer_id: 800,
                epoch: 0,
                base_sequence: 0
            })
        );
        // And to the target again: it expects 10 after 0..10 there.
        assert_eq!(at(25, Side::Target).unwrap().base_sequence, 10);
        // Plain producers pass.
        assert_eq!(p.plan(-1, -1, "t", 0, Side::Target, true, -1, 5), None);
    }

    #[test]
    fn no_plan_until_the_proxy_has_an_id_there() {
        let p = Producers::default();
        assert_eq!(p.plan(7, 0, "t", 0, Side::Target, true, 0, 1), None);
        assert_eq!(p.proxy_id(7, 0, Side::Target), None);
    }

    #[test]
    fn a_transaction_open_on_the_target_is_remembered_until_it_ends() {
        let p = Producers::default();
        assert_eq!(p.open_on_target("tx"), None);
        p.opened_on_target("tx", (900, 1)).unwrap();
        p.opened_on_target("tx", (900, 1)).unwrap();
        assert_eq!(p.open_on_target("tx"), Some((900, 1)));
        p.closed_on_target("tx");
        assert_eq!(p.open_on_target("tx"), None);
    }
}
