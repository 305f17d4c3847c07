//! Reply framing, classification and full decoding.

use bytes::Bytes;
use cutover_redis::{
    FrameError, Limits, ReplyFrame, ReplyKind, ReplyScanner, decode_reply, reply_kind, reply_len,
};

fn len(b: &[u8]) -> Result<Option<usize>, FrameError> {
    reply_len(b, &Limits::default())
}

/// Every listed frame is whole, and every strict prefix is incomplete.
fn assert_frames(frames: &[&[u8]]) {
    for f in frames {
        assert_eq!(len(f), Ok(Some(f.len())), "{}", String::from_utf8_lossy(f));
        for cut in 0..f.len() {
            assert_eq!(
                len(&f[..cut]),
                Ok(None),
                "{} cut at {cut}",
                String::from_utf8_lossy(f)
            );
        }
        let mut with_tail = f.to_vec();
        with_tail.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(len(&with_tail), Ok(Some(f.len())));
    }
}

#[test]
fn resp2_frames() {
    assert_frames(&[
        b"+OK\r\n",
        b"-ERR unknown command\r\n",
        b":-42\r\n",
        b"$5\r\nhe\r\no\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:1\r\n*0\r\n",
    ]);
}

#[test]
fn resp3_frames() {
    assert_frames(&[
        b"_\r\n",
        b",3.14\r\n",
        b",-inf\r\n",
        b"#t\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n%1\r\n:1\r\n~0\r\n",
        b"~2\r\n+a\r\n+b\r\n",
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:1\r\n:2\r\n",
        b"|0\r\n+OK\r\n",
        b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
        b"%0\r\n",
    ]);
}

#[test]
fn scanner_resumes_across_reads() {
    let frame = b"*3\r\n$5\r\nhello\r\n%1\r\n+k\r\n*2\r\n:1\r\n:2\r\n_\r\n";
    let mut s = ReplyScanner::new();
    for cut in 0..frame.len() {
        assert_eq!(
            s.scan(&frame[..cut], &Limits::default()),
            Ok(None),
            "cut at {cut}"
        );
    }
    assert_eq!(s.scan(frame, &Limits::default()), Ok(Some(frame.len())));
    assert_eq!(s.scan(frame, &Limits::default()), Ok(Some(frame.len())));
    s.reset();
    assert_eq!(s.scan(b"+OK\r\n", &Limits::default()), Ok(Some(5)));
}

#[test]
fn bulk_limit_from_both_sides() {
    let l = Limits::default().with_max_bulk_len(3);
    assert_eq!(reply_len(b"$3\r\nabc\r\n", &l), Ok(Some(9)));
    assert_eq!(reply_len(b"$3\r\n", &l), Ok(None));
    assert_eq!(
        reply_len(b"$4\r\n", &l),
        Err(FrameError::BulkTooLarge { len: 4, max: 3 })
    );
    assert_eq!(
        reply_len(b"!4\r\n", &l),
        Err(FrameError::BulkTooLarge { len: 4, max: 3 })
    );
    assert_eq!(
        len(b"$1073741824\r\n"),
        Err(FrameError::BulkTooLarge {
            len: 1 << 30,
            max: 1 << 29
        })
    );
}

#[test]
fn aggregate_limit_from_both_sides() {
    let l = Limits::default().with_max_array_len(2);
    assert_eq!(reply_len(b"*2\r\n:1\r\n:2\r\n", &l), Ok(Some(12)));
    assert_eq!(
        reply_len(b"*3\r\n", &l),
        Err(FrameError::ArrayTooLarge { len: 3, max: 2 })
    );
    assert_eq!(
        reply_len(b"%3\r\n", &l),
        Err(FrameError::ArrayTooLarge { len: 3, max: 2 })
    );
    assert!(matches!(
        len(b"*2147483648\r\n"),
        Err(FrameError::ArrayTooLarge { .. })
    ));
}

#[test]
fn replies_nest_without_a_depth_limit() {
    let nested = |depth: usize| {
        let mut v = b"*1\r\n".repeat(depth);
        v.extend_from_slice(b":1\r\n");
        v
    };
    // The nesting limit bounds only the full decoder, never framing.
    let l = Limits::default().with_max_nesting(3);
    assert_eq!(reply_len(&nested(3), &l), Ok(Some(16)));
    assert_eq!(reply_len(&nested(4), &l), Ok(Some(20)));
    for depth in [31, 32, 33, 100, 5000] {
        assert_eq!(len(&nested(depth)), Ok(Some(depth * 4 + 4)), "{depth}");
    }
    // Resuming across the inline/heap boundary, and siblings after a deep branch.
    let mut deep = b"*2\r\n".to_vec();
    deep.extend_from_slice(&nested(40));
    deep.extend_from_slice(&nested(40));
    let mut scanner = ReplyScanner::new();
    for cut in (0..deep.len()).step_by(7) {
        assert_eq!(scanner.scan(&deep[..cut], &Limits::default()), Ok(None));
    }
    assert_eq!(
        scanner.scan(&deep, &Limits::default()),
        Ok(Some(deep.len()))
    );
    assert_eq!(scanner.nesting(), 41);
}

