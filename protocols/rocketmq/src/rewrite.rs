//! In-place rewrite of ext values read by [`crate::peek`].
//!
//! A relay that only swaps one header value (a broker's virtual name for
//! its real one) need not decode and re-encode the header: the value's
//! bytes are spliced in the frame and the lengths that enclose them (the
//! frame total, the header length and, in the binary encoding, the value's
//! own length word and the ext block's) are patched. Everything else is
//! copied as received, so the result decodes to exactly the header
//! [`crate::Header::set_ext`] would have produced.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::WORDS;
use crate::{Encoding, LEN_PREFIX, MAX_HEADER_LEN};

/// The most values one call replaces.
pub const MAX_EDITS: usize = 8;

/// One value to replace: `old` must be a value [`crate::peek`] returned
/// for the same frame (it points into it), `new` what it becomes.
#[derive(Clone, Copy, Debug)]
pub struct Edit<'a> {
    /// The value as peeked (a slice of the frame).
    pub old: &'a str,
    /// Its replacement.
    pub new: &'a str,
}

/// The bytes of `raw` (a whole frame that [`crate::peek`] read, in
/// `encoding`) with every edit applied, or `None` when it cannot be done
/// in place: an edit not pointing into the header, two edits of one value,
/// a JSON replacement that would need escaping, more than [`MAX_EDITS`]
/// edits, or a header that would
/// outgrow its length word. The caller then decodes the frame fully.
#[must_use]
pub fn replace_values(raw: &[u8], encoding: Encoding, edits: &[Edit<'_>]) -> Option<Bytes> {
    let header_len = header_len(raw)?;
    let header = WORDS..WORDS + header_len;
    if edits.len() > MAX_EDITS {
        return None;
    }
    // On the stack: the relay rewrites sends with this, one allocation
    // (the output) per frame.
    let mut spans = [(0, 0, ""); MAX_EDITS];
    for (slot, edit) in spans.iter_mut().zip(edits) {
        let start = (edit.old.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
        let end = start.checked_add(edit.old.len())?;
        if start < header.start || end > header.end {
            return None;
        }
        if encoding == Encoding::Json && !json_safe(edit.new) {
            return None;
        }
        *slot = (start, end, edit.new);
    }
    let spans = &mut spans[..edits.len()];
    spans.sort_unstable_by_key(|s| s.0);
    if spans.windows(2).any(|w| w[0].1 > w[1].0) {
        return None;
    }
    let grown: isize = spans
        .iter()
        .map(|(s, e, new)| new.len() as isize - (e - s) as isize)
        .sum();
    let new_header_len = header_len.checked_add_signed(grown)?;
    if new_header_len > MAX_HEADER_LEN.min(0x00FF_FFFF) {
        return None;
    }
    let mut out = BytesMut::with_capacity(raw.len().checked_add_signed(grown)?);
    let mut at = 0;
    for (start, end, new) in spans.iter() {
        out.put_slice(&raw[at..*start]);
        if encoding == Encoding::Binary {
            // The value's own length word precedes it.
            let word = out.len().checked_sub(4)?;
            out[word..].copy_from_slice(&u32::try_from(new.len()).ok()?.to_be_bytes());
        }
        out.put_slice(new.as_bytes());
        at = *end;
    }
    out.put_slice(&raw[at..]);
    let total = u32::try_from(out.len() - LEN_PREFIX).ok()?;
    out[..LEN_PREFIX].copy_from_slice(&total.to_be_bytes());
    let word = (u32::from(raw[LEN_PREFIX]) << 24) | u32::try_from(new_header_len).ok()?;
    out[LEN_PREFIX..WORDS].copy_from_slice(&word.to_be_bytes());
    if encoding == Encoding::Binary {
        patch_ext_length(&mut out[WORDS..WORDS + new_header_len], grown)?;
    }
    Some(out.freeze())
}

/// The header length of a frame whose lengths agree with its size.
fn header_len(raw: &[u8]) -> Option<usize> {
    let (total, header_len) = crate::peek_lengths(raw, usize::MAX).ok()??;
    (raw.len() == LEN_PREFIX + total).then_some(header_len)
}

/// Whether `value` can stand between JSON quotes as it is.
fn json_safe(value: &str) -> bool {
    !value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// Adds `grown` to the ext block's length word of a binary header:
/// code 2, language 1, version 2, opaque 4, flag 4, then the remark block
/// (a length word; non-positive means absent), then the ext block's word.
fn patch_ext_length(header: &mut [u8], grown: isize) -> Option<()> {
    const REMARK: usize = 13;
    let remark = i32::from_be_bytes(header.get(REMARK..REMARK + 4)?.try_into().ok()?);
    let ext_word = REMARK + 4 + usize::try_from(remark).unwrap_or(0);
    let slot = header.get_mut(ext_word..ext_word + 4)?;
    let len = i32::from_be_bytes((&*slot).try_into().ok()?);
    let len = isize::try_from(len).ok()?.checked_add(grown)?;
    slot.copy_from_slice(&i32::try_from(len).ok()?.to_be_bytes());
    Some(())
}
