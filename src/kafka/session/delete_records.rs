//! DeleteRecords: "delete every record of this partition before virtual
//! offset V" becomes, for each cluster holding a segment that starts
//! before V, "delete before the physical offset where the virtual space
//! reaches V or the segment ends" on that cluster's leader; V = -1 (up to
//! the high watermark) deletes every closed segment whole and the open
//! one up to its cluster's high watermark. A partition never switched
//! goes to its source leader as asked. The answer's low watermark is
//! translated back from the cluster of the last segment touched.

use std::collections::HashMap;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use cutover_kafka::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, TopicName,
};
use cutover_kafka::{RequestHeader, decode_request_body, decode_response_body};

use super::relay::{Close, Out, Reply, Session, answer, client_id};
use crate::kafka::cluster::Side;
use crate::kafka::rewrite::encode;
use crate::kafka::splice::segments::PartitionMap;
use crate::kafka::splice::split::group_by;
use crate::kafka::splice::translate::to_virtual;

/// "Up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// `(cluster, delete before this physical offset)` per cluster for
/// deleting before virtual `offset`, and the cluster whose answer gives
/// the new low watermark.
#[must_use]
pub(crate) fn plan(map: &PartitionMap, offset: i64) -> (Vec<(Side, i64)>, Side) {
    let segments = map.segments();
    let last = if offset == HIGH_WATERMARK {
        segments.len().saturating_sub(1)
    } else {
        map.locate(offset).index
    };
    let mut per_side: Vec<(Side, i64)> = Vec::new();
    for index in 0..=last {
        let Some(segment) = segments.get(index) else {
            break;
        };
        let at = map.at(index, offset.max(segment.virtual_start));
        let before = match at.physical_end {
            Some(end) if index < last => end,
            _ if offset == HIGH_WATERMARK => HIGH_WATERMARK,
            _ => at.physical,
        };
        match per_side.iter_mut().find(|(side, _)| *side == segment.side) {
            Some((_, b)) => *b = further(*b, before),
            None => per_side.push((segment.side, before)),
        }
    }
    let side = segments.get(last).map_or(Side::Source, |s| s.side);
    (per_side, side)
}

/// The further of two "delete before" points on one cluster: later
/// segments of a cluster lie further on in its log, and the high
/// watermark reaches furthest.
fn further(a: i64, b: i64) -> i64 {
    if a == HIGH_WATERMARK || b == HIGH_WATERMARK {
        HIGH_WATERMARK
    } else {
        a.max(b)
    }
}

pub(super) async fn route(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let request: DeleteRecordsRequest = decode_request_body(&frame, header)
        .map_err(|e| Close::protocol_by("decoding the request", e))?;
    let mut items = Vec::new();
    let mut asked: Vec<(TopicName, i32, PartitionMap, Side)> = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let map = session.shared.splice.map(&topic.name.0, p.partition_index);
            let (parts, last) = plan(&map, p.offset);
            for (side, before) in parts {
                let dest = session.shared.dest(side, &topic.name.0, p.partition_index);
                let part = DeleteRecordsPartition::default()
                    .with_partition_index(p.partition_index)
                    .with_offset(before);
                items.push((dest, (topic.name.clone(), side, part)));
            }
            asked.push((topic.name.clone(), p.partition_index, map, last));
        }
    }
    let (id, version) = (header.correlation_id, header.api_version);
    let client = client_id(&frame, header);
    let mut pending = Vec::new();
    for (dest, parts) in group_by(items) {
        let mut topics: Vec<DeleteRecordsTopic> = Vec::new();
        for (name, _, part) in parts {
            match topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    DeleteRecordsTopic::default()
                        .with_name(name)
                        .with_partitions(vec![part]),
                ),
            }
        }
        let body = DeleteRecordsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(request.timeout_ms);
        let rx = session
            .send(
                &dest,
                ApiKey::DeleteRecords,
                version,
                client.clone(),
                &body,
                true,
            )
            .await?
            .ok_or_else(|| Close::internal("no answer expected"))?;
        pending.push((dest.side, rx));
    }
    Ok(Box::pin(async move {
        let mut results: HashMap<(String, i32, Side), DeleteRecordsPartitionResult> =
            HashMap::new();
        let mut throttle = 0;
        for (side, rx) in pending {
            let part: DeleteRecordsResponse =
                decode_response_body(&answer(rx).await?, ApiKey::DeleteRecords as i16, version)
                    .map_err(|e| Close::upstream_by(side, "its DeleteRecords answer", e))?;
            throttle = part.throttle_time_ms.max(throttle);
            for t in part.topics {
                for p in t.partitions {
                    results.insert((t.name.0.to_string(), p.partition_index, side), p);
                }
            }
        }
        let merged = merge(asked, &results).with_throttle_time_ms(throttle);
        let frame = encode(ApiKey::DeleteRecords, version, id, &merged)
            .map_err(|e| Close::internal_by("encoding the DeleteRecords answer", e))?;
        Ok(Out::Frame(frame))
    }))
}

/// One result per partition asked: the first cluster's error, else the low
/// watermark of the last segment's cluster in virtual offsets.
fn merge(
    asked: Vec<(TopicName, i32, PartitionMap, Side)>,
    results: &HashMap<(String, i32, Side), DeleteRecordsPartitionResult>,
) -> DeleteRecordsResponse {
    let mut out = DeleteRecordsResponse::default();
    for (name, partition, map, last) in asked {
        let mine = || {
            [Side::Source, Side::Target]
                .into_iter()
                .filter_map(|s| results.get(&(name.0.to_string(), partition, s)))
        };
        let failed = mine().find(|r| r.error_code != 0);
        let result = match (failed, results.get(&(name.0.to_string(), partition, last))) {
            (Some(f), _) => DeleteRecordsPartitionResult::default()
                .with_partition_index(partition)
                .with_low_watermark(-1)
                .with_error_code(f.error_code),
            (None, Some(r)) => DeleteRecordsPartitionResult::default()
                .with_partition_index(partition)
                .with_low_watermark(to_virtual(&map, last, r.low_watermark).unwrap_or(-1)),
            // The cluster left the partition out of its answer.
            (None, None) => DeleteRecordsPartitionResult::default()
                .with_partition_index(partition)
                .with_low_watermark(-1)
                .with_error_code(UNKNOWN_TOPIC_OR_PARTITION),
        };
        match out.topics.iter_mut().find(|t| t.name == name) {
            Some(t) => t.partitions.push(result),
            None => out.topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(name)
                    .with_partitions(vec![result]),
            ),
        }
    }
    out
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_reach_every_segment_before_the_offset() {
        let never = PartitionMap::default();
        assert_eq!(plan(&never, 7), (vec![(Side::Source, 7)], Side::Source));
        assert_eq!(plan(&never, -1), (vec![(Side::Source, -1)], Side::Source));
        // Source 0..100, target from physical 4 at virtual 100.
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 4)
            .unwrap();
        assert_eq!(plan(&map, 30), (vec![(Side::Source, 30)], Side::Source));
        assert_eq!(
            plan(&map, 110),
            (vec![(Side::Source, 100), (Side::Target, 14)], Side::Target)
        );
        assert_eq!(
            plan(&map, -1),
            (vec![(Side::Source, 100), (Side::Target, -1)], Side::Target)
        );
        // Target 4..146 (virtual 100..242), then the source again from
        // physical 120 at virtual 242.
        let back = map.appended(Side::Source, 146, 120).unwrap();
        assert_eq!(
            plan(&back, 250),
            (vec![(Side::Source, 128), (Side::Target, 146)], Side::Source)
        );
    }
}
