//! Header peek: the API key, version, correlation id and client id of a
//! request, read straight from the frame without decoding the body, plus the
//! header-version rules that decide where a body starts.
//!
//! Routing needs only these fields for most requests; the original bytes are
//! then forwarded as they are (pass-through by default).

use std::ops::Range;

use kafka_protocol::messages::ApiKey;

use crate::FrameError;
use crate::frame::LEN_PREFIX;
use crate::wire::{i16_at, i32_at, skip_tagged_fields};

const WHAT: &str = "request header";
/// Offset of the client id in a request frame: prefix, key, version, correlation id.
const CLIENT_ID_AT: usize = LEN_PREFIX + 2 + 2 + 4;
/// Offset of the correlation id in a request frame.
pub(crate) const REQUEST_CORRELATION_AT: usize = LEN_PREFIX + 2 + 2;
/// Offset of the correlation id in a response frame.
pub(crate) const RESPONSE_CORRELATION_AT: usize = LEN_PREFIX;

/// The header of one request frame, as offsets into that frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The API key as sent (`key as i16`).
    pub api_key: i16,
    /// The same API key as kafka-protocol's enum (always known here).
    pub key: ApiKey,
    /// The API version the client chose.
    pub api_version: i16,
    /// The client's correlation id.
    pub correlation_id: i32,
    /// Request header version (1 or 2; 0 has no client id).
    pub header_version: i16,
    /// Where the client id's bytes are in the frame; `None` for a null client id.
    pub client_id: Option<Range<usize>>,
    /// Where the body starts in the frame (prefix included in the count).
    pub body_offset: usize,
}

impl RequestHeader {
    /// The client id's bytes within `frame` (the frame this header came from).
    #[must_use]
    pub fn client_id<'a>(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
        self.client_id.clone().and_then(|r| frame.get(r))
    }
}

/// The request header version for an API key and version, or `None` for an
/// API key kafka-protocol does not know.
#[must_use]
pub fn request_header_version(api_key: i16, api_version: i16) -> Option<i16> {
    ApiKey::try_from(api_key)
        .ok()
        .map(|k| k.request_header_version(api_version))
}

/// The response header version for an API key and version (0: correlation id
/// only; 1: plus tagged fields), or `None` for an unknown API key.
///
/// ApiVersions responses are always header v0, even at flexible versions, so
/// that a client that sent a version the broker does not know can still read
/// the error (KIP-511).
#[must_use]
pub fn response_header_version(api_key: i16, api_version: i16) -> Option<i16> {
    ApiKey::try_from(api_key)
        .ok()
        .map(|k| k.response_header_version(api_version))
}

/// Reads the request header at the start of `frame` (a whole frame, prefix
/// included) without touching the body.
///
/// # Errors
/// [`FrameError::Truncated`] / [`FrameError::Malformed`] when the header does
/// not fit the frame; [`FrameError::UnknownApiKey`] (carrying key, version and
/// correlation id) when kafka-protocol does not know the API key.
pub fn peek_request(frame: &[u8]) -> Result<RequestHeader, FrameError> {
    let (Some(api_key), Some(api_version), Some(correlation_id)) = (
        i16_at(frame, LEN_PREFIX),
        i16_at(frame, LEN_PREFIX + 2),
        i32_at(frame, REQUEST_CORRELATION_AT),
    ) else {
        return Err(FrameError::Truncated {
            what: WHAT,
            needed: CLIENT_ID_AT,
            available: frame.len(),
        });
    };
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Err(FrameError::UnknownApiKey {
            api_key,
            api_version,
            correlation_id,
        });
    };
    let header_version = key.request_header_version(api_version);
    let mut header = RequestHeader {
        api_key,
        key,
        api_version,
        correlation_id,
        header_version,
        client_id: None,
        body_offset: CLIENT_ID_AT,
    };
    if header_version == 0 {
        return Ok(header);
    }
    let Some(len) = i16_at(frame, CLIENT_ID_AT) else {
        return Err(FrameError::Truncated {
            what: WHAT,
            needed: CLIENT_ID_AT + 2,
            available: frame.len(),
        });
    };
    let start = CLIENT_ID_AT + 2;
    let mut pos = start;
    if len >= 0 {
        // len >= 0 was just checked.
        let end = start + len.unsigned_abs() as usize;
        if end > frame.len() {
            return Err(FrameError::Truncated {
                what: WHAT,
                needed: end,
                available: frame.len(),
            });
        }
        header.client_id = Some(start..end);
        pos = end;
    } else if len != -1 {
        return Err(FrameError::Malformed {
            what: WHAT,
            reason: "client id length below -1",
            offset: CLIENT_ID_AT,
        });
    }
    if header_version >= 2 {
        pos = skip_tagged_fields(frame, pos, WHAT)?;
    }
    header.body_offset = pos;
    Ok(header)
}

