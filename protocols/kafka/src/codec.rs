//! Selective decode and encode through kafka-protocol: only the API keys
//! routing needs are decoded fully; everything the proxy says itself is
//! encoded here as a whole frame, size prefix included.
//!
//! Pitfall: kafka-protocol 0.18 pre-allocates arrays from the count on the
//! wire (`Vec::with_capacity(n)`), so a tiny body declaring billions of
//! elements can abort the process on allocation failure. Request bodies of
//! the keys [`crate::guard`] knows are vetted first; decode other request
//! bodies only from trusted peers (responses come from our own brokers).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader as KpRequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::FrameError;
use crate::frame::LEN_PREFIX;
use crate::header::{RequestHeader, response_body_offset, response_header_version};

/// Decodes the body of a request frame whose header [`crate::peek_request`]
/// returned, at the header's API version. Bytes after the body are ignored,
/// as brokers do. Metadata, Produce and Fetch bodies first pass
/// [`crate::guard::check_request_body`].
///
/// # Errors
/// The errors of [`crate::guard::check_request_body`], and
/// [`FrameError::Decode`] when kafka-protocol refuses the body (truncated,
/// version outside the message's range, malformed field).
pub fn decode_request_body<T: Decodable>(
    frame: &Bytes,
    header: &RequestHeader,
) -> Result<T, FrameError> {
    let mut body = frame.slice(header.body_offset.min(frame.len())..);
    crate::guard::check_request_body(header.key, header.api_version, &body)?;
    T::decode(&mut body, header.api_version).map_err(|e| FrameError::Decode {
        what: "request body",
        api_key: header.api_key,
        api_version: header.api_version,
        reason: e.to_string(),
    })
}

/// Decodes the body of a response frame (prefix included) to a request with
/// `api_key` at `api_version`, skipping the response header of the right
/// version.
///
/// # Errors
/// [`FrameError::UnknownApiKey`] for an API key kafka-protocol does not know,
/// header errors from [`response_body_offset`], and [`FrameError::Decode`]
/// when kafka-protocol refuses the body.
pub fn decode_response_body<T: Decodable>(
    frame: &Bytes,
    api_key: i16,
    api_version: i16,
) -> Result<T, FrameError> {
    let Some(header_version) = response_header_version(api_key, api_version) else {
        return Err(FrameError::UnknownApiKey {
            api_key,
            api_version,
            correlation_id: crate::response_correlation_id(frame).unwrap_or(-1),
        });
    };
    let offset = response_body_offset(frame, header_version)?;
    let mut body = frame.slice(offset..);
    T::decode(&mut body, api_version).map_err(|e| FrameError::Decode {
        what: "response body",
        api_key,
        api_version,
        reason: e.to_string(),
    })
}

/// Encodes a whole response frame: size prefix, response header of
/// `header_version` (see [`response_header_version`]) with `correlation_id`,
/// then `body` at `api_version`.
///
/// # Errors
/// [`FrameError::Encode`] when kafka-protocol cannot encode `body` at
/// `api_version`, or the frame would exceed `i32::MAX` bytes.
pub fn encode_response<T: Encodable>(
    correlation_id: i32,
    header_version: i16,
    api_version: i16,
    body: &T,
) -> Result<Bytes, FrameError> {
    let enc_err = |reason: String| FrameError::Encode {
        what: "response",
        api_version,
        reason,
    };
    let size = body
        .compute_size(api_version)
        .map_err(|e| enc_err(e.to_string()))?;
    let header_len = if header_version >= 1 { 5 } else { 4 };
    let mut buf = BytesMut::with_capacity(LEN_PREFIX + header_len + size);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // no tagged fields
    }
    body.encode(&mut buf, api_version)
        .map_err(|e| enc_err(e.to_string()))?;
    finish(buf, "response", api_version)
}

/// Encodes a whole request frame: size prefix, `header` at the request header
/// version of its API key and version, then `body` at
/// `header.request_api_version`.
///
/// # Errors
/// [`FrameError::UnknownApiKey`] for an API key kafka-protocol does not know;
/// [`FrameError::Encode`] when kafka-protocol cannot encode the header or
/// body at that version, or the frame would exceed `i32::MAX` bytes.
pub fn encode_request<T: Encodable>(
    header: &KpRequestHeader,
    body: &T,
) -> Result<Bytes, FrameError> {
    let api_version = header.request_api_version;
    let Ok(key) = ApiKey::try_from(header.request_api_key) else {
        return Err(FrameError::UnknownApiKey {
            api_key: header.request_api_key,
            api_version,
            correlation_id: header.correlation_id,
        });
    };
    let enc_err = |reason: String| FrameError::Encode {
        what: "request",
        api_version,
        reason,
    };
    let header_version = key.request_header_version(api_version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + body.compute_size(api_version)?))
        .map_err(|e| enc_err(e.to_string()))?;
    let mut buf = BytesMut::with_capacity(LEN_PREFIX + size);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| enc_err(e.to_string()))?;
    body.encode(&mut buf, api_version)
        .map_err(|e| enc_err(e.to_string()))?;
    finish(buf, "request", api_version)
}

/// Writes the size prefix of a frame built after a zero placeholder.
fn finish(mut buf: BytesMut, what: &'static str, api_version: i16) -> Result<Bytes, FrameError> {
    let len = i32::try_from(buf.len() - LEN_PREFIX).map_err(|_| FrameError::Encode {
        what,
        api_version,
        reason: "frame longer than 2 GiB".to_owned(),
    })?;
    buf[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}
