//! Remoting framing: split whole frames off a read buffer, decode their
//! header, and write frames back.
//!
//! ```text
//! i32 total | i32 (serialize type << 24 | header length) | header | body
//! ```
//!
//! `total` counts every byte after itself (header-length word, header,
//! body). The header length is the low 24 bits of its word; the top byte is
//! the serialize type (0 JSON, 1 ROCKETMQ). Frames are returned whole, with
//! their prefix, so the proxy can forward them untouched.

use bytes::{Bytes, BytesMut};

use crate::{FrameError, Header, binary, json};

/// Size of the total-length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;

/// Bytes of the two length words in front of the header.
pub(crate) const WORDS: usize = 8;

/// Largest header the 24-bit header-length field can declare.
pub const MAX_HEADER_LEN: usize = 0x00ff_ffff;

/// Default largest declared frame length: 16 MiB, Apache RocketMQ's own
/// `com.rocketmq.remoting.frameMaxLength` default (16 777 216), so anything
/// a stock broker accepts passes the proxy too. (Netty counts the 4-byte
/// prefix in that limit; we count the declared length, 4 bytes more lenient.)
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// How a frame's header is serialized; answers go back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON (serialize type 0), Java's default.
    Json,
    /// ROCKETMQ binary (serialize type 1), `RocketMQSerializable`.
    Binary,
}

impl Encoding {
    /// The serialize-type byte on the wire.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::Binary => 1,
        }
    }

    /// The encoding a serialize-type byte stands for.
    #[must_use]
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Json),
            1 => Some(Self::Binary),
            _ => None,
        }
    }
}

/// One whole frame with its decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The whole frame as received, prefix included: forward this when
    /// nothing needs rewriting.
    pub raw: Bytes,
    /// The decoded header.
    pub header: Header,
    /// The body, a slice of `raw` (empty if the frame has none).
    pub body: Bytes,
    /// The header's encoding, to answer in kind.
    pub encoding: Encoding,
}

impl Frame {
    /// Decodes a whole frame as returned by [`split_frame`].
    ///
    /// # Errors
    /// [`FrameError::UnknownSerializeType`], [`FrameError::Malformed`] or
    /// [`FrameError::Json`] for a bad header; [`FrameError::NotOneFrame`]
    /// or the errors of [`peek_lengths`] if `raw` is not one whole frame.
    pub fn parse(raw: Bytes) -> Result<Self, FrameError> {
        let not_one = FrameError::NotOneFrame { given: raw.len() };
        let Some((total, header_len)) = peek_lengths(&raw, usize::MAX)? else {
            return Err(not_one);
        };
        if raw.len() != LEN_PREFIX + total {
            return Err(not_one);
        }
        let type_byte = raw[LEN_PREFIX];
        let encoding = Encoding::from_code(type_byte)
            .ok_or(FrameError::UnknownSerializeType { code: type_byte })?;
        let header_bytes = &raw[WORDS..WORDS + header_len];
        let header = match encoding {
            Encoding::Json => json::decode(header_bytes)?,
            Encoding::Binary => binary::decode(header_bytes)?,
        };
        let body = raw.slice(WORDS + header_len..);
        Ok(Self {
            raw,
            header,
            body,
            encoding,
        })
    }

    /// The header bytes as received.
    #[must_use]
    pub fn header_bytes(&self) -> &[u8] {
        &self.raw[WORDS..self.raw.len() - self.body.len()]
    }
}

/// Reads the declared total length and header length, if the two length
/// words are present (`None` otherwise), and checks them.
///
/// The total is checked as soon as its 4 bytes are present, so an oversized
/// frame is refused before the header-length word arrives.
///
/// # Errors
/// [`FrameError::BadLength`] for a total below 4 (no room for the
/// header-length word), [`FrameError::TooLarge`] above `max_len`,
/// [`FrameError::HeaderTooLong`] for a header longer than the frame.
pub fn peek_lengths(buf: &[u8], max_len: usize) -> Result<Option<(usize, usize)>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(*prefix);
    let total = match usize::try_from(len) {
        Ok(total) if total >= LEN_PREFIX => total,
        _ => return Err(FrameError::BadLength { len }),
    };
    if total > max_len {
        return Err(FrameError::TooLarge {
            len: total,
            max_len,
        });
    }
    let Some(word) = buf.get(LEN_PREFIX..WORDS) else {
        return Ok(None);
    };
    let header_len = usize::from(word[1]) << 16 | usize::from(word[2]) << 8 | usize::from(word[3]);
    let available = total - LEN_PREFIX;
    if header_len > available {
        return Err(FrameError::HeaderTooLong {
            header_len,
            available,
        });
    }
    Ok(Some((total, header_len)))
}

