//! The copier's requests: the read_committed Fetch of one source partition,
//! the Produce of one planned batch to the target, the copier's own
//! idempotent producer id, and the partition's log ends. Every error says
//! whether asking again may cure it ([`Failure`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use cutover_kafka::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;

use super::plan::{Aborted, Producer};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::probe::{Link, ProbeError};
use crate::kafka::retry::{Failure, STEP_DEADLINE, retrying};

/// Fetch v12: topic names (v13 on uses topic ids), flexible, and the
/// aborted transactions of a read_committed answer; every broker since 2.7.
const FETCH_VERSION: i16 = 12;
/// Produce v8: non-flexible, per-record errors; every broker since 2.4
/// (Kafka 4 keeps v3 on).
const PRODUCE_VERSION: i16 = 8;
const INIT_PRODUCER_ID_VERSION: i16 = 3;
/// How long a read waits at the source's end for new records.
const FETCH_WAIT_MS: i32 = 500;
/// One answer's bytes: the partition limit bounds it, as one partition is read.
const PARTITION_MAX_BYTES: i32 = 4 * 1024 * 1024;
/// How long the target may take to replicate one batch (acks = all).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Errors after which the copy goes on from the target's log end: the
/// batches in flight may or may not have landed (OUT_OF_ORDER_SEQUENCE,
/// DUPLICATE_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID, NOT_ENOUGH_REPLICAS,
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT, FENCED_LEADER_EPOCH,
/// UNKNOWN_LEADER_EPOCH, KAFKA_STORAGE_ERROR, NETWORK_EXCEPTION).
const ASK_AGAIN: [i16; 10] = [45, 46, 59, 19, 20, 7, 74, 75, 56, 13];

/// One partition's Fetch answer.
pub(super) struct Read {
    pub(super) records: Bytes,
    pub(super) aborted: Vec<Aborted>,
    pub(super) high_watermark: i64,
}

/// A read that found the offset gone (retention deleted it).
pub(super) enum Fetched {
    Read(Read),
    OutOfRange,
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn link_failure(e: &ProbeError) -> Failure {
    Failure {
        retriable: true,
        message: e.to_string(),
    }
}

/// Whether a copier may ask again after the answer `code`.
pub(super) fn asks_again(code: i16) -> bool {
    crate::kafka::retry::is_waited_out(code) || ASK_AGAIN.contains(&code)
}

fn answer(code: i16, what: String) -> Failure {
    let mut failure = Failure::code(code, what);
    failure.retriable = asks_again(code);
    failure
}

/// A kept connection to the leader of `topic`/`partition` on `side`.
pub(super) async fn open(
    shared: &Shared,
    side: Side,
    topic: &str,
    partition: i32,
) -> Result<Link, Failure> {
    let addr = shared.dest(side, topic, partition).addr;
    let upstream = shared.upstream(side, addr.as_deref())?;
    // The deadline covers a long-polling read and a replicated write.
    let deadline = shared.connect_timeout.max(Duration::from_secs(35));
    Link::open(&upstream, deadline, shared.max_frame)
        .await
        .map_err(|e| link_failure(&e))
}

/// Reads `topic`/`partition` from `offset`, read_committed.
pub(super) async fn fetch(
    link: &mut Link,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Fetched, Failure> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(PARTITION_MAX_BYTES)
        .with_isolation_level(1)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(PARTITION_MAX_BYTES),
                ]),
        ]);
    link.send(ApiKey::Fetch, FETCH_VERSION, &request)
        .await
        .map_err(|e| link_failure(&e))?;
    let response: FetchResponse = link.receive().await.map_err(|e| link_failure(&e))?;
    let part = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            Failure::fatal(format!(
                "the source did not answer Fetch for {topic}/{partition}"
            ))
        })?;
    match part.error_code {
        0 => Ok(Fetched::Read(Read {
            records: part.records.unwrap_or_default(),
            aborted: part
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|a| Aborted {
                    producer_id: a.producer_id.0,
                    first_offset: a.first_offset,
                })
                .collect(),
            high_watermark: part.high_watermark,
        })),
        OFFSET_OUT_OF_RANGE => Ok(Fetched::OutOfRange),
        code => Err(answer(
            code,
            format!("the source answered Fetch for {topic}/{partition}"),
        )),
    }
}

/// Sends one planned batch to the target (acks = all) without waiting.
pub(super) async fn send_batch(
    link: &mut Link,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> Result<(), Failure> {
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(-1)
        .with_timeout_ms(PRODUCE_TIMEOUT_MS)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ]),
        ]);
    link.send(ApiKey::Produce, PRODUCE_VERSION, &request)
        .await
        .map_err(|e| link_failure(&e))
}

/// The base offset the target gave the oldest batch in flight.
pub(super) async fn acknowledged(
    link: &mut Link,
    topic: &str,
    partition: i32,
) -> Result<i64, Failure> {
    let response: ProduceResponse = link.receive().await.map_err(|e| link_failure(&e))?;
    let part = response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .find(|p| p.index == partition)
        .ok_or_else(|| {
            Failure::fatal(format!(
                "the target did not answer Produce for {topic}/{partition}"
            ))
        })?;
    if part.error_code != 0 {
        let detail = part
            .error_message
            .as_ref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        return Err(answer(
            part.error_code,
            format!("the target refused the copy of {topic}/{partition}{detail}"),
        ));
    }
    Ok(part.base_offset)
}

/// The copier's own idempotent producer on the target (one per migration).
pub(super) async fn init_producer(shared: &Arc<Shared>) -> Result<Producer, String> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    retrying(STEP_DEADLINE, || async {
        let upstream = shared.upstream(Side::Target, None)?;
        let response: InitProducerIdResponse = shared
            .exchange(
                &upstream,
                ApiKey::InitProducerId,
                INIT_PRODUCER_ID_VERSION,
                &request,
            )
            .await
            .map_err(|e| link_failure(&e))?;
        if response.error_code != 0 {
            return Err(Failure::code(
                response.error_code,
                "the target answered InitProducerId for the history copy",
            ));
        }
        Ok(Producer {
            id: response.producer_id.0,
            epoch: response.producer_epoch,
        })
    })
    .await
}
