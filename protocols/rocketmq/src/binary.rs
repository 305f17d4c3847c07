//! The ROCKETMQ binary header (Apache `RocketMQSerializable`):
//!
//! ```text
//! i16 code | u8 language | i16 version | i32 opaque | i32 flag
//! | i32 remark length | remark (UTF-8)
//! | i32 ext length | repeated (i16 key length | key | i32 value length | value)
//! ```
//!
//! Decoding follows Java's tolerance where it is deliberate: a remark or ext
//! block length ≤ 0 means "absent", bytes after the ext block are ignored,
//! invalid UTF-8 becomes U+FFFD. An ext key that appears twice is refused:
//! readers disagree on which value wins. Every declared length is checked
//! against the bytes present before anything is copied.

use nom::IResult;
use nom::bytes::complete::take;
use nom::number::complete::{be_i16, be_i32, be_u8};

use crate::FrameError;
use crate::header::{ExtBuilder, Header, Language};

/// Fixed part: code 2 + language 1 + version 2 + opaque 4 + flag 4 +
/// remark length 4 + ext length 4.
const FIXED_LEN: usize = 21;

fn fixed(i: &[u8]) -> IResult<&[u8], (i16, u8, i16, i32, i32)> {
    let (i, code) = be_i16(i)?;
    let (i, language) = be_u8(i)?;
    let (i, version) = be_i16(i)?;
    let (i, opaque) = be_i32(i)?;
    let (i, flag) = be_i32(i)?;
    Ok((i, (code, language, version, opaque, flag)))
}

/// A length-prefixed block whose non-positive length means "absent".
fn optional_block(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, len) = be_i32(i)?;
    match usize::try_from(len) {
        Ok(len) if len > 0 => take(len)(i),
        _ => Ok((i, &i[..0])),
    }
}

fn ext_entry(i: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (i, key_len) = be_i16(i)?;
    let key_len = usize::try_from(key_len).map_err(|_| fail(i))?;
    let (i, key) = take(key_len)(i)?;
    let (i, val_len) = be_i32(i)?;
    let val_len = usize::try_from(val_len).map_err(|_| fail(i))?;
    let (i, val) = take(val_len)(i)?;
    Ok((i, (key, val)))
}

