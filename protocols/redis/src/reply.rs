//! Reply framing: where the next upstream reply ends, without decoding it.
//!
//! Every upstream reply passes through here, so this is hand-written byte
//! scanning: simple lines are searched for `\r\n`, bulk payloads are
//! skipped by their declared length, and open aggregates are counted in a
//! fixed array that spills to the heap only for replies nested deeper than
//! any built-in command produces. There is no depth limit: a Lua script may
//! return a table nested as deep as Lua allows, and a valid reply must never
//! cost the upstream connection; the stack of open aggregates grows by one
//! word per level, and every level takes at least four bytes of the reply,
//! so it is bounded by the reply size. [`ReplyScanner`] can resume where it
//! stopped, so a large reply arriving in many reads is scanned once.

use crate::wire::{Line, check_len, find_crlf, read_len};
use crate::{FrameError, Limits};

/// Returns the length in bytes of the whole reply frame at the front of
/// `buf`, or `None` if more bytes are needed.
///
/// Accepts every RESP2 and RESP3 type, nested aggregates at any depth,
/// attributes (`|`, counted with the value they annotate) and pushes (`>`).
/// Streamed RESP3 strings and aggregates (`$?`, `*?`) are refused. Does not
/// allocate unless aggregates nest more than [`INLINE_DEPTH`] deep.
/// `limits.max_nesting` does not apply here (see [`crate::decode_reply`]).
///
/// # Errors
/// [`FrameError::BulkTooLarge`], [`FrameError::ArrayTooLarge`],
/// [`FrameError::LineTooLong`] over `limits`;
/// [`FrameError::Malformed`] / [`FrameError::Unsupported`] otherwise. The
/// upstream connection cannot be framed any more and must be closed.
pub fn reply_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, FrameError> {
    ReplyScanner::new().scan(buf, limits)
}

/// What a whole reply frame is, as far as the session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// An out-of-band RESP3 push (pub/sub message, invalidation): not the
    /// answer to any request.
    Push,
    /// An error reply (`-` or `!`).
    Error,
    /// Any other reply.
    Other,
}

/// Classifies a whole reply frame (as delimited by [`reply_len`]) by its
/// type byte, looking past leading attributes. Cheap: only attributes are
/// scanned.
#[must_use]
pub fn reply_kind(frame: &[u8]) -> ReplyKind {
    let mut pos = 0;
    while frame.get(pos) == Some(&b'|') {
        match attribute_len(&frame[pos..]) {
            Some(n) => pos += n,
            None => return ReplyKind::Other,
        }
    }
    match frame.get(pos) {
        Some(b'>') => ReplyKind::Push,
        Some(b'-' | b'!') => ReplyKind::Error,
        _ => ReplyKind::Other,
    }
}

/// Length of the attribute (`|n` and its `n` pairs, without the value it
/// annotates) at the front of `buf`, if it is whole and valid.
pub(crate) fn attribute_len(buf: &[u8]) -> Option<usize> {
    let mut scanner = ReplyScanner::new();
    scanner.attribute_as_map = true;
    scanner.scan(buf, &Limits::UNBOUNDED).ok().flatten()
}

/// Open aggregates tracked without allocating; deeper ones spill to the heap.
pub const INLINE_DEPTH: usize = 32;

/// A resumable [`reply_len`]: call [`ReplyScanner::scan`] with the same
/// growing buffer until it returns the frame length, then
/// [`ReplyScanner::reset`] (or make a new one) for the next frame.
#[derive(Debug, Clone)]
pub struct ReplyScanner {
    /// Offset of the next item header to read.
    pos: usize,
    /// Open aggregates; level 0 is the virtual one holding the frame.
    depth: usize,
    /// Deepest `depth` reached so far.
    max_depth: usize,
    /// Items still expected by each open aggregate, for the first levels.
    open: [usize; INLINE_DEPTH],
    /// Items still expected by levels `INLINE_DEPTH` and deeper.
    deeper: Vec<usize>,
    /// Scan the first item, if it is a `|`, as a plain map: the attribute
    /// alone, without the value it annotates (used to skip attributes).
    attribute_as_map: bool,
}

impl Default for ReplyScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyScanner {
    /// A scanner at the start of a frame.
    #[must_use]
    pub const fn new() -> Self {
        let mut open = [0; INLINE_DEPTH];
        open[0] = 1;
        Self {
            pos: 0,
            depth: 1,
            max_depth: 1,
            open,
            deeper: Vec::new(),
            attribute_as_map: false,
        }
    }

