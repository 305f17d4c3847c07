//! Produce: each partition goes to the real leader of the cluster that
//! receives its writes (its open segment), split into one request per
//! destination when they differ, and the answers merged back with offsets
//! translated into the partition's virtual space.
//!
//! A request whose partitions all go to one broker with untranslated
//! offsets and no producer id to rewrite (the `source` state) is
//! forwarded as the client sent it and its answer relayed as the broker
//! sent it: the request is walked once (topics, partitions, batch
//! headers, nothing decoded or copied) and the answer read once for its
//! per-partition outcome (see `walk`). Anything else is decoded and split.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use cutover_kafka::kafka_protocol::messages::produce_request::TopicProduceData;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId,
};
use cutover_kafka::{
    Batch, RequestHeader, batches, decode_request_body, decode_response_body, set_producer,
};
use tokio::sync::oneshot;

use super::hints;
use super::link::Answer;
use super::relay::{Close, Out, Reply, Session, answer, client_id};
use super::traffic;
use super::walk;
use crate::kafka::cluster::Side;
use crate::kafka::meters::SplitApi;
use crate::kafka::observe::ProduceCount;
use crate::kafka::retry;
use crate::kafka::rewrite::encode;
use crate::kafka::splice::gate::Inflight;
use crate::kafka::splice::routing::Shift;
use crate::kafka::splice::split::{Dest, group_by};
use std::time::Instant;

pub(super) async fn route(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let body = frame.get(header.body_offset..).unwrap_or_default();
    let mut parts = Few::Empty;
    let walked = walk::produce_request(body, header.api_version, |p| {
        parts.push(Part::of(&p, header.body_offset));
        true
    });
    let Some(head) = walked else {
        // Not what the walk expects: the decoder says what is wrong.
        return slow(session, frame, header, Few::Empty).await;
    };
    let answered = head.acks != 0;
    for part in parts.iter_mut() {
        let topic = part.topic_in(&frame);
        part.count = session
            .shared
            .observed
            .produce_counter(topic, part.partition);
        if let Some(count) = part.count.as_ref().filter(|_| part.offsets > 0) {
            count.requested(part.offsets, answered);
        }
    }
    match fast(session, &frame, header, &mut parts, answered).await? {
        Some(reply) => Ok(reply),
        None => slow(session, frame, header, parts).await,
    }
}

/// One partition of a Produce request as the walk read it: what its answer
/// is checked against, and its counters.
struct Part {
    /// The topic's name, in the request frame.
    topic: Range<usize>,
    partition: i32,
    /// Offsets the bypass checks count (batches up to the first that is
    /// not whole).
    offsets: u64,
    /// Records counted in metrics and the splice (every whole batch).
    records: u64,
    bytes: u64,
    /// Whether a batch carries a producer id (idempotent or transactional).
    idempotent: bool,
    count: Option<Arc<ProduceCount>>,
    /// The write counted in flight (fast path).
    inflight: Option<Inflight>,
}

impl Part {
    fn of(p: &walk::ProducePart<'_>, body_offset: usize) -> Part {
        let (mut offsets, mut whole, mut records, mut idempotent) = (0u64, true, 0u64, false);
        for batch in batches(p.records) {
            if let Ok(Batch::Whole(view)) = batch {
                let n = u64::try_from(view.last_offset_delta()).unwrap_or(0) + 1;
                records += n;
                if whole {
                    offsets += n;
                }
                idempotent |= view.producer_id() >= 0;
            } else {
                whole = false;
            }
        }
        Part {
            topic: body_offset + p.topic_at.start..body_offset + p.topic_at.end,
            partition: p.partition,
            offsets,
            records,
            bytes: p.records.len() as u64,
            idempotent,
            count: None,
            inflight: None,
        }
    }

    fn topic_in<'a>(&self, frame: &'a [u8]) -> &'a str {
        frame
            .get(self.topic.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// The answer to a request carrying this partition came back.
    fn confirm(&self) {
        if let Some(count) = self.count.as_ref().filter(|_| self.offsets > 0) {
            count.answered(self.offsets);
        }
    }
}

