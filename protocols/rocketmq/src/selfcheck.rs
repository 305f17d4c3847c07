//! Invariant checks on arbitrary input, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/rocketmq_*.rs`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`), so CI exercises exactly what the fuzzer does.
//!
//! Each function panics when an invariant is violated and returns quietly
//! otherwise; errors on garbage input are expected and fine.

use bytes::BytesMut;

use crate::peek::peek;
use crate::{
    ClusterInfo, Encoding, Frame, Header, LEN_PREFIX, Language, TopicRouteData, encode, next_frame,
    quote_integer_keys, split_frame,
};

/// Small frame limit, so the fuzzer reaches the limit with short inputs.
pub const SMALL_MAX_FRAME: usize = 4096;

/// Frames `data` with [`SMALL_MAX_FRAME`]. For each frame: its length is
/// the declared one, strict prefixes are incomplete, the body is the tail of
/// the raw bytes; a decoded header re-encodes in its own encoding to the
/// same header and body, and in the other encoding to the same header up to
/// what that encoding cannot carry; a header [`peek`] reads agrees with the
/// full decoder, and it reads none the decoder refuses. Framing errors consume nothing; header
/// errors consume exactly one frame.
///
/// # Panics
/// When an invariant is violated.
pub fn check_frames(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let peeked = {
            let mut copy = buf.clone();
            split_frame(&mut copy, SMALL_MAX_FRAME)
        };
        let frame = match next_frame(&mut buf, SMALL_MAX_FRAME) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                return;
            }
            Err(e) if e.breaks_stream() => {
                assert_eq!(buf.len(), before, "a framing error consumed bytes");
                assert!(!e.to_string().is_empty());
                return;
            }
            Err(e) => {
                let raw = peeked
                    .expect("split agrees with next_frame")
                    .expect("a header error follows a whole frame");
                assert_eq!(
                    before - buf.len(),
                    raw.len(),
                    "a header error consumes its frame"
                );
                assert!(!e.to_string().is_empty());
                assert!(
                    peek(&raw, PEEK_KEYS).is_none(),
                    "peek read a header parse refused"
                );
                continue;
            }
        };
        assert_eq!(before - buf.len(), frame.raw.len());
        assert!(frame.raw.len() >= 8 && frame.raw.len() <= SMALL_MAX_FRAME + LEN_PREFIX);
        assert!(frame.raw.ends_with(&frame.body));
        for cut in 0..frame.raw.len() {
            let mut part = BytesMut::from(&frame.raw[..cut]);
            assert!(
                matches!(next_frame(&mut part, SMALL_MAX_FRAME), Ok(None)),
                "a {cut}-byte prefix of a {}-byte frame is not incomplete",
                frame.raw.len()
            );
        }
        check_peek(&frame);
        check_reencode(&frame);
    }
}

/// Ext keys [`check_peek`] asks for: those the relay routes by.
const PEEK_KEYS: [&str; 6] = ["topic", "b", "a", "queueId", "n", "bname"];

/// A peek that answers agrees with the full decoder field by field.
fn check_peek(frame: &Frame) {
    let Some(p) = peek(&frame.raw, PEEK_KEYS) else {
        return;
    };
    let h = &frame.header;
    assert_eq!(
        (p.code, p.language, p.version, p.opaque, p.flag, p.encoding),
        (
            h.code,
            h.language,
            h.version,
            h.opaque,
            h.flag,
            frame.encoding
        ),
        "peek disagrees with the full decoder"
    );
    for (key, value) in PEEK_KEYS.iter().zip(p.values) {
        assert_eq!(value, h.ext(key), "peeked ext field {key}");
    }
    assert_eq!(&frame.raw[p.body_range(frame.raw.len())], &frame.body[..]);
}

fn check_reencode(frame: &Frame) {
    let same = reparse(&frame.header, &frame.body, frame.encoding);
    assert_eq!(
        same.header, frame.header,
        "header changed in its own encoding"
    );
    assert_eq!(same.body, frame.body);
    assert_eq!(same.encoding, frame.encoding);
    // Re-encoding is a fixed point after one pass.
    assert_eq!(
        encode(&same.header, &same.body, same.encoding).expect("small header"),
        same.raw
    );

    let other = match frame.encoding {
        Encoding::Json => Encoding::Binary,
        Encoding::Binary => Encoding::Json,
    };
    let crossed = reparse(&frame.header, &frame.body, other);
    assert_eq!(crossed.header, carried(&frame.header, other));
    assert_eq!(crossed.body, frame.body);
}

fn reparse(header: &Header, body: &[u8], encoding: Encoding) -> Frame {
    let bytes = encode(header, body, encoding).expect("headers from small frames encode");
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = next_frame(&mut buf, usize::MAX)
        .expect("an encoded frame decodes")
        .expect("an encoded frame is whole");
    assert!(buf.is_empty(), "encode wrote more than one frame");
    frame
}

/// What `encoding` can carry of `h`: binary has 16-bit code and version and
/// no empty remark; JSON names only known languages.
fn carried(h: &Header, encoding: Encoding) -> Header {
    let mut h = h.clone();
    match encoding {
        Encoding::Binary => {
            #[allow(clippy::cast_possible_truncation)] // what Java's (short) does
            {
                h.code = i32::from(h.code as i16);
                h.version = i32::from(h.version as i16);
            }
            if h.remark.as_deref() == Some("") {
                h.remark = None;
            }
        }
        Encoding::Json => {
            if h.language.name().is_none() {
                h.language = Language::OTHER;
            }
        }
    }
    h
}

/// Parses `data` as a route and as a cluster-info body. Neither may panic;
/// whatever parses re-encodes to standard JSON that parses back equal and
/// needs no key quoting (floats in unmodelled fields may move by an ulp:
/// serde_json's default float parser is not exactly round-trip); valid JSON passes the key-quoting pre-pass
/// unchanged; the pre-pass only ever adds quote characters.
///
/// # Panics
/// When an invariant is violated.
pub fn check_bodies(data: &[u8]) {
    let quoted = quote_integer_keys(data);
    assert!(quoted.len() >= data.len());
    let stripped: Vec<u8> = quoted.iter().copied().filter(|&b| b != b'"').collect();
    let original: Vec<u8> = data.iter().copied().filter(|&b| b != b'"').collect();
    assert_eq!(stripped, original, "the pre-pass changed more than quotes");
    if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok() {
        assert_eq!(&quoted[..], data, "valid JSON was rewritten");
    }
    if let Ok(route) = TopicRouteData::decode(data) {
        let json = route.encode();
        assert_eq!(&quote_integer_keys(&json)[..], &json[..]);
        let again = TopicRouteData::decode(&json).expect("own route");
        assert_same(&again, &route);
    }
    if let Ok(info) = ClusterInfo::decode(data) {
        let json = info.encode();
        assert_eq!(&quote_integer_keys(&json)[..], &json[..]);
        let again = ClusterInfo::decode(&json).expect("own cluster info");
        assert_same(&again, &info);
    }
}

fn assert_same<T: serde::Serialize + std::fmt::Debug>(a: &T, b: &T) {
    let va = serde_json::to_value(a).expect("serializes");
    let vb = serde_json::to_value(b).expect("serializes");
    assert!(
        close(&va, &vb),
        "round trip changed the body: {a:?} vs {b:?}"
    );
}

/// Equality of JSON values, with floats equal within a relative 1e-12.
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= x.abs().max(y.abs()) * 1e-12,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && close(vx, vy))
        }
        _ => a == b,
    }
}
