//! Client requests: framing a RESP array of bulk strings, or an inline
//! line, off the front of the connection's read buffer.
//!
//! Check, then parse: a first pass walks the headers without allocating
//! and stops at the first missing byte, so a partial request costs nothing
//! and consumes nothing; only a whole request is split off and sliced into
//! zero-copy arguments.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::wire::{check_len, parse_i64};
use crate::{FrameError, Limits, inline};

/// One whole client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The exact RESP bytes to forward upstream. For an inline command this
    /// is its re-encoding as a RESP array of bulk strings.
    pub raw: Bytes,
    /// The arguments as zero-copy slices of `raw`; `args[0]` is the command
    /// name as the client spelled it. Never empty.
    pub args: Vec<Bytes>,
}

impl Request {
    /// The command name as sent (any case).
    #[must_use]
    pub fn name(&self) -> &[u8] {
        &self.args[0]
    }
}

/// What the check pass found at the front of the buffer.
enum Check {
    /// More bytes are needed.
    Incomplete,
    /// A frame without arguments (`*0`, `*-1`) of this many bytes, which
    /// Redis silently skips. (A blank inline line is skipped after splitting.)
    Empty(usize),
    /// A whole RESP array of `argc` bulk strings, `len` bytes long.
    Array { len: usize, argc: usize },
    /// A whole inline line: content `..content`, `len` bytes with its line end.
    Inline { content: usize, len: usize },
}

/// Parses one whole request at the front of `buf`, consuming exactly its
/// bytes, or returns `Ok(None)` and consumes nothing if it is incomplete.
///
/// A RESP array is `*<n>\r\n` followed by `n` bulk strings; anything not
/// starting with `*` is an inline command, split as Redis does. Frames with
/// no arguments (`*0\r\n`, `*-1\r\n`, an empty line) are consumed and
/// skipped, as Redis skips them. Declared lengths are checked against
/// `limits` as soon as their header line is complete, before the data
/// arrives; nothing is reserved or allocated for a partial request.
///
/// # Errors
/// [`FrameError::BulkTooLarge`], [`FrameError::ArrayTooLarge`],
/// [`FrameError::InlineTooLong`] for declared sizes over `limits`, and
/// [`FrameError::Malformed`] / [`FrameError::ExpectedBulk`] for anything
/// that is not a request, at the point and in the words Redis would refuse
/// it ([`FrameError::client_reply`]). The stream
/// cannot be framed after an error: send [`FrameError::client_reply`] and
/// close the connection.
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, FrameError> {
    loop {
        let check = match buf.first() {
            None => return Ok(None),
            Some(b'*') => check_array(buf, limits)?,
            Some(_) => check_inline(buf, limits)?,
        };
        match check {
            Check::Incomplete => return Ok(None),
            Check::Empty(len) => buf.advance(len),
            Check::Array { len, argc } => {
                let raw = buf.split_to(len).freeze();
                let args = slice_args(&raw, argc);
                return Ok(Some(Request { raw, args }));
            }
            Check::Inline { content, len } => {
                let line = buf.split_to(len);
                let Some(args) = inline::split_args(&line[..content]) else {
                    return Err(FrameError::malformed("unbalanced quotes in request", 0));
                };
                if !args.is_empty() {
                    return Ok(Some(encode_inline(&args)));
                }
            }
        }
    }
}

/// A length header of a request (`*<n>` or `$<n>`) read the way Redis
/// reads it: its line ends at the first `\r`, which must be followed by
/// one more byte (Redis skips that byte without looking at it).
struct Header {
    /// The declared value, `None` when it is not a strict decimal integer.
    value: Option<i64>,
    /// Offset just past the line end.
    next: usize,
}

/// Reads the header whose type byte is at `at`; `Ok(None)` while its line
/// is incomplete. A line longer than `max` bytes is refused with `too_big`
/// (Redis's `too big mbulk count string` / `too big bulk count string`).
fn header(
    buf: &[u8],
    at: usize,
    max: usize,
    too_big: &'static str,
) -> Result<Option<Header>, FrameError> {
    let rest = &buf[at..];
    match rest.iter().position(|&b| b == b'\r') {
        // `cr` is 0 when the type byte itself is `\r`: no value, and the
        // caller refuses the type byte (Redis reads the line first too).
        Some(cr) if cr + 2 <= rest.len() => Ok(Some(Header {
            value: rest.get(1..cr).and_then(parse_i64),
            next: at + cr + 2,
        })),
        Some(_) => Ok(None),
        None if rest.len() > max => Err(FrameError::malformed(too_big, at)),
        None => Ok(None),
    }
}

