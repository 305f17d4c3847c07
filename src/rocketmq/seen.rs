//! The clients the proxy relays for: who they are (client id, address,
//! language and version), which groups they belong to, which topics they
//! produce or subscribe to through the proxy, how many broker connections
//! they hold now and when they were last heard from. The endpoint inventory
//! (`ctl clients`) joins this with what the source's brokers list, since a
//! broker sees a proxied client only from the proxy's own address.
//!
//! A client is known by the `clientID` of its heartbeats. A connection that
//! sends before its first heartbeat (a producer heartbeats a new broker
//! only on its timer) is kept under its address until the heartbeat names
//! it, then merged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Clients kept at most. Disconnected ones go first, oldest first; a
/// proxy relaying for more connected clients than this stops adding them
/// (the inventory then says so).
pub const MAX_CLIENTS: usize = 4096;

/// Topics or groups kept per client: a client naming more is an outlier,
/// and the table must stay bounded.
pub const MAX_NAMES_PER_CLIENT: usize = 1024;

/// One client as the proxy saw it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeenClient {
    /// `clientID` from its heartbeats; empty until the first one.
    pub client_id: String,
    /// Its address (`ip:port`) on the connection heard from last.
    pub addr: String,
    /// The language its requests name (`JAVA`, `GO`, ...).
    pub language: String,
    /// The version number its requests carry.
    pub version: i32,
    /// Producer groups its heartbeats name.
    pub producer_groups: BTreeSet<String>,
    /// Consumer group → topics subscribed, from its heartbeats.
    pub subscriptions: BTreeMap<String, BTreeSet<String>>,
    /// Topic → producer group, for the topics it sent through the proxy.
    pub produced: BTreeMap<String, String>,
    /// Its broker connections through the proxy open now.
    pub connections: usize,
    /// When it was last heard from (ms since the Unix epoch).
    pub last_seen_ms: u64,
}

/// What one request tells about its client.
#[derive(Clone, Copy, Debug)]
pub struct Hello<'a> {
    /// The connection's peer address.
    pub peer: &'a str,
    /// The request header's language name.
    pub language: &'a str,
    /// The request header's version.
    pub version: i32,
}

/// The table, shared by a migration's sessions.
#[derive(Debug, Default)]
pub struct ClientTable {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Client id, or `@addr` for a connection not yet named.
    clients: HashMap<String, SeenClient>,
    /// Clients not added because the table was full of connected ones.
    dropped: u64,
}

/// The key a connection's client is kept under before its first
/// heartbeat names it.
#[must_use]
pub fn provisional_key(peer: &str) -> String {
    format!("@{peer}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Inner {
    /// The entry under `key`, created (with one connection) if new; `None`
    /// when the table is full of connected clients.
    fn entry(&mut self, key: &str, hello: Hello<'_>) -> Option<&mut SeenClient> {
        if !self.clients.contains_key(key) {
            if self.clients.len() >= MAX_CLIENTS && !self.evict_one() {
                self.dropped += 1;
                return None;
            }
            self.clients.insert(
                key.to_owned(),
                SeenClient {
                    client_id: key.strip_prefix('@').map_or(key, |_| "").to_owned(),
                    connections: 1,
                    ..SeenClient::default()
                },
            );
        }
        let c = self.clients.get_mut(key)?;
        hello.peer.clone_into(&mut c.addr);
        hello.language.clone_into(&mut c.language);
        c.version = hello.version;
        c.last_seen_ms = now_ms();
        Some(c)
    }

    /// Drops the disconnected client heard from longest ago.
    fn evict_one(&mut self) -> bool {
        let oldest = self
            .clients
            .iter()
            .filter(|(_, c)| c.connections == 0)
            .min_by_key(|(_, c)| c.last_seen_ms)
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| self.clients.remove(&k).is_some())
    }
}

impl ClientTable {
    /// A heartbeat on the connection kept under `key` (its client id, or
    /// its [`provisional_key`] before the first heartbeat). Returns the
    /// heartbeat's client id, the connection's key from now on.
    pub fn heartbeat(&self, key: &str, hello: Hello<'_>, body: &[u8]) -> Option<String> {
        let beat = serde_json::from_slice::<Heartbeat>(body).ok()?;
        let id = beat.client_id.filter(|id| !id.is_empty())?;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let named = key == id;
        let provisional = if named {
            None
        } else {
            inner.clients.remove(key)
        };
        let fresh = !inner.clients.contains_key(&id);
        let c = inner.entry(&id, hello)?;
        if !named && !fresh {
            // Another connection of a known client.
            c.connections += 1;
        }
        if let Some(p) = provisional {
            for (topic, group) in p.produced {
                if c.produced.len() < MAX_NAMES_PER_CLIENT {
                    c.produced.insert(topic, group);
                }
            }
        }
        for p in beat.producer_data_set {
            if c.producer_groups.len() < MAX_NAMES_PER_CLIENT {
                c.producer_groups.insert(p.group_name);
            }
        }
        for consumer in beat.consumer_data_set {
            if c.subscriptions.len() >= MAX_NAMES_PER_CLIENT {
                break;
            }
            let topics = c.subscriptions.entry(consumer.group_name).or_default();
            for sub in consumer.subscription_data_set {
                if topics.len() < MAX_NAMES_PER_CLIENT {
                    topics.insert(sub.topic);
                }
            }
        }
        Some(id)
    }

