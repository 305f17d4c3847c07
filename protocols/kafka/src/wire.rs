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
    fn tagged_fields_are_skipped_or_truncated() {
        assert_eq!(
            skip_tagged_fields(&[2, 0, 1, 9, 5, 2, 8, 8, 42], 0, "t").unwrap(),
            8
        );
        assert!(skip_tagged_fields(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f], 0, "t").is_err());
    }
}
