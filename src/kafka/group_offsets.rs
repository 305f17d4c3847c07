//! Committed offsets of a consumer group the target coordinates (DESIGN.md
//! §2 Kafka, `target`): the target group holds *physical* target offsets,
//! so an application that later connects straight to the target resumes
//! where it stopped, while clients of the proxy keep seeing virtual
//! offsets. OffsetCommit requests are translated virtual → physical and
//! OffsetFetch answers physical → virtual.
//!
//! A virtual offset that lies in a source segment has no place on the
//! target; such a partition is not committed and answers
//! OFFSET_OUT_OF_RANGE, so the consumer sees the refusal instead of a
//! silently moved position. Negative sentinels pass unchanged.

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable};
use cutover_kafka::{RequestHeader, decode_request_body, decode_response_body};
use tokio::sync::oneshot;

use super::Shared;
use super::cluster::Side;
use super::gate::Inflight;
use super::rewrite::encode;
use super::segments::PartitionMap;
use super::session::{Close, Out, Reply, Session, answer, client_id};
use super::split::Dest;

/// The error a partition answers when its offset cannot be held on the target.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;

/// `virtual_offset` as a physical offset of `side`, when it lies in one of
/// `side`'s segments.
#[must_use]
pub fn to_physical(map: &PartitionMap, side: Side, virtual_offset: i64) -> Option<i64> {
    if virtual_offset < 0 {
        return Some(virtual_offset);
    }
    let at = map.locate(virtual_offset);
    (at.side == side).then_some(at.physical)
}

/// `physical` of `side` as a virtual offset: in the last of `side`'s
/// segments starting at or before it (a closed one clamps at its end);
/// before the first, that segment's start, since records there were never
/// part of the virtual space. `None` when `side` holds no segment.
#[must_use]
pub fn to_virtual(map: &PartitionMap, side: Side, physical: i64) -> Option<i64> {
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

/// Translates every partition of `request` to target physical offsets;
/// returns the partitions that cannot be, removed from the request.
pub fn commit_to_target(
    request: &mut OffsetCommitRequest,
    map: impl Fn(&str, i32) -> PartitionMap,
) -> Vec<(TopicName, i32)> {
    let mut refused = Vec::new();
    for topic in &mut request.topics {
        let name = topic.name.clone();
        topic.partitions.retain_mut(|p| {
            let m = map(name.0.as_str(), p.partition_index);
            match to_physical(&m, Side::Target, p.committed_offset) {
                Some(physical) => {
                    p.committed_offset = physical;
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
pub fn fetched_to_virtual(
    response: &mut OffsetFetchResponse,
    map: impl Fn(&str, i32) -> PartitionMap,
) {
    for topic in &mut response.topics {
        for p in &mut topic.partitions {
            let m = map(topic.name.0.as_str(), p.partition_index);
            if let Some(v) = to_virtual(&m, Side::Target, p.committed_offset) {
                p.committed_offset = v;
            }
            p.committed_leader_epoch = -1;
        }
    }
}

/// Adds the refused partitions to an OffsetCommit answer.
fn add_refused(response: &mut OffsetCommitResponse, refused: &[(TopicName, i32)]) {
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

/// OffsetCommit of a group the target coordinates, sent to `dest`.
pub(super) async fn commit(
    session: &mut Session,
    dest: Dest,
    frame: Bytes,
    header: &RequestHeader,
    inflight: Inflight,
) -> Result<Reply, Close> {
    let mut request: OffsetCommitRequest =
        decode_request_body(&frame, header).map_err(|e| Close::Protocol(e.to_string()))?;
    let shared = session.shared.clone();
    let refused = commit_to_target(&mut request, |t, p| shared.splice.map(t, p));
    if !refused.is_empty() {
        tracing::warn!(
            migration = %shared.migration.name, group = %request.group_id.0, ?refused,
            "commit of offsets inside source segments refused: the target coordinates this group and cannot hold them"
        );
    }
    let (id, version) = (header.correlation_id, header.api_version);
    let client = client_id(&frame, header);
    let rx = session
        .send(&dest, ApiKey::OffsetCommit, version, client, &request, true)
        .await?
        .ok_or_else(|| Close::Upstream("no answer expected".into()))?;
    Ok(Box::pin(async move {
        let answer = Answered {
            rx,
            inflight,
            key: ApiKey::OffsetCommit,
            version,
            id,
        };
        answer
            .rewritten(|r: &mut OffsetCommitResponse| add_refused(r, &refused))
            .await
    }))
}

/// OffsetFetch of a group the target coordinates, sent to `dest` unchanged.
pub(super) async fn fetch(
    session: &mut Session,
    dest: Dest,
    frame: Bytes,
    header: &RequestHeader,
    inflight: Inflight,
) -> Result<Reply, Close> {
    let rx = session
        .forward(dest.side, dest.addr.as_deref(), &frame, true)
        .await?
        .ok_or_else(|| Close::Upstream("no answer expected".into()))?;
    let shared: std::sync::Arc<Shared> = session.shared.clone();
    let (id, version) = (header.correlation_id, header.api_version);
    Ok(Box::pin(async move {
        let answer = Answered {
            rx,
            inflight,
            key: ApiKey::OffsetFetch,
            version,
            id,
        };
        answer
            .rewritten(|r: &mut OffsetFetchResponse| {
                fetched_to_virtual(r, |t, p| shared.splice.map(t, p));
            })
            .await
    }))
}

/// An upstream answer still to come for a counted offset request.
struct Answered {
    rx: oneshot::Receiver<super::link::Answer>,
    inflight: Inflight,
    key: ApiKey,
    version: i16,
    id: i32,
}

impl Answered {
    /// The answer, once arrived (the request stops counting in flight),
    /// decoded, changed by `change` and encoded for the client.
    async fn rewritten<T: Decodable + Encodable>(
        self,
        change: impl FnOnce(&mut T),
    ) -> Result<Out, Close> {
        let frame = answer(self.rx).await?;
        drop(self.inflight);
        let key = self.key;
        let mut body: T = decode_response_body(&frame, key as i16, self.version)
            .map_err(|e| Close::Upstream(format!("{key:?} answer: {e}")))?;
        change(&mut body);
        let out = encode(key, self.version, self.id, &body)
            .map_err(|e| Close::Upstream(format!("encoding the {key:?} answer: {e}")))?;
        Ok(Out::Frame(out))
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
        assert_eq!(to_physical(&map, Side::Target, 100), Some(0));
        assert_eq!(to_physical(&map, Side::Target, 129), Some(29));
        assert_eq!(to_physical(&map, Side::Target, 180), Some(30));
        assert_eq!(to_physical(&map, Side::Target, 250), Some(100));
        assert_eq!(
            to_physical(&map, Side::Target, 99),
            None,
            "a source segment"
        );
        assert_eq!(
            to_physical(&map, Side::Target, 140),
            None,
            "a source segment"
        );
        assert_eq!(to_physical(&map, Side::Target, -1), Some(-1));
        for v in (100..130).chain(180..260) {
            let p = to_physical(&map, Side::Target, v).unwrap();
            assert_eq!(to_virtual(&map, Side::Target, p), Some(v), "v{v}");
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
    fn commits_inside_source_segments_are_refused_and_answered() {
        use cutover_kafka::kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        use cutover_kafka::kafka_protocol::protocol::StrBytes;
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
                .with_partitions(vec![at(0, 185), at(1, 140)]),
        ]);
        let refused = commit_to_target(&mut request, |_, _| walked());
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