/// A few items without a heap allocation for the first (most requests
/// name one partition).
enum Few<T> {
    Empty,
    One(T),
    Many(Vec<T>),
}

impl<T> Few<T> {
    fn push(&mut self, item: T) {
        *self = match std::mem::replace(self, Few::Empty) {
            Few::Empty => Few::One(item),
            Few::One(first) => Few::Many(vec![first, item]),
            Few::Many(mut all) => {
                all.push(item);
                Few::Many(all)
            }
        };
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Few::Empty => &[],
            Few::One(one) => std::slice::from_ref(one),
            Few::Many(all) => all,
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        match self {
            Few::Empty => [].iter_mut(),
            Few::One(one) => std::slice::from_mut(one).iter_mut(),
            Few::Many(all) => all.iter_mut(),
        }
    }
}

/// The `source`-state path: every partition writes, unshifted and without
/// producer ids to rewrite, to one broker. The request is forwarded as the
/// client sent it and the answer relayed as the broker sent it, read once
/// for its outcome; `None` (nothing counted in flight) when the request
/// needs the general path.
async fn fast(
    session: &mut Session,
    frame: &Bytes,
    header: &RequestHeader,
    parts: &mut Few<Part>,
    answered: bool,
) -> Result<Option<Reply>, Close> {
    let mut dest: Option<Dest> = None;
    for part in parts.iter_mut() {
        let topic = part.topic_in(frame);
        let (shift, guard) = match session.shared.splice.try_begin(topic, part.partition) {
            Some(ready) => ready,
            None => {
                // Fenced: push what this session buffered upstream first,
                // so the switch's drain is not waiting on us.
                session.flush().await?;
                session.shared.splice.begin(topic, part.partition).await
            }
        };
        part.inflight = Some(guard);
        // `producer_ids` leaves such batches untouched: the client's own
        // ids on a partition that never switched.
        let plain_ids = !part.idempotent
            || (shift.side == Side::Source
                && session.shared.splice.is_identity(topic, part.partition));
        let here = session.shared.dest(shift.side, topic, part.partition);
        let same = dest.as_ref().is_none_or(|d| *d == here);
        if shift.delta != 0 || !plain_ids || !same {
            for part in parts.iter_mut() {
                part.inflight = None;
            }
            return Ok(None);
        }
        dest = Some(here);
    }
    let dest = dest.unwrap_or_else(|| Dest::bootstrap(session.shared.splice.home()));
    each_topic(frame, parts.as_slice(), |topic, records, bytes| {
        traffic::produced_topic(&session.shared, dest.side, topic, records, bytes);
    });
    let rx = session
        .forward(dest.side, dest.addr.as_deref(), frame, answered)
        .await?;
    let Some(rx) = rx else {
        return Ok(Some(Box::pin(async { Ok(Out::Nothing) })));
    };
    let shared = session.shared.clone();
    let (id, version) = (header.correlation_id, header.api_version);
    let request = frame.clone();
    let mut parts = std::mem::replace(parts, Few::Empty);
    let started = Instant::now();
    Ok(Some(Box::pin(async move {
        let answer = answer(rx).await;
        for part in parts.iter_mut() {
            part.inflight = None;
        }
        let frame = answer?;
        traffic::latency(&shared, dest.side, started);
        let walked = walk::produce_answer(&frame, version, |p| {
            let records = parts
                .iter()
                .find(|q| q.partition == p.partition && q.topic_in(&request) == p.topic)
                .map(|q| q.records);
            traffic::produce_partition(
                &shared,
                dest.side,
                p.topic,
                p.partition,
                (p.error_code, p.base_offset),
                records,
            );
        });
        let hinted = walked == Some(true);
        for part in parts.iter() {
            part.confirm();
        }
        if !hinted {
            return Ok(Out::Relabelled(frame, id));
        }
        let Ok(mut body) =
            decode_response_body::<ProduceResponse>(&frame, ApiKey::Produce as i16, version)
        else {
            return Ok(Out::Relabelled(frame, id));
        };
        let hints = hints::strip_produce(&mut body);
        if !hints.stripped {
            return Ok(Out::Relabelled(frame, id));
        }
        hints::learn(&shared, dest.side, &hints);
        encode(ApiKey::Produce, version, id, &body)
            .map(Out::Frame)
            .map_err(|e| Close::internal_by("encoding the Produce answer", e))
    })))
}

