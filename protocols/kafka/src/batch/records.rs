//! The records of an uncompressed v2 batch, walked in place: where each
//! record and its offset delta sit, without decoding keys, values or
//! headers. Splitting a compacted batch rewrites only the offset delta (and
//! the length before it), and telling an ABORT marker from a COMMIT needs
//! only the control record's key, so nothing here allocates per field.
//!
//! Record layout: length varint (bytes after it), attributes i8,
//! timestampDelta varlong, offsetDelta varint, keyLength varint, key,
//! valueLength varint, value, header count varint, headers.

use std::ops::Range;

use super::BatchView;
use crate::FrameError;
use crate::wire::{varint_at, varlong_at};

const WHAT: &str = "record";

/// Why a batch's records could not be walked or rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// The records are compressed; they must be decompressed first (the
    /// caller decides whether it can).
    #[error("the record batch at offset {base_offset} is compressed (codec {codec})")]
    Compressed {
        /// Compression codec id from the attributes.
        codec: u8,
        /// The batch's base offset.
        base_offset: i64,
    },
    /// The stored CRC-32C does not match: the batch is corrupt, and
    /// rewriting it would give the damage a valid CRC.
    #[error("the record batch at offset {base_offset} fails its CRC-32C check")]
    Corrupt {
        /// The batch's base offset.
        base_offset: i64,
    },
    /// The header or a record does not follow the v2 format.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// One record of an uncompressed batch, as positions in the batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpan {
    /// The whole record, its length varint included.
    pub bytes: Range<usize>,
    /// Attributes and timestamp delta, which a rewrite copies unchanged.
    pub(crate) head: Range<usize>,
    /// After the offset delta to the record's end: key, value, headers.
    pub(crate) tail: Range<usize>,
    /// Timestamp minus the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// The key, `None` when it is null.
    pub key: Option<Range<usize>>,
}

/// The records of an uncompressed batch, in order. Their number must be
/// the declared `recordCount` and they must fill the batch exactly.
///
/// # Errors
/// [`RecordsError::Compressed`] for a compressed batch; [`FrameError`]
/// (inside [`RecordsError::Frame`]) when a record is truncated or
/// malformed or the count disagrees.
pub fn record_spans(view: &BatchView<'_>) -> Result<Vec<RecordSpan>, RecordsError> {
    if view.compression() != 0 {
        return Err(RecordsError::Compressed {
            codec: view.compression(),
            base_offset: view.base_offset(),
        });
    }
    let bytes = view.as_bytes();
    let declared =
        usize::try_from(view.record_count()).map_err(|_| malformed(57, "negative record count"))?;
    // Grown per record found, never reserved from the declared count.
    let mut spans = Vec::new();
    let mut pos = super::BATCH_HEADER_LEN;
    while pos < bytes.len() {
        if spans.len() == declared {
            return Err(malformed(pos, "bytes after the declared number of records").into());
        }
        let span = span_at(bytes, pos)?;
        pos = span.bytes.end;
        spans.push(span);
    }
    if spans.len() != declared {
        return Err(malformed(pos, "fewer records than the batch declares").into());
    }
    Ok(spans)
}

fn span_at(bytes: &[u8], start: usize) -> Result<RecordSpan, FrameError> {
    let (len, body) = varint_at(bytes, start, WHAT)?;
    let len = usize::try_from(len).map_err(|_| malformed(start, "negative record length"))?;
    let end = body
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or(FrameError::Truncated {
            what: WHAT,
            needed: body.saturating_add(len),
            available: bytes.len(),
        })?;
    // Read inside the record only, so a bad field cannot reach the next.
    let record = &bytes[..end];
    if body >= end {
        return Err(malformed(start, "record without attributes"));
    }
    let (timestamp_delta, after_ts) = varlong_at(record, body + 1, WHAT)?;
    let (offset_delta, tail) = varint_at(record, after_ts, WHAT)?;
    let (key_len, key_at) = varint_at(record, tail, WHAT)?;
    let key = match usize::try_from(key_len) {
        Ok(n) if key_at + n <= end => Some(key_at..key_at + n),
        Ok(_) => return Err(malformed(key_at, "key longer than its record")),
        Err(_) if key_len == -1 => None,
        Err(_) => return Err(malformed(tail, "negative key length")),
    };
    Ok(RecordSpan {
        bytes: start..end,
        head: body..after_ts,
        tail: tail..end,
        timestamp_delta,
        offset_delta,
        key,
    })
}

fn malformed(offset: usize, reason: &'static str) -> FrameError {
    FrameError::Malformed {
        what: WHAT,
        reason,
        offset,
    }
}

/// The kind of a control record (its key: version i16, type i16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// A transaction's ABORT marker.
    Abort,
    /// A transaction's COMMIT marker.
    Commit,
    /// Any other type (e.g. KRaft control records); Kafka's consumer
    /// treats these as neither.
    Other(i16),
}

/// The type of a control batch's first record, as Kafka's consumer reads
/// it to find ABORT markers; `None` for a data batch or an empty one.
///
/// # Errors
/// [`RecordsError::Compressed`] for a compressed control batch (brokers
/// write markers uncompressed), [`RecordsError::Frame`] when the record or
/// its key is malformed.
pub fn control_type(view: &BatchView<'_>) -> Result<Option<ControlType>, RecordsError> {
    if !view.is_control() {
        return Ok(None);
    }
    let spans = record_spans(view)?;
    let Some(first) = spans.first() else {
        return Ok(None);
    };
    let key = first
        .key
        .clone()
        .and_then(|k| view.as_bytes().get(k))
        .filter(|k| k.len() >= 4)
        .ok_or_else(|| malformed(first.bytes.start, "control record key shorter than 4 bytes"))?;
    Ok(Some(match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        other => ControlType::Other(other),
    }))
}
