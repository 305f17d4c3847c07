//! Committed offsets of a consumer group the target coordinates (DESIGN.md
//! §2 Kafka, `target`): the target group holds *physical* target offsets,
//! so an application that later connects straight to the target resumes
//! where it stopped, while clients of the proxy keep seeing virtual
//! offsets. OffsetCommit requests are translated virtual → physical and
//! OffsetFetch answers physical → virtual.
//!
//! A virtual offset inside a source segment (a reader that sought back)
//! has no physical place on the target: the target group holds the first
//! target offset after that segment, and the exact virtual position rides
//! at the head of the commit metadata ([`VIRTUAL_MARK`]), so the proxy's
//! clients get it back unchanged. Only a partition with no target segment
//! after the position (it writes to the source again) cannot be committed
//! there; it answers OFFSET_OUT_OF_RANGE. Negative sentinels pass
//! unchanged.

use cutover_kafka::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use cutover_kafka::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;

use super::segments::PartitionMap;
use crate::kafka::cluster::Side;

/// The error a partition answers when its offset cannot be held on the target.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// `physical` of `side` as a virtual offset: in the last of `side`'s
/// segments starting at or before it (a closed one clamps at its end);
/// before the first, that segment's start, since records there were never
/// part of the virtual space. `None` when `side` holds no segment.
#[must_use]
pub(crate) fn to_virtual(map: &PartitionMap, side: Side, physical: i64) -> Option<i64> {
    if physical < 0 {
        return Some(physical);
    }
    let segments = map.segments();
    let on_side = || segments.iter().enumerate().filter(|(_, s)| s.side == side);
    let (i, s) = on_side()
        .rfind(|(_, s)| s.physical_start <= physical)
        .or_else(|| on_side().next())?;
    let offset = s.virtual_start + (physical - s.physical_start).max(0);
    Some(match segments.get(i + 1) {
        Some(next) => offset.min(next.virtual_start),
        None => offset,
    })
}

/// Prefix of the commit metadata that keeps a virtual position the target
/// cannot hold (see [`to_target`]).
const VIRTUAL_MARK: &str = "cutover-virtual:";

/// A committed virtual position as the target group holds it: its physical
/// offset when it lies in a target segment; inside a source segment (a
/// reader that sought back), the first target offset after that segment,
/// with the exact virtual position kept at the head of the commit metadata
/// so the proxy gives it back unchanged (a consumer connected straight to
/// the target resumes at the first record the target has). `None` when no
/// target segment follows: the partition writes to the source.
#[must_use]
pub(crate) fn to_target(
    map: &PartitionMap,
    virtual_offset: i64,
    metadata: Option<&str>,
) -> Option<(i64, Option<String>)> {
    if virtual_offset < 0 {
        return Some((virtual_offset, metadata.map(str::to_owned)));
    }
    let at = map.locate(virtual_offset);
    if at.side == Side::Target {
        return Some((at.physical, metadata.map(str::to_owned)));
    }
    let next = map.segments()[at.index..]
        .iter()
        .find(|s| s.side == Side::Target)?;
    let kept = format!("{VIRTUAL_MARK}{virtual_offset};{}", metadata.unwrap_or(""));
    Some((next.physical_start, Some(kept)))
}

/// A target group's committed offset and metadata as the proxy's clients
/// see them: the virtual position kept by [`to_target`], else the physical
/// offset translated (`None` when the target holds no segment).
#[must_use]
pub(crate) fn from_target(
    map: &PartitionMap,
    physical: i64,
    metadata: Option<&str>,
) -> (Option<i64>, Option<String>) {
    let kept = metadata
        .and_then(|m| m.strip_prefix(VIRTUAL_MARK))
        .and_then(|rest| rest.split_once(';'))
        .and_then(|(v, original)| Some((v.parse::<i64>().ok()?, original)));
    match kept {
        Some((v, original)) => (Some(v), Some(original.to_owned())),
        None => (
            to_virtual(map, Side::Target, physical),
            metadata.map(str::to_owned),
        ),
    }
}

/// Translates every partition of `request` to what the target group holds
/// (see [`to_target`]); returns the partitions that cannot be, removed
/// from the request.
pub(crate) fn commit_to_target(
    request: &mut OffsetCommitRequest,
    map: impl Fn(&str, i32) -> PartitionMap,
) -> Vec<(TopicName, i32)> {
    let mut refused = Vec::new();
    for topic in &mut request.topics {
        let name = topic.name.clone();
        topic.partitions.retain_mut(|p| {
            let m = map(name.0.as_str(), p.partition_index);
            let metadata = p.committed_metadata.as_ref().map(|m| m.as_str());
            match to_target(&m, p.committed_offset, metadata) {
                Some((physical, metadata)) => {
                    p.committed_offset = physical;
                    p.committed_metadata = metadata.map(StrBytes::from_string);
                    p.committed_leader_epoch = -1;
                    true
                }
                None => {
                    refused.push((name.clone(), p.partition_index));
                    false
                }
            }
        });
    }
    request.topics.retain(|t| !t.partitions.is_empty());
    refused
}

