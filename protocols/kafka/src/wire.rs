//! Small big-endian and varint readers over byte slices, shared by the
//! header peek and the batch view. They never panic on short input.

use crate::FrameError;

pub(crate) fn i16_at(b: &[u8], at: usize) -> Option<i16> {
    b.get(at..)?.first_chunk().map(|c| i16::from_be_bytes(*c))
}

pub(crate) fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    b.get(at..)?.first_chunk().map(|c| i32::from_be_bytes(*c))
}

pub(crate) fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    b.get(at..)?.first_chunk().map(|c| i64::from_be_bytes(*c))
}

/// Reads an unsigned varint (at most 5 bytes, fits a `u32`) at `at`;
/// returns the value and the offset after it.
pub(crate) fn uvarint_at(
    b: &[u8],
    at: usize,
    what: &'static str,
) -> Result<(u32, usize), FrameError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let pos = at + i;
        let Some(&byte) = b.get(pos) else {
            return Err(FrameError::Truncated {
                what,
                needed: pos + 1,
                available: b.len(),
            });
        };
        let bits = u32::from(byte & 0x7f);
        if i == 4 && bits > 0x0f {
            break;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, pos + 1));
        }
    }
    Err(FrameError::Malformed {
        what,
        reason: "unsigned varint longer than 32 bits",
        offset: at,
    })
}

/// Reads an unsigned varint of at most `max_bytes` bytes (5 for a 32-bit,
/// 10 for a 64-bit value) at `at`; returns it and the offset after it.
fn uvarlong_at(
    b: &[u8],
    at: usize,
    max_bytes: usize,
    what: &'static str,
) -> Result<(u64, usize), FrameError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let pos = at + i;
        let Some(&byte) = b.get(pos) else {
            return Err(FrameError::Truncated {
                what,
                needed: pos + 1,
                available: b.len(),
            });
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, pos + 1));
        }
    }
    Err(FrameError::Malformed {
        what,
        reason: "varint longer than its type",
        offset: at,
    })
}

/// Reads a zigzag-encoded signed 32-bit varint (record fields) at `at`.
pub(crate) fn varint_at(
    b: &[u8],
    at: usize,
    what: &'static str,
) -> Result<(i32, usize), FrameError> {
    let (raw, next) = uvarlong_at(b, at, 5, what)?;
    let raw = u32::try_from(raw).map_err(|_| FrameError::Malformed {
        what,
        reason: "varint longer than 32 bits",
        offset: at,
    })?;
    Ok(((raw >> 1) as i32 ^ -((raw & 1) as i32), next))
}

/// Reads a zigzag-encoded signed 64-bit varint (timestamp deltas) at `at`.
pub(crate) fn varlong_at(
    b: &[u8],
    at: usize,
    what: &'static str,
) -> Result<(i64, usize), FrameError> {
    let (raw, next) = uvarlong_at(b, at, 10, what)?;
    Ok(((raw >> 1) as i64 ^ -((raw & 1) as i64), next))
}

/// Appends `v` as a zigzag-encoded signed 32-bit varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    let mut raw = ((v << 1) ^ (v >> 31)) as u32;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Bytes [`put_varint`] writes for `v`.
pub(crate) fn varint_len(v: i32) -> usize {
    let raw = ((v << 1) ^ (v >> 31)) as u32;
    let bits = 32 - raw.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Skips a tagged-field section (count, then tag + size + bytes each) at
/// `at`; returns the offset after it.
pub(crate) fn skip_tagged_fields(
    b: &[u8],
    at: usize,
    what: &'static str,
) -> Result<usize, FrameError> {
    let (count, mut pos) = uvarint_at(b, at, what)?;
    for _ in 0..count {
        let (_tag, after_tag) = uvarint_at(b, pos, what)?;
        let (size, after_size) = uvarint_at(b, after_tag, what)?;
        let end = after_size
            .checked_add(size as usize)
            .filter(|&end| end <= b.len())
            .ok_or(FrameError::Truncated {
                what,
                needed: after_size.saturating_add(size as usize),
                available: b.len(),
            })?;
        pos = end;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarints() {
        assert_eq!(uvarint_at(&[0], 0, "t").unwrap(), (0, 1));
        assert_eq!(uvarint_at(&[0x96, 0x01], 0, "t").unwrap(), (150, 2));
        assert_eq!(
            uvarint_at(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0, "t").unwrap(),
            (u32::MAX, 5)
        );
        assert!(matches!(
            uvarint_at(&[0xff, 0xff, 0xff, 0xff, 0x1f], 0, "t"),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            uvarint_at(&[0x80], 0, "t"),
            Err(FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn signed_varints_round_trip() {
        for v in [0, 1, -1, 63, -64, 64, 300, -300, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(varint_at(&out, 0, "t").unwrap(), (v, out.len()));
            assert_eq!(varlong_at(&out, 0, "t").unwrap(), (i64::from(v), out.len()));
        }
        // zigzag: 1 is -1, 2 is 1; a 64-bit delta needs the long reader.
        assert_eq!(varint_at(&[1], 0, "t").unwrap(), (-1, 1));
        assert_eq!(varint_at(&[2], 0, "t").unwrap(), (1, 1));
        let big = [0xfe, 0xff, 0xff, 0xff, 0x1f];
        assert_eq!(varlong_at(&big, 0, "t").unwrap(), (i64::from(u32::MAX), 5));
        assert!(varint_at(&big, 0, "t").is_err());
        assert!(varlong_at(&[0xff; 11], 0, "t").is_err());
    }

    #[test]
    fn tagged_fields_are_skipped_or_truncated() {
        assert_eq!(
            skip_tagged_fields(&[2, 0, 1, 9, 5, 2, 8, 8, 42], 0, "t").unwrap(),
            8
        );
        assert!(skip_tagged_fields(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f], 0, "t").is_err());
    }
}
