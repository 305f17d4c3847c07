//! Fetch: each partition is read from the segment its virtual fetch offset
//! falls in, on that cluster's real leader; answers are merged with every
//! offset moved into the partition's virtual space (record batch base
//! offsets, which lie outside the CRC; high watermark; last stable offset;
//! log start; aborted transactions), and batches past the end of a closed
//! segment are cut off so a reader crosses into the next segment exactly
//! at its virtual start.
//!
//! Upstream fetches are always session-less (KIP-227 session id 0, epoch
//! -1): one client fetch may become several upstream fetches whose
//! partition sets change as partitions switch, which broker-side sessions
//! cannot follow. When a fetch is split, each part long-polls at most
//! [`SPLIT_MAX_WAIT_MS`], so data on one cluster is not held back by an
//! idle partition on the other for the client's whole wait; and when a
//! partition of the fetch is known to have records past the client's
//! offset (its last seen high watermark is higher), no part waits at all,
//! since the client gets records anyway (see [`zero_wait`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use cutover_kafka::kafka_protocol::messages::fetch_response::PartitionData;
use cutover_kafka::kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use cutover_kafka::{
    Batch, FrameError, RequestHeader, batches, decode_request_body, decode_response_body,
    shift_base_offsets,
};

use super::hints;
use super::relay::{Close, Out, Reply, Session, answer, client_id};
use super::traffic;
use super::walk::{self, FetchSession};
use crate::kafka::meters::SplitApi;
use crate::kafka::rewrite::encode;
use crate::kafka::splice::routing::ReadAt;
use crate::kafka::splice::split::{Dest, group_by};

/// Longest wait of each part of a split fetch.
const SPLIT_MAX_WAIT_MS: i32 = 100;

pub(super) async fn route(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    match fast(session, &frame, header).await? {
        Some(reply) => Ok(reply),
        None => general(session, frame, header).await,
    }
}

/// The `source`-state path: a session-less fetch whose every partition is
/// read untranslated from one broker. The request is walked once and
/// forwarded as the client sent it; the answer is walked once for its
/// counts and relayed as the broker sent it, unless it carries leader
/// hints to strip. `None` when the request needs the general path.
async fn fast(
    session: &mut Session,
    frame: &Bytes,
    header: &RequestHeader,
) -> Result<Option<Reply>, Close> {
    let shared = session.shared.clone();
    let body = frame.get(header.body_offset..).unwrap_or_default();
    let (mut dest, mut plain): (Option<Dest>, bool) = (None, true);
    let walked = walk::fetch_request(body, header.api_version, |p| {
        let at = shared.splice.locate(p.topic, p.partition, p.fetch_offset);
        let here = shared.dest(at.located.side, p.topic, p.partition);
        plain = at.is_plain() && dest.as_ref().is_none_or(|d| *d == here);
        dest = Some(here);
        plain
    });
    let frame = match walked {
        Some(_) if !plain => return Ok(None),
        Some(FetchSession::Sessionless) => frame.clone(),
        Some(FetchSession::Asked) => match without_session(frame, header.body_offset) {
            Some(patched) => patched,
            None => return Ok(None),
        },
        Some(FetchSession::Held) | None => return Ok(None),
    };
    let dest = dest.unwrap_or_else(|| Dest::bootstrap(session.shared.splice.home()));
    let side = dest.side;
    let rx = session
        .forward(side, dest.addr.as_deref(), &frame, true)
        .await?;
    let rx = rx.ok_or_else(|| Close::internal("no answer expected"))?;
    let (id, version) = (header.correlation_id, header.api_version);
    Ok(Some(Box::pin(async move {
        let frame = answer(rx).await?;
        // Per topic: records and bytes of its partitions so far.
        let sums = std::cell::Cell::new((0u64, 0u64));
        let walked = walk::fetch_answer(
            &frame,
            version,
            |_| sums.set((0, 0)),
            |p| {
                let (records, bytes) = traffic::fetched_partition(
                    &shared,
                    side,
                    p.topic,
                    (p.partition, p.error_code, p.high_watermark),
                    p.records,
                );
                let (r, b) = sums.get();
                sums.set((r + records, b + bytes));
            },
            |topic| traffic::fetched_topic(&shared, side, topic, sums.get()),
        );
        if !walked.is_some_and(|w| w.hinted) {
            return Ok(Out::Relabelled(frame, id));
        }
        let Ok(mut body) =
            decode_response_body::<FetchResponse>(&frame, ApiKey::Fetch as i16, version)
        else {
            return Ok(Out::Relabelled(frame, id));
        };
        let hints = hints::strip_fetch(&mut body);
        if !hints.stripped {
            return Ok(Out::Relabelled(frame, id));
        }
        hints::learn(&shared, side, &hints);
        encode(ApiKey::Fetch, version, id, &body)
            .map(Out::Frame)
            .map_err(|e| Close::internal_by("encoding the Fetch answer", e))
    })))
}

