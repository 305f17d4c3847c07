//! Length-prefixed framing: split whole Kafka frames off a read buffer.
//!
//! Every Kafka request and response is an `i32` big-endian size followed by
//! that many bytes. Frames are returned with their prefix so the proxy can
//! forward them untouched (pass-through by default).

use bytes::{Bytes, BytesMut};

use crate::FrameError;

/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;

/// Default largest frame payload accepted: 100 MiB, Kafka's own default for
/// `socket.request.max.bytes` (104 857 600), so anything a stock broker would
/// accept passes the proxy too.
pub const DEFAULT_MAX_FRAME: usize = 100 * 1024 * 1024;

/// The declared payload length, if the 4-byte prefix is there.
///
/// # Errors
/// [`FrameError::NegativeLength`] for a negative prefix.
pub fn peek_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(*prefix);
    usize::try_from(len)
        .map(Some)
        .map_err(|_| FrameError::NegativeLength { len })
}

/// Returns the next whole frame, prefix included, or `None` (consuming
/// nothing) if more bytes are needed.
///
/// The declared length is checked against `max_len` as soon as the 4-byte
/// prefix is present, before a single byte is reserved for the payload.
///
/// # Errors
/// [`FrameError::TooLarge`] when the declared length exceeds `max_len`, and
/// [`FrameError::NegativeLength`] for a negative one; the connection must
/// then be closed, because the stream can no longer be framed.
pub fn next_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = peek_len(buf)? else {
        return Ok(None);
    };
    if len > max_len {
        return Err(FrameError::TooLarge { len, max_len });
    }
    let total = LEN_PREFIX + len;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = i32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn whole_frame_keeps_its_prefix_and_leaves_the_rest() {
        let mut data = framed(b"abc");
        data.extend_from_slice(&[0, 0]);
        let mut buf = BytesMut::from(&data[..]);
        let frame = next_frame(&mut buf, 16).unwrap().unwrap();
        assert_eq!(&frame[..], &framed(b"abc")[..]);
        assert_eq!(&buf[..], &[0, 0]);
        assert_eq!(next_frame(&mut buf, 16).unwrap(), None);
        assert_eq!(buf.len(), 2, "an incomplete prefix is not consumed");
    }

    #[test]
    fn partial_payload_consumes_nothing() {
        let data = framed(b"abcdef");
        for cut in 0..data.len() {
            let mut buf = BytesMut::from(&data[..cut]);
            assert_eq!(next_frame(&mut buf, 16).unwrap(), None);
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn empty_payload_is_a_frame() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(next_frame(&mut buf, 0).unwrap().unwrap().len(), 4);
        assert!(buf.is_empty());
    }

    #[test]
    fn limit_is_inclusive() {
        let mut buf = BytesMut::from(&framed(&[7; 32])[..]);
        assert_eq!(next_frame(&mut buf, 32).unwrap().unwrap().len(), 36);
    }

    #[test]
    fn one_above_limit_is_refused_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&33i32.to_be_bytes()[..]);
        let cap = buf.capacity();
        assert_eq!(
            next_frame(&mut buf, 32),
            Err(FrameError::TooLarge {
                len: 33,
                max_len: 32
            })
        );
        assert_eq!(buf.capacity(), cap, "nothing reserved for a refused frame");
    }

    #[test]
    fn two_gib_declared_is_refused_before_reserving() {
        let mut buf = BytesMut::from(&i32::MAX.to_be_bytes()[..]);
        let err = next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert!(err.breaks_stream());
        assert!(buf.capacity() < 1024);
        assert_eq!(
            err.to_string(),
            "frame declares 2147483647 bytes, above the limit of 104857600 bytes"
        );
    }

    #[test]
    fn negative_length_is_refused() {
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(
            next_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::NegativeLength { len: -1 })
        );
    }
}