fn fail(i: &[u8]) -> nom::Err<nom::error::Error<&[u8]>> {
    nom::Err::Failure(nom::error::Error::new(i, nom::error::ErrorKind::Verify))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Decodes a binary header occupying exactly `src`.
pub(crate) fn decode(src: &[u8]) -> Result<Header, FrameError> {
    let at = |rest: &[u8]| src.len() - rest.len();
    let malformed = |reason, rest: &[u8]| FrameError::Malformed {
        reason,
        offset: at(rest),
    };
    let (rest, (code, language, version, opaque, flag)) =
        fixed(src).map_err(|_| malformed("shorter than the 21-byte fixed part", src))?;
    let (rest, remark) =
        optional_block(rest).map_err(|_| malformed("remark longer than the header", rest))?;
    let (rest, ext) =
        optional_block(rest).map_err(|_| malformed("ext fields longer than the header", rest))?;
    let ext_start = at(rest) - ext.len();

    let mut fields = ExtBuilder::default();
    let mut cursor = ext;
    while !cursor.is_empty() {
        let offset = ext_start + (ext.len() - cursor.len());
        let (next, (key, val)) = ext_entry(cursor).map_err(|_| FrameError::Malformed {
            reason: "ext field length negative or past the ext block",
            offset,
        })?;
        fields
            .push(text(key), Some(text(val)))
            .map_err(|_| FrameError::Malformed {
                reason: "ext key appears twice; refused rather than guess which value the broker reads",
                offset,
            })?;
        cursor = next;
    }
    Ok(Header {
        code: i32::from(code),
        language: Language(language),
        version: i32::from(version),
        opaque,
        flag,
        remark: (!remark.is_empty()).then(|| text(remark)),
        ext_fields: fields.finish(),
    })
}

/// What [`peek`] found: the header's fixed fields and the borrowed values
/// of the asked ext keys.
pub(crate) struct BinaryPeek<'a, const N: usize> {
    pub code: i32,
    pub language: Language,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub values: [Option<&'a str>; N],
}

/// Ext fields a peek tracks for duplicates; a header with more is left to
/// the full decoder.
const MAX_PEEK_KEYS: usize = 48;

/// A big-endian field at `at`, if the bytes are there.
fn be<const W: usize>(src: &[u8], at: usize) -> Option<[u8; W]> {
    src.get(at..at.checked_add(W)?)?.try_into().ok()
}

/// A length-prefixed block at `at` (non-positive length: absent) and the
/// offset after it, if it fits in `src`.
fn block(src: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = i32::from_be_bytes(be(src, at)?);
    let start = at + 4;
    match usize::try_from(len) {
        Ok(len) if len > 0 => Some((src.get(start..start.checked_add(len)?)?, start + len)),
        _ => Some((&src[..0], start)),
    }
}

/// Reads a binary header's fixed fields and the values of `keys` without
/// building the ext map, or `None` when only [`decode`] can say what the
/// header means: anything it would refuse, and the rare well-formed
/// headers whose keys or asked values are not UTF-8 (the full decoder
/// replaces bad bytes) or with more than [`MAX_PEEK_KEYS`] ext fields. So
/// a `Some` always agrees with [`decode`]. Every length is checked before
/// it is used.
pub(crate) fn peek<'a, const N: usize>(
    src: &'a [u8],
    keys: [&str; N],
) -> Option<BinaryPeek<'a, N>> {
    let code = i16::from_be_bytes(be(src, 0)?);
    let language = *src.get(2)?;
    let version = i16::from_be_bytes(be(src, 3)?);
    let opaque = i32::from_be_bytes(be(src, 5)?);
    let flag = i32::from_be_bytes(be(src, 9)?);
    let (_remark, after) = block(src, 13)?;
    let (mut ext, _) = block(src, after)?;
    let mut values = [None; N];
    let mut seen: [&[u8]; MAX_PEEK_KEYS] = [&[]; MAX_PEEK_KEYS];
    let mut count = 0;
    while !ext.is_empty() {
        let key_len = usize::try_from(i16::from_be_bytes(be(ext, 0)?)).ok()?;
        let key = ext.get(2..2 + key_len)?;
        let at = 2 + key_len;
        let val_len = usize::try_from(i32::from_be_bytes(be(ext, at)?)).ok()?;
        let val = ext.get(at + 4..(at + 4).checked_add(val_len)?)?;
        let key = std::str::from_utf8(key).ok()?;
        if count == MAX_PEEK_KEYS || seen[..count].contains(&key.as_bytes()) {
            return None;
        }
        seen[count] = key.as_bytes();
        count += 1;
        if let Some(i) = keys.iter().position(|k| *k == key) {
            values[i] = Some(std::str::from_utf8(val).ok()?);
        }
        ext = &ext[at + 4 + val_len..];
    }
    Some(BinaryPeek {
        code: i32::from(code),
        language: Language(language),
        version: i32::from(version),
        opaque,
        flag,
        values,
    })
}

