//! Per-topic Kafka traffic metrics, read from what the session already
//! holds: records and bytes from the batch headers of Produce requests and
//! Fetch answers, errors by code from the answers, and the inputs of the
//! consumer-group lag gauge (each partition's high watermark, each group's
//! commits; [`crate::kafka::lag`] publishes the gauge). Labels stay per
//! topic and cluster.

use std::collections::HashMap;

use cutover_kafka::kafka_protocol::messages::produce_request::TopicProduceData;
use cutover_kafka::kafka_protocol::messages::{FetchResponse, ProduceResponse};
use cutover_kafka::{Batch, batches};

use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::meters::Direction;
use crate::kafka::meters::SplitApi;

/// Records (offsets) in a records blob, from batch headers only.
#[must_use]
fn record_count(records: &[u8]) -> u64 {
    batches(records)
        .filter_map(|b| match b {
            Ok(Batch::Whole(v)) => Some(u64::try_from(v.last_offset_delta()).unwrap_or(0) + 1),
            _ => None,
        })
        .sum()
}

/// One request's worth of a topic's traffic to or from `side`.
fn counted(
    shared: &Shared,
    topic: &str,
    side: Side,
    direction: Direction,
    records: u64,
    bytes: u64,
) {
    let meters = shared.meters.topic(topic);
    meters.requests(side).increment(1);
    meters.records(side, direction).increment(records);
    meters.record_bytes(side, direction).increment(bytes);
}

/// Records per partition of a Produce request (for [`produce_answered`]).
#[must_use]
pub(crate) fn partition_counts(
    request: &cutover_kafka::kafka_protocol::messages::ProduceRequest,
) -> HashMap<(String, i32), i64> {
    request
        .topic_data
        .iter()
        .flat_map(|t| {
            t.partition_data.iter().map(move |p| {
                let n = p.records.as_ref().map_or(0, |r| record_count(r));
                (
                    (t.name.0.to_string(), p.index),
                    i64::try_from(n).unwrap_or(i64::MAX),
                )
            })
        })
        .collect()
}

/// The records and bytes of a Produce (or a part of one) sent to `side`,
/// counted per topic.
pub(crate) fn produced(shared: &Shared, side: Side, topics: &[TopicProduceData]) {
    let parts = topics.iter().flat_map(|t| {
        t.partition_data
            .iter()
            .map(|p| (t.name.0.as_str(), p.records.as_ref()))
    });
    let mut per_topic: HashMap<&str, (u64, u64)> = HashMap::new();
    for (topic, records) in parts {
        let e = per_topic.entry(topic).or_default();
        if let Some(r) = records {
            e.0 += record_count(r);
            e.1 += r.len() as u64;
        }
    }
    for (topic, (records, bytes)) in per_topic {
        counted(shared, topic, side, Direction::Produced, records, bytes);
    }
}

/// One topic's share of a Produce request sent whole to `side`.
pub(super) fn produced_topic(shared: &Shared, side: Side, topic: &str, records: u64, bytes: u64) {
    counted(shared, topic, side, Direction::Produced, records, bytes);
}

/// One partition of a Produce answer from `side` whose offsets are
/// virtual (nothing shifted): errors by code; an acknowledged write
/// tells the splice where the partition's log now ends and raises the
/// watermark for lag (see [`produce_answered`]). `records` is what the
/// request carried there.
pub(super) fn produce_partition(
    shared: &Shared,
    side: Side,
    topic: &str,
    partition: i32,
    (error_code, base_offset): (i16, i64),
    records: Option<u64>,
) {
    if error_code != 0 {
        shared.meters.topic(topic).error(side, error_code);
        return;
    }
    let (true, Some(n)) = (base_offset >= 0, records) else {
        return;
    };
    let end = base_offset + i64::try_from(n).unwrap_or(i64::MAX);
    shared.splice.written(side, topic, partition, end);
    shared.meters.topic(topic).marks().raise(partition, end);
}

/// One partition of a Fetch answer from `side` relayed as is: errors by
/// code, else its watermark for lag; the records and bytes it holds.
pub(super) fn fetched_partition(
    shared: &Shared,
    side: Side,
    topic: &str,
    (partition, error_code, high_watermark): (i32, i16, i64),
    records: &[u8],
) -> (u64, u64) {
    let meters = shared.meters.topic(topic);
    if error_code != 0 {
        meters.error(side, error_code);
        return (0, 0);
    }
    meters.marks().note(partition, high_watermark);
    (record_count(records), records.len() as u64)
}

