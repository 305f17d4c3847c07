//! What the proxy learns from the traffic it relays, for the readiness
//! checks and the per-topic metrics: consumer groups per topic and their
//! members' client ids (from heartbeats), and which local addresses the proxy's own
//! upstream connections use (a broker lists those as the client address of
//! proxied consumers), and the clients themselves ([`super::seen`]).
//!
//! Groups and members outlive a restart (see `migration::recall`): a
//! change of those sets bumps a counter and a control-plane task writes
//! [`Observed::snapshot`]. A member restored from it is marked not seen
//! until it heartbeats through this process. Everything is bounded:
//! [`MAX_TOPICS`] topics of [`MAX_GROUPS_PER_TOPIC`] groups, members of
//! [`MAX_MEMBER_GROUPS`] groups, [`MAX_MEMBERS`] per group.

use super::heartbeat::ConsumerData;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Topics whose groups are remembered at most.
pub const MAX_TOPICS: usize = 4096;
/// Groups remembered per topic at most.
pub const MAX_GROUPS_PER_TOPIC: usize = 1024;
/// Groups whose members are remembered at most.
pub const MAX_MEMBER_GROUPS: usize = 4096;
/// Members (client ids) remembered per group at most; when full, one not
/// seen since this start, else the longest silent, makes room.
pub const MAX_MEMBERS: usize = 256;
/// A member silent this long has left: a broker drops a client after 120 s
/// without a heartbeat. Such members are not written to a snapshot.
pub const MEMBER_GONE: Duration = Duration::from_secs(120);

/// The persisted form of the groups and members.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// Topic → groups subscribing to it.
    pub topics: BTreeMap<String, BTreeSet<String>>,
    /// Group → client ids of its members.
    pub members: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, Default)]
struct Groups {
    by_topic: HashMap<String, BTreeSet<String>>,
    /// Group → client id → its last heartbeat through this process
    /// (`None`: restored from the previous run, not heard from yet).
    members: HashMap<String, BTreeMap<String, Option<Instant>>>,
}

/// Observations shared by a migration's sessions.
#[derive(Debug, Default)]
pub struct Observed {
    groups: Mutex<Groups>,
    /// Bumped when a topic's groups or a group's members change.
    changes: AtomicU64,
    local_addrs: Mutex<HashSet<String>>,
    /// The clients relayed for, for the endpoint inventory.
    pub clients: super::seen::ClientTable,
}

