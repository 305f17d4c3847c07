//! Round trips of real message types through the frame-level encode/decode
//! functions, at non-flexible and flexible versions, and the header rules
//! around them (ApiVersions responses are header v0 even when flexible).

mod seeds;

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::indexmap::IndexMap;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, RequestHeader as KpHeader, TopicName,
    api_versions_response::ApiVersion,
    find_coordinator_response::Coordinator,
    metadata_request::MetadataRequestTopic,
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use cutover_kafka::{
    DEFAULT_MAX_FRAME, FrameError, decode_request_body, decode_response_body, encode_request,
    encode_response, next_frame, peek_request, response_correlation_id, response_header_version,
};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn header(key: ApiKey, version: i16, id: i32) -> KpHeader {
    KpHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(id)
        .with_client_id(Some(s("rdkafka")))
}

/// Encodes a request, frames it from a stream, peeks and decodes it back.
fn request_round_trip<T>(key: ApiKey, version: i16, body: &T) -> Bytes
where
    T: cutover_kafka::kafka_protocol::protocol::Encodable
        + cutover_kafka::kafka_protocol::protocol::Decodable
        + PartialEq
        + std::fmt::Debug,
{
    let wire = encode_request(&header(key, version, 77), body).unwrap();
    let mut stream = BytesMut::from(&wire[..]);
    stream.extend_from_slice(&[0, 0]);
    let frame = next_frame(&mut stream, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(
        frame, wire,
        "the frame is the whole encoding, prefix included"
    );
    let h = peek_request(&frame).unwrap();
    assert_eq!((h.key, h.api_version, h.correlation_id), (key, version, 77));
    assert_eq!(h.client_id(&frame), Some(&b"rdkafka"[..]));
    assert_eq!(
        h.header_version,
        key.request_header_version(version),
        "{key:?} v{version}"
    );
    let back: T = decode_request_body(&frame, &h).unwrap();
    assert_eq!(&back, body, "{key:?} v{version}");
    frame
}

fn response_round_trip<T>(key: ApiKey, version: i16, body: &T) -> Bytes
where
    T: cutover_kafka::kafka_protocol::protocol::Encodable
        + cutover_kafka::kafka_protocol::protocol::Decodable
        + PartialEq
        + std::fmt::Debug,
{
    let hv = response_header_version(key as i16, version).unwrap();
    let frame = encode_response(-3, hv, version, body).unwrap();
    assert_eq!(response_correlation_id(&frame), Some(-3));
    let declared = i32::from_be_bytes(frame[..4].try_into().unwrap());
    assert_eq!(declared as usize, frame.len() - 4);
    let back: T = decode_response_body(&frame, key as i16, version).unwrap();
    assert_eq!(&back, body, "{key:?} v{version}");
    frame
}

fn metadata_request(version: i16) -> MetadataRequest {
    let topic = MetadataRequestTopic::default().with_name(Some(TopicName(s("orders"))));
    let req = MetadataRequest::default().with_topics(Some(vec![topic]));
    if version >= 4 {
        req.with_allow_auto_topic_creation(false)
    } else {
        req.with_allow_auto_topic_creation(true)
    }
}

fn metadata_response(version: i16) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(1))
        .with_host(s("broker-1.internal"))
        .with_port(9092)
        .with_rack(Some(s("az1")));
    let mut partition = MetadataResponsePartition::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(1))
        .with_replica_nodes(vec![BrokerId(1)])
        .with_isr_nodes(vec![BrokerId(1)]);
    if version >= 7 {
        partition = partition.with_leader_epoch(5);
    }
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(s("orders"))))
        .with_partitions(vec![partition]);
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_controller_id(BrokerId(1))
        .with_topics(vec![topic]);
    if version >= 2 {
        resp = resp.with_cluster_id(Some(s("cluster-a")));
    }
    if version >= 3 {
        resp = resp.with_throttle_time_ms(10);
    }
    resp
}

#[test]
fn metadata_request_round_trips_at_v1_v9_v12() {
    for v in [1, 9, 12] {
        let frame = request_round_trip(ApiKey::Metadata, v, &metadata_request(v));
        let h = peek_request(&frame).unwrap();
        assert_eq!(h.header_version, if v >= 9 { 2 } else { 1 });
    }
}

#[test]
fn metadata_response_round_trips_at_v1_v9_v12() {
    for v in [1, 9, 12] {
        let frame = response_round_trip(ApiKey::Metadata, v, &metadata_response(v));
        let hv = response_header_version(ApiKey::Metadata as i16, v).unwrap();
        assert_eq!(hv, if v >= 9 { 1 } else { 0 });
        if hv == 1 {
            assert_eq!(frame[8], 0, "empty tagged fields after the correlation id");
        }
    }
}

#[test]
fn fields_a_version_lacks_are_dropped_or_refused() {
    // Ignorable fields (cluster_id, v2+) are silently dropped at older versions.
    let frame = encode_response(1, 0, 1, &metadata_response(2)).unwrap();
    let back: MetadataResponse = decode_response_body(&frame, ApiKey::Metadata as i16, 1).unwrap();
    assert_eq!(back.cluster_id, None);
    // Non-ignorable ones are refused: cluster_authorized_operations is v8-v10 only.
    let body = metadata_response(12).with_cluster_authorized_operations(0);
    let err = encode_response(1, 1, 12, &body).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Encode {
                api_version: 12,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("could not encode response at version 12")
    );
}

