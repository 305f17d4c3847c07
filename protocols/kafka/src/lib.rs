//! Sans-IO Kafka protocol support for cutover: framing, a header peek that
//! leaves the body alone, selective decode/encode through the
//! `kafka-protocol` crate, ApiVersions intersection, and in-place patching of
//! record batches for the per-partition offset splice.
//!
//! This crate knows only bytes: no sockets, no runtime, no metrics, no
//! configuration. The Kafka session in the main crate feeds it buffers and
//! decides where requests go.
//!
//! - [`next_frame`] splits whole frames (prefix included) off a buffer;
//! - [`peek_request`] reads key, version, correlation id and client id;
//! - [`with_correlation_id`] and friends move frames between id spaces;
//! - [`decode_request_body`] / [`encode_response`] (and the reverse pair)
//!   for the few API keys routing must understand;
//! - [`intersect_api_versions`] and [`TOPIC_ID_CAPS`] for ApiVersions (the
//!   proxy's own table of versions lives with its Kafka session);
//! - [`batches`], [`set_base_offset`], [`set_producer`] for record batches;
//!   [`set_attributes`], [`split_dense`] and [`control_type`] for the
//!   history copy.

#![warn(missing_docs)]

pub mod batch;
mod codec;
mod correlation;
mod error;
mod frame;
pub mod guard;
mod header;
pub mod selfcheck;
mod versions;
mod wire;

pub use batch::{
    Batch, BatchView, ControlType, RecordSpan, RecordsError, batches, control_type, crc_is_valid,
    has_offset_gaps, increment_sequence, record_spans, set_attributes, set_base_offset,
    set_producer, shift_base_offsets, split_dense, split_dense_from,
};
pub use codec::{decode_request_body, decode_response_body, encode_request, encode_response};
pub use correlation::{
    response_correlation_id, response_with_correlation_id, set_request_correlation_id,
    set_response_correlation_id, with_correlation_id,
};
pub use error::FrameError;
pub use frame::{DEFAULT_MAX_FRAME, LEN_PREFIX, next_frame, peek_len};
pub use header::{
    RequestHeader, peek_request, request_header_version, response_body_offset,
    response_header_version,
};
pub use versions::{TOPIC_ID_CAPS, VersionRow, intersect_api_versions};

/// The kafka-protocol crate, re-exported so callers use the same version
/// for the message types they decode and encode.
pub use kafka_protocol;