/// Partitions per request above which topics are summed in a map rather
/// than by comparing names.
const FEW_PARTS: usize = 32;

/// Calls `f` once per topic of `parts` with its records and bytes summed.
fn each_topic(frame: &[u8], parts: &[Part], mut f: impl FnMut(&str, u64, u64)) {
    if parts.len() > FEW_PARTS {
        let mut sums: HashMap<&str, (u64, u64)> = HashMap::new();
        for q in parts {
            let e = sums.entry(q.topic_in(frame)).or_default();
            *e = (e.0 + q.records, e.1 + q.bytes);
        }
        for (topic, (records, bytes)) in sums {
            f(topic, records, bytes);
        }
        return;
    }
    for (i, part) in parts.iter().enumerate() {
        let topic = part.topic_in(frame);
        if parts[..i].iter().any(|q| q.topic_in(frame) == topic) {
            continue;
        }
        let (records, bytes) = parts[i..]
            .iter()
            .filter(|q| q.topic_in(frame) == topic)
            .fold((0, 0), |(r, b), q| (r + q.records, b + q.bytes));
        f(topic, records, bytes);
    }
}

/// The general path: the request decoded, split per destination where
/// partitions go to different brokers or clusters, shifted or carrying
/// producer ids to rewrite; `parts` are confirmed once answered.
async fn slow(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
    parts: Few<Part>,
) -> Result<Reply, Close> {
    let reply = general(session, frame, header).await?;
    if parts.iter().all(|p| p.count.is_none() || p.offsets == 0) {
        return Ok(reply);
    }
    Ok(Box::pin(async move {
        let out = reply.await?;
        if !matches!(out, Out::Nothing) {
            for part in parts.iter() {
                part.confirm();
            }
        }
        Ok(out)
    }))
}

