//! Record batches (magic v2) inside a `records` blob: a read-only view of
//! each batch header, and the in-place patches the offset splice and the
//! history copy need: the base offset (outside the CRC, so the CRC stays
//! valid), the producer id/epoch/sequence and the attributes (inside it, so
//! the CRC-32C is recomputed). `records` walks an uncompressed batch's
//! records; `split` cuts a batch with offset gaps into dense ones.
//!
//! Layout, offsets from the start of a batch:
//! baseOffset i64 @0, batchLength i32 @8 (bytes after this field),
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C of the
//! bytes from @21 to the end of the batch), attributes i16 @21,
//! lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordCount i32 @57, records from @61.

use std::ops::Range;

use crate::FrameError;

mod records;
mod split;

pub use records::{ControlType, RecordSpan, RecordsError, control_type, record_spans};
pub use split::{has_offset_gaps, increment_sequence, split_dense, split_dense_from};

/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// Size of a v2 batch header (everything before the first record).
pub const BATCH_HEADER_LEN: usize = 61;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const PRODUCER_AT: usize = 43;

const WHAT: &str = "record batch";

/// One whole v2 record batch, viewed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
    head: &'a [u8; BATCH_HEADER_LEN],
    offset: usize,
}

macro_rules! field {
    ($(#[$doc:meta])* $name:ident: $t:ty, $at:expr) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(&self) -> $t {
            const AT: usize = $at;
            let mut raw = [0u8; size_of::<$t>()];
            raw.copy_from_slice(&self.head[AT..AT + size_of::<$t>()]);
            <$t>::from_be_bytes(raw)
        }
    };
}

impl<'a> BatchView<'a> {
    /// Views the batch at the start of `batch`, which must hold it whole
    /// (bytes beyond it are ignored).
    ///
    /// # Errors
    /// [`FrameError::Truncated`] if the batch is not whole,
    /// [`FrameError::Malformed`] if its length field is below a header's, and
    /// [`FrameError::UnsupportedMagic`] for v0/v1 message sets.
    pub fn new(batch: &'a [u8]) -> Result<Self, FrameError> {
        Self::at(batch, 0)
    }

    fn at(records: &'a [u8], offset: usize) -> Result<Self, FrameError> {
        let rest = records.get(offset..).unwrap_or_default();
        let len = batch_len(rest, offset)?.ok_or(FrameError::Truncated {
            what: WHAT,
            needed: LOG_OVERHEAD,
            available: rest.len(),
        })?;
        let bytes = rest.get(..len).ok_or(FrameError::Truncated {
            what: WHAT,
            needed: len,
            available: rest.len(),
        })?;
        let Some(head) = bytes.first_chunk::<BATCH_HEADER_LEN>() else {
            return Err(FrameError::Malformed {
                what: WHAT,
                reason: "batch shorter than a v2 batch header",
                offset,
            });
        };
        let view = Self {
            bytes,
            head,
            offset,
        };
        if view.magic() != 2 {
            return Err(FrameError::UnsupportedMagic {
                magic: view.magic(),
                offset,
            });
        }
        Ok(view)
    }

    /// The whole batch, header and records.
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Where this batch sits in the records blob it was read from.
    #[must_use]
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.bytes.len()
    }

    field!(/// Offset of the first record.
        base_offset: i64, 0);
    field!(/// Bytes after the `batchLength` field.
        batch_length: i32, 8);
    field!(/// Leader epoch of the partition when the batch was written.
        partition_leader_epoch: i32, 12);
    field!(/// Format version; always 2 here.
        magic: i8, MAGIC_AT);
    field!(/// The stored CRC-32C.
        crc: u32, CRC_AT);
    field!(/// Attribute bits: compression (0-2), timestamp type (3),
        /// transactional (4), control (5), delete horizon (6).
        attributes: i16, CRC_FROM);
    field!(/// Offset of the last record minus the base offset.
        last_offset_delta: i32, 23);
    field!(/// Timestamp of the first record.
        base_timestamp: i64, 27);
    field!(/// Largest timestamp in the batch.
        max_timestamp: i64, 35);
    field!(/// Producer id, -1 for non-idempotent producers.
        producer_id: i64, PRODUCER_AT);
    field!(/// Producer epoch.
        producer_epoch: i16, 51);
    field!(/// Sequence number of the first record, -1 without idempotence.
        base_sequence: i32, 53);
    field!(/// Number of records (as declared; not verified).
        record_count: i32, 57);

    /// Offset of the last record: `base_offset + last_offset_delta`.
    #[must_use]
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    #[must_use]
    pub fn compression(&self) -> u8 {
        (self.attributes() & 0x07) as u8
    }

    /// Whether the batch belongs to a transaction.
    #[must_use]
    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }

    /// Whether the batch holds control records (transaction markers).
    #[must_use]
    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }

    /// Whether the stored CRC matches the batch's content.
    #[must_use]
    pub fn crc_is_valid(&self) -> bool {
        crc_is_valid(self.bytes)
    }
}

/// One item of [`batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch<'a> {
    /// A whole v2 batch.
    Whole(BatchView<'a>),
    /// The truncated tail of the blob: Fetch responses legitimately end with
    /// a partial batch when the batch is larger than the fetch's byte
    /// limits. Clients skip it; the proxy may forward or trim it.
    Partial {
        /// Where the partial batch starts in the blob.
        offset: usize,
        /// How many of its bytes are present.
        available: usize,
    },
}