    /// How many aggregates deep the frame nests (0 for a scalar), as far as
    /// it has been scanned.
    #[must_use]
    pub const fn nesting(&self) -> usize {
        self.max_depth - 1
    }

    /// Items still expected at `level`.
    fn left(&mut self, level: usize) -> &mut usize {
        match level.checked_sub(INLINE_DEPTH) {
            None => &mut self.open[level],
            Some(i) => &mut self.deeper[i],
        }
    }

    /// Opens an aggregate of `items` items below the current level.
    fn push(&mut self, items: usize) {
        if self.depth < INLINE_DEPTH {
            self.open[self.depth] = items;
        } else {
            self.deeper.truncate(self.depth - INLINE_DEPTH);
            self.deeper.push(items);
        }
        self.depth += 1;
        self.max_depth = self.max_depth.max(self.depth);
    }

    /// Forgets the progress, to scan a new frame.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Continues scanning `buf`, which must start with the same bytes as on
    /// previous calls. Returns the frame length once it is whole; a later
    /// call then returns the same length.
    ///
    /// # Errors
    /// As [`reply_len`]. After an error the scanner must be reset.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, FrameError> {
        while self.depth > 0 {
            let at = self.pos;
            let Some(&kind) = buf.get(at) else {
                return Ok(None);
            };
            match kind {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                    let max = limits.max_inline_len;
                    match find_crlf(buf, at + 1, max, |offset| FrameError::LineTooLong {
                        offset,
                        max,
                    })? {
                        Line::Incomplete => return Ok(None),
                        Line::End(end) => {
                            self.pos = end + 2;
                            self.complete();
                        }
                    }
                }
                b'$' | b'!' | b'=' => {
                    if buf.get(at + 1) == Some(&b'?') {
                        return Err(FrameError::Unsupported {
                            what: "streamed RESP3 string",
                            offset: at,
                        });
                    }
                    let Some((n, data)) = read_len(buf, at, "invalid bulk length")? else {
                        return Ok(None);
                    };
                    if n == -1 && kind == b'$' {
                        self.pos = data;
                        self.complete();
                        continue;
                    }
                    if n < 0 {
                        return Err(FrameError::malformed("invalid bulk length", at));
                    }
                    let len = check_len(n, limits.max_bulk_len, |len, max| {
                        FrameError::BulkTooLarge { len, max }
                    })?;
                    let end = data.saturating_add(len);
                    match buf.get(end..end.saturating_add(2)) {
                        None => return Ok(None),
                        Some(b"\r\n") => {
                            self.pos = end + 2;
                            self.complete();
                        }
                        Some(_) => {
                            return Err(FrameError::malformed(
                                "bulk string not terminated by CRLF",
                                end,
                            ));
                        }
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    if buf.get(at + 1) == Some(&b'?') {
                        return Err(FrameError::Unsupported {
                            what: "streamed RESP3 aggregate",
                            offset: at,
                        });
                    }
                    let Some((n, next)) = read_len(buf, at, "invalid aggregate length")? else {
                        return Ok(None);
                    };
                    if n == -1 && kind == b'*' {
                        self.pos = next;
                        self.complete();
                        continue;
                    }
                    if n < 0 {
                        return Err(FrameError::malformed("invalid aggregate length", at));
                    }
                    let n = check_len(n, limits.max_array_len, |len, max| {
                        FrameError::ArrayTooLarge { len, max }
                    })?;
                    let items = if matches!(kind, b'%' | b'|') {
                        n.saturating_mul(2)
                    } else {
                        n
                    };
                    if kind == b'|' && !std::mem::take(&mut self.attribute_as_map) {
                        // The attribute annotates the next item, which still
                        // fills the slot the attribute arrived in.
                        *self.left(self.depth - 1) += 1;
                    }
                    self.pos = next;
                    if items == 0 {
                        self.complete();
                    } else {
                        self.push(items);
                    }
                }
                _ => return Err(FrameError::malformed("unknown reply type byte", at)),
            }
        }
        Ok(Some(self.pos))
    }

    /// Records one finished item, closing every aggregate it completes.
    fn complete(&mut self) {
        while self.depth > 0 {
            let left = self.left(self.depth - 1);
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.depth -= 1;
        }
    }
}