/// Translates an OffsetFetch answer of the target to virtual offsets.
pub(crate) fn fetched_to_virtual(
    response: &mut OffsetFetchResponse,
    map: impl Fn(&str, i32) -> PartitionMap,
) {
    for topic in &mut response.topics {
        for p in &mut topic.partitions {
            let m = map(topic.name.0.as_str(), p.partition_index);
            let metadata = p.metadata.as_ref().map(|m| m.as_str());
            let (offset, metadata) = from_target(&m, p.committed_offset, metadata);
            if let Some(v) = offset {
                p.committed_offset = v;
            }
            p.metadata = metadata.map(StrBytes::from_string);
            p.committed_leader_epoch = -1;
        }
    }
}

/// Adds the refused partitions to an OffsetCommit answer.
pub(crate) fn add_refused(response: &mut OffsetCommitResponse, refused: &[(TopicName, i32)]) {
    for (name, partition) in refused {
        let p = OffsetCommitResponsePartition::default()
            .with_partition_index(*partition)
            .with_error_code(OFFSET_OUT_OF_RANGE);
        match response.topics.iter_mut().find(|t| &t.name == name) {
            Some(t) => t.partitions.push(p),
            None => response.topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(name.clone())
                    .with_partitions(vec![p]),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Source 0..100, target 0..30, source again 100..150, then target from 30.
    fn walked() -> PartitionMap {
        PartitionMap::default()
            .appended(Side::Target, 100, 0)
            .and_then(|m| m.appended(Side::Source, 30, 100))
            .and_then(|m| m.appended(Side::Target, 150, 30))
            .unwrap()
    }

    #[test]
    fn virtual_and_target_physical_offsets_round_trip() {
        let map = walked();
        // Virtual: 0..100 source, 100..130 target, 130..180 source, 180.. target.
        let physical = |v: i64| to_target(&map, v, None).map(|(p, _)| p);
        assert_eq!(physical(100), Some(0));
        assert_eq!(physical(129), Some(29));
        assert_eq!(physical(180), Some(30));
        assert_eq!(physical(250), Some(100));
        assert_eq!(
            physical(99),
            Some(0),
            "a source segment: the next target offset"
        );
        assert_eq!(physical(-1), Some(-1));
        for v in (0..260).chain([-1]) {
            let (p, metadata) = to_target(&map, v, None).unwrap();
            assert_eq!(from_target(&map, p, metadata.as_deref()).0, Some(v), "v{v}");
        }
        assert_eq!(to_virtual(&map, Side::Target, -1), Some(-1));
    }

    #[test]
    fn physical_offsets_outside_the_segments_clamp_to_their_edges() {
        // The target held 7 records before its first segment started at 7.
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 7)
            .unwrap();
        assert_eq!(to_virtual(&map, Side::Target, 3), Some(100));
        assert_eq!(to_virtual(&map, Side::Target, 7), Some(100));
        // A closed target segment clamps at its end.
        let back = map.appended(Side::Source, 20, 100).unwrap();
        assert_eq!(to_virtual(&back, Side::Target, 25), Some(113));
        assert_eq!(to_virtual(&PartitionMap::default(), Side::Target, 5), None);
        assert_eq!(
            to_virtual(&PartitionMap::default(), Side::Source, 5),
            Some(5)
        );
    }

    #[test]
    fn positions_inside_source_segments_ride_in_the_metadata() {
        let map = walked();
        // Virtual 140 lies in the second source segment; the next target
        // segment starts at physical 30.
        let (physical, metadata) = to_target(&map, 140, Some("app-state")).unwrap();
        assert_eq!(physical, 30);
        assert_eq!(metadata.as_deref(), Some("cutover-virtual:140;app-state"));
        assert_eq!(
            from_target(&map, physical, metadata.as_deref()),
            (Some(140), Some("app-state".to_owned()))
        );
        assert_eq!(to_target(&map, 185, None), Some((35, None)));
        assert_eq!(from_target(&map, 35, None), (Some(185), None));
        // Writing to the source again: no target offset follows.
        let back = map.appended(Side::Source, 100, 180).unwrap();
        assert_eq!(to_target(&back, 260, None), None);
    }

    #[test]
    fn commits_the_target_cannot_hold_are_refused_and_answered() {
        use cutover_kafka::kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        let name = TopicName(StrBytes::from_static_str("orders"));
        let at = |p: i32, offset: i64| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(5)
        };
        let mut request = OffsetCommitRequest::default().with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(name.clone())
                .with_partitions(vec![at(0, 185), at(1, 260)]),
        ]);
        let back = walked().appended(Side::Source, 100, 180).unwrap();
        let refused = commit_to_target(
            &mut request,
            |_, p| if p == 0 { walked() } else { back.clone() },
        );
        assert_eq!(refused, vec![(name.clone(), 1)]);
        let kept = &request.topics[0].partitions;
        assert_eq!(
            (
                kept.len(),
                kept[0].committed_offset,
                kept[0].committed_leader_epoch
            ),
            (1, 35, -1)
        );
        let mut response = OffsetCommitResponse::default();
        add_refused(&mut response, &refused);
        assert_eq!(
            response.topics[0].partitions[0].error_code,
            OFFSET_OUT_OF_RANGE
        );
    }
}
