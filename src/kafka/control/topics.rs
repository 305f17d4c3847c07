//! The proxy's own admin requests about one topic: its shape on either
//! cluster (Metadata), metadata migration (DescribeConfigs on the source,
//! CreateTopics on the target), and the log ends the bypass checks
//! compare (ListOffsets latest). Group offsets are in `group_move`.

use std::collections::HashMap;

use cutover_kafka::kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, TopicName,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    describe_configs_request::DescribeConfigsResource,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use serde_json::{Value, json};

use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::retry::{Failure, STEP_DEADLINE, describe, retrying};
use crate::proxy::Upstream;

/// Kafka error codes the proxy interprets.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// `DescribeConfigs` `config_source` of a value set on the topic itself.
const TOPIC_CONFIG: i8 = 1;
/// `DescribeConfigs` resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

/// One topic as a cluster's Metadata shows it.
#[derive(Debug, Clone)]
pub(super) struct TopicShape {
    /// `(partition, leader node id)`, sorted by partition.
    pub(crate) partitions: Vec<(i32, i32)>,
    /// Replicas of the first partition.
    pub(super) replication: usize,
}

/// A cluster's Metadata answer for one topic.
#[derive(Debug, Clone)]
pub(crate) struct ClusterView {
    /// `(node id, "host:port")`.
    pub(crate) brokers: Vec<(i32, String)>,
    /// Controller node id (-1 when unknown).
    pub(crate) controller: i32,
    /// The topic, `None` when the cluster does not have it.
    pub(crate) topic: Option<TopicShape>,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

/// Metadata for `topic` on the cluster behind `upstream`, never creating it.
/// A topic error of a settling cluster (LEADER_NOT_AVAILABLE while a new
/// topic elects its leaders) or a connection dropped before the answer is
/// asked again within the step's deadline.
///
/// # Errors
/// When the cluster cannot be asked or answers a topic error other than
/// "unknown topic".
pub(crate) async fn view(
    shared: &Shared,
    upstream: &Upstream,
    topic: &str,
) -> Result<ClusterView, String> {
    retrying(STEP_DEADLINE, || view_once(shared, upstream, topic)).await
}

async fn view_once(
    shared: &Shared,
    upstream: &Upstream,
    topic: &str,
) -> Result<ClusterView, Failure> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s(topic)))),
        ]))
        .with_allow_auto_topic_creation(false);
    // A broker that drops the connection mid-answer (restarting) is asked
    // again (the next connection may reach another endpoint); one that
    // nobody at any endpoint answers fails at once.
    let response: MetadataResponse = shared
        .exchange(upstream, ApiKey::Metadata, 4, &request)
        .await
        .map_err(|e| Failure {
            retriable: matches!(e, crate::kafka::probe::ProbeError::Exchange { .. }),
            message: e.to_string(),
        })?;
    let brokers = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let found = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
    let topic = match found {
        None => None,
        Some(t) if t.error_code == UNKNOWN_TOPIC_OR_PARTITION => None,
        Some(t) if t.error_code != 0 => {
            return Err(Failure::code(
                t.error_code,
                format!(
                    "cluster \"{}\" answered Metadata for {topic}",
                    upstream.cluster
                ),
            ));
        }
        Some(t) => {
            let mut partitions: Vec<(i32, i32)> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            partitions.sort_unstable();
            let replication = t
                .partitions
                .iter()
                .min_by_key(|p| p.partition_index)
                .map_or(1, |p| p.replica_nodes.len().max(1));
            Some(TopicShape {
                partitions,
                replication,
            })
        }
    };
    Ok(ClusterView {
        brokers,
        controller: response.controller_id.0,
        topic,
    })
}

/// The configs set on `topic` itself on the source (not defaults, not
/// broker-level values, not sensitive ones), sorted by name.
///
/// A broker of the source that drops the connection (restarting, say) is
/// asked again within the step's deadline.
async fn source_configs(shared: &Shared, topic: &str) -> Result<Vec<(String, String)>, String> {
    retrying(STEP_DEADLINE, || source_configs_once(shared, topic)).await
}