impl Observed {
    /// Records the consumer groups, subscriptions and member a heartbeat
    /// names; returns the subscribed topics.
    pub fn heartbeat(&self, body: &[u8]) -> Vec<String> {
        let Ok(beat) = serde_json::from_slice::<Heartbeat>(body) else {
            return Vec::new();
        };
        let mut topics = Vec::new();
        let mut changed = false;
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for consumer in beat.consumer_data_set {
            for sub in consumer.subscription_data_set {
                changed |= groups.add_group(&sub.topic, &consumer.group_name);
                topics.push(sub.topic);
            }
            if !beat.client_id.is_empty() {
                changed |= groups.add_member(&consumer.group_name, &beat.client_id);
            }
        }
        if changed {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        topics
    }

    /// Consumer groups seen subscribing to `topic`.
    #[must_use]
    pub fn groups(&self, topic: &str) -> Vec<String> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_topic
            .get(topic)
            .map(|g| g.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Client ids of `group`'s members restored from the previous run
    /// that have not heartbeated through this process.
    #[must_use]
    pub fn members_not_back(&self, group: &str) -> Vec<String> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .members
            .get(group)
            .map(|m| {
                m.iter()
                    .filter(|(_, last)| last.is_none())
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many times the groups or members changed.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The groups and members for the next start; members silent for
    /// [`MEMBER_GONE`] are left out, and so are those not seen since this
    /// start when `only_back` (they had their chance to heartbeat).
    pub fn snapshot(&self, only_back: bool) -> Saved {
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        Saved {
            topics: groups
                .by_topic
                .iter()
                .map(|(t, g)| (t.clone(), g.clone()))
                .collect(),
            members: groups
                .members
                .iter()
                .map(|(g, m)| {
                    let ids = m
                        .iter()
                        .filter(|(_, last)| match last {
                            Some(at) => at.elapsed() < MEMBER_GONE,
                            None => !only_back,
                        })
                        .map(|(id, _)| id.clone())
                        .collect();
                    (g.clone(), ids)
                })
                .collect(),
        }
    }

    /// Seeds the groups and members of the previous run (members marked
    /// not seen yet), within the bounds.
    pub fn restore(&self, saved: Saved) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, names) in saved.topics {
            for g in names {
                groups.add_group(&topic, &g);
            }
        }
        for (group, ids) in saved.members {
            for id in ids {
                if groups.add_member(&group, &id)
                    && let Some(m) = groups.members.get_mut(&group)
                {
                    m.insert(id, None);
                }
            }
        }
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

impl Groups {
    /// Whether `group` was new for `topic`.
    fn add_group(&mut self, topic: &str, group: &str) -> bool {
        if !self.by_topic.contains_key(topic) && self.by_topic.len() >= MAX_TOPICS {
            return false;
        }
        let set = self.by_topic.entry(topic.to_owned()).or_default();
        set.len() < MAX_GROUPS_PER_TOPIC && set.insert(group.to_owned())
    }

    /// Marks `id` a member of `group` seen now; whether it was new.
    fn add_member(&mut self, group: &str, id: &str) -> bool {
        if !self.members.contains_key(group) && self.members.len() >= MAX_MEMBER_GROUPS {
            return false;
        }
        let m = self.members.entry(group.to_owned()).or_default();
        let now = Some(Instant::now());
        if let Some(last) = m.get_mut(id) {
            let back = last.is_none();
            *last = now;
            return back;
        }
        if m.len() >= MAX_MEMBERS {
            // `None` sorts first: a restored member not heard from goes first.
            let Some(gone) = m
                .iter()
                .min_by_key(|(_, last)| **last)
                .map(|(k, _)| k.clone())
            else {
                return false;
            };
            m.remove(&gone);
        }
        m.insert(id.to_owned(), now);
        true
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Heartbeat {
    #[serde(default, rename = "clientID")]
    client_id: String,
    #[serde(default)]
    consumer_data_set: Vec<ConsumerData>,
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
        assert!(o.members_not_back("g").is_empty());
    }

    #[test]
    fn restored_members_are_not_back_until_they_heartbeat() {
        let o = Observed::default();
        let beat = |id: &str| {
            format!(
                r#"{{"clientID":"{id}","consumerDataSet":[{{"groupName":"g","subscriptionDataSet":[{{"topic":"t"}}]}}]}}"#
            )
        };
        o.heartbeat(beat("a").as_bytes());
        o.heartbeat(beat("b").as_bytes());
        let saved = o.snapshot(false);
        assert_eq!(saved.members["g"].len(), 2);
        let after = Observed::default();
        after.restore(saved);
        assert_eq!(after.groups("t"), vec!["g"]);
        assert_eq!(after.members_not_back("g"), vec!["a", "b"]);
        let before = after.changes();
        after.heartbeat(beat("a").as_bytes());
        assert!(after.changes() > before, "a member back is a change");
        assert_eq!(after.members_not_back("g"), vec!["b"]);
        assert_eq!(after.snapshot(true).members["g"].len(), 1);
    }

    #[test]
    fn members_are_bounded() {
        let o = Observed::default();
        for i in 0..MAX_MEMBERS + 5 {
            let beat = format!(r#"{{"clientID":"c{i}","consumerDataSet":[{{"groupName":"g"}}]}}"#);
            o.heartbeat(beat.as_bytes());
        }
        assert_eq!(o.snapshot(false).members["g"].len(), MAX_MEMBERS);
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