/// A Fetch asking for a new fetch session (id 0, epoch 0) as a
/// session-less one (epoch -1): the broker then answers session id 0, and
/// the client, holding no session, asks the same way next time. The proxy
/// cannot let brokers hold sessions (their partition sets would not follow
/// a switch), and this way the Java consumer's fetches are relayed
/// without a decode, at the cost of one copy of the request.
fn without_session(frame: &Bytes, body_offset: usize) -> Option<Bytes> {
    let at = body_offset.checked_add(walk::FETCH_SESSION_EPOCH_AT)?;
    let epoch = frame.get(at..at + 4)?;
    if epoch != 0i32.to_be_bytes() {
        return None;
    }
    let mut patched = BytesMut::from(&frame[..]);
    patched[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
    Some(patched.freeze())
}

/// The general path: the request decoded, each partition located in its
/// segment, split per destination, and the answers translated and merged.
async fn general(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let request: FetchRequest = decode_request_body(&frame, header)
        .map_err(|e| Close::protocol_by("decoding the request", e))?;
    let mut reads: HashMap<(String, i32), ReadAt> = HashMap::new();
    let mut items = Vec::new();
    for (ti, topic) in request.topics.iter().enumerate() {
        let name = topic.topic.0.as_str();
        for (pi, p) in topic.partitions.iter().enumerate() {
            let at = session
                .shared
                .splice
                .locate(name, p.partition, p.fetch_offset);
            let dest = session.shared.dest(at.located.side, name, p.partition);
            reads.insert((name.to_owned(), p.partition), at);
            items.push((dest, (ti, pi)));
        }
    }
    let groups = group_by(items);
    let (id, version) = (header.correlation_id, header.api_version);
    let split = groups.len() > 1;
    let zero_wait = split && zero_wait(session, &request);
    if split {
        traffic::split(
            &session.shared,
            SplitApi::Fetch,
            request.topics.iter().map(|t| t.topic.0.as_str()),
        );
    }
    let client = client_id(&frame, header);
    let mut pending = Vec::new();
    for (dest, parts) in groups {
        let mut part = subset(&request, &parts, &reads, split);
        if zero_wait {
            part.max_wait_ms = 0;
        }
        let rx = session
            .send(&dest, ApiKey::Fetch, version, client.clone(), &part, true)
            .await?
            .ok_or_else(|| Close::internal("no answer expected"))?;
        pending.push((dest.side, rx));
    }
    let shared = session.shared.clone();
    let came_back_empty = session.zero_wait_came_back_empty.clone();
    Ok(Box::pin(async move {
        let mut merged = FetchResponse::default();
        for (side, rx) in pending {
            let frame = answer(rx).await?;
            let mut part: FetchResponse =
                decode_response_body(&frame, ApiKey::Fetch as i16, version)
                    .map_err(|e| Close::upstream_by(side, "its Fetch answer", e))?;
            hints::learn(&shared, side, &hints::strip_fetch(&mut part));
            translate_all(&mut part, &reads)
                .map_err(|e| Close::upstream_by(side, "its Fetch answer", e))?;
            traffic::fetched(&shared, side, &part, true);
            merge(&mut merged, part);
        }
        if zero_wait && !holds_records(&merged) {
            came_back_empty.store(true, Ordering::Relaxed);
        }
        let frame = encode(ApiKey::Fetch, version, id, &merged)
            .map_err(|e| Close::internal_by("encoding the Fetch answer", e))?;
        Ok(Out::Frame(frame))
    }))
}

/// Whether the parts of a split fetch should answer at once: some
/// partition's last seen high watermark is past the client's offset, so
/// records are there and waiting on the idle parts would only delay them.
/// A zero-wait fetch that nonetheless came back empty (a watermark seen
/// higher than the log now ends) makes the next split fetch of the
/// connection long-poll, so a stale watermark cannot make a client spin.
fn zero_wait(session: &Session, request: &FetchRequest) -> bool {
    if session
        .zero_wait_came_back_empty
        .swap(false, Ordering::Relaxed)
    {
        return false;
    }
    request.topics.iter().any(|t| {
        let marks = session.shared.meters.topic(t.topic.0.as_str());
        t.partitions.iter().any(|p| {
            marks
                .marks()
                .get(p.partition)
                .is_some_and(|hw| hw > p.fetch_offset)
        })
    })
}

/// Whether a merged Fetch answer carries any record batch.
fn holds_records(answer: &FetchResponse) -> bool {
    answer.responses.iter().any(|t| {
        t.partitions
            .iter()
            .any(|p| p.records.as_ref().is_some_and(|r| !r.is_empty()))
    })
}

/// The upstream fetch for `parts` (topic index, partition index): physical
/// offsets, no epochs (clients were shown none), no fetch session.
fn subset(
    request: &FetchRequest,
    parts: &[(usize, usize)],
    reads: &HashMap<(String, i32), ReadAt>,
    split: bool,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for &(ti, pi) in parts {
        let Some(topic) = request.topics.get(ti) else {
            continue;
        };
        let Some(p) = topic.partitions.get(pi) else {
            continue;
        };
        let physical = reads
            .get(&(topic.topic.0.to_string(), p.partition))
            .map_or(p.fetch_offset, |r| r.located.physical);
        let part = FetchPartition::default()
            .with_partition(p.partition)
            .with_current_leader_epoch(-1)
            .with_fetch_offset(physical)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(p.partition_max_bytes);
        match topics.iter_mut().find(|t| t.topic == topic.topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(vec![part]),
            ),
        }
    }
    let max_wait = if split {
        request.max_wait_ms.min(SPLIT_MAX_WAIT_MS)
    } else {
        request.max_wait_ms
    };
    FetchRequest::default()
        .with_replica_id(request.replica_id)
        .with_max_wait_ms(max_wait)
        .with_min_bytes(request.min_bytes)
        .with_max_bytes(request.max_bytes)
        .with_isolation_level(request.isolation_level)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
        .with_rack_id(request.rack_id.clone())
}