#[test]
fn api_versions_response_v3_uses_header_v0() {
    let body = ApiVersionsResponse::default().with_api_keys(vec![
        ApiVersion::default()
            .with_api_key(ApiKey::Metadata as i16)
            .with_min_version(0)
            .with_max_version(12),
        ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(0)
            .with_max_version(3),
    ]);
    assert_eq!(
        response_header_version(ApiKey::ApiVersions as i16, 3),
        Some(0)
    );
    let frame = response_round_trip(ApiKey::ApiVersions, 3, &body);
    assert_eq!(
        &frame[8..10],
        &[0, 0],
        "error code follows the correlation id directly"
    );
}

#[test]
fn find_coordinator_v3_single_and_v4_list() {
    let v3 = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(2))
        .with_host(s("broker-2.internal"))
        .with_port(9093);
    response_round_trip(ApiKey::FindCoordinator, 3, &v3);
    let v4 = FindCoordinatorResponse::default().with_coordinators(vec![
        Coordinator::default()
            .with_key(s("group-a"))
            .with_node_id(BrokerId(2))
            .with_host(s("broker-2.internal"))
            .with_port(9093),
    ]);
    response_round_trip(ApiKey::FindCoordinator, 4, &v4);
    assert!(
        encode_response(1, 1, 4, &v3).is_err(),
        "v4 has no single-node fields"
    );
}

fn sample_records(n: i64) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 3,
            producer_id: 1000,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i32::try_from(i).unwrap(),
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

#[test]
fn produce_request_v9_round_trips_with_real_records() {
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s("orders")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(sample_records(3))),
                ]),
        ]);
    let frame = request_round_trip(ApiKey::Produce, 9, &body);
    assert_eq!(peek_request(&frame).unwrap().header_version, 2);
}

#[test]
fn decode_errors_name_the_api() {
    let wire = encode_request(&header(ApiKey::Metadata, 9, 1), &metadata_request(9)).unwrap();
    let cut = wire.slice(..wire.len() - 3);
    let h = peek_request(&cut).unwrap();
    let err = decode_request_body::<MetadataRequest>(&cut, &h).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("could not decode request body for API key 3 version 9"),
        "{err}"
    );
    let err = decode_response_body::<MetadataResponse>(
        &Bytes::from_static(&[0, 0, 0, 4, 0, 0, 0, 1]),
        999,
        0,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        FrameError::UnknownApiKey {
            api_key: 999,
            correlation_id: 1,
            ..
        }
    ));
}

/// The seed corpus is generated from real encodings; this keeps it current
/// (`CUTOVER_WRITE_SEEDS=1` rewrites it).
#[test]
fn seed_corpus_matches_current_encodings() {
    use cutover_kafka::kafka_protocol::messages::FetchRequest;
    use cutover_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/kafka_frame");
    std::fs::create_dir_all(&dir).unwrap();
    let metadata =
        |v: i16| encode_request(&header(ApiKey::Metadata, v, 1), &metadata_request(v)).unwrap();
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(s("orders")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(2)
                        .with_records(Some(sample_records(2))),
                ]),
        ]);
    let fetch = |v: i16| {
        let body = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(s("orders")))
                    .with_partitions(vec![FetchPartition::default().with_fetch_offset(42)]),
            ]);
        encode_request(&header(ApiKey::Fetch, v, 9), &body).unwrap()
    };
    let m9 = metadata(9).to_vec();
    let mut pipeline = metadata(1).to_vec();
    pipeline.extend_from_slice(&fetch(12));
    let mut tagged = m9.clone();
    // Give the v2 header one tagged field: client id "rdkafka" ends at 4+8+2+7.
    let at = 4 + 8 + 2 + 7;
    tagged.splice(at..=at, [1u8, 3, 2, 0xAB, 0xCD]);
    let len = i32::try_from(tagged.len() - 4).unwrap();
    tagged[..4].copy_from_slice(&len.to_be_bytes());
    let mut unknown_key = m9.clone();
    unknown_key[4..6].copy_from_slice(&999i16.to_be_bytes());
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("metadata_v1", metadata(1).to_vec()),
        ("metadata_v9", m9.clone()),
        ("metadata_v12", metadata(12).to_vec()),
        (
            "produce_v9",
            encode_request(&header(ApiKey::Produce, 9, 5), &produce)
                .unwrap()
                .to_vec(),
        ),
        (
            "produce_v3",
            encode_request(&header(ApiKey::Produce, 3, 5), &produce)
                .unwrap()
                .to_vec(),
        ),
        ("fetch_v12", fetch(12).to_vec()),
        ("fetch_v4", fetch(4).to_vec()),
        ("pipeline_metadata_fetch", pipeline),
        ("header_v2_tagged_field", tagged),
        ("unknown_api_key", unknown_key),
        ("truncated_frame", m9[..m9.len() - 4].to_vec()),
        ("huge_length", vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 9]),
        ("negative_length", vec![0xff, 0xff, 0xff, 0xfe, 0, 0]),
        ("limit_plus_one", 4097i32.to_be_bytes().to_vec()),
        ("empty_frame", vec![0, 0, 0, 0]),
    ];
    for (name, data) in seeds {
        seeds::check_or_write(dir.join(name), data);
    }
}
