//! The allocation guard accepts every real encoding at every version the
//! decoders cover (no false refusals) and refuses array counts that cannot
//! fit, before kafka-protocol would pre-allocate them.

use bytes::Bytes;
use cutover_kafka::guard::check_request_body;
use cutover_kafka::kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchTopic, ForgottenTopic,
};
use cutover_kafka::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use cutover_kafka::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use cutover_kafka::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use cutover_kafka::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, FetchRequest, GroupId, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    ProduceRequest, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::{Encodable, Message, StrBytes};

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str("orders"))
}

fn body<T: Encodable>(msg: &T, v: i16) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out, v).unwrap();
    out
}

fn metadata() -> MetadataRequest {
    let t = MetadataRequestTopic::default().with_name(Some(name()));
    MetadataRequest::default().with_topics(Some(vec![t.clone(), t]))
}

fn produce(v: i16) -> ProduceRequest {
    let mut t = TopicProduceData::default().with_partition_data(vec![
        PartitionProduceData::default().with_records(Some(Bytes::from_static(b"0123456789"))),
        PartitionProduceData::default().with_index(1),
    ]);
    if v <= 12 {
        t = t.with_name(name());
    }
    ProduceRequest::default().with_topic_data(vec![t])
}

fn fetch(v: i16) -> FetchRequest {
    let mut t = FetchTopic::default().with_partitions(vec![
        FetchPartition::default().with_fetch_offset(42),
        FetchPartition::default().with_partition(1),
    ]);
    let mut f = ForgottenTopic::default().with_partitions(vec![3, 4]);
    if v <= 12 {
        t = t.with_topic(name());
        f = f.with_topic(name());
    }
    let mut req = FetchRequest::default().with_topics(vec![t]);
    if v >= 7 {
        req = req.with_forgotten_topics_data(vec![f]);
    }
    if v >= 11 {
        req = req.with_rack_id(StrBytes::from_static_str("az1"));
    }
    req
}

#[test]
fn real_encodings_pass_at_every_version() {
    for v in MetadataRequest::VERSIONS.min..=MetadataRequest::VERSIONS.max {
        check_request_body(ApiKey::Metadata, v, &body(&metadata(), v)).unwrap();
        let null_topics = MetadataRequest::default().with_topics(None);
        check_request_body(ApiKey::Metadata, v, &body(&null_topics, v)).unwrap();
    }
    for v in ProduceRequest::VERSIONS.min..=ProduceRequest::VERSIONS.max {
        check_request_body(ApiKey::Produce, v, &body(&produce(v), v)).unwrap();
    }
    for v in FetchRequest::VERSIONS.min..=FetchRequest::VERSIONS.max {
        check_request_body(ApiKey::Fetch, v, &body(&fetch(v), v))
            .unwrap_or_else(|e| panic!("fetch v{v}: {e}"));
    }
    let list = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(name())
            .with_partitions(vec![ListOffsetsPartition::default(); 2]),
        ListOffsetsTopic::default().with_name(name()),
    ]);
    for v in ListOffsetsRequest::VERSIONS.min..=ListOffsetsRequest::VERSIONS.max {
        let mut b = body(&list, v);
        check_request_body(ApiKey::ListOffsets, v, &b)
            .unwrap_or_else(|e| panic!("list offsets v{v}: {e}"));
        // The second topic's partition count, made impossible.
        let at = b.len() - if v >= 10 { 4 } else { 0 } - if v >= 6 { 3 } else { 4 };
        b[at] = 0x7f;
        assert!(
            check_request_body(ApiKey::ListOffsets, v, &b).is_err(),
            "v{v}"
        );
    }
}

#[test]
fn offset_commits_pass_at_every_version_and_impossible_counts_fail() {
    let partition = OffsetCommitRequestPartition::default()
        .with_committed_offset(42)
        .with_committed_metadata(Some(StrBytes::from_static_str("m")));
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("app")))
        .with_member_id(StrBytes::from_static_str("member-1"))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(name())
                .with_partitions(vec![partition.clone(), partition.with_partition_index(1)]),
        ]);
    for v in OffsetCommitRequest::VERSIONS.min..=OffsetCommitRequest::VERSIONS.max {
        let mut b = body(&commit, v);
        check_request_body(ApiKey::OffsetCommit, v, &b)
            .unwrap_or_else(|e| panic!("offset commit v{v}: {e}"));
        if v < 8 {
            // The topics count, made impossible.
            let topics_at = b.len() - body(&commit.topics[0], v).len() - 4;
            b[topics_at] = 0x7f;
            assert!(
                check_request_body(ApiKey::OffsetCommit, v, &b).is_err(),
                "v{v}"
            );
        }
    }
}

#[test]
fn impossible_counts_are_refused_before_decoding() {
    // Metadata v0: topics array of i32::MAX elements in a 5-byte body.
    let err = check_request_body(ApiKey::Metadata, 0, &[0x7f, 0xff, 0xff, 0xff, 0]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed request body at byte 0: array declares more elements than bytes left"
    );
    // Fetch v12: compact topics array of 2^28 elements.
    let mut b = vec![0u8; 4 + 4 + 4 + 4 + 1 + 8];
    b.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x01]);
    assert!(check_request_body(ApiKey::Fetch, 12, &b).is_err());
    // Fetch v7: forgotten partitions (an i32 array) of 2^30 elements.
    let mut b = body(&fetch(7).with_forgotten_topics_data(vec![]), 7);
    let n = b.len();
    b[n - 4..].copy_from_slice(&1i32.to_be_bytes()); // one forgotten topic
    b.extend_from_slice(&[0, 1, b'x', 0x40, 0, 0, 0]);
    assert!(check_request_body(ApiKey::Fetch, 7, &b).is_err());
    // Other keys pass unchecked.
    assert!(check_request_body(ApiKey::ApiVersions, 3, &[0xff; 3]).is_ok());
}
