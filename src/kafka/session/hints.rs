//! KIP-951 leader hints. A broker that is no longer a partition's leader
//! answers Produce (v10+) and Fetch (v12+) with the partition's
//! `CurrentLeader` and, at the top level, the `NodeEndpoints` of the
//! brokers it names (Produce v10+, Fetch v16+). Those are real brokers:
//! relayed as sent, a KIP-951 client would connect straight to the cluster
//! and leave the proxy. So every answer that carries a hint is rewritten
//! without it (the client refreshes its metadata through the proxy, as it
//! does without KIP-951), and the proxy learns the new leader from it, so
//! its own next request for the partition goes there at once. Fetch's
//! preferred read replica (KIP-392) names a real broker too and is dropped
//! the same way.

use cutover_kafka::kafka_protocol::messages::{BrokerId, FetchResponse, ProduceResponse};

use crate::kafka::Shared;
use crate::kafka::cluster::Side;

/// What an answer's hints said, and whether the answer was changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Hints {
    /// `(topic, partition, leader node id)` per partition with a known leader.
    pub(crate) leaders: Vec<(String, i32, i32)>,
    /// `(node id, "host:port")` of the brokers named.
    pub(crate) endpoints: Vec<(i32, String)>,
    /// Whether anything was removed (the answer must be re-encoded).
    pub(super) stripped: bool,
}

/// Removes the hints from a Produce answer, returning them.
pub(super) fn strip_produce(body: &mut ProduceResponse) -> Hints {
    let mut hints = Hints::default();
    for topic in &mut body.responses {
        for p in &mut topic.partition_responses {
            if p.current_leader == Default::default() {
                continue;
            }
            hints.note_leader(&topic.name.0, p.index, p.current_leader.leader_id);
            p.current_leader = Default::default();
        }
    }
    hints.take_endpoints(
        body.node_endpoints
            .drain(..)
            .map(|e| (e.node_id.0, format!("{}:{}", e.host, e.port))),
    );
    hints
}

/// Removes the hints (and preferred read replicas) from a Fetch answer,
/// returning them.
pub(super) fn strip_fetch(body: &mut FetchResponse) -> Hints {
    let mut hints = Hints::default();
    for topic in &mut body.responses {
        for p in &mut topic.partitions {
            if p.preferred_read_replica.0 >= 0 {
                p.preferred_read_replica = BrokerId(-1);
                hints.stripped = true;
            }
            if p.current_leader == Default::default() {
                continue;
            }
            hints.note_leader(
                &topic.topic.0,
                p.partition_index,
                p.current_leader.leader_id,
            );
            p.current_leader = Default::default();
        }
    }
    hints.take_endpoints(
        body.node_endpoints
            .drain(..)
            .map(|e| (e.node_id.0, format!("{}:{}", e.host, e.port))),
    );
    hints
}

impl Hints {
    /// Keeps an answer's `NodeEndpoints` (Produce and Fetch each have their
    /// own type of them) as `(node id, "host:port")`.
    fn take_endpoints(&mut self, endpoints: impl Iterator<Item = (i32, String)>) {
        for endpoint in endpoints {
            self.endpoints.push(endpoint);
            self.stripped = true;
        }
    }

    fn note_leader(&mut self, topic: &str, partition: i32, leader: BrokerId) {
        self.stripped = true;
        if leader.0 >= 0 {
            self.leaders.push((topic.to_owned(), partition, leader.0));
        }
    }
}

/// Routes by what `hints` said of `side`: each partition's new leader,
/// when its address is named or already known (an unknown broker is left
/// to the next Metadata).
pub(crate) fn learn(shared: &Shared, side: Side, hints: &Hints) {
    if hints.leaders.is_empty() {
        return;
    }
    shared.update_layout(side, |layout| {
        for (topic, partition, leader) in &hints.leaders {
            let named = hints.endpoints.iter().any(|(node, _)| node == leader);
            if named || layout.broker(*leader).is_some() {
                layout.learn_leader(topic, *partition, *leader, &hints.endpoints);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::decode_response_body;
    use cutover_kafka::kafka_protocol::messages::TopicName;
    use cutover_kafka::kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, PartitionData,
    };
    use cutover_kafka::kafka_protocol::messages::produce_response::{
        LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
    };
    use cutover_kafka::kafka_protocol::messages::{ApiKey, fetch_response};
    use cutover_kafka::kafka_protocol::protocol::StrBytes;

    use crate::kafka::rewrite::encode;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_owned()))
    }

    fn produce_answer(hinted: bool) -> ProduceResponse {
        let mut p = PartitionProduceResponse::default()
            .with_index(0)
            .with_error_code(if hinted { 6 } else { 0 });
        let mut body = ProduceResponse::default();
        if hinted {
            p = p.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(2))
                    .with_leader_epoch(7),
            );
            body = body.with_node_endpoints(vec![
                NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(StrBytes::from_static_str("10.0.0.2"))
                    .with_port(9092),
            ]);
        }
        body.with_responses(vec![
            TopicProduceResponse::default()
                .with_name(name("t"))
                .with_partition_responses(vec![p]),
        ])
    }

    #[test]
    fn produce_hints_are_taken_out_and_reported() {
        let mut body = produce_answer(true);
        let hints = strip_produce(&mut body);
        assert_eq!(
            hints,
            Hints {
                leaders: vec![("t".into(), 0, 2)],
                endpoints: vec![(2, "10.0.0.2:9092".into())],
                stripped: true,
            }
        );
        // What the client gets back carries no real broker at any version.
        for version in 3..=12 {
            let wire = encode(ApiKey::Produce, version, 1, &body).unwrap();
            let back: ProduceResponse =
                decode_response_body(&wire, ApiKey::Produce as i16, version).unwrap();
            assert!(back.node_endpoints.is_empty());
            let p = &back.responses[0].partition_responses[0];
            assert_eq!(p.current_leader, Default::default());
            assert_eq!(p.error_code, 6, "the error itself stays");
        }
        let mut clean = produce_answer(false);
        assert!(!strip_produce(&mut clean).stripped, "nothing to change");
    }

    #[test]
    fn fetch_hints_and_read_replicas_are_taken_out() {
        let mut body = FetchResponse::default()
            .with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        PartitionData::default()
                            .with_partition_index(1)
                            .with_error_code(6)
                            .with_current_leader(
                                fetch_response::LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(3))
                                    .with_leader_epoch(1),
                            ),
                        PartitionData::default()
                            .with_partition_index(2)
                            .with_preferred_read_replica(BrokerId(1)),
                    ]),
            ])
            .with_node_endpoints(vec![
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(3))
                    .with_host(StrBytes::from_static_str("h"))
                    .with_port(3),
            ]);
        let hints = strip_fetch(&mut body);
        assert_eq!(hints.leaders, [("t".to_owned(), 1, 3)]);
        assert_eq!(hints.endpoints, [(3, "h:3".to_owned())]);
        assert!(body.node_endpoints.is_empty());
        let parts = &body.responses[0].partitions;
        assert_eq!(parts[0].current_leader, Default::default());
        assert_eq!(parts[1].preferred_read_replica, BrokerId(-1));
        let mut clean = FetchResponse::default();
        assert_eq!(strip_fetch(&mut clean), Hints::default());
    }
}