/// Moves one upstream answer into virtual space.
fn translate_all(
    part: &mut FetchResponse,
    reads: &HashMap<(String, i32), ReadAt>,
) -> Result<(), FrameError> {
    for topic in &mut part.responses {
        for p in &mut topic.partitions {
            if let Some(at) = reads.get(&(topic.topic.0.to_string(), p.partition_index)) {
                translate(p, at)?;
            }
        }
    }
    Ok(())
}

/// Adds one (translated) upstream answer to the client's.
fn merge(merged: &mut FetchResponse, part: FetchResponse) {
    merged.throttle_time_ms = merged.throttle_time_ms.max(part.throttle_time_ms);
    if merged.error_code == 0 {
        merged.error_code = part.error_code;
    }
    for mut topic in part.responses {
        match merged.responses.iter_mut().find(|t| t.topic == topic.topic) {
            Some(t) => t.partitions.append(&mut topic.partitions),
            None => merged.responses.push(topic),
        }
    }
}

/// Moves one partition's answer into virtual space.
///
/// # Errors
/// When its records are not v2 batches.
pub(crate) fn translate(p: &mut PartitionData, at: &ReadAt) -> Result<(), FrameError> {
    let loc = at.located;
    p.preferred_read_replica = BrokerId(-1);
    p.current_leader = Default::default();
    if p.error_code != 0 {
        return Ok(());
    }
    let to_virtual = |physical: i64| match loc.physical_end {
        // A closed segment ends where the next begins, whatever its
        // cluster's log has grown to since (writes that bypassed the proxy).
        Some(end) if physical >= end => end + loc.delta,
        _ => physical + loc.delta,
    };
    p.high_watermark = to_virtual(p.high_watermark);
    if p.last_stable_offset >= 0 {
        p.last_stable_offset = to_virtual(p.last_stable_offset);
    }
    if p.log_start_offset >= 0 {
        p.log_start_offset = if loc.index == 0 {
            p.log_start_offset + loc.delta
        } else {
            at.log_start
        };
    }
    if let Some(aborted) = &mut p.aborted_transactions {
        for a in aborted.iter_mut() {
            a.first_offset += loc.delta;
        }
    }
    if let Some(records) = &p.records {
        p.records = Some(translate_records(records, loc.delta, loc.physical_end)?);
    }
    Ok(())
}

