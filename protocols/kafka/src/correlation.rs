//! Correlation id rewriting: the proxy gives upstream requests ids from its
//! own space and restores the client's id on the way back, copying the frame
//! once with four bytes replaced instead of re-encoding it.

use bytes::{Bytes, BytesMut};

use crate::FrameError;
use crate::header::{REQUEST_CORRELATION_AT, RESPONSE_CORRELATION_AT};
use crate::wire::i32_at;

fn replaced(frame: &[u8], at: usize, id: i32, what: &'static str) -> Result<Bytes, FrameError> {
    let mut copy = BytesMut::from(frame);
    set_at(&mut copy, at, id, what)?;
    Ok(copy.freeze())
}

fn set_at(frame: &mut [u8], at: usize, id: i32, what: &'static str) -> Result<(), FrameError> {
    let available = frame.len();
    let slot = frame.get_mut(at..at + 4).ok_or(FrameError::Truncated {
        what,
        needed: at + 4,
        available,
    })?;
    slot.copy_from_slice(&id.to_be_bytes());
    Ok(())
}

/// A copy of a request frame (prefix included) carrying correlation id `id`.
///
/// # Errors
/// [`FrameError::Truncated`] if the frame is too short to hold a request header.
pub fn with_correlation_id(frame: &[u8], id: i32) -> Result<Bytes, FrameError> {
    replaced(frame, REQUEST_CORRELATION_AT, id, "request header")
}

/// Sets the correlation id of a request frame (prefix included) in place.
///
/// # Errors
/// [`FrameError::Truncated`] if the frame is too short to hold a request header.
pub fn set_request_correlation_id(frame: &mut [u8], id: i32) -> Result<(), FrameError> {
    set_at(frame, REQUEST_CORRELATION_AT, id, "request header")
}

/// A copy of a response frame (prefix included) carrying correlation id `id`.
///
/// # Errors
/// [`FrameError::Truncated`] if the frame is too short to hold a response header.
pub fn response_with_correlation_id(frame: &[u8], id: i32) -> Result<Bytes, FrameError> {
    replaced(frame, RESPONSE_CORRELATION_AT, id, "response header")
}

/// Sets the correlation id of a response frame (prefix included) in place.
///
/// # Errors
/// [`FrameError::Truncated`] if the frame is too short to hold a response header.
pub fn set_response_correlation_id(frame: &mut [u8], id: i32) -> Result<(), FrameError> {
    set_at(frame, RESPONSE_CORRELATION_AT, id, "response header")
}

/// The correlation id of a response frame (prefix included), if it has one.
#[must_use]
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    i32_at(frame, RESPONSE_CORRELATION_AT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peek_request;

    #[test]
    fn request_id_is_replaced_and_nothing_else() {
        let frame = [0, 0, 0, 10, 0, 3, 0, 1, 0, 0, 0, 42, 0xff, 0xff];
        let out = with_correlation_id(&frame, -7).unwrap();
        assert_eq!(peek_request(&out).unwrap().correlation_id, -7);
        assert_eq!(&out[..8], &frame[..8]);
        assert_eq!(&out[12..], &frame[12..]);
        let mut inplace = frame;
        set_request_correlation_id(&mut inplace, -7).unwrap();
        assert_eq!(&inplace[..], &out[..]);
    }

    #[test]
    fn response_id_is_replaced() {
        let frame = [0, 0, 0, 5, 0, 0, 0, 9, 1];
        assert_eq!(response_correlation_id(&frame), Some(9));
        let out = response_with_correlation_id(&frame, 1234).unwrap();
        assert_eq!(response_correlation_id(&out), Some(1234));
        assert_eq!(out[8], 1);
    }

    #[test]
    fn short_frames_are_errors_not_panics() {
        assert!(with_correlation_id(&[0, 0, 0, 1], 1).is_err());
        assert!(response_with_correlation_id(&[0, 0, 0], 1).is_err());
        assert_eq!(response_correlation_id(&[0, 0, 0, 0, 1]), None);
    }
}
