//! Invariant checks on arbitrary input, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/redis_*.rs`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so CI exercises exactly what the fuzzer does.
//!
//! Each function panics when an invariant is violated and returns quietly
//! otherwise; errors on garbage input are expected and fine.

use bytes::{Bytes, BytesMut};

use crate::{
    Limits, ReplyScanner, decode_reply, keys, lookup, parse_request, reply_kind, reply_len,
};

/// Small limits, so the fuzzer reaches every limit with short inputs.
pub const SMALL_LIMITS: Limits = Limits {
    max_bulk_len: 1024,
    max_array_len: 64,
    max_inline_len: 256,
    max_nesting: 8,
};

/// Largest frame whose every strict prefix is re-checked (quadratic cost).
const PREFIX_CHECK_MAX: usize = 2048;

/// Parses `data` as a pipeline of requests with [`SMALL_LIMITS`], then for
/// each request: arguments are slices of `raw`, `raw` re-parses to the same
/// arguments, every strict prefix of its bytes is incomplete (never an
/// error, never consumed), and [`lookup`] + [`keys`] yield in-range indexes.
///
/// # Panics
/// When an invariant is violated.
pub fn check_requests(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        let req = match parse_request(&mut buf, &SMALL_LIMITS) {
            Ok(Some(req)) => req,
            Ok(None) => {
                assert!(
                    before.ends_with(&buf),
                    "an incomplete request consumed nothing but skipped frames"
                );
                return;
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return;
            }
        };
        let consumed = before.len() - buf.len();
        assert!(consumed > 0);
        assert!(
            !req.args.is_empty(),
            "a request has at least its command name"
        );
        let raw = req.raw.as_ptr_range();
        for a in &req.args {
            let r = a.as_ptr_range();
            assert!(
                a.is_empty() || (raw.start <= r.start && r.end <= raw.end),
                "argument outside raw"
            );
        }
        let mut again = BytesMut::from(&req.raw[..]);
        let unbounded = Limits {
            max_inline_len: usize::MAX,
            ..Limits::UNBOUNDED
        };
        let re = parse_request(&mut again, &unbounded)
            .expect("raw re-parses")
            .expect("raw is whole");
        assert_eq!(re.args, req.args, "raw re-parses to the same arguments");
        assert!(again.is_empty(), "raw is exactly one request");
        if consumed <= PREFIX_CHECK_MAX {
            for cut in 0..consumed {
                let mut part = BytesMut::from(&before[..cut]);
                let len = part.len();
                match parse_request(&mut part, &SMALL_LIMITS) {
                    Ok(None) => assert!(part.len() <= len),
                    other => {
                        panic!("prefix of {cut} bytes of a {consumed}-byte request gave {other:?}")
                    }
                }
            }
        }
        if let Some(spec) = lookup(&req.args)
            && let Ok(found) = keys(spec, &req.args)
        {
            for k in found {
                assert!(
                    k.index > 0 && k.index < req.args.len(),
                    "key index out of range"
                );
            }
        }
    }
}

/// Frames `data` as a stream of replies with [`SMALL_LIMITS`]; for each
/// whole frame: [`decode_reply`] and [`reply_kind`] do not panic, every
/// strict prefix is incomplete, and a [`ReplyScanner`] fed the frame in
/// growing chunks finds the same length.
///
/// # Panics
/// When an invariant is violated.
pub fn check_replies(data: &[u8]) {
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let n = match reply_len(rest, &SMALL_LIMITS) {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => return,
        };
        assert!(
            n > 0 && n <= rest.len(),
            "frame length {n} outside the buffer"
        );
        let frame = Bytes::copy_from_slice(&rest[..n]);
        let _ = decode_reply(&frame);
        let _ = reply_kind(&frame);
        if n <= PREFIX_CHECK_MAX {
            for cut in 0..n {
                assert!(
                    matches!(reply_len(&rest[..cut], &SMALL_LIMITS), Ok(None)),
                    "prefix of {cut} bytes of a {n}-byte reply is not incomplete"
                );
            }
        }
        let mut scanner = ReplyScanner::new();
        let mut end = 0;
        let found = loop {
            end = (end * 2 + 1).min(n);
            match scanner.scan(&rest[..end], &SMALL_LIMITS) {
                Ok(Some(found)) => break found,
                Ok(None) => assert!(end < n, "resumed scan stalled on a whole frame"),
                Err(e) => panic!("resumed scan failed where a fresh one succeeded: {e}"),
            }
        };
        assert_eq!(found, n, "resumed scan disagrees");
        pos += n;
    }
}