/// A records blob with batches at or past `physical_end` cut off and every
/// remaining base offset moved by `delta`; untouched (no copy) when there
/// is nothing to change.
///
/// # Errors
/// When the blob holds something other than v2 batches.
fn translate_records(
    records: &Bytes,
    delta: i64,
    physical_end: Option<i64>,
) -> Result<Bytes, FrameError> {
    let mut cut = records.len();
    if let Some(end) = physical_end {
        for item in batches(records) {
            let (offset, base) = match item? {
                Batch::Whole(view) => (view.range().start, view.base_offset()),
                Batch::Partial { offset, .. } => {
                    let base = records
                        .get(offset..offset + 8)
                        .map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default()));
                    (offset, base.unwrap_or(i64::MAX))
                }
            };
            if base >= end {
                cut = offset;
                break;
            }
        }
    }
    let kept = records.slice(..cut);
    if delta == 0 {
        return Ok(kept);
    }
    let mut copy = BytesMut::from(&kept[..]);
    shift_base_offsets(&mut copy, delta)?;
    Ok(copy.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::cluster::Side;
    use crate::kafka::splice::segments::PartitionMap;

    /// A minimal v2 batch at `base` holding `count` offsets.
    fn batch(base: i64, count: i32) -> Vec<u8> {
        let mut b = vec![0u8; 61];
        b[..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&49i32.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b
    }

    fn bases(records: &Bytes) -> Vec<i64> {
        batches(records)
            .map(|b| match b.unwrap() {
                Batch::Whole(v) => v.base_offset(),
                Batch::Partial { .. } => -1,
            })
            .collect()
    }

    #[test]
    fn records_are_shifted_and_cut_at_the_segment_end() {
        let blob: Bytes = [batch(95, 3), batch(98, 2), batch(100, 4)].concat().into();
        let out = translate_records(&blob, 0, Some(100)).unwrap();
        assert_eq!(
            bases(&out),
            [95, 98],
            "the batch at the end belongs to nobody"
        );
        let out = translate_records(&blob, 1000, None).unwrap();
        assert_eq!(bases(&out), [1095, 1098, 1100]);
        let same = translate_records(&blob, 0, None).unwrap();
        assert_eq!(same.as_ptr(), blob.as_ptr(), "nothing to change: no copy");
    }

    #[test]
    fn watermarks_of_a_closed_segment_stop_at_its_end() {
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 0)
            .unwrap();
        let source = ReadAt {
            located: map.locate(50),
            log_start: 0,
        };
        let mut p = PartitionData::default()
            .with_high_watermark(130)
            .with_log_start_offset(0);
        translate(&mut p, &source).unwrap();
        assert_eq!((p.high_watermark, p.log_start_offset), (100, 0));
        let target = ReadAt {
            located: map.locate(100),
            log_start: 0,
        };
        let mut p = PartitionData::default()
            .with_high_watermark(7)
            .with_last_stable_offset(7)
            .with_log_start_offset(0);
        translate(&mut p, &target).unwrap();
        assert_eq!(
            (p.high_watermark, p.last_stable_offset, p.log_start_offset),
            (107, 107, 0)
        );
    }
}

#[cfg(test)]
mod session_tests {
    use bytes::BufMut;
    use cutover_kafka::kafka_protocol::messages::TopicName;
    use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    use super::*;

    /// A Fetch v12 body with session `(id, epoch)`, behind `prefix` bytes
    /// standing for the request header.
    fn fetch(id: i32, epoch: i32, prefix: usize) -> (Bytes, FetchRequest) {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("orders")))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(2)
                            .with_fetch_offset(40),
                    ]),
            ]);
        let mut frame = BytesMut::new();
        frame.put_bytes(7, prefix);
        request.encode(&mut frame, 12).expect("encode");
        (frame.freeze(), request)
    }

    /// What the Java consumer sends through the proxy (a new session
    /// asked for) takes the fast path with only its epoch changed to -1;
    /// a session held, or asked for with anything else, does not.
    #[test]
    fn a_fetch_asking_for_a_session_is_relayed_without_one() {
        let (frame, request) = fetch(0, 0, 9);
        let body = &frame[9..];
        assert_eq!(
            walk::fetch_request(body, 12, |_| true),
            Some(FetchSession::Asked)
        );
        let patched = without_session(&frame, 9).expect("patched");
        assert_eq!(&patched[..9], &frame[..9], "the header is untouched");
        let mut rest = patched.slice(9..);
        let decoded = FetchRequest::decode(&mut rest, 12).expect("decodes");
        assert_eq!(decoded, request.clone().with_session_epoch(-1));
        assert_eq!(
            walk::fetch_request(&patched[9..], 12, |_| true),
            Some(FetchSession::Sessionless)
        );

        let (held, _) = fetch(77, 3, 9);
        assert_eq!(
            walk::fetch_request(&held[9..], 12, |_| true),
            Some(FetchSession::Held)
        );
        assert_eq!(without_session(&held, 9), None);
    }
}
