//! Single-pass reads of the bodies the fast paths relay untouched (issue
//! 19: decode only what routing needs): a Produce request's partitions and
//! records, a Fetch request's partitions and offsets, and the per-partition
//! outcome of Produce and Fetch answers. Nothing is allocated: names and
//! records are borrowed from the frame, and each partition is handed to a
//! callback as it is read.
//!
//! Every walk is bounds-checked and gives up (`None`) on anything it does
//! not expect; callers then take the decoding path, whose errors are the
//! precise ones.

use std::ops::Range;

use cutover_kafka::kafka_protocol::messages::ApiKey;
use cutover_kafka::{response_body_offset, response_header_version};

use crate::kafka::observe::Reader;

/// First flexible (compact, tagged) versions.
const PRODUCE_FLEXIBLE: i16 = 9;
const FETCH_FLEXIBLE: i16 = 12;

/// The top level of a Produce request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ProduceHead {
    /// `acks` (0: no answer follows).
    pub(super) acks: i16,
    /// Whether a transactional id is set.
    pub(super) transactional: bool,
}

/// One partition of a Produce request.
#[derive(Debug)]
pub(super) struct ProducePart<'a> {
    /// Where the topic's name lies in the body (UTF-8 checked).
    pub(super) topic_at: Range<usize>,
    pub(super) partition: i32,
    /// The records (empty when null).
    pub(super) records: &'a [u8],
}

/// Walks a Produce request body (v3 to v12), calling `each` per partition;
/// stops early (still `Some`) when `each` returns `false`.
pub(super) fn produce_request<'a>(
    body: &'a [u8],
    version: i16,
    mut each: impl FnMut(ProducePart<'a>) -> bool,
) -> Option<ProduceHead> {
    let mut r = Reader::new(body, version >= PRODUCE_FLEXIBLE);
    let transactional = match r.len(false)? {
        Some(n) => {
            r.skip(n)?;
            true
        }
        None => false,
    };
    let acks = r.i16()?;
    r.skip(4)?;
    let head = ProduceHead {
        acks,
        transactional,
    };
    for _ in 0..r.array_len()? {
        let topic = r.str()??;
        let end = r.position();
        let topic_at = end - topic.len()..end;
        for _ in 0..r.array_len()? {
            let partition = r.i32()?;
            let records = r.bytes()?;
            r.tags()?;
            let part = ProducePart {
                topic_at: topic_at.clone(),
                partition,
                records,
            };
            if !each(part) {
                return Some(head);
            }
        }
        r.tags()?;
    }
    r.tags()?;
    Some(head)
}

/// One partition of a Fetch request.
#[derive(Clone, Copy, Debug)]
pub(super) struct FetchPart<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) fetch_offset: i64,
}

/// What a Fetch request asks of KIP-227 fetch sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FetchSession {
    /// None (session id 0, epoch -1, or a version before sessions).
    Sessionless,
    /// A new one (session id 0, epoch 0): what the Java consumer sends
    /// whenever it holds no session, i.e. every time through the proxy.
    Asked,
    /// One the client holds (incremental) or closes.
    Held,
}

/// Where a Fetch request body's session epoch is (v7 to v14: after
/// replica_id, max_wait_ms, min_bytes, max_bytes, isolation_level and the
/// session id).
pub(super) const FETCH_SESSION_EPOCH_AT: usize = 4 + 4 + 4 + 4 + 1 + 4;

/// Walks a Fetch request body (v4 to v12), calling `each` per partition
/// until it returns `false`; returns what it asks of fetch sessions.
pub(super) fn fetch_request<'a>(
    body: &'a [u8],
    version: i16,
    mut each: impl FnMut(FetchPart<'a>) -> bool,
) -> Option<FetchSession> {
    if !(4..=12).contains(&version) {
        return None;
    }
    let mut r = Reader::new(body, version >= FETCH_FLEXIBLE);
    // replica_id, max_wait_ms, min_bytes, max_bytes, isolation_level
    r.skip(4 + 4 + 4 + 4 + 1)?;
    let sessionless = if version >= 7 {
        match (r.i32()?, r.i32()?) {
            (0, -1) => FetchSession::Sessionless,
            (0, 0) => FetchSession::Asked,
            _ => FetchSession::Held,
        }
    } else {
        FetchSession::Sessionless
    };
    for _ in 0..r.array_len()? {
        let topic = r.str()??;
        for _ in 0..r.array_len()? {
            let partition = r.i32()?;
            if version >= 9 {
                r.skip(4)?;
            }
            let fetch_offset = r.i64()?;
            if version >= 12 {
                r.skip(4)?;
            }
            if version >= 5 {
                r.skip(8)?;
            }
            r.skip(4)?;
            r.tags()?;
            let part = FetchPart {
                topic,
                partition,
                fetch_offset,
            };
            if !each(part) {
                return Some(sessionless);
            }
        }
        r.tags()?;
    }
    Some(sessionless)
}

