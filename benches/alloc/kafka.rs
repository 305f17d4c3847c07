//! Kafka rows of `alloc_per_request`: Produce v12 of one 100-byte record
//! (acks=all) and Fetch v12 of one batch, to partition 0 of a
//! `source`-state topic on Apache Kafka 4.1.1 (one node per cluster:
//! replication is not what is counted), one request at a time through the
//! virtual broker, after a Metadata v9 (the highest the proxy offers).

use std::time::Duration;

use cutover_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use cutover_kafka::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use cutover_kafka::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;

use super::common::wait_until;
use super::support::{
    KafkaCluster, RawKafka, free_port, free_port_block, kafka_migration, record_batch,
};
use super::{Row, measure, start_proxy};

const TOPIC: &str = "alloc-bench";

pub fn run(n: u64) -> Vec<Row> {
    let source = KafkaCluster::start("alloc-source", 1);
    let target = KafkaCluster::start("alloc-target", 1);
    source.create_topic(TOPIC, 1);
    let listen = free_port();
    let door = free_port_block(1);
    let config = kafka_migration(&source, &target, listen, door, "alloc*", "");
    start_proxy(&config.write(), listen);
    let mut client = RawKafka::connect(door);
    wait_until(
        "the proxy knows the topic's leader",
        Duration::from_secs(60),
        || {
            let asked = MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC)))),
            ]));
            let answer: MetadataResponse = client.call(ApiKey::Metadata, 9, &asked);
            answer.topics.first().is_some_and(|t| {
                t.error_code == 0 && t.partitions.first().is_some_and(|p| p.leader_id.0 >= 0)
            })
        },
    );
    let value = "v".repeat(100);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(record_batch(&[&value]))),
                ]),
        ]);
    let mut produced = 0u64;
    let produce_row = measure(
        "Kafka",
        "Produce v12, 1 record of 100 B, acks=all",
        n,
        |_| {
            let answer: ProduceResponse = client.call(ApiKey::Produce, 12, &produce);
            let code = answer.responses[0].partition_responses[0].error_code;
            assert_eq!(code, 0, "produce answered error {code}");
            produced += 1;
        },
    );
    let fetch_row = measure("Kafka", "Fetch v12, one batch of 1 record", n, |i| {
        let fetch = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(4096)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(i64::try_from(i % produced).unwrap())
                            .with_partition_max_bytes(200),
                    ]),
            ]);
        let answer: FetchResponse = client.call(ApiKey::Fetch, 12, &fetch);
        let code = answer.responses[0].partitions[0].error_code;
        assert_eq!(code, 0, "fetch answered error {code}");
    });
    vec![produce_row, fetch_row]
}
