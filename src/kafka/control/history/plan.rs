//! What one Fetch answer from the source becomes on the target
//! (docs/kafka-history-plan.md §2): which batches are copied, cut where,
//! with which producer fields, and the history runs they extend once
//! acknowledged. Pure, so the copier's resume path (§3) can replay it and
//! land on the same records with the same sequences.
//!
//! The filter is Kafka's own read_committed consumer
//! (`CompletedFetch.nextFetchedRecord`): before each batch with a producer
//! id, the aborted transactions starting at or before its last offset join
//! the aborted set; an ABORT marker takes its producer out of the set; a
//! transactional batch of a producer in the set is dropped; control batches
//! are never copied. Batches the cleaner emptied are dropped too.
//!
//! A kept batch is relayed whole with its header rewritten: base offset 0,
//! the transactional bit cleared (the target has no markers for it), the
//! copier's own idempotent producer and the next sequence. A batch with
//! offset gaps, or one starting below the read position, is first cut into
//! dense batches, so one target batch is always one run.

use std::collections::HashSet;

use cutover_kafka::{
    Batch, BatchView, ControlType, FrameError, RecordsError, batches, control_type,
    has_offset_gaps, increment_sequence, set_attributes, set_base_offset, set_producer,
    split_dense_from,
};

use crate::kafka::splice::history::Run;
#[cfg(test)]
use crate::kafka::splice::history::{HistoryRuns, RunError};

const TRANSACTIONAL: i16 = 0x10;

/// The copier's own idempotent producer on the target. Never the source's
/// ids: those are the target's id space too, and a clash would be
/// acknowledged as a duplicate without being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Producer {
    pub(crate) id: i64,
    pub(crate) epoch: i16,
}

/// One entry of a Fetch answer's `aborted_transactions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Aborted {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
}

/// Where the copy of one partition stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Cursor {
    /// The next source offset to read; skipped offsets are counted as read.
    pub(crate) source_next: i64,
    /// The target offset the next copied record gets (the copier is the
    /// only writer of the partition while it copies).
    pub(crate) target_next: i64,
    /// The base sequence of the next batch: records copied so far, mod 2³¹.
    pub(crate) sequence: i32,
    /// `virtual - source` for the source segment being copied.
    pub(crate) delta: i64,
}

/// One batch ready to produce, and the run it becomes once acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) batch: Vec<u8>,
    /// `run.target_start` is the base offset the target must assign; any
    /// other means something else wrote to the partition.
    pub(crate) run: Run,
}

/// Offsets read but not copied, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Transaction markers and other control records.
    pub(crate) control: i64,
    /// Records of aborted transactions.
    pub(crate) aborted: i64,
    /// Offset ranges of batches the cleaner emptied.
    pub(crate) empty: i64,
}

/// What one Fetch answer becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Round {
    pub(crate) batches: Vec<Planned>,
    pub(crate) skipped: Skipped,
    /// The cursor once every batch is acknowledged.
    pub(crate) next: Cursor,
    /// The answer ended with a batch cut by the fetch's byte limits. With
    /// no progress this means the limit is below one batch.
    pub(crate) partial_tail: bool,
}