async fn general(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let mut request: ProduceRequest = decode_request_body(&frame, header)
        .map_err(|e| Close::protocol_by("decoding the request", e))?;
    let mut rewritten = false;
    let answered = request.acks != 0;
    let mut shifts: HashMap<(String, i32), Shift> = HashMap::new();
    let mut items = Vec::new();
    let mut inflight = Vec::new();
    let txn = request.transactional_id.as_ref().map(|t| t.0.to_string());
    for ti in 0..request.topic_data.len() {
        let name = request.topic_data[ti].name.0.to_string();
        let name = name.as_str();
        for pi in 0..request.topic_data[ti].partition_data.len() {
            let p = &mut request.topic_data[ti].partition_data[pi];
            let (shift, guard) = match session.shared.splice.try_begin(name, p.index) {
                Some(ready) => ready,
                None => {
                    // Fenced: push what this session buffered upstream
                    // first, so the switch's drain is not waiting on us.
                    session.flush().await?;
                    session.shared.splice.begin(name, p.index).await
                }
            };
            inflight.push(guard);
            if let Some(records) = &p.records {
                let index = p.index;
                let txn = txn.as_deref();
                if let Some(copy) =
                    producer_ids(session, name, index, shift.side, txn, records).await?
                {
                    request.topic_data[ti].partition_data[pi].records = Some(copy);
                    rewritten = true;
                }
            }
            let p = &request.topic_data[ti].partition_data[pi];
            let dest = session.shared.dest(shift.side, name, p.index);
            if shift.delta != 0 {
                shifts.insert((name.to_owned(), p.index), shift);
            }
            items.push((dest, (ti, pi)));
        }
    }
    let groups = group_by(items);
    let (id, version) = (header.correlation_id, header.api_version);
    let counts = traffic::partition_counts(&request);
    if groups.len() <= 1 && shifts.is_empty() && !rewritten {
        let dest = groups
            .into_iter()
            .next()
            .map_or_else(|| Dest::bootstrap(session.shared.splice.home()), |g| g.0);
        traffic::produced(&session.shared, dest.side, &request.topic_data);
        let rx = session
            .forward(dest.side, dest.addr.as_deref(), &frame, answered)
            .await?;
        let shared = session.shared.clone();
        let started = Instant::now();
        return Ok(match rx {
            Some(rx) => Box::pin(async move {
                let frame = answer(rx).await;
                drop(inflight);
                let frame = frame?;
                traffic::latency(&shared, dest.side, started);
                let Ok(mut body) = decode_response_body::<ProduceResponse>(
                    &frame,
                    ApiKey::Produce as i16,
                    version,
                ) else {
                    return Ok(Out::Relabelled(frame, id));
                };
                traffic::produce_answered(&shared, dest.side, &body, &counts, true);
                let hints = hints::strip_produce(&mut body);
                if !hints.stripped {
                    return Ok(Out::Relabelled(frame, id));
                }
                hints::learn(&shared, dest.side, &hints);
                encode(ApiKey::Produce, version, id, &body)
                    .map(Out::Frame)
                    .map_err(|e| Close::internal_by("encoding the Produce answer", e))
            }),
            None => Box::pin(async { Ok(Out::Nothing) }),
        });
    }
    if groups.len() > 1 {
        traffic::split(
            &session.shared,
            SplitApi::Produce,
            request.topic_data.iter().map(|t| t.name.0.as_str()),
        );
    }
    let client = client_id(&frame, header);
    let mut pending: Vec<(Side, oneshot::Receiver<Answer>)> = Vec::new();
    for (dest, parts) in groups {
        let part = subset(&request, &parts);
        traffic::produced(&session.shared, dest.side, &part.topic_data);
        let rx = session
            .send(
                &dest,
                ApiKey::Produce,
                version,
                client.clone(),
                &part,
                answered,
            )
            .await?;
        pending.extend(rx.map(|rx| (dest.side, rx)));
    }
    if !answered {
        return Ok(Box::pin(async { Ok(Out::Nothing) }));
    }
    let shared = session.shared.clone();
    let started = Instant::now();
    Ok(Box::pin(async move {
        let mut merged = ProduceResponse::default();
        let mut answers = Vec::with_capacity(pending.len());
        for (side, rx) in pending {
            answers.push((side, answer(rx).await));
        }
        drop(inflight);
        for (side, frame) in answers {
            let frame = frame?;
            traffic::latency(&shared, side, started);
            let mut part: ProduceResponse =
                decode_response_body(&frame, ApiKey::Produce as i16, version)
                    .map_err(|e| Close::upstream_by(side, "its Produce answer", e))?;
            traffic::produce_answered(&shared, side, &part, &counts, false);
            hints::learn(&shared, side, &hints::strip_produce(&mut part));
            merge(&mut merged, part, &shifts);
        }
        traffic::produce_ends(&shared, &merged, &counts);
        let frame = encode(ApiKey::Produce, version, id, &merged)
            .map_err(|e| Close::internal_by("encoding the Produce answer", e))?;
        Ok(Out::Frame(frame))
    }))
}

