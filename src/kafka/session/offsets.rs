//! ListOffsets: each partition is asked of the cluster that holds the
//! answer in its virtual space, and the answer translated:
//!
//! - latest (-1) and max-timestamp (-3): the open segment's cluster;
//! - earliest (-2): the first segment whose records are not all deleted;
//! - a timestamp: on a partition never switched, the source; on a
//!   spliced one, each segment in turn, oldest first (`offsets_by_time`).
//!
//! Leader epochs are reported as -1, as in Metadata.

use std::collections::HashMap;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use cutover_kafka::kafka_protocol::messages::list_offsets_response::ListOffsetsTopicResponse;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use cutover_kafka::{RequestHeader, decode_request_body, decode_response_body};

use super::offsets_by_time;
use super::relay::{Close, Out, Reply, Session, answer, client_id};
use crate::kafka::cluster::Side;
use crate::kafka::meters::SplitApi;
use crate::kafka::rewrite::encode;
use crate::kafka::splice::segments::PartitionMap;
use crate::kafka::splice::split::group_by;

const EARLIEST: i64 = -2;

/// Which cluster answers a ListOffsets query for `timestamp`, and the
/// `virtual - physical` delta of its answer.
#[must_use]
pub(crate) fn plan(map: &PartitionMap, timestamp: i64) -> (Side, i64) {
    let segment = if timestamp == EARLIEST {
        map.segments()
            .first()
            .copied()
            .unwrap_or_else(|| map.open())
    } else {
        map.open()
    };
    (segment.side, segment.virtual_start - segment.physical_start)
}

pub(super) async fn route(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let request: ListOffsetsRequest = decode_request_body(&frame, header)
        .map_err(|e| Close::protocol_by("decoding the request", e))?;
    let mut deltas: HashMap<(String, i32), i64> = HashMap::new();
    let mut items = Vec::new();
    let mut by_time = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        for p in &topic.partitions {
            let map = session.shared.splice.map(name, p.partition_index);
            if offsets_by_time::spans(&map, p.timestamp) {
                by_time.push((topic.name.clone(), p.clone(), map));
                continue;
            }
            let (side, delta) = plan(&map, p.timestamp);
            if delta != 0 {
                deltas.insert((name.to_owned(), p.partition_index), delta);
            }
            let dest = session.shared.dest(side, name, p.partition_index);
            items.push((dest, (topic.name.clone(), p.clone())));
        }
    }
    let groups = group_by(items);
    let (id, version) = (header.correlation_id, header.api_version);
    let home = session.shared.splice.home();
    if groups.len() <= 1
        && deltas.is_empty()
        && by_time.is_empty()
        && groups.first().is_none_or(|g| g.0.side == home)
    {
        let addr = groups.into_iter().next().and_then(|g| g.0.addr);
        let rx = session.forward(home, addr.as_deref(), &frame, true).await?;
        let rx = rx.ok_or_else(|| Close::internal("no answer expected"))?;
        return Ok(Box::pin(async move {
            Ok(Out::Relabelled(answer(rx).await?, id))
        }));
    }
    if groups.len() > 1 {
        super::traffic::split(
            &session.shared,
            SplitApi::ListOffsets,
            request.topics.iter().map(|t| t.name.0.as_str()),
        );
    }
    let client = client_id(&frame, header);
    let mut pending = Vec::new();
    for (dest, parts) in groups {
        let part = part_request(&request, parts);
        let rx = session
            .send(
                &dest,
                ApiKey::ListOffsets,
                version,
                client.clone(),
                &part,
                true,
            )
            .await?
            .ok_or_else(|| Close::internal("no answer expected"))?;
        pending.push((dest.side, rx));
    }
    let shared = session.shared.clone();
    let isolation = request.isolation_level;
    Ok(Box::pin(async move {
        let mut merged = ListOffsetsResponse::default();
        for (topic, asked, map) in by_time {
            let p =
                offsets_by_time::resolve(&shared, &topic, &asked, &map, version, isolation).await;
            match merged.topics.iter_mut().find(|t| t.name == topic) {
                Some(t) => t.partitions.push(p),
                None => merged.topics.push(
                    ListOffsetsTopicResponse::default()
                        .with_name(topic)
                        .with_partitions(vec![p]),
                ),
            }
        }
        for (side, rx) in pending {
            let frame = answer(rx).await?;
            let part: ListOffsetsResponse =
                decode_response_body(&frame, ApiKey::ListOffsets as i16, version)
                    .map_err(|e| Close::upstream_by(side, "its ListOffsets answer", e))?;
            merge_part(&mut merged, part, &deltas);
        }
        let frame = encode(ApiKey::ListOffsets, version, id, &merged)
            .map_err(|e| Close::internal_by("encoding the ListOffsets answer", e))?;
        Ok(Out::Frame(frame))
    }))
}

/// The share of `request` one broker is asked: its partitions, with no
/// leader epoch (the client's epochs are the virtual cluster's, not this
/// broker's).
fn part_request(
    request: &ListOffsetsRequest,
    parts: impl IntoIterator<Item = (TopicName, ListOffsetsPartition)>,
) -> ListOffsetsRequest {
    let mut topics: Vec<ListOffsetsTopic> = Vec::new();
    for (name, p) in parts {
        let p = p.with_current_leader_epoch(-1);
        match topics.iter_mut().find(|t| t.name == name) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                ListOffsetsTopic::default()
                    .with_name(name)
                    .with_partitions(vec![p]),
            ),
        }
    }
    ListOffsetsRequest::default()
        .with_replica_id(request.replica_id)
        .with_isolation_level(request.isolation_level)
        .with_timeout_ms(request.timeout_ms)
        .with_topics(topics)
}

/// Adds one broker's answer to the client's: offsets moved by their
/// partition's `virtual - physical` delta, leader epochs hidden.
fn merge_part(
    merged: &mut ListOffsetsResponse,
    part: ListOffsetsResponse,
    deltas: &HashMap<(String, i32), i64>,
) {
    merged.throttle_time_ms = merged.throttle_time_ms.max(part.throttle_time_ms);
    for mut topic in part.topics {
        for p in &mut topic.partitions {
            p.leader_epoch = -1;
            let delta = deltas.get(&(topic.name.0.to_string(), p.partition_index));
            if let (Some(delta), true) = (delta, p.offset >= 0) {
                p.offset += delta;
            }
        }
        match merged.topics.iter_mut().find(|t| t.name == topic.name) {
            Some(t) => t.partitions.append(&mut topic.partitions),
            None => merged.topics.push(topic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_reads_the_first_segment_and_latest_the_open_one() {
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 4)
            .unwrap();
        assert_eq!(plan(&map, EARLIEST), (Side::Source, 0));
        assert_eq!(plan(&map, -1), (Side::Target, 96));
        assert_eq!(plan(&PartitionMap::default(), -1), (Side::Source, 0));
    }
}
