//! Splitting an uncompressed v2 batch whose offsets have gaps into dense
//! batches, one per contiguous offset run.
//!
//! Kafka's log cleaner keeps a batch's original last offset when it drops
//! records from it (`MemoryRecords.buildRetainedRecordsInto` calls
//! `overrideLastOffset`), so a cleaned batch has `lastOffsetDelta + 1 !=
//! recordCount`. A broker refuses such a batch from a client ("Inconsistent
//! batch offset range") and would store a patched header inconsistently, so
//! the history copy sends each run as its own dense batch.
//!
//! Each piece keeps the original header except: base offset (the first
//! record's offset, so the caller sees where the run starts), batch length,
//! `lastOffsetDelta`, `recordCount`, `maxTimestamp` (recomputed for
//! CreateTime; LogAppendTime's stamp applies to every record and is kept)
//! and `baseSequence` (moved with the first record). `baseTimestamp` is
//! kept, so timestamp deltas and the delete-horizon stamp are unchanged.
//! Each record's offset delta is rewritten relative to its piece, with its
//! length varint when the width changes; key, value and headers are copied.

use super::records::{RecordSpan, RecordsError, record_spans};
use super::{BATCH_HEADER_LEN, BatchView, LOG_OVERHEAD, reseal};
use crate::wire::{put_varint, varint_len};

const BATCH_LENGTH_AT: usize = 8;
const LAST_OFFSET_DELTA_AT: usize = 23;
const MAX_TIMESTAMP_AT: usize = 35;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;
const LOG_APPEND_TIME: i16 = 0x08;

/// Whether the batch's offsets have a gap: fewer records than its offset
/// range, as the log cleaner leaves them.
#[must_use]
pub fn has_offset_gaps(view: &BatchView<'_>) -> bool {
    i64::from(view.last_offset_delta()) + 1 != i64::from(view.record_count())
}

/// [`split_dense_from`] keeping every record.
///
/// # Errors
/// The errors of [`split_dense_from`].
pub fn split_dense(batch: &[u8]) -> Result<Vec<Vec<u8>>, RecordsError> {
    split_dense_from(batch, i64::MIN)
}

/// Splits the uncompressed batch at the start of `batch` into dense batches,
/// one per contiguous run of offsets at or above `from` (records below it
/// are left out: a fetch may return a batch that starts before the
/// position being read). Each piece's base offset is its first record's
/// offset. A dense batch wholly at or above `from` comes back as one piece
/// equal to the input but for recomputed fields. No records, no pieces.
///
/// The pieces together take at most the input's size plus one header per
/// piece; nothing is reserved from declared counts.
///
/// # Errors
/// [`RecordsError::Compressed`] for a compressed batch,
/// [`RecordsError::Corrupt`] when its CRC-32C does not match, and
/// [`RecordsError::Frame`] when the batch is not whole, or its records are
/// malformed, out of order, or outside its declared offset range.
pub fn split_dense_from(batch: &[u8], from: i64) -> Result<Vec<Vec<u8>>, RecordsError> {
    let view = BatchView::new(batch)?;
    if !view.crc_is_valid() {
        return Err(RecordsError::Corrupt {
            base_offset: view.base_offset(),
        });
    }
    let spans = record_spans(&view)?;
    check_order(&view, &spans)?;
    let base = view.base_offset();
    let kept: Vec<&RecordSpan> = spans
        .iter()
        .filter(|s| base.saturating_add(i64::from(s.offset_delta)) >= from)
        .collect();
    Ok(runs(&kept)
        .into_iter()
        .map(|run| piece(&view, run))
        .collect())
}

/// Offset deltas must rise strictly inside `0..=lastOffsetDelta`: anything
/// else is not a batch a broker wrote, and its pieces would overlap.
fn check_order(view: &BatchView<'_>, spans: &[RecordSpan]) -> Result<(), RecordsError> {
    let mut previous = -1;
    for s in spans {
        if s.offset_delta <= previous || s.offset_delta > view.last_offset_delta() {
            return Err(crate::FrameError::Malformed {
                what: "record",
                reason: "offset delta out of order or past the batch's last offset",
                offset: view.range().start + s.bytes.start,
            }
            .into());
        }
        previous = s.offset_delta;
    }
    Ok(())
}

/// The kept records grouped into runs of consecutive offset deltas.
fn runs<'s>(kept: &[&'s RecordSpan]) -> Vec<Vec<&'s RecordSpan>> {
    let mut out: Vec<Vec<&RecordSpan>> = Vec::new();
    for &s in kept {
        match out.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|p| p.offset_delta + 1 == s.offset_delta) =>
            {
                run.push(s);
            }
            _ => out.push(vec![s]),
        }
    }
    out
}

/// One dense batch holding `run` (non-empty, consecutive offsets).
fn piece(view: &BatchView<'_>, run: Vec<&RecordSpan>) -> Vec<u8> {
    let src = view.as_bytes();
    let first = run[0].offset_delta;
    let body: usize = run.iter().map(|s| s.bytes.len()).sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body);
    out.extend_from_slice(&src[..BATCH_HEADER_LEN]);
    let mut max_timestamp = i64::MIN;
    for s in &run {
        let delta = s.offset_delta - first;
        let len = s.head.len() + varint_len(delta) + s.tail.len();
        // A record is far below 2 GiB: its batch fits an i32 length.
        put_varint(&mut out, i32::try_from(len).unwrap_or(i32::MAX));
        out.extend_from_slice(&src[s.head.clone()]);
        put_varint(&mut out, delta);
        out.extend_from_slice(&src[s.tail.clone()]);
        max_timestamp = max_timestamp.max(view.base_timestamp().wrapping_add(s.timestamp_delta));
    }
    let count = i32::try_from(run.len()).unwrap_or(i32::MAX);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
    let base_offset = view.base_offset().wrapping_add(i64::from(first));
    put_at(&mut out, 0, &base_offset.to_be_bytes());
    put_at(&mut out, BATCH_LENGTH_AT, &batch_length.to_be_bytes());
    put_at(&mut out, LAST_OFFSET_DELTA_AT, &(count - 1).to_be_bytes());
    put_at(&mut out, RECORD_COUNT_AT, &count.to_be_bytes());
    if view.attributes() & LOG_APPEND_TIME == 0 {
        put_at(&mut out, MAX_TIMESTAMP_AT, &max_timestamp.to_be_bytes());
    }
    if view.base_sequence() >= 0 {
        let sequence = increment_sequence(view.base_sequence(), first);
        put_at(&mut out, BASE_SEQUENCE_AT, &sequence.to_be_bytes());
    }
    reseal(&mut out);
    out
}

/// `sequence + by` for a non-negative `sequence` and `by`, wrapping past
/// `i32::MAX` to 0 as Kafka's producer sequences do
/// (`DefaultRecordBatch.incrementSequence`).
#[must_use]
pub fn increment_sequence(sequence: i32, by: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(by);
    i32::try_from(sum % (i64::from(i32::MAX) + 1)).unwrap_or(0)
}

fn put_at(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafkas() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }
}
