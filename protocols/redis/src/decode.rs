//! Full decoding of one reply, for the few places that need its content:
//! merging the parts of a split MGET, comparing a shadow read with the
//! authoritative answer.
//!
//! This is off the hot path, so it uses redis-protocol's RESP3 decoder.
//! RESP2-only shapes (`$-1`, `*-1` nulls) make that decoder fail; the frame
//! is then decoded as RESP2 and converted, so callers see one type.

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as Resp2Frame;
use redis_protocol::resp3::types::BytesFrame;

use crate::reply::attribute_len;
use crate::wire::read_len;
use crate::{FrameError, Limits, ReplyScanner};

/// Decodes one whole reply frame (RESP2 or RESP3) into a RESP3 frame that
/// shares `frame`'s memory. RESP2 types map to their RESP3 equivalents:
/// simple string, simple error, number, blob string, array, null.
/// Attributes are dropped if the decoder refuses them where they are.
/// Maps and sets whose keys are aggregates or doubles cannot be decoded
/// (redis-protocol hashes them); Redis never sends such replies.
///
/// # Errors
/// [`FrameError::TooDeep`] when the reply nests deeper than the default
/// limit (checked first, because the decoder is recursive; framing itself
/// has no depth limit, so callers must treat this as "cannot compare",
/// never as a broken connection);
/// [`FrameError::Decode`] when the bytes are not exactly one valid frame.
pub fn decode_reply(frame: &Bytes) -> Result<BytesFrame, FrameError> {
    let mut scanner = ReplyScanner::new();
    match scanner.scan(frame, &Limits::UNBOUNDED)? {
        Some(_) if scanner.nesting() > Limits::UNBOUNDED.effective_max_nesting() => {
            return Err(FrameError::TooDeep {
                max: Limits::UNBOUNDED.effective_max_nesting(),
            });
        }
        Some(n) if n == frame.len() => {}
        Some(_) => return Err(FrameError::Decode("trailing bytes after the reply".into())),
        None => return Err(FrameError::Decode("the reply is incomplete".into())),
    }
    let resp3_err = match decode_resp3(frame) {
        Ok(f) => return Ok(f),
        Err(e) => e,
    };
    // Attributes are metadata the proxy never needs, and redis-protocol
    // refuses some valid placements (on a null, or two in a row).
    if frame.contains(&b'|')
        && let Some(stripped) = strip_attributes(frame)
        && let Ok(f) = decode_resp3(&stripped)
    {
        return Ok(f);
    }
    match redis_protocol::resp2::decode::decode_bytes(frame) {
        Ok(Some((f, n))) if n == frame.len() => Ok(from_resp2(f)),
        _ => Err(FrameError::Decode(resp3_err)),
    }
}

fn decode_resp3(frame: &Bytes) -> Result<BytesFrame, String> {
    match redis_protocol::resp3::decode::complete::decode_bytes(frame) {
        Ok(Some((f, n))) if n == frame.len() => Ok(f),
        Ok(_) => Err("the RESP3 decoder did not consume exactly one frame".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Copies a whole, already framed reply without its attributes, walking it
/// token by token (an attribute does not count as an element of its
/// parent, so dropping it keeps every count right). `None` if nothing was
/// dropped or the frame is not valid.
fn strip_attributes(frame: &[u8]) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(frame.len());
    let mut pos = 0;
    let mut dropped = false;
    while pos < frame.len() {
        let end = match frame[pos] {
            b'|' => {
                pos += attribute_len(&frame[pos..])?;
                dropped = true;
                continue;
            }
            b'$' | b'!' | b'=' => match read_len(frame, pos, "").ok()?? {
                (n, data) if n < 0 => data,
                (n, data) => data.checked_add(usize::try_from(n).ok()?)?.checked_add(2)?,
            },
            b'*' | b'~' | b'>' | b'%' => read_len(frame, pos, "").ok()??.1,
            _ => pos + frame[pos..].windows(2).position(|w| w == b"\r\n")? + 2,
        };
        out.extend_from_slice(frame.get(pos..end)?);
        pos = end;
    }
    dropped.then(|| out.freeze())
}

/// Converts a RESP2 frame into the equivalent RESP3 frame.
#[must_use]
pub fn from_resp2(frame: Resp2Frame) -> BytesFrame {
    match frame {
        Resp2Frame::SimpleString(data) => BytesFrame::SimpleString {
            data,
            attributes: None,
        },
        Resp2Frame::Error(data) => BytesFrame::SimpleError {
            data,
            attributes: None,
        },
        Resp2Frame::Integer(data) => BytesFrame::Number {
            data,
            attributes: None,
        },
        Resp2Frame::BulkString(data) => BytesFrame::BlobString {
            data,
            attributes: None,
        },
        Resp2Frame::Array(items) => BytesFrame::Array {
            data: items.into_iter().map(from_resp2).collect(),
            attributes: None,
        },
        Resp2Frame::Null => BytesFrame::Null,
    }
}
