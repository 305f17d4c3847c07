//! The JSON header (Apache `RemotingSerializable` of `RemotingCommand`).
//!
//! Decoding is tolerant where every reader agrees: fields in any order,
//! missing numbers default to 0, `remark`/`extFields` may be null, unknown
//! fields are skipped, ext values that are integers or booleans are kept as
//! their text, a language may be a name or a code. The ext fields keep
//! their wire order.
//!
//! It refuses what two readers could read two ways, rather than pick one
//! reading: a key twice (top level or in `extFields`), a language no known
//! peer names (its re-encoding would name another language), a fractional
//! ext value (its text depends on the reader's float formatting), a key
//! that loose name matching (fastjson ignores case, `_` and `-`) would take
//! for a known field. So every accepted header re-encodes to itself:
//! decoding is a fixed point.
//!
//! Encoding writes fastjson's canonical layout (keys sorted, nulls omitted,
//! `extFields` always present) and always carries
//! `"serializeTypeCurrentRPC":"JSON"`: the rocketmq-rust servers drop a JSON
//! header without it (DESIGN.md §4), and their fast path expects exactly
//! this layout.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use crate::FrameError;
use crate::header::{ExtBuilder, Header, Language, shown};

/// Decodes a JSON header occupying exactly `src`.
pub(crate) fn decode(src: &[u8]) -> Result<Header, FrameError> {
    let mut de = serde_json::Deserializer::from_slice(src);
    let header = de
        .deserialize_map(HeaderVisitor)
        .and_then(|h| de.end().map(|()| h))
        .map_err(|e| FrameError::Json {
            reason: e.to_string(),
        })?;
    Ok(header)
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a RemotingCommand header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut h = Header::default();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!(
                    "key \"{}\" appears twice; refused rather than guess which one the broker reads",
                    shown(&key)
                )));
            }
            match key.as_str() {
                "code" => h.code = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "language" => h.language = map.next_value::<LanguageField>()?.0,
                "version" => h.version = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "opaque" => h.opaque = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "flag" => h.flag = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "remark" => h.remark = map.next_value::<Option<String>>()?,
                "extFields" => {
                    h.ext_fields = map
                        .next_value::<Option<ExtFields>>()?
                        .map(|e| e.0)
                        .unwrap_or_default();
                }
                other => {
                    if let Some(field) = look_alike(other) {
                        return Err(de::Error::custom(format_args!(
                            "key \"{}\" is not \"{field}\", but readers that match field names loosely (fastjson) take it for it; refused",
                            shown(other)
                        )));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(h)
    }
}

/// The header fields every reader knows, as spelled on the wire.
const FIELDS: [&str; 8] = [
    "code",
    "language",
    "version",
    "opaque",
    "flag",
    "remark",
    "extFields",
    "serializeTypeCurrentRPC",
];

/// The field `key` would be taken for by a reader that ignores case,
/// `_` and `-` in names (fastjson's default), when it is not that field.
fn look_alike(key: &str) -> Option<&'static str> {
    let loose = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let key_loose = loose(key);
    FIELDS
        .into_iter()
        .find(|field| *field != key && loose(field) == key_loose)
}

struct LanguageField(Language);

impl<'de> de::Deserialize<'de> for LanguageField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LanguageVisitor)
    }
}

struct LanguageVisitor;

