//! Invariant checks on arbitrary input, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/kafka_*.rs`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so CI exercises exactly what the fuzzer does.
//!
//! Each function panics when an invariant is violated and returns quietly
//! otherwise; errors on garbage input are expected and fine.

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, FetchRequest, MetadataRequest, ProduceRequest};

use crate::{
    Batch, FrameError, batches, crc_is_valid, decode_request_body, next_frame, peek_request,
    set_base_offset, with_correlation_id,
};

/// Small frame limit, so the fuzzer reaches the limit with short inputs.
pub const SMALL_MAX_FRAME: usize = 4096;

/// Frames `data` with [`SMALL_MAX_FRAME`]; for each frame: it is the
/// declared length plus prefix, strict prefixes are incomplete, the header
/// peek stays inside the frame, a correlation id rewrite changes only those
/// bytes, and Metadata/Produce/Fetch bodies decode or fail without panicking.
///
/// # Panics
/// When an invariant is violated.
pub fn check_frames(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let frame = match next_frame(&mut buf, SMALL_MAX_FRAME) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                return;
            }
            Err(e) => {
                assert!(e.breaks_stream(), "framing error {e} must close the stream");
                assert_eq!(buf.len(), before);
                return;
            }
        };
        assert!(frame.len() >= 4 && frame.len() <= SMALL_MAX_FRAME + 4);
        assert_eq!(before - buf.len(), frame.len());
        for cut in 0..frame.len() {
            let mut part = BytesMut::from(&frame[..cut]);
            assert!(
                matches!(next_frame(&mut part, SMALL_MAX_FRAME), Ok(None)),
                "a {cut}-byte prefix of a {}-byte frame is not incomplete",
                frame.len()
            );
        }
        let header = match peek_request(&frame) {
            Ok(h) => h,
            Err(e) => {
                assert!(!e.breaks_stream(), "a header error does not break framing");
                assert!(!e.to_string().is_empty());
                continue;
            }
        };
        assert!(
            header.body_offset <= frame.len(),
            "body offset past the frame"
        );
        if let Some(r) = &header.client_id {
            assert!(r.start <= r.end && r.end <= header.body_offset);
        }
        let moved = with_correlation_id(&frame, !header.correlation_id).expect("header fits");
        let again = peek_request(&moved).expect("rewritten header peeks");
        assert_eq!(again.correlation_id, !header.correlation_id);
        assert_eq!(again.body_offset, header.body_offset);
        assert_eq!(&moved[header.body_offset..], &frame[header.body_offset..]);
        match header.key {
            ApiKey::Metadata => drop(decode_request_body::<MetadataRequest>(&frame, &header)),
            ApiKey::Produce => drop(decode_request_body::<ProduceRequest>(&frame, &header)),
            ApiKey::Fetch => drop(decode_request_body::<FetchRequest>(&frame, &header)),
            _ => {}
        }
    }
}

/// Iterates the batches of `data` as a records blob: whole batches tile the
/// blob from the start, a partial batch comes last, views stay in bounds,
/// rebasing every whole batch keeps each CRC verdict and moves only the
/// first 8 bytes.
///
/// # Panics
/// When an invariant is violated.
pub fn check_batches(data: &[u8]) {
    let mut expect_at = 0;
    let mut after_end = false;
    let mut wholes = Vec::new();
    for item in batches(data) {
        assert!(!after_end, "an item after a partial batch or an error");
        match item {
            Ok(Batch::Whole(view)) => {
                assert_eq!(
                    view.range().start,
                    expect_at,
                    "batches do not tile the blob"
                );
                assert_eq!(&data[view.range()], view.as_bytes());
                assert_eq!(view.magic(), 2);
                let _ = (view.last_offset(), view.compression(), view.record_count());
                expect_at = view.range().end;
                wholes.push((view.range(), view.crc_is_valid()));
            }
            Ok(Batch::Partial { offset, available }) => {
                assert_eq!(offset, expect_at);
                assert_eq!(
                    offset + available,
                    data.len(),
                    "a partial batch is the tail"
                );
                after_end = true;
            }
            Err(e) => {
                assert!(!matches!(e, FrameError::TooLarge { .. }));
                after_end = true;
            }
        }
    }
    let mut patched = data.to_vec();
    for (i, (range, crc_ok)) in wholes.iter().enumerate() {
        let base = i64::try_from(i).expect("small") * 1000 - 1;
        set_base_offset(&mut patched[range.clone()], base).expect("whole batch");
        assert_eq!(
            crc_is_valid(&patched[range.clone()]),
            *crc_ok,
            "base offset is outside the CRC"
        );
        assert_eq!(
            &patched[range.start + 8..range.end],
            &data[range.start + 8..range.end]
        );
    }
    let _ = set_base_offset(&mut patched, 5);
}