/// Redis's `INT_MAX` bound on a request's argument count.
const MAX_ARGC: i64 = i32::MAX as i64;

fn check_array(buf: &[u8], limits: &Limits) -> Result<Check, FrameError> {
    let max_line = limits.max_inline_len;
    let Some(head) = header(buf, 0, max_line, "too big mbulk count string")? else {
        return Ok(Check::Incomplete);
    };
    let n = match head.value {
        Some(n) if n <= MAX_ARGC => n,
        _ => return Err(FrameError::malformed("invalid multibulk length", 0)),
    };
    // Redis skips a frame declaring no arguments, negative counts included.
    if n <= 0 {
        return Ok(Check::Empty(head.next));
    }
    let argc = check_len(n, limits.max_array_len, |len, max| {
        FrameError::ArrayTooLarge { len, max }
    })?;
    let mut pos = head.next;
    for _ in 0..argc {
        if pos >= buf.len() {
            return Ok(Check::Incomplete);
        }
        let Some(bulk) = header(buf, pos, max_line, "too big bulk count string")? else {
            return Ok(Check::Incomplete);
        };
        if buf[pos] != b'$' {
            return Err(FrameError::ExpectedBulk {
                got: buf[pos],
                offset: pos,
            });
        }
        let len = match bulk.value {
            Some(len) if len >= 0 => len,
            _ => return Err(FrameError::malformed("invalid bulk length", pos)),
        };
        let len = check_len(len, limits.max_bulk_len, |len, max| {
            FrameError::BulkTooLarge { len, max }
        })?;
        // Like Redis, the two bytes after the data are skipped unread.
        // `next + len` cannot overflow: `len` fits the limit and `next` a buffer.
        let end = bulk.next.saturating_add(len).saturating_add(2);
        if buf.len() < end {
            return Ok(Check::Incomplete);
        }
        pos = end;
    }
    Ok(Check::Array { len: pos, argc })
}

/// Slices the arguments out of a RESP array the check pass validated.
fn slice_args(raw: &Bytes, argc: usize) -> Vec<Bytes> {
    let mut args = Vec::with_capacity(argc);
    let mut pos = line_after(raw, 0);
    for _ in 0..argc {
        let data = line_after(raw, pos);
        // Validated by the check pass: a non-negative length within limits.
        let len = parse_i64(&raw[pos + 1..data - 2]).map_or(0, |n| n.unsigned_abs() as usize);
        args.push(raw.slice(data..data + len));
        pos = data + len + 2;
    }
    args
}

/// Offset just past the header line starting at `from`: its first `\r`
/// and the byte after it.
fn line_after(raw: &[u8], from: usize) -> usize {
    raw[from..]
        .iter()
        .position(|&b| b == b'\r')
        .map_or(raw.len(), |i| from + i + 2)
}

fn check_inline(buf: &[u8], limits: &Limits) -> Result<Check, FrameError> {
    let max = limits.max_inline_len;
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > max.saturating_add(1) {
            Err(FrameError::InlineTooLong { max })
        } else {
            Ok(Check::Incomplete)
        };
    };
    let content = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    if content > max {
        return Err(FrameError::InlineTooLong { max });
    }
    Ok(Check::Inline {
        content,
        len: nl + 1,
    })
}

/// Encodes inline arguments as a RESP array and slices them back out.
fn encode_inline(args: &[Vec<u8>]) -> Request {
    let size: usize = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    let mut out = BytesMut::with_capacity(size);
    let mut ranges = Vec::with_capacity(args.len());
    crate::encode::put_header(&mut out, b'*', args.len() as i64);
    for a in args {
        crate::encode::put_header(&mut out, b'$', a.len() as i64);
        ranges.push(out.len()..out.len() + a.len());
        out.put_slice(a);
        out.put_slice(b"\r\n");
    }
    let raw = out.freeze();
    let args = ranges.into_iter().map(|r| raw.slice(r)).collect();
    Request { raw, args }
}
