//! The decoded `RemotingCommand` header, common to both encodings, and the
//! request/response code constants the proxy routes on.

/// Flag bit 0: the frame is a response (Java `RPC_TYPE`).
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request is one-way, no response will follow
/// (Java `RPC_ONEWAY`).
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// A `RemotingCommand` header as either encoding carries it.
///
/// Field widths follow the JSON form (`i32`); the ROCKETMQ binary form
/// carries `code` and `version` as `i16`, so [`crate::encode`] truncates
/// them exactly as Java's `(short)` cast does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Request code (see [`RequestCode`]) or response code (see
    /// [`ResponseCode`]) depending on [`Header::is_response`].
    pub code: i32,
    /// The sender's client language.
    pub language: Language,
    /// The sender's RocketMQ version number (e.g. 453 for V4_9_4).
    pub version: i32,
    /// Request id, echoed by the response; the proxy never changes it.
    pub opaque: i32,
    /// Bit field of [`FLAG_RESPONSE`] and [`FLAG_ONEWAY`].
    pub flag: i32,
    /// Free text, mostly error reasons on responses.
    pub remark: Option<String>,
    /// The custom header fields, in the order they arrived; keys are unique.
    pub ext_fields: Vec<(String, String)>,
}

impl Header {
    /// A request header with the given code and opaque, language JAVA.
    #[must_use]
    pub fn request(code: i32, opaque: i32) -> Self {
        Self {
            code,
            opaque,
            ..Self::default()
        }
    }

    /// A response header answering `opaque`, with a remark if given.
    #[must_use]
    pub fn response(code: i32, opaque: i32, remark: Option<String>) -> Self {
        Self {
            code,
            opaque,
            flag: FLAG_RESPONSE,
            remark,
            ..Self::default()
        }
    }

    /// Whether this frame is a response (flag bit 0).
    #[must_use]
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this request is one-way (flag bit 1).
    #[must_use]
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The value of ext field `key`, if present.
    #[must_use]
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets ext field `key`, replacing its value in place if present and
    /// appending it otherwise.
    pub fn set_ext(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.ext_fields.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.ext_fields.push((key, value)),
        }
    }

    /// Removes ext field `key`, returning its value if it was present.
    pub fn remove_ext(&mut self, key: &str) -> Option<String> {
        let at = self.ext_fields.iter().position(|(k, _)| k == key)?;
        Some(self.ext_fields.remove(at).1)
    }
}

/// Builds an ext field list with unique keys. A repeated key is refused, not
/// resolved: Java's `HashMap.put` keeps the last value, other readers the
/// first, and a header two readers read two ways is how routing and
/// permission decisions go wrong.
#[derive(Default)]
pub(crate) struct ExtBuilder {
    fields: Vec<(String, String)>,
    seen: std::collections::HashSet<String>,
}

