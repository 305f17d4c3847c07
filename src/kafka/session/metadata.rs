//! Metadata: the client's request goes to the source (which may create
//! topics on first use, as the client expects) and, once any topic of the
//! migration writes to the target, to the target as well; both answers
//! refresh the proxy's routing layout, and the client gets one built from
//! them that names only virtual brokers:
//!
//! - every partition's leader, replica and ISR is one virtual broker: the
//!   door of its real leader on the cluster that takes its writes (see
//!   [`VirtualBrokers::door_of`]), so a client's request to one door
//!   reaches one upstream broker whole instead of being split; a stable
//!   hash of the partition while that leader is unknown. A client follows
//!   a real leader's move as it would on the cluster itself, by its next
//!   Metadata, but never needs it: every door serves every partition;
//! - leader epochs are -1 (unknown): each cluster numbers its own, and a
//!   client that saw the source's epoch would take the target's lower one
//!   for a stale leader, or truncate after OffsetForLeaderEpoch;
//! - a topic in `target` state is described by the target.
//!
//! A source broker that drops the connection before answering (restarting,
//! say) does not cost the client its connection: the proxy asks the same
//! request of the source's other brokers ([`elsewhere`]), and the next
//! Metadata connects afresh.

use std::time::Duration;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use cutover_kafka::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponseTopic,
};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataRequest, MetadataResponse,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::{RequestHeader, decode_request_body, decode_response_body};

use super::link::explain;
use super::relay::{Cause, Close, Out, Reply, Session, answer};
use crate::kafka::brokers::VirtualBrokers;
use crate::kafka::cluster::Side;
use crate::kafka::rewrite::encode;
use crate::kafka::splice::split::Dest;
use crate::migration::State;

/// The version the proxy asks the target at: non-flexible, understood by
/// every broker since Kafka 1.0, with `allow_auto_topic_creation`.
const TARGET_VERSION: i16 = 4;

pub(super) async fn route(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let request: MetadataRequest = decode_request_body(&frame, header)
        .map_err(|e| Close::protocol_by("decoding the request", e))?;
    if session.shared.splice.home() == Side::Target {
        return retired(session, &frame, header).await;
    }
    session.forget_failed(Side::Source, None);
    let source = session
        .forward(Side::Source, None, &frame, true)
        .await?
        .ok_or_else(|| Close::internal("no answer expected"))?;
    let target = if session.shared.target_in_use() {
        session
            .send(
                &Dest::bootstrap(Side::Target),
                ApiKey::Metadata,
                TARGET_VERSION,
                None,
                &target_ask(&request),
                true,
            )
            .await?
    } else {
        None
    };
    let shared = session.shared.clone();
    let (id, version) = (header.correlation_id, header.api_version);
    Ok(Box::pin(async move {
        let failed = |side: Side, e: cutover_kafka::FrameError| {
            Close::upstream_by(side, "its Metadata answer", e)
        };
        let source: MetadataResponse = match answer(source).await {
            Ok(frame) => decode_response_body(&frame, ApiKey::Metadata as i16, version)
                .map_err(|e| failed(Side::Source, e))?,
            Err(
                failed @ Close::Upstream {
                    side: Side::Source, ..
                },
            ) => elsewhere(&shared, &request, version, failed).await?,
            Err(other) => return Err(other),
        };
        shared.update_layout(Side::Source, |l| l.learn(&source));
        let target = match target {
            Some(rx) => Some(target_answer(&shared, rx).await?),
            None => None,
        };
        let seen = discovered(&source);
        let body = virtual_view(
            source,
            target.as_ref(),
            &shared.brokers,
            &shared.advertised_host,
            &|t| shared.migration.topic(t).map(|h| h.state()),
            &|t, p| real_leader(&shared, t, p),
        );
        if !seen.is_empty() {
            shared.discover(&seen).await;
        }
        let frame = encode(ApiKey::Metadata, version, id, &body)
            .map_err(|e| Close::internal_by("encoding the Metadata answer", e))?;
        Ok(Out::Frame(frame))
    }))
}

/// Metadata once the source is retired: the client's request goes to the
/// target alone (which creates topics as the source did), and its answer
/// is shown with the virtual brokers. Topics seen there are not registered:
/// a topic new after retirement was never on the source and lives on the
/// target only.
async fn retired(
    session: &mut Session,
    frame: &Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    session.forget_failed(Side::Target, None);
    let rx = session
        .forward(Side::Target, None, frame, true)
        .await?
        .ok_or_else(|| Close::internal("no answer expected"))?;
    let shared = session.shared.clone();
    let (id, version) = (header.correlation_id, header.api_version);
    Ok(Box::pin(async move {
        let body: MetadataResponse =
            decode_response_body(&answer(rx).await?, ApiKey::Metadata as i16, version)
                .map_err(|e| Close::upstream_by(Side::Target, "its Metadata answer", e))?;
        shared.update_layout(Side::Target, |l| l.learn(&body));
        let body = virtual_view(
            body,
            None,
            &shared.brokers,
            &shared.advertised_host,
            &|t| shared.migration.topic(t).map(|h| h.state()),
            &|t, p| real_leader(&shared, t, p),
        );
        let frame = encode(ApiKey::Metadata, version, id, &body)
            .map_err(|e| Close::internal_by("encoding the Metadata answer", e))?;
        Ok(Out::Frame(frame))
    }))
}

