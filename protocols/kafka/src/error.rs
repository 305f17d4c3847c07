//! The one error type of framing, header peeking, decoding and batch access.
//!
//! [`FrameError::TooLarge`] and [`FrameError::NegativeLength`] mean the byte
//! stream can no longer be framed: the connection must be closed. The other
//! variants concern one whole frame; the stream itself is still in sync, so
//! the caller may answer (when it knows the correlation id) and carry on, or
//! close with the error's sentence as the logged reason.

/// Why bytes from a peer could not be framed, peeked, decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size prefix declares more bytes than the configured limit.
    #[error("frame declares {len} bytes, above the limit of {max_len} bytes")]
    TooLarge {
        /// Declared payload length (after the 4-byte prefix).
        len: usize,
        /// The limit.
        max_len: usize,
    },
    /// The size prefix is negative, which no Kafka peer sends.
    #[error("frame declares a negative length ({len})")]
    NegativeLength {
        /// Declared length.
        len: i32,
    },
    /// A frame or header is shorter than its fixed fields.
    #[error("{what} is truncated: needs {needed} bytes, has {available}")]
    Truncated {
        /// What was being read, e.g. "request header".
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// Bytes that do not follow the Kafka wire format.
    #[error("malformed {what} at byte {offset}: {reason}")]
    Malformed {
        /// What was being read, e.g. "request header".
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
        /// Offset from the start of the frame (or record blob).
        offset: usize,
    },
    /// A request whose API key this build of kafka-protocol does not know.
    /// Carries what the proxy needs to log a reason and close.
    #[error(
        "request with correlation id {correlation_id} uses unknown API key {api_key} (version {api_version})"
    )]
    UnknownApiKey {
        /// The API key as sent.
        api_key: i16,
        /// The API version as sent.
        api_version: i16,
        /// The correlation id as sent.
        correlation_id: i32,
    },
    /// kafka-protocol refused a body (truncated, unsupported version ...).
    #[error("could not decode {what} for API key {api_key} version {api_version}: {reason}")]
    Decode {
        /// "request body" or "response body".
        what: &'static str,
        /// The API key.
        api_key: i16,
        /// The API version.
        api_version: i16,
        /// kafka-protocol's explanation.
        reason: String,
    },
    /// kafka-protocol could not encode a message (version not supported by
    /// the message type, field too long ...). A bug in the caller.
    #[error("could not encode {what} at version {api_version}: {reason}")]
    Encode {
        /// "request" or "response".
        what: &'static str,
        /// The API version.
        api_version: i16,
        /// kafka-protocol's explanation.
        reason: String,
    },
    /// A record batch with a magic byte other than 2 (v0/v1 message sets).
    #[error("record batch at byte {offset} has magic {magic}; only v2 batches are supported")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
        /// Offset of the batch in the record blob.
        offset: usize,
    },
}

impl FrameError {
    /// Whether the byte stream lost its framing, so the connection must be
    /// closed rather than answered.
    #[must_use]
    pub fn breaks_stream(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::NegativeLength { .. })
    }
}