/// One topic of a Fetch answer relayed as is: its traffic.
pub(super) fn fetched_topic(
    shared: &Shared,
    side: Side,
    topic: &str,
    (records, bytes): (u64, u64),
) {
    counted(shared, topic, side, Direction::Fetched, records, bytes);
}

/// A client request of `api` split over several upstream brokers or
/// clusters: counted once per topic it names.
pub(crate) fn split<'a>(shared: &Shared, api: SplitApi, topics: impl Iterator<Item = &'a str>) {
    let topics: std::collections::HashSet<&str> = topics.collect();
    for topic in topics {
        shared.meters.topic(topic).split(api).increment(1);
    }
}

/// Time from sending to answer of a request to `side`.
pub(super) fn latency(shared: &Shared, side: Side, started: std::time::Instant) {
    shared
        .meters
        .duration(side)
        .record(started.elapsed().as_secs_f64());
}

/// A Produce answer from `side`: errors by code; with `identity` (no
/// partition of the request is shifted) its offsets are virtual too and
/// raise the watermarks for lag.
///
/// Also tells the splice where each partition's log now ends on `side`
/// (base offset + records, physical): the switch closes a segment no
/// earlier than that, whatever a broker's high watermark says (it may lag
/// behind writes it acknowledged with acks=1, or be read stale).
pub(super) fn produce_answered(
    shared: &Shared,
    side: Side,
    body: &ProduceResponse,
    counts: &HashMap<(String, i32), i64>,
    identity: bool,
) {
    if identity {
        produce_ends(shared, body, counts);
    }
    for t in &body.responses {
        for p in &t.partition_responses {
            let key = (t.name.0.to_string(), p.index);
            if let (0, true, Some(n)) = (p.error_code, p.base_offset >= 0, counts.get(&key)) {
                shared
                    .splice
                    .written(side, &key.0, key.1, p.base_offset + n);
            }
        }
        for p in t.partition_responses.iter().filter(|p| p.error_code != 0) {
            shared
                .meters
                .topic(t.name.0.as_str())
                .error(side, p.error_code);
        }
    }
}

/// A Fetch answer from `side` (already in virtual offsets, or identity):
/// records, bytes and errors per topic, and watermarks for lag. A
/// `translated` answer may come from a closed segment, whose watermark
/// stops at the segment's end: it may only raise the one remembered, or a
/// consumer reading old records would make its group's lag look small.
pub(super) fn fetched(shared: &Shared, side: Side, body: &FetchResponse, translated: bool) {
    for t in &body.responses {
        let topic = t.topic.0.as_str();
        let meters = shared.meters.topic(topic);
        let (mut records, mut bytes) = (0u64, 0u64);
        for p in &t.partitions {
            if p.error_code != 0 {
                meters.error(side, p.error_code);
                continue;
            }
            if translated {
                meters.marks().raise(p.partition_index, p.high_watermark);
            } else {
                meters.marks().note(p.partition_index, p.high_watermark);
            }
            if let Some(r) = &p.records {
                records += record_count(r);
                bytes += r.len() as u64;
            }
        }
        counted(shared, topic, side, Direction::Fetched, records, bytes);
    }
}

/// An OffsetCommit relayed through the proxy: remembered per partition
/// for the lag gauge.
pub(crate) fn committed(shared: &Shared, commits: &[(String, String, i32, i64)]) {
    for (group, topic, partition, offset) in commits {
        shared.commits.commit(group, topic, *partition, *offset);
    }
}

/// A Produce answer in virtual offsets: each partition's log now ends at
/// least at base offset + records, so the groups' lag grows with writes
/// even while no consumer fetches.
pub(super) fn produce_ends(
    shared: &Shared,
    body: &ProduceResponse,
    counts: &HashMap<(String, i32), i64>,
) {
    for t in &body.responses {
        let topic = t.name.0.as_str();
        let meters = shared.meters.topic(topic);
        for p in &t.partition_responses {
            if let (0, true, Some(n)) = (
                p.error_code,
                p.base_offset >= 0,
                counts.get(&(topic.to_owned(), p.index)),
            ) {
                meters.marks().raise(p.index, p.base_offset + n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_from_batch_headers() {
        let mut b = vec![0u8; 61];
        b[8..12].copy_from_slice(&49i32.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&4i32.to_be_bytes());
        let two = [b.clone(), b].concat();
        assert_eq!(record_count(&two), 10);
        assert_eq!(record_count(&two[..70]), 5, "a partial tail is not counted");
        assert_eq!(record_count(&[]), 0);
    }
}
