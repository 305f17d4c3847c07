//! Request framing: whole, partial, pipelined, inline, and every limit
//! tested from both sides.

use bytes::{Bytes, BytesMut};
use cutover_redis::{FrameError, Limits, parse_request};

fn parse(input: &[u8], limits: &Limits) -> (Result<Option<Vec<Bytes>>, FrameError>, usize) {
    let mut buf = BytesMut::from(input);
    let r = parse_request(&mut buf, limits).map(|o| o.map(|r| r.args));
    (r, buf.len())
}

fn args(input: &[u8]) -> Vec<Bytes> {
    parse(input, &Limits::default())
        .0
        .expect("valid")
        .expect("whole")
}

#[test]
fn parses_a_resp_array_zero_copy() {
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\nrest"[..]);
    let req = parse_request(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(req.args, [&b"GET"[..], b"k\r\n"]);
    assert_eq!(req.name(), b"GET");
    assert_eq!(&req.raw[..], b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    assert_eq!(&buf[..], b"rest");
    let raw = req.raw.as_ptr_range();
    assert!(req.args.iter().all(|a| raw.contains(&a.as_ptr())));
}

#[test]
fn partial_requests_consume_nothing() {
    let whole = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    for cut in 0..whole.len() {
        let (r, left) = parse(&whole[..cut], &Limits::default());
        assert_eq!(r, Ok(None), "cut at {cut}");
        assert_eq!(left, cut, "cut at {cut}");
    }
}

#[test]
fn pipelines_parse_one_at_a_time() {
    let mut buf =
        BytesMut::from(&b"*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"[..]);
    let l = Limits::default();
    assert_eq!(
        parse_request(&mut buf, &l).unwrap().unwrap().args,
        [&b"PING"[..]]
    );
    assert_eq!(
        parse_request(&mut buf, &l).unwrap().unwrap().args,
        [&b"PING"[..]]
    );
    assert_eq!(
        parse_request(&mut buf, &l).unwrap().unwrap().args,
        [&b"ECHO"[..], b""]
    );
    assert_eq!(parse_request(&mut buf, &l).unwrap(), None);
    assert!(buf.is_empty());
}

#[test]
fn empty_frames_are_skipped_like_redis() {
    let (r, left) = parse(
        b"*0\r\n*-1\r\n\r\n   \r\n*1\r\n$4\r\nPING\r\n",
        &Limits::default(),
    );
    assert_eq!(r.unwrap().unwrap(), [&b"PING"[..]]);
    assert_eq!(left, 0);
    let (r, left) = parse(b"*0\r\n*1\r\n$4\r\nPI", &Limits::default());
    assert_eq!(r, Ok(None));
    assert_eq!(
        left, 10,
        "the skipped empty frame is consumed, the partial one is not"
    );
}

#[test]
fn inline_commands_become_resp() {
    let mut buf = BytesMut::from(&b"SET k \"a b\\x41\" 'c\\'d'\r\nGET k\n"[..]);
    let req = parse_request(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(req.args, [&b"SET"[..], b"k", b"a bA", b"c'd"]);
    assert_eq!(
        &req.raw[..],
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na bA\r\n$3\r\nc'd\r\n"
    );
    let raw = req.raw.as_ptr_range();
    assert!(req.args.iter().all(|a| raw.contains(&a.as_ptr())));
    assert_eq!(
        parse_request(&mut buf, &Limits::default())
            .unwrap()
            .unwrap()
            .args,
        [&b"GET"[..], b"k"]
    );
    assert_eq!(args(b"PING\n"), [&b"PING"[..]]);
    assert_eq!(parse(b"PING", &Limits::default()).0, Ok(None));
    assert_eq!(parse(b"PING\r", &Limits::default()).0, Ok(None));
}

#[test]
fn inline_unbalanced_quotes_are_malformed() {
    let (r, _) = parse(b"SET k \"abc\r\n", &Limits::default());
    let e = r.unwrap_err();
    assert!(matches!(e, FrameError::Malformed { .. }));
    assert_eq!(
        &e.client_reply()[..],
        b"-ERR Protocol error: unbalanced quotes in request\r\n"
    );
}

#[test]
fn bulk_limit_from_both_sides() {
    let l = Limits::default().with_max_bulk_len(4);
    assert_eq!(
        parse(b"*1\r\n$4\r\nPING\r\n", &l).0.unwrap().unwrap(),
        [&b"PING"[..]]
    );
    // At the limit but the data is missing: wait.
    assert_eq!(parse(b"*1\r\n$4\r\n", &l).0, Ok(None));
    // Over the limit: refused as soon as the header is complete.
    assert_eq!(
        parse(b"*1\r\n$5\r\n", &l).0,
        Err(FrameError::BulkTooLarge { len: 5, max: 4 })
    );
}

#[test]
fn default_bulk_limit_is_512_mib() {
    let l = Limits::default();
    assert_eq!(l.max_bulk_len, 512 * 1024 * 1024);
    // Exactly at the limit: only the header is here, so wait for the data.
    assert_eq!(parse(b"*1\r\n$536870912\r\n", &l).0, Ok(None));
    let e = parse(b"*1\r\n$1073741824\r\n", &l).0.unwrap_err();
    assert_eq!(
        e,
        FrameError::BulkTooLarge {
            len: 1_073_741_824,
            max: 536_870_912
        }
    );
    assert_eq!(
        e.to_string(),
        "bulk length 1073741824 exceeds the limit of 536870912 bytes"
    );
    assert_eq!(
        parse(b"*1\r\n$536870913\r\n", &l).0.unwrap_err(),
        FrameError::BulkTooLarge {
            len: 536_870_913,
            max: 536_870_912
        }
    );
}

#[test]
fn array_limit_from_both_sides() {
    let l = Limits::default().with_max_array_len(2);
    assert_eq!(args(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n").len(), 2);
    assert_eq!(parse(b"*2\r\n", &l).0, Ok(None));
    assert_eq!(
        parse(b"*3\r\n", &l).0,
        Err(FrameError::ArrayTooLarge { len: 3, max: 2 })
    );
    // Over Redis's own INT_MAX bound: Redis's words, whatever our limit.
    let e = parse(b"*2147483648\r\n", &Limits::default()).0.unwrap_err();
    assert_eq!(
        &e.client_reply()[..],
        b"-ERR Protocol error: invalid multibulk length\r\n"
    );
}

#[test]
fn inline_limit_from_both_sides() {
    let l = Limits::default().with_max_inline_len(8);
    assert_eq!(parse(b"PING 123\r\n", &l).0.unwrap().unwrap().len(), 2);
    assert_eq!(parse(b"PING 123\n", &l).0.unwrap().unwrap().len(), 2);
    assert_eq!(parse(b"PING 123\r", &l).0, Ok(None));
    assert_eq!(
        parse(b"PING 1234\r\n", &l).0,
        Err(FrameError::InlineTooLong { max: 8 })
    );
    assert_eq!(
        parse(b"PING 1234X", &l).0,
        Err(FrameError::InlineTooLong { max: 8 })
    );
    let long = vec![b'A'; 64 * 1024 + 2];
    let e = parse(&long, &Limits::default()).0.unwrap_err();
    assert_eq!(e, FrameError::InlineTooLong { max: 65536 });
    assert_eq!(
        e.to_string(),
        "inline command is longer than the limit of 65536 bytes"
    );
}

#[test]
fn malformed_requests_get_redis_words() {
    let l = Limits::default();
    let cases: [(&[u8], &[u8]); 12] = [
        (b"*x\r\n", b"invalid multibulk length"),
        (b"*01\r\n", b"invalid multibulk length"),
        (b"*+1\r\n", b"invalid multibulk length"),
        (b"* 1\r\n", b"invalid multibulk length"),
        (b"*2147483648\r\n", b"invalid multibulk length"),
        (b"*1\r\n$-1\r\n", b"invalid bulk length"),
        (b"*1\r\n$abc\r\n", b"invalid bulk length"),
        (b"*1\r\n$\r\n", b"invalid bulk length"),
        (b"*1\r\n$99999999999999999999\r\n", b"invalid bulk length"),
        (b"*1\r\n:1\r\n", b"expected '$', got ':'"),
        (b"*1\r\n\xff\r\n", b"expected '$', got '\xff'"),
        // A bulk header whose type byte is the line end itself (found by
        // fuzzing: it used to panic slicing the empty value).
        (b"*2\r\n$1\r\na\r\n\r1\r\n", b"expected '$', got '\r'"),
    ];
    for (bad, words) in cases {
        let e = parse(bad, &l).0.unwrap_err();
        let expected = [&b"-ERR Protocol error: "[..], words, b"\r\n"].concat();
        assert_eq!(
            e.client_reply(),
            expected,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long_header = [&b"*1"[..], &[b'1'; 70_000]].concat();
    assert_eq!(
        &parse(&long_header, &l).0.unwrap_err().client_reply()[..],
        b"-ERR Protocol error: too big mbulk count string\r\n"
    );
}

#[test]
fn what_redis_tolerates_is_tolerated() {
    // Negative counts are skipped like *0; the bytes after bulk data and
    // after a header's \r are skipped unread, as Redis does.
    assert_eq!(parse(b"*-2\r\n", &Limits::default()), (Ok(None), 0));
    assert_eq!(args(b"*1\r\n$4\r\nPINGXY"), [&b"PING"[..]]);
    assert_eq!(args(b"*1\rx$4\rxPING\r\n"), [&b"PING"[..]]);
    assert_eq!(parse(b"*1\rx", &Limits::default()).0, Ok(None));
    assert_eq!(parse(b"*1234567890123", &Limits::default()).0, Ok(None));
}

#[test]
fn errors_make_a_client_reply() {
    let e = FrameError::Malformed {
        reason: "invalid bulk length",
        offset: 4,
    };
    assert_eq!(
        &e.client_reply()[..],
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(
        &FrameError::BulkTooLarge { len: 9, max: 4 }.client_reply()[..],
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(
        &FrameError::InlineTooLong { max: 4 }.client_reply()[..],
        b"-ERR Protocol error: too big inline request\r\n"
    );
}