impl ExtBuilder {
    /// Appends a field; a `None` value (JSON null, which Java skips) is
    /// not kept but its key still counts as seen.
    ///
    /// # Errors
    /// Gives the key back when it was already seen.
    pub(crate) fn push(&mut self, key: String, value: Option<String>) -> Result<(), String> {
        if self.seen.contains(&key) {
            return Err(key);
        }
        self.seen.insert(key.clone());
        if let Some(value) = value {
            self.fields.push((key, value));
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<(String, String)> {
        self.fields
    }
}

/// `key` for an error sentence: at most 64 characters, escaped.
pub(crate) fn shown(key: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = key.chars().take(MAX).flat_map(char::escape_debug).collect();
    if key.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Client language: a byte in the binary header, a name in JSON
/// (Apache `LanguageCode`; RUST and NODE_JS from rocketmq-rust).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Language(pub u8);

const LANGUAGE_NAMES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

impl Language {
    /// Java clients (and the default when a header says nothing).
    pub const JAVA: Self = Self(0);
    /// The Apache C++ client.
    pub const CPP: Self = Self(1);
    /// .NET clients.
    pub const DOTNET: Self = Self(2);
    /// Python clients.
    pub const PYTHON: Self = Self(3);
    /// A client that says it is none of the named ones.
    pub const OTHER: Self = Self(7);
    /// Go clients.
    pub const GO: Self = Self(9);
    /// rocketmq-rust clients and servers.
    pub const RUST: Self = Self(12);
    /// Node.js clients (rocketmq-rust extension).
    pub const NODE_JS: Self = Self(13);

    /// The JSON name, or `None` for a code no known peer defines.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        LANGUAGE_NAMES.get(usize::from(self.0)).copied()
    }

    /// The language a JSON name stands for, or `None` for a name no known
    /// peer defines.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        LANGUAGE_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(Self)
    }
}

/// Request codes (Apache `RequestCode`) the proxy routes, rewrites or
/// reports on. A namespace of constants: codes are open-ended on the wire.
#[derive(Debug)]
pub struct RequestCode;

impl RequestCode {
    /// Producer send (v1 header, long field names).
    pub const SEND_MESSAGE: i32 = 10;
    /// Consumer pull (long-polled by the broker).
    pub const PULL_MESSAGE: i32 = 11;
    /// Query messages by key.
    pub const QUERY_MESSAGE: i32 = 12;
    /// Broker offset query.
    pub const QUERY_BROKER_OFFSET: i32 = 13;
    /// Consumer group offset query.
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    /// Consumer group offset commit.
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    /// Admin: create or update a topic on a broker.
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    /// Admin: every topic config of a broker.
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    /// Offset of a queue at a timestamp.
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    /// Max offset of a queue.
    pub const GET_MAX_OFFSET: i32 = 30;
    /// Min offset of a queue.
    pub const GET_MIN_OFFSET: i32 = 31;
    /// Store time of a queue's earliest message.
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    /// Fetch one message by its offset id.
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    /// Client heartbeat with producer and consumer groups.
    pub const HEART_BEAT: i32 = 34;
    /// Client leaving.
    pub const UNREGISTER_CLIENT: i32 = 35;
    /// Consumer returns a message for retry.
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    /// Commit or roll back a half message.
    pub const END_TRANSACTION: i32 = 37;
    /// Client ids of a consumer group.
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// Broker to producer: transaction check.
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    /// Broker to consumer: rebalance now.
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    /// Orderly consumption: lock queues (body names brokers).
    pub const LOCK_BATCH_MQ: i32 = 41;
    /// Orderly consumption: unlock queues (body names brokers).
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    /// Admin: every consumer offset of a broker.
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    /// Admin: delay queue offsets.
    pub const GET_ALL_DELAY_OFFSET: i32 = 45;
    /// NameServer: a KV config value.
    pub const GET_KV_CONFIG: i32 = 101;
    /// Broker to NameServer registration.
    pub const REGISTER_BROKER: i32 = 103;
    /// Broker leaving the NameServer.
    pub const UNREGISTER_BROKER: i32 = 104;
    /// NameServer: route of one topic (`TopicRouteData` body).
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// NameServer: brokers and clusters (`ClusterInfo` body).
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// Admin: create or update a subscription group.
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    /// Admin: every subscription group of a broker.
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    /// Admin: per-queue min/max offsets of a topic.
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    /// Admin: connections of a consumer group.
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    /// Admin: connections of a producer group.
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    /// NameServer: every topic name.
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    /// Admin: consume stats (backlog) of a group.
    pub const GET_CONSUME_STATS: i32 = 208;
    /// Broker to consumer: reset offsets.
    pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;
    /// Broker to consumer: report status.
    pub const GET_CONSUMER_STATUS_FROM_CLIENT: i32 = 221;
    /// NameServer: topics of a cluster.
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    /// Broker to consumer: running info.
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    /// Broker to consumer: consume one message directly.
    pub const CONSUME_MESSAGE_DIRECTLY: i32 = 309;
    /// Producer send (v2 header, one-letter field names; `n` is the broker).
    pub const SEND_MESSAGE_V2: i32 = 310;
    /// Producer batch send.
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    /// Request-reply: reply send.
    pub const SEND_REPLY_MESSAGE: i32 = 324;
    /// Request-reply: reply send, v2 header.
    pub const SEND_REPLY_MESSAGE_V2: i32 = 325;
    /// Broker to requester: the reply.
    pub const PUSH_REPLY_MESSAGE_TO_CLIENT: i32 = 326;
    /// Admin: one topic config.
    pub const GET_TOPIC_CONFIG: i32 = 351;
    /// Lite pull consumer pull.
    pub const LITE_PULL_MESSAGE: i32 = 361;
    /// Rebalance on the broker (body names brokers).
    pub const QUERY_ASSIGNMENT: i32 = 400;
    /// Pop consumption mode switch.
    pub const SET_MESSAGE_REQUEST_MODE: i32 = 401;
    /// Pop consumption: receive (Apache `RequestCode.POP_MESSAGE`).
    pub const POP_MESSAGE: i32 = 200_050;
    /// Pop consumption: acknowledge.
    pub const ACK_MESSAGE: i32 = 200_051;
    /// Pop consumption: extend invisibility.
    pub const CHANGE_MESSAGE_INVISIBLETIME: i32 = 200_053;
    /// Pop consumption: batch acknowledge.
    pub const BATCH_ACK_MESSAGE: i32 = 200_151;

    /// Whether `code` is a send of any kind (v1, v2, batch).
    #[must_use]
    pub fn is_send(code: i32) -> bool {
        matches!(
            code,
            Self::SEND_MESSAGE | Self::SEND_MESSAGE_V2 | Self::SEND_BATCH_MESSAGE
        )
    }
}

/// Response codes (Apache `ResponseCode` / `RemotingSysResponseCode`) the
/// proxy answers with or reacts to.
#[derive(Debug)]
pub struct ResponseCode;

impl ResponseCode {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Generic failure; remark says why.
    pub const SYSTEM_ERROR: i32 = 1;
    /// Busy; clients retry.
    pub const SYSTEM_BUSY: i32 = 2;
    /// The receiver does not implement the request code.
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    /// Permission denied (e.g. write to a read-only queue).
    pub const NO_PERMISSION: i32 = 16;
    /// Unknown topic.
    pub const TOPIC_NOT_EXIST: i32 = 17;
    /// Pull found no new message.
    pub const PULL_NOT_FOUND: i32 = 19;
    /// Pull should be retried at once.
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    /// Pull offset out of range; response carries the next offset.
    pub const PULL_OFFSET_MOVED: i32 = 21;
    /// Query (e.g. QUERY_CONSUMER_OFFSET) found nothing.
    pub const QUERY_NOT_FOUND: i32 = 22;
    /// Unknown subscription group.
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
}