/// The records with each idempotent batch's producer id, epoch and
/// sequence as `side` expects them (see `producers`), or `None` when they
/// pass unchanged. Obtains the target's producer id first when needed.
/// Transactional batches (of transactional id `txn`) pass unchanged to
/// the source, whose coordinator issued the client's id, and go to the
/// target under the proxy's transaction there (see `txn`).
async fn producer_ids(
    session: &mut Session,
    topic: &str,
    partition: i32,
    side: Side,
    txn: Option<&str>,
    records: &Bytes,
) -> Result<Option<Bytes>, Close> {
    let mut plans = Vec::new();
    let mut switched = None;
    for batch in batches(records) {
        let Ok(Batch::Whole(view)) = batch else { break };
        let (id, epoch) = (view.producer_id(), view.producer_epoch());
        if id < 0 {
            continue;
        }
        if view.is_transactional() {
            if side == Side::Source {
                continue;
            }
            let txn = txn.ok_or_else(|| {
                Close::protocol("a transactional batch without a transactional id")
            })?;
            transaction_on_target(session, txn, id, epoch).await?;
        }
        // A partition never switched has only ever seen the client's own
        // id: its batches pass untouched (asked once, only for idempotent
        // batches, so plain producers pay nothing).
        let switched =
            *switched.get_or_insert_with(|| !session.shared.splice.is_identity(topic, partition));
        if !switched {
            continue;
        }
        if switched && session.shared.producers.proxy_id(id, epoch, side).is_none() {
            let own = init_producer(session, side).await?;
            session.shared.producers.set_proxy_id(id, epoch, side, own);
        }
        let count = view.last_offset_delta().saturating_add(1);
        if let Some(plan) = session.shared.producers.plan(
            id,
            epoch,
            topic,
            partition,
            side,
            switched,
            view.base_sequence(),
            count,
        ) {
            plans.push((view.range(), plan));
        }
    }
    if plans.is_empty() {
        return Ok(None);
    }
    let mut copy = BytesMut::from(&records[..]);
    for (range, plan) in plans {
        set_producer(
            &mut copy[range],
            plan.producer_id,
            plan.epoch,
            plan.base_sequence,
        )
        .map_err(|e| Close::protocol_by(format!("rewriting a batch of {topic}/{partition}"), e))?;
    }
    Ok(Some(copy.freeze()))
}

/// Makes sure the proxy's transaction for the client's transaction
/// (`txn`, `id`, `epoch`) is open on the target, beginning it there first.
async fn transaction_on_target(
    session: &mut Session,
    txn: &str,
    id: i64,
    epoch: i16,
) -> Result<(), Close> {
    let own = match session.shared.producers.proxy_id(id, epoch, Side::Target) {
        Some(own) => own,
        None => {
            let own = super::txn::begin_on_target(session, txn).await?;
            session
                .shared
                .producers
                .set_proxy_id(id, epoch, Side::Target, own);
            own
        }
    };
    session
        .shared
        .producers
        .opened_on_target(txn, own)
        .map_err(|e| Close::internal_by(format!("transactional id {txn}"), e))
}