/// A partition's outcome in a Produce answer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Produced<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) error_code: i16,
    pub(super) base_offset: i64,
}

/// A response frame's body (after its header), for `key` at `version`.
fn response_body(frame: &[u8], key: ApiKey, version: i16) -> Option<&[u8]> {
    let header = response_header_version(key as i16, version)?;
    frame.get(response_body_offset(frame, header).ok()?..)
}

/// Walks a Produce answer frame (v3 to v12), calling `each` per
/// partition; returns whether it carries tagged fields (KIP-951 leader
/// hints), which the caller must strip by decoding it.
pub(super) fn produce_answer<'a>(
    frame: &'a [u8],
    version: i16,
    mut each: impl FnMut(Produced<'a>),
) -> Option<bool> {
    let body = response_body(frame, ApiKey::Produce, version)?;
    let mut r = Reader::new(body, version >= PRODUCE_FLEXIBLE);
    let mut tagged = false;
    for _ in 0..r.array_len()? {
        let topic = r.str()??;
        for _ in 0..r.array_len()? {
            let partition = r.i32()?;
            let error_code = r.i16()?;
            let base_offset = r.i64()?;
            r.skip(8)?;
            if version >= 5 {
                r.skip(8)?;
            }
            if version >= 8 {
                for _ in 0..r.array_len()? {
                    r.skip(4)?;
                    r.skip_string()?;
                    r.tags()?;
                }
                r.skip_string()?;
            }
            tagged |= r.tagged()? > 0;
            each(Produced {
                topic,
                partition,
                error_code,
                base_offset,
            });
        }
        tagged |= r.tagged()? > 0;
    }
    r.skip(4)?;
    tagged |= r.tagged()? > 0;
    Some(tagged)
}

/// A partition's outcome in a Fetch answer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fetched<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) error_code: i16,
    pub(super) high_watermark: i64,
    pub(super) records: &'a [u8],
}

/// What a Fetch answer walk found beyond the partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FetchAnswer {
    /// Tagged fields or a preferred read replica: leader hints (KIP-951,
    /// KIP-392) the caller must strip by decoding the answer.
    pub(super) hinted: bool,
}