#[test]
fn line_limit_from_both_sides() {
    let l = Limits::default().with_max_inline_len(4);
    assert_eq!(reply_len(b"+1234\r\n", &l), Ok(Some(7)));
    assert_eq!(reply_len(b"+1234", &l), Ok(None));
    assert_eq!(
        reply_len(b"+12345", &l),
        Err(FrameError::LineTooLong { offset: 1, max: 4 })
    );
}

#[test]
fn malformed_replies_are_refused() {
    for bad in [
        &b"?\r\n"[..],
        b"$-2\r\n",
        b"*-2\r\n",
        b"%-1\r\n",
        b"!-1\r\n",
        b"$x\r\n",
        b"$3\r\nabcd\r\n",
        b"+OK\rX",
        b"*1\r\n\r\n",
    ] {
        assert!(
            matches!(len(bad), Err(FrameError::Malformed { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        len(b"$?\r\n;1\r\na\r\n;0\r\n"),
        Err(FrameError::Unsupported { .. })
    ));
    assert!(matches!(
        len(b"*?\r\n"),
        Err(FrameError::Unsupported { .. })
    ));
}

#[test]
fn kinds() {
    assert_eq!(reply_kind(b">2\r\n+a\r\n+b\r\n"), ReplyKind::Push);
    assert_eq!(reply_kind(b"-ERR x\r\n"), ReplyKind::Error);
    assert_eq!(reply_kind(b"!1\r\nx\r\n"), ReplyKind::Error);
    assert_eq!(reply_kind(b"+OK\r\n"), ReplyKind::Other);
    assert_eq!(
        reply_kind(b"|1\r\n+a\r\n+b\r\n>1\r\n+c\r\n"),
        ReplyKind::Push
    );
    assert_eq!(reply_kind(b"|1\r\n+a\r\n+b\r\n-ERR\r\n"), ReplyKind::Error);
    assert_eq!(reply_kind(b""), ReplyKind::Other);
}

fn decode(b: &'static [u8]) -> ReplyFrame {
    decode_reply(&Bytes::from_static(b))
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(b)))
}

#[test]
fn decodes_resp2_and_resp3() {
    assert!(
        matches!(decode(b"+OK\r\n"), ReplyFrame::SimpleString { ref data, .. } if data == "OK")
    );
    assert!(matches!(
        decode(b":7\r\n"),
        ReplyFrame::Number { data: 7, .. }
    ));
    assert!(matches!(decode(b"$-1\r\n"), ReplyFrame::Null));
    assert!(matches!(decode(b"*-1\r\n"), ReplyFrame::Null));
    assert!(matches!(decode(b"_\r\n"), ReplyFrame::Null));
    match decode(b"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n") {
        ReplyFrame::Array { data, .. } => {
            assert!(matches!(&data[0], ReplyFrame::BlobString { data, .. } if data == "a"));
            assert!(matches!(data[1], ReplyFrame::Null));
            assert!(matches!(data[2], ReplyFrame::Number { data: 1, .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(decode(b"%1\r\n+k\r\n:1\r\n"), ReplyFrame::Map { ref data, .. } if data.len() == 1)
    );
    assert!(
        matches!(decode(b">2\r\n+a\r\n+b\r\n"), ReplyFrame::Push { ref data, .. } if data.len() == 2)
    );
    assert!(matches!(
        decode(b"-ERR x\r\n"),
        ReplyFrame::SimpleError { .. }
    ));
}

#[test]
fn decode_refuses_partial_trailing_and_deep() {
    assert!(matches!(
        decode_reply(&Bytes::from_static(b"$3\r\nab")),
        Err(FrameError::Decode(_))
    ));
    assert!(matches!(
        decode_reply(&Bytes::from_static(b"+OK\r\n+OK\r\n")),
        Err(FrameError::Decode(_))
    ));
    let mut deep = b"*1\r\n".repeat(40);
    deep.extend_from_slice(b":1\r\n");
    assert!(matches!(
        decode_reply(&Bytes::from(deep)),
        Err(FrameError::TooDeep { .. })
    ));
}
