//! The header peek against the full decoder: on frames shaped like the ones
//! Apache's Java client and broker send (both encodings), on arbitrary
//! headers, and on malformed or unusual headers, where it must step aside
//! (`None`) rather than read something the full decoder would not.

use bytes::Bytes;
use cutover_rocketmq::{Encoding, FLAG_ONEWAY, Frame, Header, Language, RequestCode, encode, peek};
use proptest::prelude::*;

/// The keys the relay asks for on a send.
const KEYS: [&str; 4] = ["b", "a", "queueId", "n"];

/// A whole frame around `header` bytes in `encoding`, with `body`.
fn wrap(header: &[u8], encoding: Encoding, body: &[u8]) -> Bytes {
    let total = u32::try_from(4 + header.len() + body.len()).unwrap();
    let word = u32::from(encoding.code()) << 24 | u32::try_from(header.len()).unwrap();
    let mut out = total.to_be_bytes().to_vec();
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// A SEND_MESSAGE_V2 header as Apache's Java client 5.3 writes it with
/// fastjson: one-letter keys, the properties in `i` with \u0001/\u0002
/// separators escaped.
const JAVA_SEND_V2: &str = r#"{"code":310,"extFields":{"a":"bench-producer","b":"TopicTest","c":"TBW102","d":"4","e":"2","f":"0","g":"1765000000000","h":"0","i":"UNIQ_KEY\u00017F000001A1B218B4AAC2\u0002WAIT\u0001true\u0002TAGS\u0001TagA\u0002","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":1042,"serializeTypeCurrentRPC":"JSON","version":475}"#;

/// The broker's SEND_MESSAGE answer (JSON).
const JAVA_SEND_ANSWER: &str = r#"{"code":0,"extFields":{"queueId":"2","TRANSACTION_ID":"7F000001A1B218B4AAC2","queueOffset":"17","msgId":"7F00000100002A9F0000000000000AB1","MSG_REGION":"DefaultRegion","TRACE_ON":"true"},"flag":1,"language":"JAVA","opaque":1042,"serializeTypeCurrentRPC":"JSON","version":475}"#;

#[test]
fn reads_a_java_send_and_its_answer_in_place() {
    let raw = wrap(JAVA_SEND_V2.as_bytes(), Encoding::Json, b"hello");
    let p = peek(&raw, KEYS).expect("a Java send is read in place");
    let full = Frame::parse(raw.clone()).unwrap();
    assert_eq!(p.code, RequestCode::SEND_MESSAGE_V2);
    assert_eq!(p.opaque, 1042);
    assert_eq!(p.version, 475);
    assert_eq!(p.language, Language::JAVA);
    assert!(!p.is_response() && !p.is_oneway());
    assert_eq!(
        p.values,
        [
            Some("TopicTest"),
            Some("bench-producer"),
            None,
            Some("broker-a")
        ]
    );
    assert_eq!(&raw[p.body_range(raw.len())], b"hello");
    assert_eq!(full.header.ext("b"), Some("TopicTest"));

    let raw = wrap(JAVA_SEND_ANSWER.as_bytes(), Encoding::Json, b"");
    let p = peek(&raw, ["queueId", "b"]).unwrap();
    assert!(p.is_response());
    assert_eq!((p.code, p.opaque), (0, 1042));
    assert_eq!(p.values, [Some("2"), None]);
}

#[test]
fn reads_the_same_send_in_the_binary_encoding() {
    let json = Frame::parse(wrap(JAVA_SEND_V2.as_bytes(), Encoding::Json, b"x")).unwrap();
    let mut header = json.header.clone();
    header.flag = FLAG_ONEWAY;
    let raw = encode(&header, b"x", Encoding::Binary).unwrap();
    let p = peek(&raw, KEYS).unwrap();
    assert_eq!(p.encoding, Encoding::Binary);
    assert!(p.is_oneway());
    assert_eq!(
        p.values,
        [
            Some("TopicTest"),
            Some("bench-producer"),
            None,
            Some("broker-a")
        ]
    );
    assert_eq!(&raw[p.body_range(raw.len())], b"x");
}

/// Headers the full decoder refuses: the peek must not read them either.
#[test]
fn steps_aside_for_every_header_the_decoder_refuses() {
    let json = [
        &br#"{"code":11,"code":34}"#[..],
        br#"{"extFields":{"b":"a","b":"b"}}"#,
        br#"{"extFields":{"x":"a","x":null}}"#,
        br#"{"extFields":{"q":1.0}}"#,
        br#"{"extFields":{"q":[1]}}"#,
        br#"{"extFields":[]}"#,
        br#"{"language":"SWIFT"}"#,
        br#"{"language":34}"#,
        br#"{"Code":1}"#,
        br#"{"remark":5}"#,
        br#"{"code":"310"}"#,
        br#"{"code":1} x"#,
        br#"{"code":1"#,
        b"",
        b"[]",
    ];
    for bad in json {
        let raw = wrap(bad, Encoding::Json, b"");
        assert!(
            Frame::parse(raw.clone()).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert!(
            peek(&raw, KEYS).is_none(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut good = Header::request(RequestCode::SEND_MESSAGE_V2, 3);
    good.set_ext("b", "T");
    good.set_ext("a", "g");
    let ok = encode(&good, b"", Encoding::Binary).unwrap();
    let header = ok[8..].to_vec();
    let mut cases: Vec<Vec<u8>> = vec![
        header[..12].to_vec(),               // shorter than the fixed part
        header[..20].to_vec(),               // ext length cut
        header[..header.len() - 1].to_vec(), // last value cut
    ];
    let mut dup = good.clone();
    dup.ext_fields.push(("b".into(), "U".into()));
    cases.push(encode(&dup, b"", Encoding::Binary).unwrap()[8..].to_vec());
    let mut negative_key = header.clone();
    negative_key[21..23].copy_from_slice(&(-1i16).to_be_bytes());
    cases.push(negative_key);
    let mut long_remark = header.clone();
    long_remark[13..17].copy_from_slice(&i32::MAX.to_be_bytes());
    cases.push(long_remark);
    for bad in cases {
        let raw = wrap(&bad, Encoding::Binary, b"");
        assert!(Frame::parse(raw.clone()).is_err(), "{bad:?}");
        assert!(peek(&raw, KEYS).is_none(), "{bad:?}");
    }
    // Not one whole frame, or an unknown serialize type.
    assert!(peek(&ok[..ok.len() - 1], KEYS).is_none());
    let mut extra = ok.to_vec();
    extra.push(0);
    assert!(peek(&extra, KEYS).is_none());
    let mut unknown = ok.to_vec();
    unknown[4] = 7;
    assert!(peek(&unknown, KEYS).is_none());
    let mut short = ok.to_vec();
    short[..4].copy_from_slice(&3i32.to_be_bytes());
    assert!(peek(&short, KEYS).is_none());
}

/// Well-formed headers the peek does not read in place: the full decoder
/// reads them, the peek leaves them to it.
#[test]
fn leaves_unusual_but_valid_headers_to_the_decoder() {
    for unusual in [
        &br#"{"extFields":{"b":"T\u0041"}}"#[..], // asked value escaped
        br#"{"extFields":{"queueId":3}}"#,        // asked value an integer
        br#"{"extFields":{"other":3}}"#,          // integer, not asked
        br#"{"extFields":{"b\u0041":"x"}}"#,      // escaped key
        br#"{"code":1,"custom":[1,2]}"#,          // unknown top-level key
    ] {
        let raw = wrap(unusual, Encoding::Json, b"");
        assert!(
            Frame::parse(raw.clone()).is_ok(),
            "{}",
            String::from_utf8_lossy(unusual)
        );
        assert!(
            peek(&raw, KEYS).is_none(),
            "{}",
            String::from_utf8_lossy(unusual)
        );
    }
    // Escapes and booleans in values nobody asked for are read in place.
    let raw = wrap(
        br#"{"code":10,"remark":"a\"b","extFields":{"i":"\u0001","k":true,"z":null,"b":"T"}}"#,
        Encoding::Json,
        b"",
    );
    assert_eq!(peek(&raw, KEYS).unwrap().values[0], Some("T"));
    // A binary key that is not UTF-8.
    let mut h = Header::request(10, 1);
    h.set_ext("kk", "v");
    let mut raw = encode(&h, b"", Encoding::Binary).unwrap().to_vec();
    let key_at = 8 + 21 + 2;
    raw[key_at] = 0xff;
    let raw = Bytes::from(raw);
    assert!(Frame::parse(raw.clone()).is_ok());
    assert!(peek(&raw, KEYS).is_none());
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<i16>(),
        0u8..14,
        any::<i16>(),
        any::<i32>(),
        any::<i32>(),
        proptest::option::of("\\PC{1,20}"),
        proptest::collection::btree_map("[a-z]{1,3}|b|a|n|queueId", "\\PC{0,20}", 0..8),
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
    /// Every header the encoder writes is read in place, and the peek
    /// agrees with the full decoder field by field.
    #[test]
    fn agrees_with_the_full_decoder(h in header(), body in proptest::collection::vec(any::<u8>(), 0..32)) {
        for enc in [Encoding::Json, Encoding::Binary] {
            let raw = encode(&h, &body, enc).unwrap();
            let full = Frame::parse(raw.clone()).unwrap();
            let Some(p) = peek(&raw, KEYS) else {
                // Only an escaped asked value may send it to the decoder.
                let escaped = |v: &str| v.chars().any(|c| c < ' ' || c == '"' || c == '\\');
                prop_assert!(enc == Encoding::Json && KEYS.iter().any(|k| full.header.ext(k).is_some_and(escaped)));
                continue;
            };
            prop_assert_eq!((p.code, p.language, p.version, p.opaque, p.flag), (full.header.code, full.header.language, full.header.version, full.header.opaque, full.header.flag));
            for (key, value) in KEYS.iter().zip(p.values) {
                prop_assert_eq!(value, full.header.ext(key));
            }
            prop_assert_eq!(&raw[p.body_range(raw.len())], &full.body[..]);
        }
    }

    /// Arbitrary bytes: whatever the peek reads, the decoder reads alike.
    #[test]
    fn never_reads_what_the_decoder_refuses(header in proptest::collection::vec(any::<u8>(), 0..64), binary in any::<bool>()) {
        let enc = if binary { Encoding::Binary } else { Encoding::Json };
        let raw = wrap(&header, enc, b"");
        if let Some(p) = peek(&raw, KEYS) {
            let full = Frame::parse(raw.clone()).expect("the decoder reads what the peek read");
            prop_assert_eq!((p.code, p.opaque, p.flag), (full.header.code, full.header.opaque, full.header.flag));
            for (key, value) in KEYS.iter().zip(p.values) {
                prop_assert_eq!(value, full.header.ext(key));
            }
        }
    }
}