/// A fresh idempotent producer id of the proxy's own on `side`. A cluster
/// still settling (a fresh one loading its transaction coordinator answers
/// COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE) is asked
/// again with backoff for up to [`INIT_PRODUCER_ID_WAIT`], well inside the
/// client's request timeout.
async fn init_producer(session: &mut Session, side: Side) -> Result<(i64, i16), Close> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let deadline = tokio::time::Instant::now() + INIT_PRODUCER_ID_WAIT;
    let mut backoff = Duration::from_millis(50);
    loop {
        let body: InitProducerIdResponse = session
            .call(
                &Dest::bootstrap(side),
                ApiKey::InitProducerId,
                INIT_PRODUCER_ID_VERSION,
                &request,
            )
            .await?;
        if body.error_code == 0 {
            return Ok((body.producer_id.0, body.producer_epoch));
        }
        if !retry::is_waited_out(body.error_code)
            || tokio::time::Instant::now() + backoff > deadline
        {
            return Err(Close::upstream(
                side,
                format!(
                    "it refused a producer id: {}; idempotent writes cannot move there",
                    retry::describe(body.error_code)
                ),
            ));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// How long a producer id of the proxy's own is waited for.
const INIT_PRODUCER_ID_WAIT: Duration = Duration::from_secs(10);

/// InitProducerId v3 (Kafka 2.5+): the first to carry producer id and
/// epoch, which brokers such as tansu require (-1/-1: a new producer).
const INIT_PRODUCER_ID_VERSION: i16 = 3;

/// The request restricted to `parts` (topic index, partition index).
fn subset(request: &ProduceRequest, parts: &[(usize, usize)]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for &(ti, pi) in parts {
        let (Some(topic), Some(p)) = (
            request.topic_data.get(ti),
            request
                .topic_data
                .get(ti)
                .and_then(|t| t.partition_data.get(pi)),
        ) else {
            continue;
        };
        match topics.iter_mut().find(|t| t.name == topic.name) {
            Some(t) => t.partition_data.push(p.clone()),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(topic.name.clone())
                    .with_partition_data(vec![p.clone()]),
            ),
        }
    }
    ProduceRequest::default()
        .with_transactional_id(request.transactional_id.clone())
        .with_acks(request.acks)
        .with_timeout_ms(request.timeout_ms)
        .with_topic_data(topics)
}

/// Adds one destination's answer, its offsets moved into virtual space.
fn merge(
    merged: &mut ProduceResponse,
    part: ProduceResponse,
    shifts: &HashMap<(String, i32), Shift>,
) {
    merged.throttle_time_ms = merged.throttle_time_ms.max(part.throttle_time_ms);
    for mut topic in part.responses {
        for p in &mut topic.partition_responses {
            if let Some(shift) = shifts.get(&(topic.name.0.to_string(), p.index)) {
                if p.base_offset >= 0 {
                    p.base_offset += shift.delta;
                }
                if p.log_start_offset >= 0 {
                    p.log_start_offset = shift.log_start;
                }
            }
        }
        match merged.responses.iter_mut().find(|t| t.name == topic.name) {
            Some(t) => t.partition_responses.append(&mut topic.partition_responses),
            None => merged.responses.push(topic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::kafka_protocol::messages::TopicName;
    use cutover_kafka::kafka_protocol::messages::produce_request::PartitionProduceData;
    use cutover_kafka::kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use cutover_kafka::kafka_protocol::protocol::StrBytes;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_owned()))
    }

    #[test]
    fn subsets_keep_topic_grouping_and_request_fields() {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name("a"))
                    .with_partition_data(vec![
                        PartitionProduceData::default().with_index(0),
                        PartitionProduceData::default().with_index(1),
                    ]),
                TopicProduceData::default()
                    .with_name(name("b"))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(0)]),
            ]);
        let part = subset(&request, &[(0, 1), (1, 0)]);
        assert_eq!((part.acks, part.timeout_ms), (-1, 30_000));
        let layout: Vec<_> = part
            .topic_data
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.partition_data.iter().map(|p| p.index).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            layout,
            [("a".to_owned(), vec![1]), ("b".to_owned(), vec![0])]
        );
    }

    #[test]
    fn answers_merge_with_offsets_in_virtual_space() {
        let answer = |topic: &str, index: i32, base: i64| {
            ProduceResponse::default().with_responses(vec![
                TopicProduceResponse::default()
                    .with_name(name(topic))
                    .with_partition_responses(vec![
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_base_offset(base)
                            .with_log_start_offset(0),
                    ]),
            ])
        };
        let mut shifts = HashMap::new();
        shifts.insert(
            ("a".to_owned(), 1),
            Shift {
                side: Side::Target,
                delta: 100,
                log_start: 0,
            },
        );
        let mut merged = ProduceResponse::default();
        merge(&mut merged, answer("a", 0, 5), &shifts);
        merge(&mut merged, answer("a", 1, 3), &shifts);
        let offsets: Vec<_> = merged.responses[0]
            .partition_responses
            .iter()
            .map(|p| (p.index, p.base_offset))
            .collect();
        assert_eq!(offsets, [(0, 5), (1, 103)]);
        assert_eq!(merged.responses.len(), 1);
    }
}
