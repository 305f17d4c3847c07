//! Error types of framing, header decoding, encoding and body parsing.
//!
//! [`FrameError::breaks_stream`] says whether the byte stream lost its
//! framing (the connection must be closed) or only one whole frame was bad
//! (the frame has been consumed; the stream is still in sync, so the caller
//! may answer with the frame's opaque, forward the raw bytes, or close with
//! the error's sentence as the logged reason).

/// Why bytes from a peer could not be framed or a header decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The total-length prefix declares more bytes than the configured limit.
    #[error("frame declares {len} bytes, above the limit of {max_len} bytes")]
    TooLarge {
        /// Declared length (bytes after the 4-byte total-length prefix).
        len: usize,
        /// The limit.
        max_len: usize,
    },
    /// The total-length prefix is negative or too small to hold the
    /// 4-byte header-length word every frame carries.
    #[error("frame declares an impossible length ({len}); at least 4 bytes are needed")]
    BadLength {
        /// Declared length.
        len: i32,
    },
    /// The header-length word declares a header longer than the frame.
    #[error(
        "header declares {header_len} bytes but the frame holds only {available} after the length words"
    )]
    HeaderTooLong {
        /// Declared header length (low 24 bits of the word).
        header_len: usize,
        /// Bytes in the frame after the header-length word.
        available: usize,
    },
    /// The serialize-type byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("frame uses unknown header serialize type {code}")]
    UnknownSerializeType {
        /// The top byte of the header-length word.
        code: u8,
    },
    /// Bytes handed to [`crate::Frame::parse`] that are not exactly one
    /// whole frame. A bug in the caller.
    #[error("{given} bytes are not exactly one frame")]
    NotOneFrame {
        /// Bytes given.
        given: usize,
    },
    /// A ROCKETMQ binary header that does not follow the wire format.
    #[error("malformed binary header at byte {offset}: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
        /// Offset from the start of the header.
        offset: usize,
    },
    /// A JSON header that is not the JSON object RemotingCommand expects.
    #[error("malformed JSON header: {reason}")]
    Json {
        /// serde_json's explanation.
        reason: String,
    },
    /// A header or frame that cannot be put on the wire (header above the
    /// 24-bit length field, frame above `i32::MAX`). A bug in the caller.
    #[error("cannot encode frame: {reason}")]
    Unencodable {
        /// What overflowed.
        reason: String,
    },
}

impl FrameError {
    /// Whether the byte stream lost its framing, so the connection must be
    /// closed rather than answered.
    #[must_use]
    pub fn breaks_stream(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::BadLength { .. } | Self::HeaderTooLong { .. }
        )
    }
}

/// Why a route or cluster-info body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} body: {reason}")]
pub struct BodyError {
    /// Which body, e.g. "TopicRouteData".
    pub what: &'static str,
    /// serde_json's explanation.
    pub reason: String,
}