/// Why an answer could not be planned. The copy of the partition stops
/// with this as its reason: skipping would lose records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    /// The records blob does not parse.
    #[error("the source's records cannot be read: {0}")]
    Frame(#[from] FrameError),
    /// A batch is corrupt, compressed with gaps, or its records malformed.
    #[error("a source batch cannot be copied: {0}")]
    Records(#[from] RecordsError),
}

impl Round {
    /// Records the round in `runs` once every batch is acknowledged: one
    /// run per batch, then the skipped offsets up to the round's end.
    ///
    /// # Errors
    /// [`RunError`] when the runs overlap what `runs` already holds (the
    /// round was not planned from the cursor `runs` ends at).
    #[cfg(test)]
    pub(crate) fn extend(&self, runs: &mut HistoryRuns) -> Result<(), RunError> {
        for planned in &self.batches {
            let r = planned.run;
            runs.push(r.virtual_start, r.target_start, r.len)?;
        }
        runs.advance(self.next.source_next + self.next.delta)
    }
}

/// The aborted-transaction state of one answer, as the consumer keeps it.
struct Aborts {
    /// Not yet reached, by first offset (the consumer's priority queue).
    pending: Vec<Aborted>,
    reached: usize,
    producers: HashSet<i64>,
}

impl Aborts {
    fn new(list: &[Aborted]) -> Self {
        let mut pending = list.to_vec();
        pending.sort_by_key(|a| a.first_offset);
        Aborts {
            pending,
            reached: 0,
            producers: HashSet::new(),
        }
    }

    fn consume_up_to(&mut self, last_offset: i64) {
        while let Some(a) = self.pending.get(self.reached) {
            if a.first_offset > last_offset {
                break;
            }
            self.producers.insert(a.producer_id);
            self.reached += 1;
        }
    }

    /// Whether the batch is skipped as aborted; an ABORT marker closes its
    /// producer's aborted transaction (the marker itself is a control batch).
    fn skips(&mut self, view: &BatchView<'_>) -> Result<bool, RecordsError> {
        if view.producer_id() < 0 {
            return Ok(false);
        }
        self.consume_up_to(view.last_offset());
        if control_type(view)? == Some(ControlType::Abort) {
            self.producers.remove(&view.producer_id());
            return Ok(false);
        }
        Ok(view.is_transactional() && self.producers.contains(&view.producer_id()))
    }
}

/// Plans one Fetch answer (read_committed) for a partition: `records` is
/// its records blob, `aborted` its aborted transactions.
///
/// # Errors
/// [`PlanError`] for a blob that does not parse, a corrupt batch, or a
/// compressed batch that would need cutting (not supported yet).
pub(crate) fn plan(
    records: &[u8],
    aborted: &[Aborted],
    cursor: Cursor,
    producer: Producer,
) -> Result<Round, PlanError> {
    let mut aborts = Aborts::new(aborted);
    let mut round = Round {
        batches: Vec::new(),
        skipped: Skipped::default(),
        next: cursor,
        partial_tail: false,
    };
    for item in batches(records) {
        let view = match item? {
            Batch::Whole(view) => view,
            Batch::Partial { .. } => {
                round.partial_tail = true;
                break;
            }
        };
        // Checked before anything is read from it, as the consumer does;
        // resealing a corrupt batch would make the damage look valid.
        if !view.crc_is_valid() {
            return Err(RecordsError::Corrupt {
                base_offset: view.base_offset(),
            }
            .into());
        }
        let aborted = aborts.skips(&view)?;
        let from = round.next.source_next;
        if view.last_offset() < from {
            continue;
        }
        let unread = view.last_offset() - view.base_offset().max(from) + 1;
        if aborted {
            round.skipped.aborted += unread;
        } else if view.is_control() {
            round.skipped.control += unread;
        } else if view.record_count() == 0 {
            round.skipped.empty += unread;
        } else {
            copy(&view, producer, &mut round)?;
        }
        round.next.source_next = view.last_offset() + 1;
    }
    Ok(round)
}

/// Adds the kept batch `view` to the round, cut into dense pieces when it
/// has gaps or starts below the read position.
fn copy(view: &BatchView<'_>, producer: Producer, round: &mut Round) -> Result<(), PlanError> {
    let from = round.next.source_next;
    let pieces = if has_offset_gaps(view) || view.base_offset() < from {
        split_dense_from(view.as_bytes(), from)?
    } else {
        vec![view.as_bytes().to_vec()]
    };
    for mut batch in pieces {
        let piece = BatchView::new(&batch)?;
        let (source_start, count) = (piece.base_offset(), piece.record_count());
        let attributes = piece.attributes() & !TRANSACTIONAL;
        let next = &mut round.next;
        set_base_offset(&mut batch, 0)?;
        set_attributes(&mut batch, attributes)?;
        set_producer(&mut batch, producer.id, producer.epoch, next.sequence)?;
        round.batches.push(Planned {
            batch,
            run: Run {
                virtual_start: source_start + next.delta,
                target_start: next.target_next,
                len: i64::from(count),
            },
        });
        next.target_next += i64::from(count);
        next.sequence = increment_sequence(next.sequence, count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use cutover_kafka::kafka_protocol::indexmap::IndexMap;
    use cutover_kafka::kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use super::*;

    const COPIER: Producer = Producer {
        id: 9_001,
        epoch: 3,
    };
    const PLAIN: i64 = -1;

    /// One batch of `n` records from `base`: data, or a control marker
    /// (`marker` = 0 ABORT, 1 COMMIT).
    fn batch(base: i64, n: i64, pid: i64, transactional: bool, marker: Option<u8>) -> Vec<u8> {
        let records: Vec<Record> = (base..base + n)
            .map(|offset| Record {
                transactional,
                control: marker.is_some(),
                delete_horizon: false,
                partition_leader_epoch: 1,
                producer_id: pid,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: i32::try_from(offset).unwrap(),
                timestamp: 1_700_000_000_000 + offset,
                key: Some(match marker {
                    Some(kind) => Bytes::from(vec![0, 0, 0, kind]),
                    None => Bytes::from(format!("k{offset}")),
                }),
                value: Some(Bytes::from(format!("v{offset}"))),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        buf.to_vec()
    }

    fn data(base: i64, n: i64, pid: i64) -> Vec<u8> {
        batch(base, n, pid, pid >= 0, None)
    }

    fn marker(at: i64, pid: i64, kind: u8) -> Vec<u8> {
        batch(at, 1, pid, true, Some(kind))
    }

    /// A plain batch of `n` records from `base` with only the records at the
    /// offsets `keep` says, its offset range kept (the log cleaner's
    /// output), resealed.
    fn cleaned(base: i64, n: i64, keep: impl Fn(i64) -> bool) -> Vec<u8> {
        let original = data(base, n, PLAIN);
        let view = BatchView::new(&original).unwrap();
        let spans = cutover_kafka::record_spans(&view).unwrap();
        let mut out = original[..61].to_vec();
        let mut kept = 0i32;
        for (i, s) in spans.iter().enumerate() {
            if keep(base + i64::try_from(i).unwrap()) {
                out.extend_from_slice(&original[s.bytes.clone()]);
                kept += 1;
            }
        }
        let length = i32::try_from(out.len() - 12).unwrap();
        out[8..12].copy_from_slice(&length.to_be_bytes());
        out[57..61].copy_from_slice(&kept.to_be_bytes());
        let attributes = BatchView::new(&out).unwrap().attributes();
        set_attributes(&mut out, attributes).unwrap();
        out
    }

    fn blob(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    fn start(source_next: i64) -> Cursor {
        Cursor {
            source_next,
            target_next: 0,
            sequence: 0,
            delta: 0,
        }
    }

    fn aborted(producer_id: i64, first_offset: i64) -> Aborted {
        Aborted {
            producer_id,
            first_offset,
        }
    }

    fn runs(round: &Round) -> Vec<(i64, i64, i64)> {
        round.batches.iter().map(|p| p.run.into()).collect()
    }

    /// Every planned batch is what the target must accept: base offset 0,
    /// dense, not transactional, the copier's producer and sequences in
    /// order, a valid CRC; its records are the source's at the run's offsets.
    fn check_relayed(round: &Round, first_sequence: i32) {
        let mut sequence = first_sequence;
        for p in &round.batches {
            let view = BatchView::new(&p.batch).unwrap();
            assert_eq!(view.base_offset(), 0);
            assert!(!view.is_transactional() && !view.is_control());
            assert!(!has_offset_gaps(&view));
            assert_eq!(
                (
                    view.producer_id(),
                    view.producer_epoch(),
                    view.base_sequence()
                ),
                (COPIER.id, COPIER.epoch, sequence)
            );
            assert!(view.crc_is_valid());
            assert_eq!(i64::from(view.record_count()), p.run.len);
            let records = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(&p.batch))
                .unwrap()
                .records;
            for (i, r) in records.iter().enumerate() {
                let source = p.run.virtual_start - round.next.delta + i64::try_from(i).unwrap();
                assert_eq!(r.key, Some(Bytes::from(format!("k{source}"))));
                assert_eq!(r.timestamp, 1_700_000_000_000 + source);
            }
            sequence = increment_sequence(sequence, view.record_count());
        }
        assert_eq!(round.next.sequence, sequence);
    }

    #[test]
    fn aborted_data_markers_and_empty_batches_are_not_copied() {
        let records = blob(&[
            data(0, 2, 7),                // pid 7's transaction, aborted below
            data(2, 2, 8),                // pid 8's transaction, committed below
            marker(4, 7, 0),              // ABORT pid 7
            marker(5, 8, 1),              // COMMIT pid 8
            data(6, 2, PLAIN),            // plain producer
            cleaned(8, 3, |_| false),     // emptied by the cleaner
            batch(11, 1, 7, false, None), // pid 7 again, idempotent only
        ]);
        let round = plan(&records, &[aborted(7, 0)], start(0), COPIER).unwrap();
        assert_eq!(runs(&round), [(2, 0, 2), (6, 2, 2), (11, 4, 1)]);
        assert_eq!(
            round.skipped,
            Skipped {
                control: 2,
                aborted: 2,
                empty: 3
            }
        );
        assert_eq!((round.next.source_next, round.next.target_next), (12, 5));
        assert!(!round.partial_tail);
        check_relayed(&round, 0);

        let mut history = HistoryRuns::starting_at(0);
        round.extend(&mut history).unwrap();
        let stored: Vec<(i64, i64, i64)> = history.runs().iter().map(|&r| r.into()).collect();
        assert_eq!(stored, [(2, 0, 2), (6, 2, 2), (11, 4, 1)]);
        assert_eq!(history.copied_to(), 12);
    }

    #[test]
    fn an_abort_applies_only_from_its_first_offset() {
        // pid 7 commits a transaction at 0..2, then aborts one at 3..5.
        let records = blob(&[
            data(0, 2, 7),
            marker(2, 7, 1),
            data(3, 2, 7),
            marker(5, 7, 0),
            data(6, 1, 7), // a third transaction, still committed later
        ]);
        let round = plan(&records, &[aborted(7, 3)], start(0), COPIER).unwrap();
        assert_eq!(runs(&round), [(0, 0, 2), (6, 2, 1)]);
        assert_eq!(round.skipped.aborted, 2);
        assert_eq!(round.skipped.control, 2);
        check_relayed(&round, 0);
    }

    #[test]
    fn two_producers_aborting_interleaved_transactions() {
        let records = blob(&[
            data(0, 1, 7),
            data(1, 1, 8),
            data(2, 1, 7),
            marker(3, 8, 0), // pid 8 aborted
            data(4, 1, 7),
            marker(5, 7, 0), // pid 7 aborted
            data(6, 1, 8),   // pid 8's next transaction: copied
        ]);
        let list = [aborted(8, 1), aborted(7, 0)]; // any order, as answered
        let round = plan(&records, &list, start(0), COPIER).unwrap();
        assert_eq!(runs(&round), [(6, 0, 1)]);
        assert_eq!(round.skipped.aborted, 4);
    }

    #[test]
    fn compaction_gaps_become_one_batch_per_run() {
        // 0..10 with 2, 3 and 7 compacted away, then a dense batch at 10.
        let records = blob(&[
            cleaned(0, 10, |o| ![2, 3, 7].contains(&o)),
            data(10, 2, PLAIN),
        ]);
        let cursor = Cursor {
            sequence: i32::MAX - 2,
            target_next: 40,
            delta: 100,
            ..start(0)
        };
        let round = plan(&records, &[], cursor, COPIER).unwrap();
        assert_eq!(
            runs(&round),
            [(100, 40, 2), (104, 42, 3), (108, 45, 2), (110, 47, 2)]
        );
        check_relayed(&round, i32::MAX - 2);
        assert_eq!(round.next.sequence, 6, "wrapped past i32::MAX");
        let mut history = HistoryRuns::starting_at(100);
        round.extend(&mut history).unwrap();
        assert_eq!(history.runs().len(), 3, "the last two runs merge");
        assert_eq!(history.to_target(102), Some((42, 102 - 40)));
    }

    #[test]
    fn records_below_the_read_position_are_not_copied_again() {
        // The answer starts with the batch holding the read position.
        let records = blob(&[data(0, 5, PLAIN), data(5, 3, PLAIN)]);
        let cursor = Cursor {
            target_next: 3,
            sequence: 3,
            ..start(3)
        };
        let round = plan(&records, &[], cursor, COPIER).unwrap();
        assert_eq!(runs(&round), [(3, 3, 2), (5, 5, 3)]);
        check_relayed(&round, 3);
        let past = plan(&records, &[], start(8), COPIER).unwrap();
        assert!(past.batches.is_empty());
        assert_eq!(past.skipped, Skipped::default());
        assert_eq!(past.next, start(8));
    }

    #[test]
    fn a_partial_tail_ends_the_round() {
        let whole = data(0, 2, PLAIN);
        let next = data(2, 2, PLAIN);
        let records = blob(&[whole, next[..next.len() - 5].to_vec()]);
        let round = plan(&records, &[], start(0), COPIER).unwrap();
        assert!(round.partial_tail);
        assert_eq!(round.next.source_next, 2);
        assert_eq!(runs(&round), [(0, 0, 2)]);
    }

    #[test]
    fn compressed_batches_are_relayed_whole_unless_they_have_gaps() {
        // The codec bit only: relaying never reads the records.
        let mut dense = data(0, 3, PLAIN);
        let attributes = BatchView::new(&dense).unwrap().attributes();
        set_attributes(&mut dense, attributes | 3).unwrap();
        let round = plan(&dense, &[], start(0), COPIER).unwrap();
        assert_eq!(
            BatchView::new(&round.batches[0].batch)
                .unwrap()
                .compression(),
            3
        );

        let mut gapped = cleaned(0, 3, |o| o != 1);
        set_attributes(&mut gapped, attributes | 3).unwrap();
        assert!(matches!(
            plan(&gapped, &[], start(0), COPIER),
            Err(PlanError::Records(RecordsError::Compressed {
                codec: 3,
                ..
            }))
        ));
    }

    #[test]
    fn corrupt_or_unreadable_answers_stop_the_copy() {
        let mut records = data(0, 3, PLAIN);
        let last = records.len() - 1;
        records[last] ^= 1;
        assert!(matches!(
            plan(&records, &[], start(0), COPIER),
            Err(PlanError::Records(RecordsError::Corrupt { base_offset: 0 }))
        ));
        let mut old_magic = data(0, 3, PLAIN);
        old_magic[16] = 1;
        assert!(matches!(
            plan(&old_magic, &[], start(0), COPIER),
            Err(PlanError::Frame(FrameError::UnsupportedMagic { .. }))
        ));
    }
}
