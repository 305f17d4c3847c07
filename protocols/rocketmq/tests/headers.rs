//! Header round trips through whole frames, in both encodings, against
//! bytes real peers send, and as properties over arbitrary headers.

use bytes::BytesMut;
use cutover_rocketmq::{
    DEFAULT_MAX_FRAME, Encoding, FLAG_ONEWAY, Header, Language, RequestCode, ResponseCode, encode,
    next_frame,
};
use proptest::prelude::*;

/// A Java 4.9.x broker's answer to UPDATE_BROKER_CONFIG as captured in the
/// public CVE-2023-33246 write-ups: `0x63` total, JSON type, 0x5f header.
#[test]
fn decodes_a_captured_java_response_frame() {
    let header = br#"{"code":0,"flag":1,"language":"JAVA","opaque":0,"serializeTypeCurrentRPC":"JSON","version":403}"#;
    let mut wire = vec![0, 0, 0, 0x63, 0, 0, 0, 0x5f];
    wire.extend_from_slice(header);
    assert_eq!(header.len(), 0x5f);
    let f = next_frame(&mut BytesMut::from(&wire[..]), DEFAULT_MAX_FRAME)
        .unwrap()
        .unwrap();
    assert_eq!(f.encoding, Encoding::Json);
    assert!(f.header.is_response());
    assert_eq!(f.header.code, ResponseCode::SUCCESS);
    assert_eq!(f.header.version, 403);
    assert!(f.body.is_empty());
}

#[test]
fn answers_go_back_in_the_peer_encoding_with_opaque_kept() {
    for enc in [Encoding::Json, Encoding::Binary] {
        let mut req = Header::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 77);
        req.language = Language::CPP;
        req.set_ext("topic", "TopicTest");
        let wire = encode(&req, b"", enc).unwrap();
        let got = next_frame(&mut BytesMut::from(&wire[..]), DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        assert_eq!(got.header, req);
        let answer = Header::response(ResponseCode::TOPIC_NOT_EXIST, got.header.opaque, None);
        let wire = encode(&answer, b"{}", got.encoding).unwrap();
        assert_eq!(wire[4], enc.code());
        let back = next_frame(&mut BytesMut::from(&wire[..]), DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        assert_eq!(back.header.opaque, 77);
        assert!(back.header.is_response() && !back.header.is_oneway());
        assert_eq!(&back.body[..], b"{}");
    }
}

#[test]
fn json_always_carries_the_serialize_type_rust_servers_require() {
    let mut h = Header::request(RequestCode::HEART_BEAT, 1);
    h.flag = FLAG_ONEWAY;
    let wire = encode(&h, b"", Encoding::Json).unwrap();
    let text = std::str::from_utf8(&wire[8..]).unwrap();
    assert!(
        text.contains(r#""serializeTypeCurrentRPC":"JSON""#),
        "{text}"
    );
}

#[test]
fn ext_helpers_edit_in_place() {
    let mut h = Header::request(RequestCode::SEND_MESSAGE_V2, 1);
    h.set_ext("a", "g");
    h.set_ext("n", "broker-a%target");
    h.set_ext("b", "T");
    h.set_ext("n", "broker-a");
    assert_eq!(h.ext("n"), Some("broker-a"));
    assert_eq!(h.ext_fields[1].0, "n", "position kept");
    assert_eq!(h.remove_ext("a").as_deref(), Some("g"));
    assert_eq!(h.ext("a"), None);
    assert!(RequestCode::is_send(h.code));
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<i16>(),
        0u8..14,
        any::<i16>(),
        any::<i32>(),
        any::<i32>(),
        proptest::option::of("\\PC{1,20}"),
        proptest::collection::btree_map("[a-zA-Z]{1,8}", "\\PC{0,20}", 0..6),
    )
        .prop_map(|(code, lang, version, opaque, flag, remark, ext)| Header {
            code: code.into(),
            language: Language(lang),
            version: version.into(),
            opaque,
            flag,
            remark,
            ext_fields: ext.into_iter().collect(),
        })
}

proptest! {
    #[test]
    fn every_header_round_trips_in_both_encodings(h in header(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
        for enc in [Encoding::Json, Encoding::Binary] {
            let wire = encode(&h, &body, enc).unwrap();
            let mut buf = BytesMut::from(&wire[..]);
            let f = next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&f.header, &h);
            prop_assert_eq!(&f.body[..], &body[..]);
            prop_assert_eq!(f.encoding, enc);
        }
    }
}

/// The fuzzer's crash (a JSON `language` code with no name re-encoded as
/// another language) and its kin: each whole frame is refused with a reason
/// naming what is ambiguous, and consumed, so the stream stays in sync.
#[test]
fn ambiguous_headers_from_the_corpus_are_refused_with_a_reason() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/rocketmq_frame");
    for (file, why) in [
        (
            "crash_json_language_code_without_name",
            "language code 34 has no name",
        ),
        ("json_duplicate_top_key", r#"key "code" appears twice"#),
        (
            "json_duplicate_ext_key",
            r#"ext field "topic" appears twice"#,
        ),
        ("json_fractional_ext_value", "is fractional"),
        ("binary_duplicate_ext_key", "ext key appears twice"),
    ] {
        let wire = std::fs::read(dir.join(file)).unwrap();
        let mut buf = BytesMut::from(&wire[..]);
        let err = next_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(err.to_string().contains(why), "{file}: {err}");
        assert!(!err.breaks_stream(), "{file}");
        assert!(buf.is_empty(), "{file}: the bad frame was not consumed");
    }
}
