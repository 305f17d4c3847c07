//! Property tests: codec round-trips and no panics on arbitrary bytes.

use bytes::{Bytes, BytesMut};
use cutover_redis::{Limits, decode_reply, encode, parse_request, reply_len, selfcheck};
use proptest::prelude::*;

/// A RESP2 or RESP3 reply frame, encoded by hand so the generator does not
/// share code with the scanner under test.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let line = "[a-zA-Z0-9 _.:-]{0,12}";
    let leaf: BoxedStrategy<Vec<u8>> = prop_oneof![
        line.prop_map(|s| format!("+{s}\r\n").into_bytes()),
        line.prop_map(|s| format!("-ERR {s}\r\n").into_bytes()),
        any::<i64>().prop_map(|i| format!(":{i}\r\n").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
            let mut v = format!("${}\r\n", b.len()).into_bytes();
            v.extend_from_slice(&b);
            v.extend_from_slice(b"\r\n");
            v
        }),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"_\r\n".to_vec()),
        any::<bool>().prop_map(|b| if b {
            b"#t\r\n".to_vec()
        } else {
            b"#f\r\n".to_vec()
        }),
        (-1e6f64..1e6).prop_map(|d| format!(",{d}\r\n").into_bytes()),
        "[0-9]{1,40}".prop_map(|s| format!("({s}\r\n").into_bytes()),
        line.prop_map(|s| format!("={}\r\ntxt:{s}\r\n", s.len() + 4).into_bytes()),
        line.prop_map(|s| format!("!{}\r\n{s}\r\n", s.len()).into_bytes()),
    ]
    .boxed();
    // redis-protocol keeps map keys and set members in hash collections,
    // so it cannot decode aggregates (or doubles) in those places; Redis
    // never sends them there.
    let key = prop_oneof![
        line.prop_map(|s| format!("+{s}\r\n").into_bytes()),
        any::<i64>().prop_map(|i| format!(":{i}\r\n").into_bytes()),
        "[a-z]{0,8}".prop_map(|s| format!("${}\r\n{s}\r\n", s.len()).into_bytes()),
    ]
    .boxed();
    leaf.prop_recursive(4, 48, 6, move |inner| {
        let items = proptest::collection::vec(inner.clone(), 0..6);
        prop_oneof![
            (prop_oneof![Just(b'*'), Just(b'>')], items.clone()).prop_map(|(kind, items)| {
                let mut v = format!("{}{}\r\n", kind as char, items.len()).into_bytes();
                items.iter().for_each(|i| v.extend_from_slice(i));
                v
            }),
            proptest::collection::vec(key.clone(), 0..6).prop_map(|items| {
                let mut v = format!("~{}\r\n", items.len()).into_bytes();
                items.iter().for_each(|i| v.extend_from_slice(i));
                v
            }),
            proptest::collection::vec((key.clone(), inner.clone()), 0..4).prop_map(|pairs| {
                let mut v = format!("%{}\r\n", pairs.len()).into_bytes();
                for (k, val) in &pairs {
                    v.extend_from_slice(k);
                    v.extend_from_slice(val);
                }
                v
            }),
            (
                proptest::collection::vec((key.clone(), inner.clone()), 0..3),
                inner
            )
                .prop_map(|(pairs, value)| {
                    let mut v = format!("|{}\r\n", pairs.len()).into_bytes();
                    for (k, val) in &pairs {
                        v.extend_from_slice(k);
                        v.extend_from_slice(val);
                    }
                    v.extend_from_slice(&value);
                    v
                }),
        ]
    })
}

proptest! {
    #[test]
    fn request_round_trips_encode_command(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..16)) {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let raw = encode::command(&refs);
        let mut buf = BytesMut::from(&raw[..]);
        buf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let req = parse_request(&mut buf, &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(&req.raw, &raw);
        prop_assert_eq!(req.args.len(), args.len());
        for (a, b) in req.args.iter().zip(&args) {
            prop_assert_eq!(&a[..], &b[..]);
        }
        prop_assert_eq!(&buf[..], b"*1\r\n$4\r\nPING\r\n");
        for cut in 0..raw.len() {
            let mut part = BytesMut::from(&raw[..cut]);
            prop_assert_eq!(parse_request(&mut part, &Limits::default()), Ok(None));
            prop_assert_eq!(part.len(), cut);
        }
    }

    #[test]
    fn reply_len_finds_the_end_of_any_frame(f in frame()) {
        prop_assert_eq!(reply_len(&f, &Limits::default()), Ok(Some(f.len())));
        for cut in 0..f.len() {
            prop_assert_eq!(reply_len(&f[..cut], &Limits::default()), Ok(None), "cut at {}", cut);
        }
        let mut two = f.clone();
        two.extend_from_slice(&f);
        prop_assert_eq!(reply_len(&two, &Limits::default()), Ok(Some(f.len())));
    }

    #[test]
    fn generated_frames_decode(f in frame()) {
        // RESP2 nulls inside RESP3-only aggregates are a mix no server sends.
        let resp2_null = f.windows(3).any(|w| w == b"-1\r");
        let resp3_only = f.iter().any(|b| b"%~>|_#,(=!".contains(b));
        if resp2_null && resp3_only {
            return Ok(());
        }
        let r = decode_reply(&Bytes::from(f.clone()));
        prop_assert!(r.is_ok(), "{:?}: {:?}", String::from_utf8_lossy(&f), r);
    }

    #[test]
    fn parse_request_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        selfcheck::check_requests(&data);
    }

    #[test]
    fn parse_request_never_panics_on_resp_like_bytes(data in "[*$:+\\-0-9\r\n a-z\"'\\\\]{0,128}") {
        selfcheck::check_requests(data.as_bytes());
    }

    #[test]
    fn reply_framing_never_panics(data in "[*$%~>|_#,(=!:+\\-?0-9\r\na-z]{0,128}") {
        selfcheck::check_replies(data.as_bytes());
    }
}