/// Walks a Fetch answer frame (v4 to v12): `topic` is called at each
/// topic, `each` per partition of it, `done` when the topic's partitions
/// are read.
pub(super) fn fetch_answer<'a>(
    frame: &'a [u8],
    version: i16,
    mut topic: impl FnMut(&'a str),
    mut each: impl FnMut(Fetched<'a>),
    mut done: impl FnMut(&'a str),
) -> Option<FetchAnswer> {
    if !(4..=12).contains(&version) {
        return None;
    }
    let body = response_body(frame, ApiKey::Fetch, version)?;
    let mut r = Reader::new(body, version >= FETCH_FLEXIBLE);
    let mut out = FetchAnswer::default();
    r.skip(4)?;
    if version >= 7 {
        r.skip(2 + 4)?;
    }
    for _ in 0..r.array_len()? {
        let name = r.str()??;
        topic(name);
        for _ in 0..r.array_len()? {
            let partition = r.i32()?;
            let error_code = r.i16()?;
            let high_watermark = r.i64()?;
            r.skip(8)?;
            if version >= 5 {
                r.skip(8)?;
            }
            // Aborted transactions (nullable).
            for _ in 0..r.array_len()? {
                r.skip(16)?;
                r.tags()?;
            }
            if version >= 11 {
                out.hinted |= r.i32()? >= 0;
            }
            let records = r.bytes()?;
            out.hinted |= r.tagged()? > 0;
            each(Fetched {
                topic: name,
                partition,
                error_code,
                high_watermark,
                records,
            });
        }
        out.hinted |= r.tagged()? > 0;
        done(name);
    }
    out.hinted |= r.tagged()? > 0;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use cutover_kafka::kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, PartitionData,
    };
    use cutover_kafka::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use cutover_kafka::kafka_protocol::messages::produce_response::{
        LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
    };
    use cutover_kafka::kafka_protocol::messages::{
        BrokerId, FetchResponse, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
    };
    use cutover_kafka::kafka_protocol::protocol::{Encodable, StrBytes};

    use crate::kafka::rewrite::encode;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_owned()))
    }

    #[test]
    fn produce_requests_are_walked_at_every_version() {
        let request = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_acks(-1)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name("a"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from_static(b"xyz"))),
                        PartitionProduceData::default().with_index(1),
                    ]),
                TopicProduceData::default()
                    .with_name(name("bb"))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(7)]),
            ]);
        for v in 3..=12 {
            let mut body = BytesMut::new();
            request.encode(&mut body, v).unwrap();
            let mut seen = Vec::new();
            let head = produce_request(&body, v, |p| {
                let topic = std::str::from_utf8(&body[p.topic_at.clone()]).unwrap();
                seen.push((topic.to_owned(), p.partition, p.records.to_vec()));
                true
            })
            .unwrap();
            assert_eq!(
                head,
                ProduceHead {
                    acks: -1,
                    transactional: true
                },
                "v{v}"
            );
            assert_eq!(
                seen,
                [
                    ("a".to_owned(), 0, b"xyz".to_vec()),
                    ("a".to_owned(), 1, vec![]),
                    ("bb".to_owned(), 7, vec![]),
                ],
                "v{v}"
            );
            assert!(produce_request(&body[..body.len() - 1], v, |_| true).is_none());
        }
    }

    #[test]
    fn produce_answers_report_partitions_and_hints() {
        let answer = |hinted: bool| {
            let mut p = PartitionProduceResponse::default()
                .with_index(3)
                .with_error_code(6)
                .with_base_offset(42);
            if hinted {
                p = p.with_current_leader(LeaderIdAndEpoch::default().with_leader_id(BrokerId(2)));
            }
            ProduceResponse::default().with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(name("t"))
                    .with_partition_responses(vec![p]),
            ])
        };
        for v in 3..=12 {
            let frame = encode(ApiKey::Produce, v, 9, &answer(false)).unwrap();
            let mut seen = Vec::new();
            let hinted = produce_answer(&frame, v, |p| {
                seen.push((p.topic.to_owned(), p.partition, p.error_code, p.base_offset));
            });
            assert_eq!(hinted, Some(false), "v{v}");
            assert_eq!(seen, [("t".to_owned(), 3, 6, 42)], "v{v}");
        }
        let frame = encode(ApiKey::Produce, 12, 9, &answer(true)).unwrap();
        assert_eq!(produce_answer(&frame, 12, |_| {}), Some(true));
    }

    #[test]
    fn fetch_answers_report_partitions_and_hints() {
        let answer = |replica: i32| {
            FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        PartitionData::default()
                            .with_partition_index(2)
                            .with_high_watermark(30)
                            .with_preferred_read_replica(BrokerId(replica))
                            .with_records(Some(Bytes::from_static(b"abcd"))),
                    ]),
            ])
        };
        for v in 4..=12 {
            let frame = encode(ApiKey::Fetch, v, 9, &answer(-1)).unwrap();
            let (mut topics, mut parts) = (Vec::new(), Vec::new());
            let out = fetch_answer(
                &frame,
                v,
                |t| topics.push(t.to_owned()),
                |p| parts.push((p.partition, p.error_code, p.high_watermark, p.records.len())),
                |_| {},
            );
            assert_eq!(out, Some(FetchAnswer { hinted: false }), "v{v}");
            assert_eq!((topics, parts), (vec!["t".to_owned()], vec![(2, 0, 30, 4)]));
        }
        let frame = encode(ApiKey::Fetch, 12, 9, &answer(1)).unwrap();
        let out = fetch_answer(&frame, 12, |_| {}, |_| {}, |_| {});
        assert_eq!(out, Some(FetchAnswer { hinted: true }));
    }
}
