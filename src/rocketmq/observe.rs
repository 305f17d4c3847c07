//! What the proxy learns from the traffic it relays, for the readiness
//! checks and the per-topic metrics: consumer groups per topic (from
//! heartbeats), when a topic last received a message on the source, and
//! which local addresses the proxy's own upstream connections use (a
//! broker lists those as the client address of proxied consumers), and
//! the clients themselves ([`super::seen`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

use super::endpoints::Side;

/// Observations shared by a migration's sessions.
#[derive(Debug, Default)]
pub struct Observed {
    groups: Mutex<HashMap<String, BTreeSet<String>>>,
    last_send: Mutex<HashMap<(String, Side), Instant>>,
    local_addrs: Mutex<HashSet<String>>,
    /// The clients relayed for, for the endpoint inventory.
    pub clients: super::seen::ClientTable,
}

impl Observed {
    /// Records the consumer groups and subscriptions a heartbeat names;
    /// returns the subscribed topics.
    pub fn heartbeat(&self, body: &[u8]) -> Vec<String> {
        let Ok(beat) = serde_json::from_slice::<Heartbeat>(body) else {
            return Vec::new();
        };
        let mut topics = Vec::new();
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for consumer in beat.consumer_data_set {
            for sub in consumer.subscription_data_set {
                groups
                    .entry(sub.topic.clone())
                    .or_default()
                    .insert(consumer.group_name.clone());
                topics.push(sub.topic);
            }
        }
        topics
    }

    /// Consumer groups seen subscribing to `topic`.
    #[must_use]
    pub fn groups(&self, topic: &str) -> Vec<String> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A send of `topic` was relayed to `side`.
    pub fn sent(&self, topic: &str, side: Side) {
        self.last_send
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((topic.to_owned(), side), Instant::now());
    }

    /// When a send of `topic` was last relayed to `side`.
    #[must_use]
    pub fn last_sent(&self, topic: &str, side: Side) -> Option<Instant> {
        self.last_send
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_owned(), side))
            .copied()
    }

    /// An upstream connection from `addr` opened (`true`) or closed.
    pub fn local_addr(&self, addr: &str, open: bool) {
        let mut set = self.local_addrs.lock().unwrap_or_else(|e| e.into_inner());
        if open {
            set.insert(addr.to_owned());
        } else {
            set.remove(addr);
        }
    }

    /// Whether `addr` is one of the proxy's open upstream connections.
    #[must_use]
    pub fn is_proxied(&self, addr: &str) -> bool {
        self.local_addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(addr)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Heartbeat {
    #[serde(default)]
    consumer_data_set: Vec<ConsumerData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerData {
    group_name: String,
    #[serde(default)]
    subscription_data_set: Vec<Subscription>,
}

#[derive(Deserialize)]
struct Subscription {
    topic: String,
}

/// Messages in a pull response or batch send body: each message starts
/// with its total size (`i32`), so walk the sizes; a body that does not
/// walk cleanly counts the messages that did.
#[must_use]
pub fn count_messages(body: &[u8]) -> u64 {
    let mut at = 0usize;
    let mut n = 0u64;
    while let Some(size) = body.get(at..at + 4) {
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        if size < 4 || at + size > body.len() {
            break;
        }
        at += size;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_groups_are_kept_per_topic() {
        let o = Observed::default();
        let body = br#"{"clientID":"c","producerDataSet":[{"groupName":"p"}],"consumerDataSet":[{"groupName":"g","consumeType":"CONSUME_PASSIVELY","subscriptionDataSet":[{"topic":"t","subString":"*"},{"topic":"%RETRY%g","subString":"*"}]}]}"#;
        assert_eq!(o.heartbeat(body), vec!["t", "%RETRY%g"]);
        assert_eq!(o.groups("t"), vec!["g"]);
        assert!(o.groups("u").is_empty());
        assert!(o.heartbeat(b"garbage").is_empty());
    }

    #[test]
    fn messages_are_counted_by_their_sizes() {
        let mut body = Vec::new();
        for len in [10i32, 20] {
            body.extend_from_slice(&len.to_be_bytes());
            body.extend(std::iter::repeat_n(0u8, usize::try_from(len).unwrap() - 4));
        }
        assert_eq!(count_messages(&body), 2);
        body.extend_from_slice(&100i32.to_be_bytes());
        assert_eq!(count_messages(&body), 2, "a torn tail is not counted");
        assert_eq!(count_messages(&[]), 0);
    }
}