/// The client's Metadata as asked of the target: the same topics, but
/// never creating one there (the target's copy is made by
/// `ctl migrate-metadata`, with the source's partition count and configs).
fn target_ask(request: &MetadataRequest) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(request.topics.as_ref().map(|topics| {
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(t.name.clone()))
                .collect()
        }))
        .with_allow_auto_topic_creation(false)
}

/// The target's Metadata answer, decoded and learnt into its layout.
async fn target_answer(
    shared: &crate::kafka::Shared,
    rx: tokio::sync::oneshot::Receiver<super::link::Answer>,
) -> Result<MetadataResponse, Close> {
    let body: MetadataResponse =
        decode_response_body(&answer(rx).await?, ApiKey::Metadata as i16, TARGET_VERSION)
            .map_err(|e| Close::upstream_by(Side::Target, "its Metadata answer", e))?;
    shared.update_layout(Side::Target, |l| l.learn(&body));
    Ok(body)
}

/// How long a Metadata whose source connection failed may go on asking
/// the source's other brokers (well inside a client's request timeout).
const ELSEWHERE_DEADLINE: Duration = Duration::from_secs(10);

/// The client's Metadata `request` asked of the source's brokers, each on
/// a fresh connection of the proxy's own (configured endpoints first, then
/// every broker the proxy has seen), until one answers: the connection
/// that carried it failed (`failed`).
///
/// # Errors
/// [`Close::Upstream`] when none answers within [`ELSEWHERE_DEADLINE`].
async fn elsewhere(
    shared: &crate::kafka::Shared,
    request: &MetadataRequest,
    version: i16,
    failed: Close,
) -> Result<MetadataResponse, Close> {
    let mut candidates: Vec<String> = shared.bootstrap.endpoints().to_vec();
    for addr in shared.layout(Side::Source).broker_addrs() {
        if !candidates.contains(&addr) {
            candidates.push(addr);
        }
    }
    tracing::info!(migration = %shared.migration.name, reason = %explain(&failed), brokers = candidates.len(),
        "a source connection failed under a Metadata; asking the other brokers");
    let deadline = tokio::time::Instant::now() + ELSEWHERE_DEADLINE;
    let mut last: Cause = Box::new(failed);
    while tokio::time::Instant::now() < deadline {
        for addr in &candidates {
            let upstream = shared
                .upstream(Side::Source, Some(addr))
                .map_err(|e| Close::upstream_by(Side::Source, "its TLS settings", e))?;
            match shared
                .exchange(&upstream, ApiKey::Metadata, version, request)
                .await
            {
                Ok(body) => return Ok(body),
                Err(e) => last = Box::new(e),
            }
        }
        tokio::time::sleep(ELSEWHERE_PAUSE).await;
    }
    Err(Close::upstream_by(
        Side::Source,
        format!("no broker answered Metadata within {ELSEWHERE_DEADLINE:?}"),
        last,
    ))
}

/// Pause between rounds over every broker.
const ELSEWHERE_PAUSE: Duration = Duration::from_millis(250);

/// The node id of `topic`/`partition`'s real leader on the cluster that
/// takes its writes, as last learnt.
fn real_leader(shared: &crate::kafka::Shared, topic: &str, partition: i32) -> Option<i32> {
    let side = shared.splice.produce_shift(topic, partition).side;
    shared.layout(side).leader_id(topic, partition)
}

/// Topics the source listed without error, internal ones left out.
fn discovered(source: &MetadataResponse) -> Vec<String> {
    source
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && !t.is_internal)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect()
}

