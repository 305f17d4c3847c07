//! The one error type of framing and decoding.
//!
//! Every variant except [`FrameError::Decode`] means the byte stream can no
//! longer be framed: the caller must close the connection after, at most,
//! telling the client why ([`FrameError::client_reply`]).

use bytes::{BufMut, Bytes, BytesMut};

/// Why bytes from a peer could not be framed or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A bulk string header declares more bytes than [`crate::Limits::max_bulk_len`].
    #[error("bulk length {len} exceeds the limit of {max} bytes")]
    BulkTooLarge {
        /// Declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// An aggregate header declares more elements than [`crate::Limits::max_array_len`].
    #[error("aggregate length {len} exceeds the limit of {max} elements")]
    ArrayTooLarge {
        /// Declared element count.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// An inline command line is longer than [`crate::Limits::max_inline_len`].
    #[error("inline command is longer than the limit of {max} bytes")]
    InlineTooLong {
        /// The limit.
        max: usize,
    },
    /// A simple reply line (`+`, `-`, `:` ...) is longer than
    /// [`crate::Limits::max_inline_len`].
    #[error("reply line at byte {offset} is longer than the limit of {max} bytes")]
    LineTooLong {
        /// Where the line starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// A reply nests aggregates deeper than [`crate::Limits::max_nesting`]
    /// (only [`crate::decode_reply`] refuses this: framing has no depth limit).
    #[error("reply nests aggregates deeper than the limit of {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The bytes are not RESP.
    #[error("malformed RESP at byte {offset}: {reason}")]
    Malformed {
        /// What was wrong, in Redis's words for requests (e.g. "invalid
        /// bulk length"), so it can be relayed as Redis would say it.
        reason: &'static str,
        /// Offset from the start of the frame.
        offset: usize,
    },
    /// A request array holds something other than a bulk string.
    #[error("malformed RESP at byte {offset}: expected '$', got '{}'", char::from(*.got))]
    ExpectedBulk {
        /// The byte found where a `$` belongs.
        got: u8,
        /// Offset from the start of the frame.
        offset: usize,
    },
    /// Valid RESP3 this crate does not frame (streamed strings and aggregates).
    #[error("unsupported RESP at byte {offset}: {what}")]
    Unsupported {
        /// The construct.
        what: &'static str,
        /// Offset from the start of the frame.
        offset: usize,
    },
    /// A whole reply frame that the full decoder refused.
    #[error("reply could not be decoded: {0}")]
    Decode(String),
}

impl FrameError {
    pub(crate) fn malformed(reason: &'static str, offset: usize) -> Self {
        Self::Malformed { reason, offset }
    }

    /// The error reply to send a client before closing its connection,
    /// worded exactly as Redis words the same request error
    /// (`-ERR Protocol error: invalid multibulk length\r\n`), because
    /// clients and their tests match on Redis's text. A declared length over
    /// the proxy's limits gets the words Redis uses for one over its own.
    #[must_use]
    pub fn client_reply(&self) -> Bytes {
        let owned;
        let words: &[u8] = match self {
            Self::BulkTooLarge { .. } => b"invalid bulk length",
            Self::ArrayTooLarge { .. } => b"invalid multibulk length",
            Self::InlineTooLong { .. } => b"too big inline request",
            Self::Malformed { reason, .. } => reason.as_bytes(),
            Self::ExpectedBulk { got, .. } => {
                owned = [b"expected '$', got '".as_slice(), &[*got], b"'"].concat();
                &owned
            }
            other => {
                owned = other.to_string().into_bytes();
                &owned
            }
        };
        let mut b = BytesMut::with_capacity(words.len() + 24);
        b.put_slice(b"-ERR Protocol error: ");
        b.put_slice(words);
        b.put_slice(b"\r\n");
        b.freeze()
    }
}