async fn source_configs_once(
    shared: &Shared,
    topic: &str,
) -> Result<Vec<(String, String)>, Failure> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(None),
    ]);
    let response: DescribeConfigsResponse = shared
        .exchange(&shared.bootstrap, ApiKey::DescribeConfigs, 1, &request)
        .await
        .map_err(|e| Failure {
            retriable: true,
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for result in &response.results {
        if result.error_code != 0 {
            return Err(Failure::code(
                result.error_code,
                format!(
                    "DescribeConfigs for {topic} on the source{}",
                    result
                        .error_message
                        .as_ref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                ),
            ));
        }
        for c in &result.configs {
            if c.config_source == TOPIC_CONFIG
                && !c.is_sensitive
                && let Some(value) = &c.value
            {
                out.push((c.name.to_string(), value.to_string()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `ctl migrate-metadata` for one topic: creates it on the target with the
/// source's partition count, replication factor (capped at the target's
/// broker count) and topic configs, or reports how the existing one compares.
/// Never modifies an existing target topic.
pub(super) async fn migrate(shared: &Shared, topic: &str) -> Value {
    match migrate_inner(shared, topic).await {
        Ok(report) => report,
        Err(reason) => json!({ "topic": topic, "outcome": "error", "reason": reason }),
    }
}

async fn migrate_inner(shared: &Shared, topic: &str) -> Result<Value, String> {
    let source = view(shared, &shared.bootstrap, topic).await?;
    let Some(src) = source.topic else {
        return Err(format!(
            "cluster \"{}\" (source) has no topic {topic}",
            shared.bootstrap.cluster
        ));
    };
    let src_parts = src.partitions.len();
    let target = view(shared, &shared.target, topic).await?;
    if let Some(existing) = &target.topic {
        return Ok(present(topic, src_parts, existing.partitions.len()));
    }
    let configs = source_configs(shared, topic).await?;
    let replication = src.replication.min(target.brokers.len()).max(1);
    let request = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s(topic)))
                .with_num_partitions(i32::try_from(src_parts).unwrap_or(i32::MAX))
                .with_replication_factor(i16::try_from(replication).unwrap_or(i16::MAX))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                ),
        ])
        .with_timeout_ms(i32::try_from(shared.connect_timeout.as_millis()).unwrap_or(i32::MAX));
    // CreateTopics belongs to the controller on brokers that do not forward it.
    let controller = target
        .brokers
        .iter()
        .find(|(id, _)| *id == target.controller)
        .and_then(|(_, addr)| shared.target_at(addr).ok())
        .unwrap_or_else(|| shared.target.clone());
    let response: CreateTopicsResponse = shared
        .exchange(&controller, ApiKey::CreateTopics, 4, &request)
        .await
        .map_err(|e| e.to_string())?;
    let result = response
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == topic)
        .ok_or_else(|| format!("CreateTopics answer does not mention {topic}"))?;
    match result.error_code {
        0 => Ok(json!({
            "topic": topic,
            "outcome": "created",
            "source_partitions": src_parts,
            "target_partitions": src_parts,
            "replication_factor": replication,
            "source_replication_factor": src.replication,
            "configs": configs.iter().cloned().collect::<HashMap<_, _>>(),
            "reason": format!(
                "created with {src_parts} partition(s), replication factor {replication}, {} config(s)",
                configs.len()
            ),
        })),
        TOPIC_ALREADY_EXISTS => {
            let again = view(shared, &shared.target, topic).await?;
            let parts = again.topic.map_or(0, |t| t.partitions.len());
            Ok(present(topic, src_parts, parts))
        }
        code => Err(format!(
            "CreateTopics on cluster \"{}\" failed: {}{}",
            shared.target.cluster,
            describe(code),
            result
                .error_message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
    }
}

fn present(topic: &str, source: usize, target: usize) -> Value {
    let ok = target >= source;
    json!({
        "topic": topic,
        "outcome": if ok { "present" } else { "too_few_partitions" },
        "source_partitions": source,
        "target_partitions": target,
        "reason": if ok {
            format!("already on the target with {target} partition(s) (source: {source}); left unchanged")
        } else {
            format!("already on the target with only {target} partition(s), the source has {source}; left unchanged (add partitions on the target)")
        },
    })
}

/// ListOffsets for `partitions` of `topic` on `side` at `timestamp` (-1
/// latest, -2 earliest) and `isolation` (1: read committed), one request
/// per leader as `side`'s layout knows them (its configured endpoints for
/// partitions whose leader is unknown). A leader that moved or is being
/// elected (or a topic just created) is waited out: the leaders are asked
/// again and so is the request, within the step's deadline.
///
/// # Errors
/// When a leader cannot be asked or reports an error for a partition.
pub(super) async fn list_offsets(
    shared: &Shared,
    side: Side,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
    isolation: i8,
) -> Result<HashMap<i32, i64>, String> {
    let mut first = true;
    retrying(STEP_DEADLINE, || {
        let again = !std::mem::replace(&mut first, false);
        async move {
            if again {
                // Best effort: the request below fails again if the
                // leaders are still unknown.
                let _ = refresh_layout(shared, side, topic).await;
            }
            list_offsets_once(shared, side, topic, partitions, timestamp, isolation).await
        }
    })
    .await
}

async fn list_offsets_once(
    shared: &Shared,
    side: Side,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
    isolation: i8,
) -> Result<HashMap<i32, i64>, Failure> {
    let mut by_leader: HashMap<Option<std::sync::Arc<str>>, Vec<i32>> = HashMap::new();
    for &p in partitions {
        by_leader
            .entry(shared.dest(side, topic, p).addr)
            .or_default()
            .push(p);
    }
    let mut out = HashMap::new();
    for (addr, parts) in by_leader {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    ),
            ]);
        let upstream = shared.upstream(side, addr.as_deref())?;
        let response: ListOffsetsResponse = shared
            .exchange(&upstream, ApiKey::ListOffsets, 2, &request)
            .await
            .map_err(|e| e.to_string())?;
        for p in response.topics.iter().flat_map(|t| &t.partitions) {
            if p.error_code != 0 {
                return Err(Failure::code(
                    p.error_code,
                    format!(
                        "the {} answered ListOffsets for {topic}/{}",
                        side.as_str(),
                        p.partition_index
                    ),
                ));
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    if let Some(p) = partitions.iter().find(|p| !out.contains_key(p)) {
        return Err(Failure::fatal(format!(
            "the {} did not answer ListOffsets for {topic}/{p}",
            side.as_str()
        )));
    }
    Ok(out)
}

/// Learns `topic`'s leaders on `side` (the switch may run before any
/// client asked that cluster).
pub(super) async fn refresh_layout(shared: &Shared, side: Side, topic: &str) -> Result<(), String> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_owned())),
        ))]))
        .with_allow_auto_topic_creation(false);
    let upstream = shared.upstream(side, None)?;
    let response: MetadataResponse = shared
        .exchange(&upstream, ApiKey::Metadata, 4, &request)
        .await
        .map_err(|e| e.to_string())?;
    shared.update_layout(side, |l| l.learn(&response));
    Ok(())
}
