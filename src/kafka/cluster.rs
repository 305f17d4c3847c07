//! What the proxy knows of each real cluster's layout: its brokers, the
//! leader of every partition it has seen, and the coordinators of groups
//! and transactional ids. Sessions route by it; it is refreshed by every
//! Metadata answer that passes through the proxy (clients refresh their
//! metadata after NOT_LEADER errors and broker restarts, so the proxy's
//! view follows without polling of its own) and by FindCoordinator answers.

use std::collections::HashMap;
use std::sync::Arc;

use cutover_kafka::kafka_protocol::messages::MetadataResponse;

use crate::kafka::partition_key::{Key, PartitionKey, key};
pub(crate) use crate::proxy::Side;

/// FindCoordinator key types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum CoordinatorKind {
    /// A consumer group (key type 0).
    Group,
    /// A transactional id (key type 1).
    Transaction,
}

impl CoordinatorKind {
    /// From the wire's key type; other types (share groups) are not routed.
    #[must_use]
    pub(super) fn from_key_type(key_type: i8) -> Option<Self> {
        match key_type {
            0 => Some(CoordinatorKind::Group),
            1 => Some(CoordinatorKind::Transaction),
            _ => None,
        }
    }
}

/// Bounds so a client naming endless topics or groups cannot grow the map
/// without limit; past them the oldest knowledge is dropped, which only
/// costs a detour through the cluster's bootstrap broker.
const MAX_PARTITIONS: usize = 262_144;
const MAX_COORDINATORS: usize = 65_536;

/// One cluster's layout as last seen.
#[derive(Clone, Debug, Default)]
pub(super) struct ClusterLayout {
    /// `host:port` per node id (shared: routes clone it without copying).
    brokers: HashMap<i32, Arc<str>>,
    leaders: HashMap<Key, i32>,
    partition_counts: HashMap<String, i32>,
    coordinators: HashMap<(CoordinatorKind, String), String>,
}

impl ClusterLayout {
    /// Learns brokers, leaders and partition counts from a Metadata answer.
    pub(super) fn learn(&mut self, metadata: &MetadataResponse) {
        for b in &metadata.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host, b.port).into());
        }
        if self.leaders.len() > MAX_PARTITIONS {
            self.leaders.clear();
        }
        for topic in metadata.topics.iter().filter(|t| t.error_code == 0) {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            self.partition_counts.insert(name.clone(), count);
            for p in &topic.partitions {
                self.leaders
                    .insert((name.clone(), p.partition_index), p.leader_id.0);
            }
        }
    }

    /// Learns one partition's new leader from a KIP-951 hint (a Produce or
    /// Fetch answer's `CurrentLeader`, with the `NodeEndpoints` it names),
    /// so the next request goes there without waiting for a Metadata.
    pub(super) fn learn_leader(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        endpoints: &[(i32, String)],
    ) {
        for (node, addr) in endpoints {
            self.brokers.insert(*node, Arc::from(addr.as_str()));
        }
        if self.leaders.len() > MAX_PARTITIONS {
            self.leaders.clear();
        }
        self.leaders.insert((topic.to_owned(), partition), leader);
    }

    /// The address of `topic`/`partition`'s leader, when known.
    #[must_use]
    pub(super) fn leader(&self, topic: &str, partition: i32) -> Option<&Arc<str>> {
        let asked = key(topic, partition);
        let node = self.leaders.get(&asked as &dyn PartitionKey)?;
        self.brokers.get(node)
    }

    /// The node id of `topic`/`partition`'s leader, when known and live.
    #[must_use]
    pub(super) fn leader_id(&self, topic: &str, partition: i32) -> Option<i32> {
        let asked = key(topic, partition);
        self.leaders
            .get(&asked as &dyn PartitionKey)
            .copied()
            .filter(|n| *n >= 0)
    }

    /// The address of broker `node_id`, when known.
    #[must_use]
    pub(super) fn broker(&self, node_id: i32) -> Option<&str> {
        self.brokers.get(&node_id).map(|a| &**a)
    }

    /// Every known broker's `host:port`, by node id.
    #[must_use]
    pub(super) fn broker_addrs(&self) -> Vec<String> {
        let mut known: Vec<(&i32, &Arc<str>)> = self.brokers.iter().collect();
        known.sort();
        known
            .into_iter()
            .map(|(_, addr)| addr.to_string())
            .collect()
    }

    /// The partition count last seen for `topic`.
    #[cfg(test)]
    pub(super) fn partition_count(&self, topic: &str) -> Option<i32> {
        self.partition_counts.get(topic).copied()
    }

    /// Records a coordinator's address.
    pub(super) fn set_coordinator(&mut self, kind: CoordinatorKind, key: &str, addr: String) {
        if self.coordinators.len() > MAX_COORDINATORS {
            self.coordinators.clear();
        }
        self.coordinators.insert((kind, key.to_owned()), addr);
    }

    /// A coordinator's address, when known.
    #[must_use]
    pub(super) fn coordinator(&self, kind: CoordinatorKind, key: &str) -> Option<&str> {
        self.coordinators
            .get(&(kind, key.to_owned()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use cutover_kafka::kafka_protocol::messages::{BrokerId, TopicName};
    use cutover_kafka::kafka_protocol::protocol::StrBytes;

    fn metadata(leader: i32) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(111))
                    .with_host(StrBytes::from_static_str("h"))
                    .with_port(1),
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(112))
                    .with_host(StrBytes::from_static_str("h"))
                    .with_port(2),
            ])
            .with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                    .with_partitions(vec![
                        MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(leader)),
                    ]),
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("gone"))))
                    .with_error_code(3),
            ])
    }

    #[test]
    fn leaders_follow_the_latest_metadata() {
        let mut layout = ClusterLayout::default();
        assert_eq!(layout.leader("t", 0), None);
        layout.learn(&metadata(111));
        assert_eq!(layout.leader("t", 0).map(|a| &**a), Some("h:1"));
        assert_eq!(layout.partition_count("t"), Some(1));
        assert_eq!(layout.partition_count("gone"), None);
        layout.learn(&metadata(112));
        assert_eq!(layout.leader("t", 0).map(|a| &**a), Some("h:2"));
    }

    #[test]
    fn coordinators_are_remembered_per_kind() {
        let mut layout = ClusterLayout::default();
        layout.set_coordinator(CoordinatorKind::Group, "g", "h:1".into());
        assert_eq!(layout.coordinator(CoordinatorKind::Group, "g"), Some("h:1"));
        assert_eq!(layout.coordinator(CoordinatorKind::Transaction, "g"), None);
        assert_eq!(CoordinatorKind::from_key_type(2), None);
    }
}
