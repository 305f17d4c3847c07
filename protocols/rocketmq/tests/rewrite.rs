//! The in-place value rewrite against the full decoder and encoder: the
//! rewritten frame must decode to the header `set_ext` gives, with the body
//! untouched, in both encodings; and it must refuse what it cannot do in
//! place rather than write a broken frame.

use cutover_rocketmq::{Edit, Encoding, Frame, Header, Language, encode, peek, replace_values};
use proptest::prelude::*;

/// The keys a relay renames on a send (V2 broker name and the RPC one).
const NAMES: [&str; 2] = ["n", "bname"];

fn send(remark: Option<&str>) -> Header {
    let mut h = Header::request(310, 77);
    h.remark = remark.map(str::to_owned);
    h.set_ext("a", "producers");
    h.set_ext("b", "orders");
    h.set_ext("n", "broker-a@target");
    h.set_ext("bname", "broker-a@target");
    h
}

/// Renames every asked value equal to `from`, then checks the result
/// against what the full encoder writes for the same change.
fn check_rename(h: &Header, body: &[u8], enc: Encoding, from: &str, to: &str) {
    let raw = encode(h, body, enc).unwrap();
    let p = peek(&raw, NAMES).expect("peeked");
    let edits: Vec<Edit<'_>> = p
        .values
        .iter()
        .flatten()
        .filter(|v| **v == from)
        .map(|old| Edit { old, new: to })
        .collect();
    let out = replace_values(&raw, enc, &edits).expect("rewritten in place");
    let mut want = h.clone();
    for key in NAMES {
        if want.ext(key) == Some(from) {
            want.set_ext(key, to);
        }
    }
    let got = Frame::parse(out.clone()).expect("the rewritten frame decodes");
    assert_eq!(got.header, want, "{enc:?}");
    assert_eq!(&got.body[..], body);
    assert_eq!(got.encoding, enc);
    assert_eq!(out, encode(&want, body, enc).unwrap(), "byte for byte");
}

#[test]
fn renames_a_send_in_both_encodings_longer_and_shorter() {
    for enc in [Encoding::Json, Encoding::Binary] {
        for remark in [None, Some("a remark")] {
            let h = send(remark);
            check_rename(&h, b"payload", enc, "broker-a@target", "broker-a");
            check_rename(
                &h,
                b"",
                enc,
                "broker-a@target",
                "a-much-longer-real-broker-name",
            );
        }
    }
}

#[test]
fn refuses_what_cannot_be_done_in_place() {
    let h = send(None);
    let raw = encode(&h, b"", Encoding::Json).unwrap();
    let p = peek(&raw, NAMES).unwrap();
    let old = p.values[0].unwrap();
    // A value needing an escape in JSON.
    let quote = [Edit { old, new: "a\"b" }];
    assert!(replace_values(&raw, Encoding::Json, &quote).is_none());
    // A value that does not point into the frame.
    let elsewhere = String::from("broker-a@target");
    let stray = [Edit {
        old: &elsewhere,
        new: "x",
    }];
    assert!(replace_values(&raw, Encoding::Json, &stray).is_none());
    // The same value twice.
    let twice = [Edit { old, new: "x" }, Edit { old, new: "y" }];
    assert!(replace_values(&raw, Encoding::Json, &twice).is_none());
    // Not a whole frame.
    assert!(replace_values(&raw[..raw.len() - 1], Encoding::Json, &[]).is_none());
    // No edit: the frame as it was.
    assert_eq!(replace_values(&raw, Encoding::Json, &[]).unwrap(), raw);
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<i16>(),
        0u8..14,
        any::<i32>(),
        proptest::option::of("\\PC{1,20}"),
        proptest::collection::btree_map("[a-z]{1,3}|n|bname", "[a-zA-Z0-9@%_-]{0,20}", 0..8),
    )
        .prop_map(|(code, lang, opaque, remark, ext)| Header {
            code: code.into(),
            language: Language(lang),
            version: 475,
            opaque,
            flag: 0,
            remark,
            ext_fields: ext.into_iter().collect(),
        })
}

proptest! {
    /// Any header: renaming the asked values in place gives what the
    /// encoder writes after `set_ext`.
    #[test]
    fn agrees_with_the_encoder(h in header(), body in proptest::collection::vec(any::<u8>(), 0..16), to in "[a-zA-Z0-9@-]{0,30}") {
        for enc in [Encoding::Json, Encoding::Binary] {
            let from = h.ext("n").or(h.ext("bname")).unwrap_or("absent").to_owned();
            check_rename(&h, &body, enc, &from, &to);
        }
    }
}
