//! Per-topic Kafka traffic metrics, read from what the session already
//! holds: records and bytes from the batch headers of Produce requests and
//! Fetch answers, errors by code from the answers, and consumer-group lag
//! (the partition's last seen high watermark minus the group's last commit
//! relayed through the proxy). Labels stay per topic and cluster; the lag
//! gauge adds the group, which operators name themselves.

use std::collections::HashMap;

use cutover_kafka::kafka_protocol::messages::produce_request::TopicProduceData;
use cutover_kafka::kafka_protocol::messages::{FetchResponse, ProduceResponse};
use cutover_kafka::{Batch, batches};
use dashmap::DashMap;

use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::meters::Direction;
use crate::kafka::meters::SplitApi;
use crate::kafka::partition_key::{Key, PartitionKey, key};
use crate::metrics;

/// High watermarks remembered at most (for lag).
const MAX_WATERMARKS: usize = 65_536;

/// Group commits remembered at most, counted as (topic, group) pairs, and
/// partitions per pair (for lag).
const MAX_COMMITTED: usize = 65_536;
const MAX_COMMITTED_PARTITIONS: usize = 4_096;

/// A group's last commit per partition of one topic.
type GroupCommits = HashMap<i32, i64>;

/// Last seen high watermark per partition and last commit per group and
/// partition (virtual offsets): the gauge is their difference summed over
/// every partition the group committed, recomputed whenever either moves,
/// so it follows producers between commits and one member's commit does
/// not hide the partitions the other members hold.
#[derive(Debug, Default)]
pub(crate) struct Watermarks {
    hw: DashMap<Key, i64>,
    commits: DashMap<String, HashMap<String, GroupCommits>>,
}

impl Watermarks {
    /// A watermark a Fetch answer reported (authoritative, may go down
    /// when a topic is recreated).
    fn note(&self, topic: &str, partition: i32, hw: i64) {
        let asked = key(topic, partition);
        if let Some(mut known) = self.hw.get_mut(&asked as &dyn PartitionKey) {
            *known = hw;
            return;
        }
        if self.hw.len() >= MAX_WATERMARKS {
            return;
        }
        self.hw.insert((topic.to_owned(), partition), hw);
    }

    /// A log end a Produce answer implies: raises the watermark only.
    fn raise(&self, topic: &str, partition: i32, end: i64) {
        let asked = key(topic, partition);
        if let Some(mut hw) = self.hw.get_mut(&asked as &dyn PartitionKey) {
            *hw = (*hw).max(end);
            return;
        }
        self.note(topic, partition, end);
    }

    fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        let asked = key(topic, partition);
        self.hw.get(&asked as &dyn PartitionKey).map(|v| *v)
    }

    fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        if self.commits.len() >= MAX_COMMITTED && !self.commits.contains_key(topic) {
            return;
        }
        let mut groups = self.commits.entry(topic.to_owned()).or_default();
        if groups.len() >= MAX_COMMITTED && !groups.contains_key(group) {
            return;
        }
        let parts = groups.entry(group.to_owned()).or_default();
        if parts.len() < MAX_COMMITTED_PARTITIONS || parts.contains_key(&partition) {
            parts.insert(partition, offset);
        }
    }

    /// Lag per group on `topic`: partitions with a commit and a watermark.
    fn lags(&self, topic: &str) -> Vec<(String, i64)> {
        let Some(groups) = self.commits.get(topic) else {
            return Vec::new();
        };
        groups
            .iter()
            .map(|(group, parts)| {
                let lag = parts
                    .iter()
                    .filter_map(|(p, offset)| Some((self.get(topic, *p)? - offset).max(0)))
                    .sum();
                (group.clone(), lag)
            })
            .collect()
    }
}

/// Sets the lag gauge of every group committed on `topic`.
fn publish_lag(shared: &Shared, topic: &str) {
    for (group, lag) in shared.watermarks.lags(topic) {
        metrics::gauge!(metrics::KAFKA_GROUP_LAG, "migration" => shared.migration.name.to_string(), "group" => group, "topic" => topic.to_owned())
            .set(lag as f64);
    }
}

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
    shared.watermarks.raise(topic, partition, end);
}

/// The lag gauges of `topic`, after an answer moved its watermarks.
pub(super) fn lag_moved(shared: &Shared, topic: &str) {
    publish_lag(shared, topic);
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
    if error_code != 0 {
        shared.meters.topic(topic).error(side, error_code);
        return (0, 0);
    }
    shared.watermarks.note(topic, partition, high_watermark);
    (record_count(records), records.len() as u64)
}

/// One topic of a Fetch answer relayed as is: its traffic, then its lag.
pub(super) fn fetched_topic(
    shared: &Shared,
    side: Side,
    topic: &str,
    (records, bytes): (u64, u64),
) {
    counted(shared, topic, side, Direction::Fetched, records, bytes);
    publish_lag(shared, topic);
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
        let (mut records, mut bytes) = (0u64, 0u64);
        for p in &t.partitions {
            if p.error_code != 0 {
                shared.meters.topic(topic).error(side, p.error_code);
                continue;
            }
            if translated {
                shared
                    .watermarks
                    .raise(topic, p.partition_index, p.high_watermark);
            } else {
                shared
                    .watermarks
                    .note(topic, p.partition_index, p.high_watermark);
            }
            if let Some(r) = &p.records {
                records += record_count(r);
                bytes += r.len() as u64;
            }
        }
        counted(shared, topic, side, Direction::Fetched, records, bytes);
        publish_lag(shared, topic);
    }
}

/// An OffsetCommit relayed through the proxy: remembered per partition,
/// then the lag of the topics it touched is republished.
pub(crate) fn committed(shared: &Shared, commits: &[(String, String, i32, i64)]) {
    for (group, topic, partition, offset) in commits {
        shared.watermarks.commit(group, topic, *partition, *offset);
    }
    let topics: std::collections::HashSet<&str> =
        commits.iter().map(|(_, t, _, _)| t.as_str()).collect();
    for topic in topics {
        publish_lag(shared, topic);
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
        for p in &t.partition_responses {
            if let (0, true, Some(n)) = (
                p.error_code,
                p.base_offset >= 0,
                counts.get(&(topic.to_owned(), p.index)),
            ) {
                shared.watermarks.raise(topic, p.index, p.base_offset + n);
            }
        }
        publish_lag(shared, topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_sums_every_committed_partition_and_follows_writes() {
        let w = Watermarks::default();
        for p in 0..3 {
            w.note("t", p, 30);
        }
        w.commit("g", "t", 0, 10);
        w.commit("g", "t", 1, 20);
        // A second member's commit must not hide the first one's partitions.
        w.commit("g", "t", 2, 5);
        assert_eq!(w.lags("t"), vec![("g".to_owned(), 55)]);
        w.raise("t", 0, 42);
        w.raise("t", 1, 3);
        assert_eq!(
            w.lags("t"),
            vec![("g".to_owned(), 67)],
            "raise never lowers"
        );
        assert!(w.lags("other").is_empty());
    }

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
