//! The NameServer bodies the proxy rewrites: `TopicRouteData` (answer to
//! GET_ROUTEINFO_BY_TOPIC, 105) and `ClusterInfo` (answer to
//! GET_BROKER_CLUSTER_INFO, 106).
//!
//! Java NameServers serialize these with fastjson, which writes `Long` map
//! keys bare: `{"brokerAddrs":{0:"127.0.0.1:10911"}}`. That is not JSON, so
//! [`quote_integer_keys`] quotes bare integer object keys (outside strings)
//! before serde_json sees the body. Encoding always writes standard JSON
//! (quoted keys), which fastjson, the Java client and rocketmq-rust accept.
//!
//! Fields this crate does not model (`topicQueueMappingByBroker`, future
//! additions) are kept in `extra` and written back, so a rewritten route
//! loses nothing. Fields rocketmq-rust requires on decode
//! (`filterServerTable`, `enableActingMaster`) are always written.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::BodyError;

/// Queue permission bit: consumers may read (Apache `PermName.PERM_READ`).
pub const PERM_READ: i32 = 1 << 2;
/// Queue permission bit: producers may write.
pub const PERM_WRITE: i32 = 1 << 1;
/// Queue permission bit: inherited by topics created from this one.
pub const PERM_INHERIT: i32 = 1;

/// Broker id of a master (Apache `MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// Route of one topic: its queues per broker and the brokers' addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    /// Ordered-topic configuration (`broker:queues;...`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// Queue counts and permissions per broker name.
    #[serde(deserialize_with = "null_default")]
    pub queue_datas: Vec<QueueData>,
    /// Addresses per broker name.
    #[serde(deserialize_with = "null_default")]
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers per broker address (legacy; usually empty).
    #[serde(deserialize_with = "null_default")]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One broker's queues of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    /// Broker name (not address).
    #[serde(deserialize_with = "null_default")]
    pub broker_name: String,
    /// Queues consumers read.
    #[serde(deserialize_with = "null_default")]
    pub read_queue_nums: i32,
    /// Queues producers write.
    #[serde(deserialize_with = "null_default")]
    pub write_queue_nums: i32,
    /// [`PERM_READ`] | [`PERM_WRITE`] | [`PERM_INHERIT`] bits.
    #[serde(deserialize_with = "null_default")]
    pub perm: i32,
    /// Topic system flags (unit, unit-sub ...).
    #[serde(deserialize_with = "null_default")]
    pub topic_sys_flag: i32,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl QueueData {
    /// Whether [`PERM_READ`] is set.
    #[must_use]
    pub fn is_readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }

    /// Whether [`PERM_WRITE`] is set.
    #[must_use]
    pub fn is_writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }
}

/// One broker group: its cluster, name and the address of each member.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Cluster name.
    #[serde(deserialize_with = "null_default")]
    pub cluster: String,
    /// Broker name, shared by master and slaves.
    #[serde(deserialize_with = "null_default")]
    pub broker_name: String,
    /// Broker id ([`MASTER_ID`] for the master) → `host:port`.
    #[serde(deserialize_with = "broker_addrs")]
    pub broker_addrs: BTreeMap<i64, String>,
    /// Availability zone, if the broker reports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    /// Whether a slave may act as master (RocketMQ 5).
    #[serde(deserialize_with = "null_default")]
    pub enable_acting_master: bool,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BrokerData {
    /// The master's address, if the group has one.
    #[must_use]
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// Every broker and cluster a NameServer knows.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    /// Broker name → broker group.
    #[serde(deserialize_with = "null_default")]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name → broker names.
    #[serde(deserialize_with = "null_default")]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TopicRouteData {
    /// Parses a route body, standard JSON or fastjson's legacy form.
    ///
    /// # Errors
    /// [`BodyError`] when the body is not a route even after quoting bare
    /// integer keys.
    pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
        decode_body(body, "TopicRouteData")
    }

    /// Standard JSON (quoted keys).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("route types always serialize")
    }

    /// The broker group named `broker_name`.
    #[must_use]
    pub fn broker(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
    }

    /// The queue entry of `broker_name`.
    #[must_use]
    pub fn queue(&self, broker_name: &str) -> Option<&QueueData> {
        self.queue_datas
            .iter()
            .find(|q| q.broker_name == broker_name)
    }
}