impl Visitor<'_> for LanguageVisitor {
    type Value = LanguageField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a language name or code")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<LanguageField, E> {
        Language::from_name(v).map(LanguageField).ok_or_else(|| {
            E::custom(format_args!(
                "language \"{}\" is not one any known client names",
                shown(v)
            ))
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LanguageField, E> {
        u8::try_from(v)
            .ok()
            .map(Language)
            .filter(|l| l.name().is_some())
            .map(LanguageField)
            .ok_or_else(|| E::custom(format_args!("language code {v} has no name")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LanguageField, E> {
        Err(E::custom(format_args!("language code {v} has no name")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<LanguageField, E> {
        Ok(LanguageField(Language::JAVA))
    }
}

struct ExtFields(Vec<(String, String)>);

impl<'de> de::Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ExtVisitor)
    }
}

struct ExtVisitor;

impl<'de> Visitor<'de> for ExtVisitor {
    type Value = ExtFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string ext fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
        let mut fields = ExtBuilder::default();
        while let Some(key) = map.next_key::<String>()? {
            // Java skips null values when it builds extFields; do the same.
            let value = map.next_value::<Option<ExtValue>>()?.map(|v| v.0);
            fields.push(key, value).map_err(|key| {
                de::Error::custom(format_args!(
                    "ext field \"{}\" appears twice; refused rather than guess which value the broker reads",
                    shown(&key)
                ))
            })?;
        }
        Ok(ExtFields(fields.finish()))
    }
}

/// An ext value: a string, or a scalar some clients send unquoted.
struct ExtValue(String);

impl<'de> de::Deserialize<'de> for ExtValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ExtValueVisitor)
    }
}

struct ExtValueVisitor;

impl Visitor<'_> for ExtValueVisitor {
    type Value = ExtValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, integer or boolean ext value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ExtValue, E> {
        Ok(ExtValue(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<ExtValue, E> {
        Ok(ExtValue(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ExtValue, E> {
        Ok(ExtValue(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExtValue, E> {
        Ok(ExtValue(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExtValue, E> {
        Ok(ExtValue(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ExtValue, E> {
        // Java keeps the literal text, this decoder would keep its own
        // formatting of the parsed float ("1.0" becomes "1"): refuse.
        Err(E::custom(format_args!(
            "ext value {v} is fractional; only strings, integers and booleans are read the same everywhere"
        )))
    }
}

/// What [`peek`] found: the header's fixed fields and the borrowed values
/// of the asked ext keys.
pub(crate) struct JsonPeek<'a, const N: usize> {
    pub code: i32,
    pub language: Language,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub values: [Option<&'a str>; N],
}

/// Reads a JSON header's fixed fields and the values of `keys` without
/// building the ext map, or `None` when only [`decode`] can say what the
/// header means: anything it would refuse, and the rare well-formed
/// headers this reader does not borrow from (escaped keys or asked
/// values, non-string asked values, unknown top-level keys, more than
/// [`MAX_PEEK_KEYS`] ext fields). So a `Some` always agrees with
/// [`decode`].
pub(crate) fn peek<'a, const N: usize>(src: &'a [u8], keys: [&str; N]) -> Option<JsonPeek<'a, N>> {
    let mut de = serde_json::Deserializer::from_slice(src);
    let peek = de.deserialize_map(PeekVisitor { keys }).ok()?;
    de.end().ok()?;
    Some(peek)
}

/// Ext fields a peek tracks for duplicates; a header with more is left to
/// the full decoder (a V2 send carries about 14).
pub(crate) const MAX_PEEK_KEYS: usize = 48;

struct PeekVisitor<'k, const N: usize> {
    keys: [&'k str; N],
}

/// A peek that must be left to the full decoder; the text is never shown.
fn give_up<E: de::Error>() -> E {
    E::custom("left to the full decoder")
}

impl<'de, const N: usize> Visitor<'de> for PeekVisitor<'_, N> {
    type Value = JsonPeek<'de, N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a RemotingCommand header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut p = JsonPeek {
            code: 0,
            language: Language::default(),
            version: 0,
            opaque: 0,
            flag: 0,
            values: [None; N],
        };
        let mut seen = 0u8;
        while let Some(key) = map.next_key::<&'de str>()? {
            let Some(bit) = FIELDS.iter().position(|f| *f == key) else {
                return Err(give_up());
            };
            if seen & (1 << bit) != 0 {
                return Err(give_up());
            }
            seen |= 1 << bit;
            match key {
                "code" => p.code = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "language" => p.language = map.next_value::<LanguageField>()?.0,
                "version" => p.version = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "opaque" => p.opaque = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "flag" => p.flag = map.next_value::<Option<i32>>()?.unwrap_or(0),
                "remark" => match Scalar::next(&mut map)? {
                    Scalar::Str(_) | Scalar::Escaped | Scalar::Null => {}
                    Scalar::Bool | Scalar::Other => return Err(give_up()),
                },
                "extFields" => {
                    map.next_value_seed(PeekExt {
                        keys: &self.keys,
                        values: &mut p.values,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(p)
    }
}

/// A JSON value as far as a peek needs to know it, without copying.
enum Scalar<'de> {
    /// A string without escapes, borrowed from the header.
    Str(&'de str),
    /// A string with escapes (reading it would copy).
    Escaped,
    /// `null`.
    Null,
    /// `true` or `false` (the full decoder keeps its text).
    Bool,
    /// A number, array or object: left to the full decoder, which keeps
    /// an integer's text and refuses the rest.
    Other,
}

impl<'de> Scalar<'de> {
    /// Reads the next value of `map` as its raw text: serde_json skips it
    /// (escapes included) without copying, and checks its syntax.
    fn next<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        let raw = map.next_value::<&'de serde_json::value::RawValue>()?.get();
        Ok(match raw.as_bytes().first() {
            Some(b'"') if raw.contains('\\') => Scalar::Escaped,
            Some(b'"') => Scalar::Str(&raw[1..raw.len() - 1]),
            Some(b'n') => Scalar::Null,
            Some(b't' | b'f') => Scalar::Bool,
            _ => Scalar::Other,
        })
    }
}

/// The `extFields` object of a peek: fills the asked values, checks keys
/// are unique like [`ExtBuilder`] does.
struct PeekExt<'p, 'k, 'de, const N: usize> {
    keys: &'p [&'k str; N],
    values: &'p mut [Option<&'de str>; N],
}

impl<'de, const N: usize> de::DeserializeSeed<'de> for PeekExt<'_, '_, 'de, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for PeekExt<'_, '_, 'de, N> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string ext fields")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: [&str; MAX_PEEK_KEYS] = [""; MAX_PEEK_KEYS];
        let mut count = 0;
        while let Some(key) = map.next_key::<&'de str>()? {
            if count == MAX_PEEK_KEYS || seen[..count].contains(&key) {
                return Err(give_up());
            }
            seen[count] = key;
            count += 1;
            let value = Scalar::next(&mut map)?;
            match (self.keys.iter().position(|k| *k == key), value) {
                (_, Scalar::Other) | (Some(_), Scalar::Escaped | Scalar::Bool) => {
                    return Err(give_up());
                }
                (Some(i), Scalar::Str(v)) => self.values[i] = Some(v),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Appends the JSON form of `h` to `out`, in fastjson's canonical layout.
pub(crate) fn encode(h: &Header, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"code\":{},\"extFields\":{{", h.code);
    for (i, (k, v)) in h.ext_fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(k, out);
        out.push(b':');
        string(v, out);
    }
    let _ = write!(out, "}},\"flag\":{},\"language\":", h.flag);
    match h.language.name() {
        Some(name) => string(name, out),
        None => string("OTHER", out),
    }
    let _ = write!(out, ",\"opaque\":{}", h.opaque);
    if let Some(remark) = &h.remark {
        out.extend_from_slice(b",\"remark\":");
        string(remark, out);
    }
    let _ = write!(
        out,
        ",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":{}}}",
        h.version
    );
}

/// Writes `s` as a JSON string literal.
fn string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real Java 4.9 broker response, seen on the wire (CVE-2023-33246
    /// write-ups show the same bytes).
    const JAVA_RESPONSE: &str = r#"{"code":0,"flag":1,"language":"JAVA","opaque":0,"serializeTypeCurrentRPC":"JSON","version":403}"#;

    #[test]
    fn decodes_java_response_without_ext_fields() {
        let h = decode(JAVA_RESPONSE.as_bytes()).unwrap();
        assert_eq!(
            h,
            Header {
                flag: 1,
                version: 403,
                ..Header::default()
            }
        );
        assert!(h.is_response());
    }

    #[test]
    fn decodes_rust_layout_with_nulls_and_keeps_ext_order() {
        let src = br#"{"code":310,"language":"RUST","version":501,"opaque":7,"flag":0,"remark":null,"extFields":{"z":"1","a":"producer-a","n":"broker-a"},"serializeTypeCurrentRPC":"JSON"}"#;
        let h = decode(src).unwrap();
        assert_eq!(h.code, 310);
        assert_eq!(h.language, Language::RUST);
        assert_eq!(h.remark, None);
        let keys: Vec<_> = h.ext_fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "n"]);
    }

    #[test]
    fn tolerates_scalars_numeric_language_and_unknown_fields() {
        let src = br#" {"extFields":{"queueId":3,"sysFlag":true,"gone":null,"k":"v\u0001"},"language":9,"unknown":[1,{"x":2}],"code":11} "#;
        let h = decode(src).unwrap();
        assert_eq!(h.language, Language::GO);
        assert_eq!(h.code, 11);
        assert_eq!(h.ext("queueId"), Some("3"));
        assert_eq!(h.ext("sysFlag"), Some("true"));
        assert_eq!(h.ext("gone"), None);
        assert_eq!(h.ext("k"), Some("v\u{1}"));
    }

    /// Each of these would be read one way here and another way by some
    /// broker or client, or re-encode to a different header.
    #[test]
    fn refuses_what_two_readers_could_read_two_ways() {
        for (bad, why) in [
            (
                &br#"{"code":11,"code":34}"#[..],
                r#"key "code" appears twice"#,
            ),
            (br#"{"x":1,"x":1}"#, r#"key "x" appears twice"#),
            (
                br#"{"extFields":{"topic":"a","topic":"b"}}"#,
                r#"ext field "topic" appears twice"#,
            ),
            (
                br#"{"extFields":{"topic":null,"topic":"b"}}"#,
                r#"ext field "topic" appears twice"#,
            ),
            (br#"{"language":34}"#, "language code 34 has no name"),
            (br#"{"language":-1}"#, "language code -1 has no name"),
            (br#"{"language":"SWIFT"}"#, r#"language "SWIFT" is not one"#),
            (br#"{"extFields":{"q":1.0}}"#, "ext value 1 is fractional"),
            (br#"{"code":11,"Code":34}"#, r#"key "Code" is not "code""#),
            (
                br#"{"ext_fields":{}}"#,
                r#"key "ext_fields" is not "extFields""#,
            ),
        ] {
            let err = decode(bad).unwrap_err();
            assert!(
                matches!(&err, FrameError::Json { reason } if reason.contains(why)),
                "{}: {err}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_named_language_decodes_by_name_and_by_code() {
        for code in 0u8..14 {
            let name = Language(code).name().unwrap();
            let by_name = format!(r#"{{"language":"{name}"}}"#);
            let by_code = format!(r#"{{"language":{code}}}"#);
            assert_eq!(decode(by_name.as_bytes()).unwrap().language, Language(code));
            assert_eq!(decode(by_code.as_bytes()).unwrap().language, Language(code));
        }
    }

    #[test]
    fn refuses_what_is_not_a_header_object() {
        for bad in [
            &b"[]"[..],
            b"{",
            b"{\"code\":\"x\"}",
            b"{} x",
            b"{\"code\":1e3}",
            b"",
        ] {
            assert!(
                matches!(decode(bad), Err(FrameError::Json { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encodes_fastjson_canonical_layout() {
        let mut h = Header::request(105, 9);
        h.set_ext("topic", "Top\"ic\n");
        let mut out = Vec::new();
        encode(&h, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"code":105,"extFields":{"topic":"Top\"ic\n"},"flag":0,"language":"JAVA","opaque":9,"serializeTypeCurrentRPC":"JSON","version":0}"#
        );
        assert_eq!(decode(&out).unwrap(), h);

        let h = Header::response(17, 9, Some("no route".into()));
        let mut out = Vec::new();
        encode(&h, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(r#""opaque":9,"remark":"no route","serializeTypeCurrentRPC":"JSON""#)
        );
        assert_eq!(decode(&out).unwrap(), h);
    }

    #[test]
    fn control_characters_survive_a_round_trip() {
        let mut h = Header::request(1, 1);
        h.remark = Some((0u8..0x20).map(char::from).chain("\"\\é".chars()).collect());
        let mut out = Vec::new();
        encode(&h, &mut out);
        assert_eq!(decode(&out).unwrap(), h);
    }
}
