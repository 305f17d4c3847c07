//! ListOffsets by timestamp (and earliest) on a spliced partition: the
//! first record at or after a time, or the first one not deleted, may lie
//! in any segment, so the segments are asked in
//! order, oldest first, each of its own cluster's leader: the first whose
//! cluster finds such a record *inside the segment's range* answers, in
//! virtual offsets. A record the cluster finds past a closed segment's end
//! belongs to a later segment (or was written around the proxy) and sends
//! the search on. Asked on fresh connections of the proxy's own: lookups
//! by time are rare (a consumer seeking, an operator's tool).

use cutover_kafka::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use cutover_kafka::kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};

use crate::kafka::Shared;
use crate::kafka::splice::segments::PartitionMap;

/// Whether a query for `timestamp` must search `map`'s segments (a time
/// or earliest, on a partition with more than one segment: records
/// deleted up to a closed segment's end send "earliest" to the next).
#[must_use]
pub(super) fn spans(map: &PartitionMap, timestamp: i64) -> bool {
    (timestamp >= 0 || timestamp == EARLIEST) && map.segments().len() > 1
}

/// ListOffsets' "earliest" sentinel.
const EARLIEST: i64 = -2;

/// What segment `index`'s cluster answering `physical` means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The answer, in virtual offsets.
    Found(i64),
    /// Not in this segment: ask the next.
    Next,
}

/// Segment `index`'s cluster found the first record at or after the time
/// at `physical` (-1: none). Before the segment's start it is clamped to
/// the start (records before it are not part of the virtual space).
#[must_use]
pub(crate) fn step(map: &PartitionMap, index: usize, physical: i64) -> Step {
    let Some(segment) = map.segments().get(index) else {
        return Step::Next;
    };
    let located = map.at(index, segment.virtual_start);
    if physical < 0 || located.physical_end.is_some_and(|end| physical >= end) {
        return Step::Next;
    }
    Step::Found(physical.max(segment.physical_start) + located.delta)
}

/// The client's answer for `asked` (a time on `topic`'s spliced partition).
pub(crate) async fn resolve(
    shared: &Shared,
    topic: &TopicName,
    asked: &ListOffsetsPartition,
    map: &PartitionMap,
    version: i16,
    isolation_level: i8,
) -> ListOffsetsPartitionResponse {
    let out = ListOffsetsPartitionResponse::default()
        .with_partition_index(asked.partition_index)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1);
    for (index, segment) in map.segments().iter().enumerate() {
        let dest = shared.dest(segment.side, &topic.0, asked.partition_index);
        let part = match ask(shared, &dest, topic, asked, version, isolation_level).await {
            Ok(part) => part,
            Err(e) => {
                tracing::warn!(migration = %shared.migration.name, topic = %topic.0,
                    partition = asked.partition_index, error = %e, "ListOffsets by time");
                // A retriable answer: the client asks again.
                return out.with_error_code(REQUEST_TIMED_OUT);
            }
        };
        if part.error_code != 0 {
            return out.with_error_code(part.error_code);
        }
        if let Step::Found(offset) = step(map, index, part.offset) {
            return out.with_offset(offset).with_timestamp(part.timestamp);
        }
    }
    out
}

/// A retriable error for a lookup that could not be made.
const REQUEST_TIMED_OUT: i16 = 7;

async fn ask(
    shared: &Shared,
    dest: &crate::kafka::splice::split::Dest,
    topic: &TopicName,
    asked: &ListOffsetsPartition,
    version: i16,
    isolation_level: i8,
) -> Result<ListOffsetsPartitionResponse, String> {
    let upstream = shared.upstream(dest.side, dest.addr.as_deref())?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(cutover_kafka::kafka_protocol::messages::BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic.clone())
                .with_partitions(vec![asked.clone().with_current_leader_epoch(-1)]),
        ]);
    let answer: ListOffsetsResponse = shared
        .exchange(&upstream, ApiKey::ListOffsets, version, &request)
        .await
        .map_err(|e| e.to_string())?;
    answer
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == asked.partition_index)
        .ok_or_else(|| "the answer left the partition out".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::cluster::Side;

    #[test]
    fn each_segment_answers_only_inside_its_range() {
        // Source 0..100 (virtual 0..100), then target from physical 4 at virtual 100.
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 4)
            .unwrap();
        assert!(spans(&map, 1_700_000_000_000));
        assert!(
            spans(&map, -2),
            "earliest too: the first segment may be deleted"
        );
        assert!(!spans(&map, -1), "latest is the open segment's");
        assert!(
            !spans(&PartitionMap::default(), 5),
            "one segment: asked whole"
        );
        assert_eq!(step(&map, 0, 42), Step::Found(42));
        assert_eq!(step(&map, 0, 100), Step::Next, "past the source segment");
        assert_eq!(step(&map, 0, -1), Step::Next, "none there");
        assert_eq!(step(&map, 1, 10), Step::Found(106));
        assert_eq!(
            step(&map, 1, 1),
            Step::Found(100),
            "before the segment: its start"
        );
        assert_eq!(step(&map, 1, -1), Step::Next);
    }
}