impl ClusterInfo {
    /// Parses a cluster-info body, standard JSON or fastjson's legacy form.
    ///
    /// # Errors
    /// [`BodyError`] when the body is not a cluster info even after quoting
    /// bare integer keys.
    pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
        decode_body(body, "ClusterInfo")
    }

    /// Standard JSON (quoted keys).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("cluster types always serialize")
    }
}

fn decode_body<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    what: &'static str,
) -> Result<T, BodyError> {
    serde_json::from_slice(&quote_integer_keys(body)).map_err(|e| BodyError {
        what,
        reason: e.to_string(),
    })
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `brokerAddrs` keys arrive as strings (after quoting); parse them here
/// rather than as `i64` map keys, which serde cannot do inside a flattened
/// struct.
fn broker_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<i64, String>, D::Error> {
    let raw = Option::<BTreeMap<String, Option<String>>>::deserialize(d)?.unwrap_or_default();
    let mut out = BTreeMap::new();
    for (id, addr) in raw {
        let id = id
            .trim()
            .parse::<i64>()
            .map_err(|_| serde::de::Error::custom(format!("broker id {id:?} is not an integer")))?;
        if let Some(addr) = addr {
            out.insert(id, addr);
        }
    }
    Ok(out)
}

/// Quotes bare integer object keys (`{0:"a"}` → `{"0":"a"}`) outside
/// strings, leaving everything else byte for byte. Returns the input
/// borrowed when nothing needed quoting (always the case for valid JSON).
///
/// A key is a run of `-?[0-9]+` right after `{` or `,` inside an object and
/// followed (after whitespace) by `:`; integers in arrays and values are
/// untouched.
#[must_use]
pub fn quote_integer_keys(src: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    // Open containers: true for objects. One bool per level, bounded by
    // the input length.
    let mut stack: Vec<bool> = Vec::new();
    let mut key_position = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                key_position = false;
            }
            b'{' => {
                stack.push(true);
                key_position = true;
            }
            b'[' => {
                stack.push(false);
                key_position = false;
            }
            b'}' | b']' => {
                stack.pop();
                key_position = false;
            }
            b',' => key_position = stack.last() == Some(&true),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'-' | b'0'..=b'9' if key_position => {
                let start = i;
                let mut end = i + usize::from(c == b'-');
                let digits_start = end;
                while src.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                let mut after = end;
                while src
                    .get(after)
                    .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                {
                    after += 1;
                }
                if end > digits_start && src.get(after) == Some(&b':') {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(src.len() + 16));
                    o.extend_from_slice(&src[copied..start]);
                    o.push(b'"');
                    o.extend_from_slice(&src[start..end]);
                    o.push(b'"');
                    copied = end;
                }
                key_position = false;
                i = end.max(i + 1);
                continue;
            }
            _ => key_position = false,
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(src),
        Some(mut o) => {
            o.extend_from_slice(&src[copied..]);
            Cow::Owned(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_bare_integer_keys() {
        let cases: [(&str, &str); 8] = [
            (r#"{0:"a",1:"b"}"#, r#"{"0":"a","1":"b"}"#),
            (r#"{ -1 :"a"}"#, r#"{ "-1" :"a"}"#),
            (r#"{"k":[0,1,{2:3}]}"#, r#"{"k":[0,1,{"2":3}]}"#),
            (r#"{"s":"{0:\"x\"}"}"#, r#"{"s":"{0:\"x\"}"}"#),
            (r#"{"a":1,"b":-2}"#, r#"{"a":1,"b":-2}"#),
            ("[1,2,3]", "[1,2,3]"),
            (r#"{"q\\":{7:"x"}}"#, r#"{"q\\":{"7":"x"}}"#),
            ("{-:1}", "{-:1}"),
        ];
        for (input, want) in cases {
            assert_eq!(
                std::str::from_utf8(&quote_integer_keys(input.as_bytes())).unwrap(),
                want,
                "{input}"
            );
        }
        assert!(matches!(
            quote_integer_keys(br#"{"a":{"0":"b"}}"#),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn permission_bits_match_perm_name() {
        assert_eq!((PERM_READ, PERM_WRITE, PERM_INHERIT), (4, 2, 1));
        let q = QueueData {
            perm: PERM_READ | PERM_WRITE,
            ..QueueData::default()
        };
        assert!(q.is_readable() && q.is_writable());
    }

    #[test]
    fn broker_ids_must_be_integers() {
        let err =
            TopicRouteData::decode(br#"{"brokerDatas":[{"brokerAddrs":{"x":"a"}}]}"#).unwrap_err();
        assert!(err.to_string().contains("broker id \"x\""), "{err}");
    }
}