    /// A send of `topic` for producer `group` on the connection kept under `key`.
    pub fn sent(&self, key: &str, hello: Hello<'_>, topic: &str, group: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = inner.entry(key, hello) else {
            return;
        };
        let known = c.produced.get(topic);
        if known.is_some_and(|g| g == group) {
            return;
        }
        if known.is_some() || c.produced.len() < MAX_NAMES_PER_CLIENT {
            c.produced.insert(topic.to_owned(), group.to_owned());
        }
    }

    /// Any other request on the connection kept under `key`: its client is
    /// still there.
    pub fn touch(&self, key: &str, hello: Hello<'_>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.clients.contains_key(key) {
            inner.entry(key, hello);
        }
    }

    /// The connection kept under `key` closed.
    pub fn closed(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = inner.clients.get_mut(key) {
            c.connections = c.connections.saturating_sub(1);
            c.last_seen_ms = now_ms();
        }
    }

    /// Every client, and how many were not kept because the table was full.
    #[must_use]
    pub fn snapshot(&self) -> (Vec<SeenClient>, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<SeenClient> = inner.clients.values().cloned().collect();
        all.sort_by(|a, b| (&a.client_id, &a.addr).cmp(&(&b.client_id, &b.addr)));
        (all, inner.dropped)
    }

    /// The client named `client_id`, if seen.
    #[must_use]
    pub fn get(&self, client_id: &str) -> Option<SeenClient> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clients.get(client_id).cloned()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Heartbeat {
    #[serde(rename = "clientID", default)]
    client_id: Option<String>,
    #[serde(default)]
    producer_data_set: Vec<GroupName>,
    #[serde(default)]
    consumer_data_set: Vec<super::heartbeat::ConsumerData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupName {
    group_name: String,
}

/// Apache's version number as its name (`V5_3_3`), for the versions the
/// Java client's `MQVersion.Version` lists from 4.0.0 on: a snapshot and a
/// release per `x.y.z` from ordinal 212. Older or unknown numbers are shown
/// as they are.
#[must_use]
pub fn version_name(version: i32) -> String {
    const V4_0_0: i32 = 213;
    const LAST_RELEASE: i32 = V4_0_0 + 2 * 199;
    if !(V4_0_0 - 1..=LAST_RELEASE).contains(&version) {
        return format!("#{version}");
    }
    let n = (version - V4_0_0 + 1) / 2;
    let snapshot = if (version - V4_0_0) % 2 == 0 {
        ""
    } else {
        "_SNAPSHOT"
    };
    format!("V{}_{}_{}{snapshot}", 4 + n / 100, (n / 10) % 10, n % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: Hello<'static> = Hello {
        peer: "10.0.0.1:5000",
        language: "JAVA",
        version: 479,
    };

    #[test]
    fn a_send_before_the_heartbeat_is_merged_into_the_named_client() {
        let t = ClientTable::default();
        let first = provisional_key(HELLO.peer);
        t.sent(&first, HELLO, "orders", "pg");
        let beat = br#"{"clientID":"10.0.0.1@1","producerDataSet":[{"groupName":"pg"}],"consumerDataSet":[{"groupName":"cg","subscriptionDataSet":[{"topic":"orders"}]}]}"#;
        let id = t.heartbeat(&first, HELLO, beat).unwrap();
        assert_eq!(id, "10.0.0.1@1");
        let (all, dropped) = t.snapshot();
        assert_eq!((all.len(), dropped), (1, 0));
        let c = &all[0];
        assert_eq!(c.client_id, "10.0.0.1@1");
        assert_eq!(c.produced.get("orders").map(String::as_str), Some("pg"));
        assert!(c.subscriptions["cg"].contains("orders"));
        assert_eq!(c.connections, 1);
        // A second connection of the same client, then both close.
        let other = Hello {
            peer: "10.0.0.1:5001",
            ..HELLO
        };
        assert!(
            t.heartbeat(&provisional_key(other.peer), other, beat)
                .is_some()
        );
        assert!(
            t.heartbeat(&id, other, beat).is_some(),
            "a named connection again"
        );
        assert_eq!(t.get(&id).unwrap().connections, 2);
        t.closed(&id);
        t.closed(&id);
        assert_eq!(t.get(&id).unwrap().connections, 0);
        assert!(t.heartbeat(&id, HELLO, b"{}").is_none(), "no client id");
    }

    #[test]
    fn a_full_table_evicts_disconnected_clients_first() {
        let t = ClientTable::default();
        for i in 0..MAX_CLIENTS {
            let peer = format!("10.0.0.1:{i}");
            t.sent(
                &provisional_key(&peer),
                Hello {
                    peer: &peer,
                    ..HELLO
                },
                "t",
                "g",
            );
        }
        let x = Hello {
            peer: "x:1",
            ..HELLO
        };
        t.sent(&provisional_key(x.peer), x, "t", "g");
        assert_eq!(t.snapshot().1, 1, "every client is connected");
        t.closed(&provisional_key("10.0.0.1:7"));
        t.sent(&provisional_key(x.peer), x, "t", "g");
        let (all, _) = t.snapshot();
        assert_eq!(all.len(), MAX_CLIENTS);
        assert!(all.iter().all(|c| c.addr != "10.0.0.1:7"));
    }

    #[test]
    fn version_numbers_are_named_like_the_java_client() {
        assert_eq!(version_name(479), "V5_3_3");
        assert_eq!(version_name(409), "V4_9_8");
        assert_eq!(version_name(401), "V4_9_4");
        assert_eq!(version_name(413), "V5_0_0");
        assert_eq!(version_name(213), "V4_0_0");
        assert_eq!(version_name(212), "V4_0_0_SNAPSHOT");
        assert_eq!(version_name(478), "V5_3_3_SNAPSHOT");
        assert_eq!(version_name(7), "#7");
    }
}
