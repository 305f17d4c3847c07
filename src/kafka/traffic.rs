//! Per-topic Kafka traffic metrics, read from what the session already
//! holds: records and bytes from the batch headers of Produce requests and
//! Fetch answers, errors by code from the answers, and consumer-group lag
//! (the partition's last seen high watermark minus the group's last commit
//! relayed through the proxy). Labels stay per topic and cluster; the lag
//! gauge adds the group, which operators name themselves.

use std::collections::HashMap;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{ApiKey, FetchResponse, ProduceResponse};
use cutover_kafka::{Batch, batches, decode_response_body};
use dashmap::DashMap;

use super::Shared;
use super::cluster::Side;
use crate::metrics;

/// High watermarks remembered at most (for lag).
const MAX_WATERMARKS: usize = 65_536;

/// Last seen high watermark per partition (virtual offsets).
#[derive(Debug, Default)]
pub struct Watermarks(DashMap<(String, i32), i64>);

impl Watermarks {
    fn note(&self, topic: &str, partition: i32, hw: i64) {
        if self.0.len() >= MAX_WATERMARKS && !self.0.contains_key(&(topic.to_owned(), partition)) {
            return;
        }
        self.0.insert((topic.to_owned(), partition), hw);
    }

    fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.get(&(topic.to_owned(), partition)).map(|v| *v)
    }
}

/// Records (offsets) in a records blob, from batch headers only.
#[must_use]
pub fn record_count(records: &[u8]) -> u64 {
    batches(records)
        .filter_map(|b| match b {
            Ok(Batch::Whole(v)) => Some(u64::try_from(v.last_offset_delta()).unwrap_or(0) + 1),
            _ => None,
        })
        .sum()
}

fn add(
    name: &'static str,
    shared: &Shared,
    topic: &str,
    side: Side,
    extra: (&'static str, String),
    n: u64,
) {
    metrics::counter!(name, "migration" => shared.migration.name.to_string(), "topic" => topic.to_owned(), "cluster" => shared.cluster_name(side), extra.0 => extra.1)
        .increment(n);
}

/// One request's worth of a topic's traffic to or from `side`.
fn counted(
    shared: &Shared,
    topic: &str,
    side: Side,
    direction: &'static str,
    records: u64,
    bytes: u64,
) {
    metrics::counter!(metrics::REQUESTS, "migration" => shared.migration.name.to_string(), "topic" => topic.to_owned(), "cluster" => shared.cluster_name(side))
        .increment(1);
    add(
        metrics::KAFKA_RECORDS,
        shared,
        topic,
        side,
        ("direction", direction.into()),
        records,
    );
    add(
        metrics::KAFKA_RECORD_BYTES,
        shared,
        topic,
        side,
        ("direction", direction.into()),
        bytes,
    );
}

/// Records per partition of a Produce request (for [`produce_answered`]).
#[must_use]
pub fn partition_counts(
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

/// A Produce part sent to `side`: `(topic, records blob)` per partition.
pub(crate) fn produced<'a>(
    shared: &Shared,
    side: Side,
    parts: impl Iterator<Item = (&'a str, Option<&'a Bytes>)>,
) {
    let mut per_topic: HashMap<&str, (u64, u64)> = HashMap::new();
    for (topic, records) in parts {
        let e = per_topic.entry(topic).or_default();
        if let Some(r) = records {
            e.0 += record_count(r);
            e.1 += r.len() as u64;
        }
    }
    for (topic, (records, bytes)) in per_topic {
        counted(shared, topic, side, "produced", records, bytes);
    }
}

/// Time from sending to answer of a request to `side`.
pub(crate) fn latency(shared: &Shared, side: Side, started: std::time::Instant) {
    metrics::histogram!(metrics::REQUEST_DURATION, "migration" => shared.migration.name.to_string(), "cluster" => shared.cluster_name(side))
        .record(started.elapsed().as_secs_f64());
}

/// A Produce answer from `side`: errors by code.
///
/// Also tells the splice where each partition's log now ends on `side`
/// (base offset + records, physical): the switch closes a segment no
/// earlier than that, whatever a broker's high watermark says (it may lag
/// behind writes it acknowledged with acks=1, or be read stale).
pub(crate) fn produce_answered(
    shared: &Shared,
    side: Side,
    frame: &Bytes,
    version: i16,
    counts: &HashMap<(String, i32), i64>,
) {
    let Ok(body) = decode_response_body::<ProduceResponse>(frame, ApiKey::Produce as i16, version)
    else {
        return;
    };
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
            add(
                metrics::KAFKA_ERRORS,
                shared,
                &t.name,
                side,
                ("code", p.error_code.to_string()),
                1,
            );
        }
    }
}

/// A Fetch answer from `side` (already in virtual offsets, or identity):
/// records, bytes and errors per topic, and watermarks for lag.
pub(crate) fn fetched(shared: &Shared, side: Side, body: &FetchResponse) {
    for t in &body.responses {
        let topic = t.topic.0.as_str();
        let (mut records, mut bytes) = (0u64, 0u64);
        for p in &t.partitions {
            if p.error_code != 0 {
                add(
                    metrics::KAFKA_ERRORS,
                    shared,
                    topic,
                    side,
                    ("code", p.error_code.to_string()),
                    1,
                );
                continue;
            }
            shared
                .watermarks
                .note(topic, p.partition_index, p.high_watermark);
            if let Some(r) = &p.records {
                records += record_count(r);
                bytes += r.len() as u64;
            }
        }
        counted(shared, topic, side, "fetched", records, bytes);
    }
}

/// A Fetch answer frame relayed unchanged: decoded for the counts only
/// (records stay shared slices of the frame, nothing is copied).
pub(crate) fn fetched_frame(shared: &Shared, side: Side, frame: &Bytes, version: i16) {
    if let Ok(body) = decode_response_body::<FetchResponse>(frame, ApiKey::Fetch as i16, version) {
        fetched(shared, side, &body);
    }
}

/// An OffsetCommit relayed through the proxy: the group's lag per topic,
/// summed over the partitions it committed, against the last watermarks.
pub(crate) fn committed(shared: &Shared, commits: &[(String, String, i32, i64)]) {
    let mut lag: HashMap<(&str, &str), i64> = HashMap::new();
    for (group, topic, partition, offset) in commits {
        if let Some(hw) = shared.watermarks.get(topic, *partition) {
            *lag.entry((group, topic)).or_default() += (hw - offset).max(0);
        }
    }
    for ((group, topic), lag) in lag {
        metrics::gauge!(metrics::KAFKA_GROUP_LAG, "migration" => shared.migration.name.to_string(), "group" => group.to_owned(), "topic" => topic.to_owned())
            .set(lag as f64);
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
