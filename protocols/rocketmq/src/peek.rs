//! Header peek: the few header fields a relay routes and counts by, read in
//! place from a whole frame.
//!
//! A proxy relaying sends and pulls needs the code, opaque and flag, and
//! the values of two or three ext fields (topic, group, queue); decoding
//! the whole header ([`crate::Frame::parse`]) copies every ext key and
//! value into `String`s first. [`peek`] borrows them from the frame
//! instead and allocates nothing.
//!
//! A peek never disagrees with the full decoder: it answers `None` for
//! every header [`crate::Frame::parse`] refuses, and also for the rare
//! well-formed ones it does not read in place (escaped JSON strings among
//! the keys or asked values, integer ext values asked for, unknown JSON
//! top-level keys, non-UTF-8 binary keys, very many ext fields). On `None`
//! the caller parses the frame fully, which either reads it or says
//! precisely what is wrong with it.

use std::ops::Range;

use crate::frame::WORDS;
use crate::{
    Encoding, FLAG_ONEWAY, FLAG_RESPONSE, LEN_PREFIX, Language, binary, json, peek_lengths,
};

/// A frame's header fields read in place, with the values of the ext keys
/// asked for, in the order they were asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek<'a, const N: usize> {
    /// Request or response code.
    pub code: i32,
    /// The sender's client language.
    pub language: Language,
    /// The sender's version.
    pub version: i32,
    /// Matches a response to its request.
    pub opaque: i32,
    /// Bit field of [`FLAG_RESPONSE`] and [`FLAG_ONEWAY`].
    pub flag: i32,
    /// The header's encoding.
    pub encoding: Encoding,
    /// The value of each asked ext key, `None` when absent (or JSON null).
    pub values: [Option<&'a str>; N],
    /// Where the body starts in the frame.
    pub body_start: usize,
}

impl<const N: usize> Peek<'_, N> {
    /// Whether this is a response (flag bit 0).
    #[must_use]
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this request is one-way (flag bit 1).
    #[must_use]
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The body's byte range in the frame peeked.
    #[must_use]
    pub fn body_range(&self, frame_len: usize) -> Range<usize> {
        self.body_start..frame_len
    }
}

/// Reads the header of `raw`, one whole frame as returned by
/// [`crate::split_frame`] (its lengths were checked there and are checked
/// again here), and the values of `keys`, without allocating.
///
/// Returns `None` when the frame must be decoded by [`crate::Frame::parse`]
/// instead: every frame it refuses, and the rare well-formed headers listed
/// in the module documentation. A `Some` always holds what
/// [`crate::Frame::parse`] would have decoded.
#[must_use]
pub fn peek<'a, const N: usize>(raw: &'a [u8], keys: [&str; N]) -> Option<Peek<'a, N>> {
    let (total, header_len) = peek_lengths(raw, usize::MAX).ok()??;
    if raw.len() != LEN_PREFIX + total {
        return None;
    }
    let encoding = Encoding::from_code(raw[LEN_PREFIX])?;
    let header = &raw[WORDS..WORDS + header_len];
    let body_start = WORDS + header_len;
    Some(match encoding {
        Encoding::Json => {
            let p = json::peek(header, keys)?;
            Peek {
                code: p.code,
                language: p.language,
                version: p.version,
                opaque: p.opaque,
                flag: p.flag,
                encoding,
                values: p.values,
                body_start,
            }
        }
        Encoding::Binary => {
            let p = binary::peek(header, keys)?;
            Peek {
                code: p.code,
                language: p.language,
                version: p.version,
                opaque: p.opaque,
                flag: p.flag,
                encoding,
                values: p.values,
                body_start,
            }
        }
    })
}