/// Iterates the batches in a records blob. A truncated last batch is yielded
/// as [`Batch::Partial`] (always last); an error (bad length, v0/v1 magic)
/// is yielded once and ends the iteration, since the next batch's position
/// is then unknown.
pub fn batches(records: &[u8]) -> impl Iterator<Item = Result<Batch<'_>, FrameError>> {
    let mut pos = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || pos >= records.len() {
            return None;
        }
        let rest = &records[pos..];
        let whole = match batch_len(rest, pos) {
            Ok(Some(len)) => len <= rest.len(),
            Ok(None) => false,
            Err(e) => {
                done = true;
                return Some(Err(e));
            }
        };
        if !whole {
            done = true;
            return Some(Ok(Batch::Partial {
                offset: pos,
                available: rest.len(),
            }));
        }
        match BatchView::at(records, pos) {
            Ok(view) => {
                pos += view.bytes.len();
                Some(Ok(Batch::Whole(view)))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

/// The total length of the batch at the start of `rest` (12 + batchLength),
/// `None` if its first 12 bytes are not there.
fn batch_len(rest: &[u8], offset: usize) -> Result<Option<usize>, FrameError> {
    let Some(declared) = crate::wire::i32_at(rest, 8) else {
        return Ok(None);
    };
    match usize::try_from(declared) {
        Ok(n) if n >= BATCH_HEADER_LEN - LOG_OVERHEAD => Ok(Some(LOG_OVERHEAD + n)),
        _ => Err(FrameError::Malformed {
            what: WHAT,
            reason: "batch length shorter than a v2 batch header",
            offset: offset + 8,
        }),
    }
}

/// Sets the base offset of the batch at the start of `batch`. The base
/// offset is outside the CRC, so the CRC stays valid.
///
/// # Errors
/// [`FrameError::Truncated`] if `batch` is shorter than 8 bytes.
pub fn set_base_offset(batch: &mut [u8], offset: i64) -> Result<(), FrameError> {
    let available = batch.len();
    let slot = batch.first_chunk_mut::<8>().ok_or(FrameError::Truncated {
        what: WHAT,
        needed: 8,
        available,
    })?;
    *slot = offset.to_be_bytes();
    Ok(())
}

/// Sets the producer id, epoch and base sequence of the whole v2 batch at
/// the start of `batch`, then recomputes its CRC-32C.
///
/// # Errors
/// The errors of [`BatchView::new`]: the batch must be whole and v2.
pub fn set_producer(
    batch: &mut [u8],
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Result<(), FrameError> {
    let len = BatchView::new(batch)?.bytes.len();
    let batch = &mut batch[..len];
    let mut fields = [0u8; 14];
    fields[..8].copy_from_slice(&producer_id.to_be_bytes());
    fields[8..10].copy_from_slice(&epoch.to_be_bytes());
    fields[10..].copy_from_slice(&base_sequence.to_be_bytes());
    batch[PRODUCER_AT..PRODUCER_AT + fields.len()].copy_from_slice(&fields);
    reseal(batch);
    Ok(())
}

/// Sets the attributes of the whole v2 batch at the start of `batch`, then
/// recomputes its CRC-32C. The bits are written as given: changing the
/// compression or control bits without changing the records makes a batch
/// no broker can read; the history copy clears only the transactional bit.
///
/// # Errors
/// The errors of [`BatchView::new`]: the batch must be whole and v2.
pub fn set_attributes(batch: &mut [u8], attributes: i16) -> Result<(), FrameError> {
    let len = BatchView::new(batch)?.bytes.len();
    let batch = &mut batch[..len];
    batch[CRC_FROM..CRC_FROM + 2].copy_from_slice(&attributes.to_be_bytes());
    reseal(batch);
    Ok(())
}

/// Stores the CRC-32C of `batch` (exactly one whole batch) after its
/// content changed.
fn reseal(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_FROM..]);
    batch[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
}

/// Whether the batch at the start of `batch` is whole and its stored CRC-32C
/// matches its content.
#[must_use]
pub fn crc_is_valid(batch: &[u8]) -> bool {
    let Ok(Some(len)) = batch_len(batch, 0) else {
        return false;
    };
    let (Some(content), Some(stored)) =
        (batch.get(CRC_FROM..len), crate::wire::i32_at(batch, CRC_AT))
    else {
        return false;
    };
    crc32c::crc32c(content) == stored as u32
}

/// Adds `delta` to the base offset of every batch in a records blob (the
/// splice's physical → virtual translation), a partial tail included when
/// its base offset is there (clients skip it, but must not see a physical
/// offset); returns how many whole batches were rebased.
///
/// # Errors
/// The first error [`batches`] yields; batches before it are rebased.
pub fn shift_base_offsets(records: &mut [u8], delta: i64) -> Result<usize, FrameError> {
    let mut found = Vec::new();
    let mut partial = None;
    let mut failure = None;
    for item in batches(records) {
        match item {
            Ok(Batch::Whole(view)) => found.push((view.offset, view.base_offset())),
            Ok(Batch::Partial { offset, .. }) => partial = Some(offset),
            Err(e) => failure = Some(e),
        }
    }
    for &(at, base) in &found {
        set_base_offset(&mut records[at..], base.wrapping_add(delta))?;
    }
    if let Some(at) = partial
        && let Some(base) = crate::wire::i64_at(records, at)
    {
        set_base_offset(&mut records[at..], base.wrapping_add(delta))?;
    }
    failure.map_or(Ok(found.len()), Err)
}