/// The answer a client sees: virtual brokers, virtual leaders (the door of
/// `real_leader(topic, partition)`, a hash while unknown), no epochs;
/// topics in `target` state described by the target when it knows them.
#[must_use]
fn virtual_view(
    mut source: MetadataResponse,
    target: Option<&MetadataResponse>,
    brokers: &VirtualBrokers,
    host: &str,
    state_of: &dyn Fn(&str) -> Option<State>,
    real_leader: &dyn Fn(&str, i32) -> Option<i32>,
) -> MetadataResponse {
    let host = StrBytes::from_string(host.to_owned());
    source.brokers = brokers
        .nodes()
        .map(|(node, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node))
                .with_host(host.clone())
                .with_port(i32::from(port))
        })
        .collect();
    source.controller_id = BrokerId(0);
    let from_target = |name: &str| -> Option<MetadataResponseTopic> {
        if state_of(name) != Some(State::Target) {
            return None;
        }
        target?
            .topics
            .iter()
            .find(|t| t.error_code == 0 && t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .cloned()
    };
    for topic in &mut source.topics {
        let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        if let Some(t) = from_target(&name) {
            // Only the source's partitions have segment maps; partitions
            // added on the target stay hidden (see the README's limits).
            let count = if topic.error_code == 0 {
                topic.partitions.len()
            } else {
                t.partitions.len()
            };
            topic.error_code = 0;
            topic.partitions = t
                .partitions
                .into_iter()
                .filter(|p| usize::try_from(p.partition_index).is_ok_and(|i| i < count))
                .collect();
        }
        for p in &mut topic.partitions {
            let leader = BrokerId(real_leader(&name, p.partition_index).map_or_else(
                || brokers.leader_of(&name, p.partition_index),
                |node| brokers.door_of(node),
            ));
            p.leader_id = leader;
            p.leader_epoch = -1;
            p.replica_nodes = vec![leader];
            p.isr_nodes = vec![leader];
            p.offline_replicas.clear();
        }
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::kafka_protocol::messages::TopicName;
    use cutover_kafka::kafka_protocol::messages::metadata_response::MetadataResponsePartition;

    fn topic(name: &str, partitions: i32, leader: i32) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.into()))))
            .with_partitions(
                (0..partitions)
                    .map(|i| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i)
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(9)
                            .with_replica_nodes(vec![BrokerId(leader), BrokerId(leader + 1)])
                    })
                    .collect(),
            )
    }

    fn cluster(node: i32, topics: Vec<MetadataResponseTopic>) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(node))
                    .with_host(StrBytes::from_static_str("real"))
                    .with_port(9092),
            ])
            .with_controller_id(BrokerId(node))
            .with_topics(topics)
    }

    #[test]
    fn clients_see_only_virtual_brokers_and_no_epochs() {
        let vb = VirtualBrokers::new(9300, 3);
        let view = virtual_view(
            cluster(111, vec![topic("orders", 6, 111)]),
            None,
            &vb,
            "proxy",
            &|_| Some(State::Source),
            &|_, _| None,
        );
        let brokers: Vec<_> = view
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        assert_eq!(
            brokers,
            [
                (0, "proxy".into(), 9300),
                (1, "proxy".into(), 9301),
                (2, "proxy".into(), 9302)
            ]
        );
        assert_eq!(view.controller_id.0, 0);
        for p in &view.topics[0].partitions {
            let leader = vb.leader_of("orders", p.partition_index);
            assert_eq!(p.leader_id.0, leader);
            assert_eq!(p.replica_nodes, [BrokerId(leader)]);
            assert_eq!(p.isr_nodes, [BrokerId(leader)]);
            assert_eq!(p.leader_epoch, -1);
        }
    }

    #[test]
    fn leaders_are_the_doors_of_the_real_leaders_when_known() {
        let vb = VirtualBrokers::new(9300, 3);
        let view = virtual_view(
            cluster(1, vec![topic("orders", 4, 1)]),
            None,
            &vb,
            "proxy",
            &|_| Some(State::Source),
            &|_, p| (p < 3).then_some(p + 1),
        );
        let leaders: Vec<i32> = view.topics[0]
            .partitions
            .iter()
            .map(|p| p.leader_id.0)
            .collect();
        assert_eq!(leaders[..3], [1, 2, 0], "real brokers 1, 2, 3");
        assert_eq!(leaders[3], vb.leader_of("orders", 3), "unknown: hashed");
    }

    #[test]
    fn target_state_topics_come_from_the_target() {
        let vb = VirtualBrokers::new(9300, 1);
        let target = cluster(111, vec![topic("orders", 8, 111)]);
        let view = virtual_view(
            cluster(111, vec![topic("orders", 6, 111), topic("other", 2, 111)]),
            Some(&target),
            &vb,
            "proxy",
            &|t| {
                Some(if t == "orders" {
                    State::Target
                } else {
                    State::DualWrite
                })
            },
            &|_, _| None,
        );
        assert_eq!(
            view.topics[0].partitions.len(),
            6,
            "only the source's partitions have maps"
        );
        assert_eq!(view.topics[1].partitions.len(), 2);
    }

    #[test]
    fn discovery_skips_errors_and_internal_topics() {
        let mut internal = topic("__consumer_offsets", 1, 1);
        internal.is_internal = true;
        let mut missing = topic("missing", 0, 1);
        missing.error_code = 3;
        let names = discovered(&cluster(1, vec![topic("orders", 1, 1), internal, missing]));
        assert_eq!(names, ["orders"]);
    }
}