/// Appends the binary form of `h` to `out`.
///
/// `code` and `version` are truncated to 16 bits like Java's `(short)` cast.
///
/// # Errors
/// [`FrameError::Unencodable`] when a key is longer than `i16::MAX` or a
/// block longer than `i32::MAX` bytes.
pub(crate) fn encode(h: &Header, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let too_long = |what: &str| FrameError::Unencodable {
        reason: format!("{what} is too long for the binary header"),
    };
    let remark = h.remark.as_deref().unwrap_or("").as_bytes();
    let ext_len: usize = h
        .ext_fields
        .iter()
        .map(|(k, v)| 2 + k.len() + 4 + v.len())
        .sum();
    out.reserve(FIXED_LEN + remark.len() + ext_len);
    #[allow(clippy::cast_possible_truncation)] // Java's (short) cast, on purpose
    {
        out.extend_from_slice(&(h.code as i16).to_be_bytes());
        out.push(h.language.0);
        out.extend_from_slice(&(h.version as i16).to_be_bytes());
    }
    out.extend_from_slice(&h.opaque.to_be_bytes());
    out.extend_from_slice(&h.flag.to_be_bytes());
    let remark_len = i32::try_from(remark.len()).map_err(|_| too_long("remark"))?;
    out.extend_from_slice(&remark_len.to_be_bytes());
    out.extend_from_slice(remark);
    let ext_len = i32::try_from(ext_len).map_err(|_| too_long("ext block"))?;
    out.extend_from_slice(&ext_len.to_be_bytes());
    for (k, v) in &h.ext_fields {
        let kl = i16::try_from(k.len()).map_err(|_| too_long("ext key"))?;
        let vl = i32::try_from(v.len()).map_err(|_| too_long("ext value"))?;
        out.extend_from_slice(&kl.to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&vl.to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            code: 310,
            language: Language::JAVA,
            version: 453,
            opaque: 7,
            flag: 0,
            remark: Some("hi".into()),
            ext_fields: vec![("a".into(), "grp".into()), ("n".into(), "broker-a".into())],
        }
    }

    #[test]
    fn layout_matches_rocketmq_serializable() {
        let mut out = Vec::new();
        encode(&sample(), &mut out).unwrap();
        let mut want = vec![0x01, 0x36, 0, 0x01, 0xc5, 0, 0, 0, 7, 0, 0, 0, 0];
        want.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        want.extend_from_slice(&[0, 0, 0, 25]);
        want.extend_from_slice(&[0, 1, b'a', 0, 0, 0, 3, b'g', b'r', b'p']);
        want.extend_from_slice(&[0, 1, b'n', 0, 0, 0, 8]);
        want.extend_from_slice(b"broker-a");
        assert_eq!(out, want);
        assert_eq!(decode(&out).unwrap(), sample());
    }

    #[test]
    fn empty_remark_and_ext_are_zero_lengths() {
        let h = Header::request(34, 1);
        let mut out = Vec::new();
        encode(&h, &mut out).unwrap();
        assert_eq!(out.len(), FIXED_LEN);
        assert_eq!(decode(&out).unwrap(), h);
    }

    #[test]
    fn negative_block_lengths_mean_absent_like_java() {
        let mut out = Vec::new();
        encode(&Header::request(11, 2), &mut out).unwrap();
        out[13..17].copy_from_slice(&(-5i32).to_be_bytes());
        out[17..21].copy_from_slice(&i32::MIN.to_be_bytes());
        let h = decode(&out).unwrap();
        assert_eq!(h.remark, None);
        assert!(h.ext_fields.is_empty());
    }

    #[test]
    fn lengths_past_the_header_are_refused_without_copying() {
        let mut out = Vec::new();
        encode(&Header::request(11, 2), &mut out).unwrap();
        out[13..17].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            decode(&out).unwrap_err(),
            FrameError::Malformed {
                reason: "remark longer than the header",
                offset: 13
            }
        );
        let mut out = Vec::new();
        encode(&Header::request(11, 2), &mut out).unwrap();
        assert!(matches!(
            decode(&out[..12]),
            Err(FrameError::Malformed { offset: 0, .. })
        ));
        assert!(matches!(
            decode(&out[..20]),
            Err(FrameError::Malformed { offset: 17, .. })
        ));
    }

    #[test]
    fn bad_ext_entries_are_refused_with_their_offset() {
        let mut out = Vec::new();
        encode(&sample(), &mut out).unwrap();
        // first key length (at 23 = 21 + 2 remark bytes) made negative
        out[23..25].copy_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(
            decode(&out).unwrap_err(),
            FrameError::Malformed {
                reason: "ext field length negative or past the ext block",
                offset: 23
            }
        );
        let mut out = Vec::new();
        encode(&sample(), &mut out).unwrap();
        let last = out.len() - 12; // value length of "n"
        out[last..last + 4].copy_from_slice(&9i32.to_be_bytes());
        assert!(decode(&out).is_err());
    }

    #[test]
    fn repeated_keys_are_refused_at_the_second_one() {
        let mut h = sample();
        h.ext_fields.push(("a".into(), "second".into()));
        let mut out = Vec::new();
        encode(&h, &mut out).unwrap();
        // The repeated entry is the last: 2 + "a" + 4 + "second".
        let at = out.len() - (2 + 1 + 4 + 6);
        let err = decode(&out).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
        assert!(
            matches!(err, FrameError::Malformed { offset, .. } if offset == at),
            "{err:?}"
        );
    }

    #[test]
    fn code_and_version_truncate_like_java_short() {
        let mut h = Header::request(70_000, 1);
        h.version = -40_000;
        let mut out = Vec::new();
        encode(&h, &mut out).unwrap();
        let back = decode(&out).unwrap();
        assert_eq!(back.code, 70_000 - 65_536);
        assert_eq!(back.version, -40_000 + 65_536);
    }
}