/// The body offset of a response frame with the given header version:
/// after the correlation id, and after the tagged fields for header v1.
///
/// # Errors
/// [`FrameError::Truncated`] / [`FrameError::Malformed`] when the header does
/// not fit the frame.
pub fn response_body_offset(frame: &[u8], header_version: i16) -> Result<usize, FrameError> {
    const WHAT: &str = "response header";
    let after = RESPONSE_CORRELATION_AT + 4;
    if frame.len() < after {
        return Err(FrameError::Truncated {
            what: WHAT,
            needed: after,
            available: frame.len(),
        });
    }
    if header_version >= 1 {
        skip_tagged_fields(frame, after, WHAT)
    } else {
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = i32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn v1_header_with_client_id() {
        // Metadata v1: header v1.
        let f = frame(&[0, 3, 0, 1, 0, 0, 0, 42, 0, 3, b'c', b'l', b'i', 0xAA]);
        let h = peek_request(&f).unwrap();
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (3, 1, 42));
        assert_eq!(h.header_version, 1);
        assert_eq!(h.client_id(&f), Some(&b"cli"[..]));
        assert_eq!(h.body_offset, 17);
        assert_eq!(h.key, ApiKey::Metadata);
    }

    #[test]
    fn v1_header_with_null_client_id() {
        let f = frame(&[0, 3, 0, 1, 0, 0, 0, 7, 0xff, 0xff]);
        let h = peek_request(&f).unwrap();
        assert_eq!(h.client_id, None);
        assert_eq!(h.body_offset, f.len());
    }

    #[test]
    fn v2_header_skips_tagged_fields() {
        // Metadata v9: header v2; one tagged field (tag 5, 2 bytes).
        let f = frame(&[0, 3, 0, 9, 0, 0, 0, 1, 0, 1, b'x', 1, 5, 2, 9, 9, 0xBB]);
        let h = peek_request(&f).unwrap();
        assert_eq!(h.header_version, 2);
        assert_eq!(h.client_id(&f), Some(&b"x"[..]));
        assert_eq!(&f[h.body_offset..], &[0xBB]);
    }

    #[test]
    fn unknown_api_key_keeps_the_correlation_id() {
        let f = frame(&[0x7f, 0x00, 0, 1, 0, 0, 1, 0, 0xff, 0xff]);
        let err = peek_request(&f).unwrap_err();
        assert_eq!(
            err,
            FrameError::UnknownApiKey {
                api_key: 0x7f00,
                api_version: 1,
                correlation_id: 256
            }
        );
        assert_eq!(
            err.to_string(),
            "request with correlation id 256 uses unknown API key 32512 (version 1)"
        );
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert!(matches!(
            peek_request(&frame(&[0, 3, 0, 1, 0, 0])),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            peek_request(&frame(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 5, b'a'])),
            Err(FrameError::Truncated { needed: 19, .. })
        ));
        assert!(matches!(
            peek_request(&frame(&[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xfe])),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn api_versions_responses_are_always_header_v0() {
        let key = ApiKey::ApiVersions as i16;
        for v in 0..=4 {
            assert_eq!(response_header_version(key, v), Some(0), "v{v}");
        }
        assert_eq!(request_header_version(key, 3), Some(2));
        assert_eq!(request_header_version(key, 2), Some(1));
        assert_eq!(response_header_version(ApiKey::Metadata as i16, 9), Some(1));
        assert_eq!(response_header_version(ApiKey::Metadata as i16, 8), Some(0));
        assert_eq!(response_header_version(-5, 0), None);
    }

    #[test]
    fn response_body_offsets() {
        let f = frame(&[0, 0, 0, 1, 0, 0xCC]);
        assert_eq!(response_body_offset(&f, 0).unwrap(), 8);
        assert_eq!(response_body_offset(&f, 1).unwrap(), 9);
        assert!(response_body_offset(&f[..6], 0).is_err());
    }
}