/// Returns the next whole frame's bytes, prefix included, or `None`
/// (consuming nothing) if more bytes are needed.
///
/// Both length words are checked before a single byte is reserved for the
/// rest of the frame.
///
/// # Errors
/// Those of [`peek_lengths`]; the connection must then be closed, because
/// the stream can no longer be framed. Nothing is consumed.
pub fn split_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Bytes>, FrameError> {
    let Some((total, _)) = peek_lengths(buf, max_len)? else {
        return Ok(None);
    };
    let whole = LEN_PREFIX + total;
    if buf.len() < whole {
        buf.reserve(whole - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(whole).freeze()))
}

/// Returns the next whole frame, decoded, or `None` (consuming nothing) if
/// more bytes are needed.
///
/// # Errors
/// Framing errors ([`FrameError::breaks_stream`]) consume nothing and mean
/// the connection must be closed. Header errors come after the frame was
/// consumed: the stream is still in sync. Callers that want to forward a
/// frame whose header they cannot read use [`split_frame`] and
/// [`Frame::parse`].
pub fn next_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
    match split_frame(buf, max_len)? {
        Some(raw) => Frame::parse(raw).map(Some),
        None => Ok(None),
    }
}

/// Writes `header` and `body` as one frame with the header in `encoding`
/// (answer a peer in the encoding it used: [`Frame::encoding`]).
///
/// # Errors
/// [`FrameError::Unencodable`] when the header is above the 24-bit length
/// field or the frame above `i32::MAX` bytes.
pub fn encode(header: &Header, body: &[u8], encoding: Encoding) -> Result<Bytes, FrameError> {
    let mut out = Vec::with_capacity(WORDS + 64 + body.len());
    out.extend_from_slice(&[0; WORDS]);
    match encoding {
        Encoding::Json => json::encode(header, &mut out),
        Encoding::Binary => binary::encode(header, &mut out)?,
    }
    let header_len = out.len() - WORDS;
    if header_len > MAX_HEADER_LEN {
        return Err(FrameError::Unencodable {
            reason: format!(
                "header of {header_len} bytes exceeds the 24-bit length field ({MAX_HEADER_LEN})"
            ),
        });
    }
    let total = i32::try_from(LEN_PREFIX + header_len + body.len()).map_err(|_| {
        FrameError::Unencodable {
            reason: format!(
                "frame of {} bytes exceeds i32::MAX",
                LEN_PREFIX + header_len + body.len()
            ),
        }
    })?;
    let header_len = u32::try_from(header_len).unwrap_or(0); // ≤ 24 bits, checked above
    let word = u32::from(encoding.code()) << 24 | header_len;
    out[..LEN_PREFIX].copy_from_slice(&total.to_be_bytes());
    out[LEN_PREFIX..WORDS].copy_from_slice(&word.to_be_bytes());
    out.extend_from_slice(body);
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(encoding: Encoding, body: &[u8]) -> Bytes {
        let mut h = Header::request(105, 42);
        h.set_ext("topic", "T");
        encode(&h, body, encoding).unwrap()
    }

    /// Hand-built frame with arbitrary words.
    fn words(total: i32, word: u32, rest: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&word.to_be_bytes());
        b.extend_from_slice(rest);
        b
    }

    #[test]
    fn whole_frame_keeps_prefix_and_leaves_the_rest() {
        for enc in [Encoding::Json, Encoding::Binary] {
            let f = frame(enc, b"body");
            let mut buf = BytesMut::from(&f[..]);
            buf.extend_from_slice(&[0, 0]);
            let got = next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
            assert_eq!(got.raw, f);
            assert_eq!(&got.body[..], b"body");
            assert_eq!(got.encoding, enc);
            assert_eq!(got.header.code, 105);
            assert_eq!(got.header.opaque, 42);
            assert_eq!(got.header.ext("topic"), Some("T"));
            assert_eq!(&buf[..], &[0, 0]);
            assert_eq!(next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap(), None);
            assert_eq!(buf.len(), 2);
        }
    }

    #[test]
    fn total_and_header_words_match_remoting_command() {
        let f = frame(Encoding::Binary, b"xyz");
        let total = i32::from_be_bytes(f[..4].try_into().unwrap());
        assert_eq!(usize::try_from(total).unwrap(), f.len() - 4);
        assert_eq!(f[4], 1, "ROCKETMQ serialize type in the top byte");
        let header_len = u32::from_be_bytes(f[4..8].try_into().unwrap()) & 0xff_ffff;
        assert_eq!(header_len as usize, f.len() - 8 - 3);
        assert_eq!(frame(Encoding::Json, b"")[4], 0);
    }

    #[test]
    fn partial_frame_consumes_nothing() {
        let f = frame(Encoding::Json, b"abc");
        for cut in 0..f.len() {
            let mut buf = BytesMut::from(&f[..cut]);
            assert_eq!(next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap(), None);
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn limit_is_inclusive() {
        let f = frame(Encoding::Binary, &[7; 100]);
        let total = f.len() - 4;
        let mut buf = BytesMut::from(&f[..]);
        assert!(next_frame(&mut buf, total).unwrap().is_some());
        let mut buf = BytesMut::from(&f[..]);
        assert_eq!(
            next_frame(&mut buf, total - 1),
            Err(FrameError::TooLarge {
                len: total,
                max_len: total - 1
            })
        );
        assert_eq!(buf.len(), f.len(), "a refused frame consumes nothing");
    }

    #[test]
    fn one_above_limit_is_refused_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&33i32.to_be_bytes()[..]);
        let cap = buf.capacity();
        assert_eq!(
            next_frame(&mut buf, 32),
            Err(FrameError::TooLarge {
                len: 33,
                max_len: 32
            })
        );
        assert_eq!(buf.capacity(), cap, "nothing reserved for a refused frame");
        let mut buf = BytesMut::from(&32i32.to_be_bytes()[..]);
        assert_eq!(next_frame(&mut buf, 32), Ok(None));
    }

    #[test]
    fn two_gib_declared_is_refused_before_reserving() {
        let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        let err = next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(err.breaks_stream());
        assert!(buf.capacity() < 1024);
        assert_eq!(
            err.to_string(),
            "frame declares 2147483647 bytes, above the limit of 16777216 bytes"
        );
    }

    #[test]
    fn nothing_is_reserved_before_the_header_word_is_checked() {
        // Total within the limit, header-length word not yet here: wait
        // without reserving the 1 MiB the prefix asks for.
        let mut buf = BytesMut::from(&(1i32 << 20).to_be_bytes()[..]);
        let cap = buf.capacity();
        assert_eq!(next_frame(&mut buf, DEFAULT_MAX_FRAME), Ok(None));
        assert_eq!(buf.capacity(), cap);
        // With a sane header word it reserves and waits.
        let mut buf = words(1 << 20, 0x0000_0010, &[]);
        assert_eq!(next_frame(&mut buf, DEFAULT_MAX_FRAME), Ok(None));
        assert!(buf.capacity() >= (1 << 20) + 4);
    }

    #[test]
    fn header_length_is_checked_against_the_total_from_both_sides() {
        // total 4 + 10: a header of exactly 10 bytes fits, 11 does not.
        let mut buf = words(14, 10, &[]);
        let cap = buf.capacity();
        assert_eq!(next_frame(&mut buf, DEFAULT_MAX_FRAME), Ok(None));
        let mut buf = words(14, 11, &[]);
        assert_eq!(
            next_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::HeaderTooLong {
                header_len: 11,
                available: 10
            })
        );
        assert_eq!(buf.capacity(), cap, "nothing reserved for a refused frame");
        assert_eq!(buf.len(), 8);
        // The serialize-type byte is not part of the length.
        let mut buf = words(14, 0xff00_000a, &[0; 10]);
        assert_eq!(
            next_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::UnknownSerializeType { code: 0xff })
        );
        assert!(buf.is_empty(), "a header error consumes its frame");
    }

    #[test]
    fn impossible_totals_are_refused() {
        for len in [-1, i32::MIN, 0, 3] {
            let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
            let err = next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap_err();
            assert_eq!(err, FrameError::BadLength { len });
            assert!(err.breaks_stream());
        }
        // The smallest legal total: the header-length word only, no header.
        let mut buf = words(4, 0, &[]);
        assert!(matches!(
            next_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Json { .. })
        ));
    }

    #[test]
    fn header_errors_keep_the_stream_in_sync() {
        let mut buf = words(8, 0x0100_0004, b"abcd");
        buf.extend_from_slice(&frame(Encoding::Json, b""));
        let err = next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, FrameError::Malformed { .. }));
        assert!(!err.breaks_stream());
        assert!(next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().is_some());
    }

    #[test]
    fn raw_split_then_parse_lets_callers_forward_bad_headers() {
        let mut buf = words(8, 0x0000_0004, b"nope");
        let raw = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(raw.len(), 12);
        assert!(Frame::parse(raw).is_err());
    }

    #[test]
    fn encode_refuses_headers_above_24_bits() {
        let mut h = Header::request(1, 1);
        h.remark = Some("x".repeat(MAX_HEADER_LEN));
        assert!(matches!(
            encode(&h, b"", Encoding::Binary),
            Err(FrameError::Unencodable { .. })
        ));
    }

    #[test]
    fn header_bytes_are_the_header_as_received() {
        let f = next_frame(
            &mut BytesMut::from(&frame(Encoding::Json, b"B")[..]),
            1 << 10,
        )
        .unwrap()
        .unwrap();
        assert!(f.header_bytes().starts_with(b"{\"code\":105"));
        assert!(f.header_bytes().ends_with(b"}"));
    }
}
