//! What the proxy remembers of its own traffic for the bypass checks, read
//! from request bytes without kafka-protocol (whose decoders pre-allocate
//! from untrusted counts; see `cutover_kafka::guard`):
//!
//! - consumer groups named by FindCoordinator, JoinGroup, OffsetCommit and
//!   OffsetFetch, with the topics the request names (brokers such as tansu
//!   list no groups, so the proxy's own traffic is the group list);
//! - per group/topic/partition the highest offset an OffsetCommit relayed
//!   through the proxy carried (recorded before the request is forwarded,
//!   so a commit the broker stored is always already recorded);
//! - per topic/partition the offsets Produce requests relayed through the
//!   proxy occupy (`last_offset_delta + 1` per batch), counted when the
//!   request is forwarded and again when its answer returns.
//!
//! Everything is bounded: [`MAX_GROUPS`] groups (least recently seen
//! evicted), [`MAX_TOPICS_PER_GROUP`] topics per group and
//! [`MAX_PARTITIONS`] produce counters.
//!
//! The groups with their topics outlive a restart (see
//! `migration::recall`): a change of that set bumps a counter, and a
//! control-plane task writes [`Observed::snapshot`] when it moved. Commit
//! and produce counts are not kept: the checks sample them afresh.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::Instant;

use cutover_kafka::kafka_protocol::messages::ApiKey;
use cutover_kafka::{Batch, batches};

/// What the consumer checks rely on having seen, in a restart's refusal.
pub(super) const GROUPS: &str = "consumer groups (and their topics)";

/// Groups remembered at most.
const MAX_GROUPS: usize = 1024;
/// Topics remembered per group at most.
const MAX_TOPICS_PER_GROUP: usize = 256;
/// Produce counters (topic/partition) kept at most.
pub(super) const MAX_PARTITIONS: usize = 65_536;
/// Group/topic pairs written in a snapshot at most, and the longest name
/// kept there (Kafka's topic names stop at 249 bytes): about 8 MiB at most.
const MAX_PERSISTED_PAIRS: usize = 16_384;
/// See [`MAX_PERSISTED_PAIRS`].
const MAX_PERSISTED_NAME: usize = 255;

/// The persisted form: each group with the topics it named.
pub(super) type GroupTopics = BTreeMap<String, Vec<String>>;

/// Per-partition produce counts: offsets relayed in requests, and offsets of
/// requests whose answer (or, for acks=0, whose forwarding) is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Produced {
    /// Offsets carried by Produce requests forwarded.
    pub(super) requested: u64,
    /// Offsets carried by Produce requests answered.
    pub(super) answered: u64,
}

#[derive(Debug, Default)]
struct Group {
    topics: HashSet<String>,
    /// (topic, partition) → highest committed offset relayed.
    relayed: HashMap<(String, i32), i64>,
    /// (topic, partition) → committed offset when the checks first looked,
    /// for partitions the proxy has relayed no commit for.
    baseline: HashMap<(String, i32), i64>,
    last_seen: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<String, Group>,
}

/// One partition's produce counts, counted without a lock by every
/// session producing to it.
#[derive(Debug, Default)]
pub(super) struct ProduceCount {
    requested: AtomicU64,
    answered: AtomicU64,
}

impl ProduceCount {
    /// A request carrying `n` offsets was forwarded (and, when no answer
    /// follows, is done).
    pub(super) fn requested(&self, n: u64, answered: bool) {
        self.requested.fetch_add(n, Ordering::SeqCst);
        if !answered {
            self.answered.fetch_add(n, Ordering::SeqCst);
        }
    }

    /// The answer to a request carrying `n` offsets came back.
    pub(super) fn answered(&self, n: u64) {
        self.answered.fetch_add(n, Ordering::SeqCst);
    }

    fn read(&self) -> Produced {
        // Answered first: a request's answer is counted after the request,
        // so the pair read never shows more answered than requested.
        let answered = self.answered.load(Ordering::SeqCst);
        Produced {
            requested: self.requested.load(Ordering::SeqCst),
            answered,
        }
    }
}

/// Produce counts per topic, then partition: immutable maps published with
/// arc-swap, so the request path finds its counter without a lock or an
/// allocation; a partition seen the first time publishes a new map.
#[derive(Debug, Default)]
struct ProduceCounts {
    topics: ArcSwap<HashMap<Arc<str>, Arc<TopicCounts>>>,
    /// Partitions counted so far (bounded by [`MAX_PARTITIONS`]).
    partitions: AtomicUsize,
}

type TopicCounts = ArcSwap<HashMap<i32, Arc<ProduceCount>>>;

impl ProduceCounts {
    fn get(&self, topic: &str, partition: i32) -> Option<Arc<ProduceCount>> {
        let topics = self.topics.load();
        topics.get(topic)?.load().get(&partition).cloned()
    }

    /// `topic`/`partition`'s counter, added when first seen (`None` past
    /// the bound).
    fn counter(&self, topic: &str, partition: i32) -> Option<Arc<ProduceCount>> {
        if let Some(found) = self.get(topic, partition) {
            return Some(found);
        }
        if self.partitions.load(Ordering::SeqCst) >= MAX_PARTITIONS {
            return None;
        }
        let mut parts = None;
        self.topics.rcu(|map| {
            if let Some(found) = map.get(topic) {
                parts = Some(found.clone());
                return map.clone();
            }
            let fresh = Arc::new(TopicCounts::default());
            parts = Some(fresh.clone());
            let mut next = HashMap::clone(map);
            next.insert(Arc::from(topic), fresh);
            Arc::new(next)
        });
        let parts = parts?;
        let mut counter = None;
        parts.rcu(|map| {
            if let Some(found) = map.get(&partition) {
                counter = Some(found.clone());
                return map.clone();
            }
            let fresh = Arc::new(ProduceCount::default());
            counter = Some(fresh.clone());
            let mut next = HashMap::clone(map);
            next.insert(partition, fresh);
            Arc::new(next)
        });
        // Counted once per partition added (a lost race adds none).
        if let Some(c) = &counter
            && self
                .get(topic, partition)
                .is_some_and(|g| Arc::ptr_eq(&g, c))
        {
            self.partitions.fetch_add(1, Ordering::SeqCst);
        }
        counter
    }
}

/// The observations of one migration's sessions.
#[derive(Debug, Default)]
pub(super) struct Observed {
    inner: Mutex<Inner>,
    produced: ProduceCounts,
    /// Bumped when the set of groups or of their topics changes.
    changes: AtomicU64,
}

/// What one request told (parsed before forwarding).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Group ids with the topics the request named for each.
    pub(super) groups: Vec<(String, Vec<String>)>,
    /// OffsetCommit: (group, topic, partition, offset).
    pub(super) commits: Vec<(String, String, i32, i64)>,
    /// Produce: (topic, partition, offsets), and whether an answer follows.
    pub(super) produced: Vec<(String, i32, u64)>,
    /// Produce with acks≠0.
    pub(super) answered: bool,
}

impl Observed {
    /// Records what a request shows; returns the produce counts to confirm
    /// when its answer arrives (empty when none is expected).
    pub(super) fn request(&self, seen: Seen) -> Vec<(String, i32, u64)> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut changed = false;
        for (group, topics) in seen.groups {
            let g = inner.group(&group, now, &mut changed);
            for t in topics {
                if g.topics.len() < MAX_TOPICS_PER_GROUP {
                    changed |= g.topics.insert(t);
                }
            }
        }
        for (group, topic, partition, offset) in seen.commits {
            let g = inner.group(&group, now, &mut changed);
            if g.topics.len() < MAX_TOPICS_PER_GROUP {
                changed |= g.topics.insert(topic.clone());
            }
            if offset >= 0 && g.topics.contains(&topic) {
                let e = g.relayed.entry((topic, partition)).or_insert(offset);
                *e = (*e).max(offset);
            }
        }
        drop(inner);
        for (topic, partition, n) in &seen.produced {
            if let Some(count) = self.produce_counter(topic, *partition) {
                count.requested(*n, seen.answered);
            }
        }
        if changed {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
        if seen.answered {
            seen.produced
        } else {
            Vec::new()
        }
    }

    /// How many times the set of groups or their topics changed.
    pub(super) fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The groups with their topics, for the next start; `false` with it
    /// when something was left out to stay within [`MAX_PERSISTED_PAIRS`].
    pub(super) fn snapshot(&self) -> (GroupTopics, bool) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = GroupTopics::new();
        let (mut pairs, mut whole) = (0usize, true);
        for (name, g) in &inner.groups {
            if name.len() > MAX_PERSISTED_NAME || pairs >= MAX_PERSISTED_PAIRS {
                whole = false;
                continue;
            }
            let mut topics: Vec<String> = Vec::new();
            for t in &g.topics {
                if t.len() > MAX_PERSISTED_NAME || pairs >= MAX_PERSISTED_PAIRS {
                    whole = false;
                    continue;
                }
                topics.push(t.clone());
                pairs += 1;
            }
            topics.sort();
            pairs += 1;
            out.insert(name.clone(), topics);
        }
        (out, whole)
    }

    /// Seeds the groups of a snapshot from the previous run, as seen
    /// longest ago (the first evicted), within the bounds.
    pub(super) fn restore(&self, saved: GroupTopics) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (name, topics) in saved {
            if inner.groups.len() >= MAX_GROUPS {
                break;
            }
            let g = inner.groups.entry(name).or_default();
            g.topics
                .extend(topics.into_iter().take(MAX_TOPICS_PER_GROUP));
        }
    }

    /// A Produce request's answer came back.
    #[cfg(test)]
    pub(super) fn answered(&self, produced: &[(String, i32, u64)]) {
        for (topic, partition, n) in produced {
            if let Some(p) = self.produced.get(topic, *partition) {
                p.answered(*n);
            }
        }
    }

    /// The produce counter of `topic`/`partition` (`None` past
    /// [`MAX_PARTITIONS`]), found without a lock once it exists.
    pub(super) fn produce_counter(&self, topic: &str, partition: i32) -> Option<Arc<ProduceCount>> {
        self.produced.counter(topic, partition)
    }

    /// Groups that may have offsets for `topic`: those that named it, and
    /// those whose requests named no topic yet.
    pub(super) fn groups_for(&self, topic: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = inner
            .groups
            .iter()
            .filter(|(_, g)| g.topics.is_empty() || g.topics.contains(topic))
            .map(|(name, _)| name.clone())
            .collect();
        out.sort();
        out
    }

    /// The offset the proxy can account for in `group`'s commit of
    /// `topic`/`partition`: the highest it relayed, else the baseline taken
    /// now from `committed` (the first time the checks look).
    pub(super) fn accounted(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        committed: i64,
    ) -> i64 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let g = inner.groups.entry(group.to_owned()).or_default();
        let key = (topic.to_owned(), partition);
        match g.relayed.get(&key).copied() {
            Some(relayed) => g.baseline.get(&key).map_or(relayed, |&b| b.max(relayed)),
            None => *g.baseline.entry(key).or_insert(committed),
        }
    }

    /// Produce counts for `topic`, by partition.
    pub(super) fn produced(&self, topic: &str) -> HashMap<i32, Produced> {
        let topics = self.produced.topics.load();
        let Some(parts) = topics.get(topic) else {
            return HashMap::new();
        };
        parts.load().iter().map(|(p, c)| (*p, c.read())).collect()
    }
}

impl Inner {
    fn group(&mut self, name: &str, now: Instant, changed: &mut bool) -> &mut Group {
        if !self.groups.contains_key(name) {
            *changed = true;
        }
        if !self.groups.contains_key(name) && self.groups.len() >= MAX_GROUPS {
            let oldest = self
                .groups
                .iter()
                .min_by_key(|(_, g)| g.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.groups.remove(&k);
            }
        }
        let g = self.groups.entry(name.to_owned()).or_default();
        g.last_seen = Some(now);
        g
    }
}

/// Whether requests of `key` carry something [`parse`] reads before they
/// are routed. Produce is not among them: its handler walks the request
/// anyway and counts each partition on its [`ProduceCount`].
#[must_use]
pub(super) fn observed(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::FindCoordinator | ApiKey::JoinGroup | ApiKey::OffsetCommit | ApiKey::OffsetFetch
    )
}

/// Reads what the checks need from a request body of `key` at `version`.
/// A body that does not parse yields what was read before the fault (the
/// broker answers the client's mistake; the proxy only loses an observation).
#[must_use]
pub(super) fn parse(key: ApiKey, version: i16, body: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let _ = parse_into(key, version, body, &mut seen);
    seen
}

fn parse_into(key: ApiKey, v: i16, body: &[u8], seen: &mut Seen) -> Option<()> {
    match key {
        ApiKey::FindCoordinator => find_coordinator(v, body, seen),
        ApiKey::JoinGroup => {
            let mut r = Reader::new(body, v >= 6);
            seen.groups.push((r.string()??, Vec::new()));
            Some(())
        }
        ApiKey::OffsetCommit => offset_commit(v, body, seen),
        ApiKey::OffsetFetch => offset_fetch(v, body, seen),
        ApiKey::Produce => produce(v, body, seen),
        _ => Some(()),
    }
}

/// The groups a FindCoordinator asks about (key type 0; transactional ids
/// are not groups). v4 made the single key a batch.
fn find_coordinator(v: i16, body: &[u8], seen: &mut Seen) -> Option<()> {
    let mut r = Reader::new(body, v >= 3);
    if v <= 3 {
        let group = r.string()?;
        let key_type = if v >= 1 { r.i8()? } else { 0 };
        if key_type == 0 {
            seen.groups.push((group?, Vec::new()));
        }
    } else {
        let key_type = r.i8()?;
        let n = r.array_len()?;
        for _ in 0..n {
            let group = r.string()?;
            if key_type == 0
                && let Some(g) = group
            {
                seen.groups.push((g, Vec::new()));
            }
        }
    }
    Some(())
}

/// The group and every (topic, partition, offset) an OffsetCommit writes.
fn offset_commit(v: i16, body: &[u8], seen: &mut Seen) -> Option<()> {
    let mut r = Reader::new(body, v >= 8);
    let group = r.string()??;
    seen.groups.push((group.clone(), Vec::new()));
    if v >= 1 {
        r.skip(4)?;
        r.string()?;
    }
    if v >= 7 {
        r.string()?;
    }
    if (2..=4).contains(&v) {
        r.skip(8)?;
    }
    for _ in 0..r.array_len()? {
        let topic = r.string()??;
        for _ in 0..r.array_len()? {
            let partition = r.i32()?;
            let offset = r.i64()?;
            if v >= 6 {
                r.skip(4)?;
            }
            if v == 1 {
                r.skip(8)?;
            }
            r.string()?;
            r.tags()?;
            seen.commits
                .push((group.clone(), topic.clone(), partition, offset));
        }
        r.tags()?;
    }
    Some(())
}

/// The groups an OffsetFetch reads and, for each, the topics it names;
/// v8 made the single group a batch.
fn offset_fetch(v: i16, body: &[u8], seen: &mut Seen) -> Option<()> {
    let mut r = Reader::new(body, v >= 6);
    if v <= 7 {
        let group = r.string()??;
        seen.groups.push((group, Vec::new()));
        let names = offset_fetch_topics(&mut r)?;
        seen.groups.last_mut()?.1 = names;
    } else {
        for _ in 0..r.array_len()? {
            let group = r.string()??;
            if v >= 9 {
                r.string()?;
                r.skip(4)?;
            }
            seen.groups.push((group, Vec::new()));
            let names = offset_fetch_topics(&mut r)?;
            seen.groups.last_mut()?.1 = names;
            r.tags()?;
        }
    }
    Some(())
}

/// The topic names of one OffsetFetch group (partitions skipped).
fn offset_fetch_topics(r: &mut Reader<'_>) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for _ in 0..r.array_len()? {
        if let Some(t) = r.string()? {
            names.push(t);
        }
        for _ in 0..r.array_len()? {
            r.skip(4)?;
        }
        r.tags()?;
    }
    Some(names)
}

/// Whether a Produce is answered (acks != 0) and how many records it
/// carries per (topic, partition); counting stops at the first batch that
/// is not whole.
fn produce(v: i16, body: &[u8], seen: &mut Seen) -> Option<()> {
    let mut r = Reader::new(body, v >= 9);
    r.string()?;
    let acks = r.i16()?;
    seen.answered = acks != 0;
    r.skip(4)?;
    for _ in 0..r.array_len()? {
        let topic = r.string()??;
        for _ in 0..r.array_len()? {
            let partition = r.i32()?;
            let records = r.bytes()?;
            r.tags()?;
            let n: u64 = batches(records)
                .map_while(|b| match b {
                    Ok(Batch::Whole(view)) => {
                        Some(u64::try_from(view.last_offset_delta()).unwrap_or(0) + 1)
                    }
                    _ => None,
                })
                .sum();
            if n > 0 {
                seen.produced.push((topic.clone(), partition, n));
            }
        }
        r.tags()?;
    }
    Some(())
}

/// A cursor over a request body; every read is bounds-checked and nothing
/// is allocated from a count on the wire.
pub(super) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    flexible: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(b: &'a [u8], flexible: bool) -> Self {
        Reader {
            b,
            pos: 0,
            flexible,
        }
    }

    /// Bytes read so far.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(super) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    pub(super) fn i8(&mut self) -> Option<i8> {
        Some(i8::from_be_bytes(self.take(1)?.try_into().ok()?))
    }

    pub(super) fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(super) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// Length of a (nullable) string or bytes; `None` inside for null.
    pub(super) fn len(&mut self, int32: bool) -> Option<Option<usize>> {
        let n: i64 = if self.flexible {
            i64::try_from(self.uvarint()?).ok()? - 1
        } else if int32 {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if n < 0 {
            return Some(None);
        }
        Some(Some(usize::try_from(n).ok()?))
    }

    /// A nullable string (lossy UTF-8).
    pub(super) fn string(&mut self) -> Option<Option<String>> {
        let Some(n) = self.len(false)? else {
            return Some(None);
        };
        Some(Some(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }

    /// Nullable bytes (null reads as empty).
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        match self.len(true)? {
            None => Some(&[]),
            Some(n) => self.take(n),
        }
    }

    /// An array count, refused when above the bytes left; null is empty.
    pub(super) fn array_len(&mut self) -> Option<usize> {
        let n: i64 = if self.flexible {
            i64::try_from(self.uvarint()?).ok()? - 1
        } else {
            i64::from(self.i32()?)
        };
        let n = usize::try_from(n.max(0)).ok()?;
        (n <= self.b.len() - self.pos).then_some(n)
    }

    pub(super) fn tags(&mut self) -> Option<()> {
        self.tagged().map(|_| ())
    }

    /// Skips a tagged-field section; how many fields it held (0 in a
    /// version that has none).
    pub(super) fn tagged(&mut self) -> Option<u64> {
        if !self.flexible {
            return Some(0);
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let n = usize::try_from(self.uvarint()?).ok()?;
            self.skip(n)?;
        }
        Some(count)
    }

    /// Skips a nullable string.
    pub(super) fn skip_string(&mut self) -> Option<()> {
        if let Some(n) = self.len(false)? {
            self.skip(n)?;
        }
        Some(())
    }

    /// A nullable string borrowed from the body; `None` (outside) when it
    /// is not UTF-8.
    pub(super) fn str(&mut self) -> Option<Option<&'a str>> {
        let Some(n) = self.len(false)? else {
            return Some(None);
        };
        std::str::from_utf8(self.take(n)?).ok().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use cutover_kafka::kafka_protocol::messages::{
        FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_fetch_request::{
            OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
        },
    };
    use cutover_kafka::kafka_protocol::protocol::{Encodable, StrBytes};

    fn body<T: Encodable>(msg: &T, v: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        msg.encode(&mut b, v).unwrap();
        b.to_vec()
    }

    fn s(x: &str) -> StrBytes {
        StrBytes::from_string(x.to_owned())
    }

    #[test]
    fn offset_commit_offsets_are_read_at_every_proxied_version() {
        for v in 2..=9 {
            let msg = OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g1")))
                .with_topics(vec![
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("orders")))
                        .with_partitions(vec![
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(2)
                                .with_committed_offset(42)
                                .with_committed_metadata(Some(s("m"))),
                        ]),
                ]);
            let seen = parse(ApiKey::OffsetCommit, v, &body(&msg, v));
            assert_eq!(
                seen.commits,
                vec![("g1".into(), "orders".into(), 2, 42)],
                "v{v}"
            );
        }
    }

    #[test]
    fn offset_fetch_and_find_coordinator_name_groups() {
        for v in 1..=7 {
            let msg = OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g2")))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1]),
                ]));
            let seen = parse(ApiKey::OffsetFetch, v, &body(&msg, v));
            assert_eq!(seen.groups, vec![("g2".into(), vec!["t".into()])], "v{v}");
        }
        for v in 8..=9 {
            let msg = OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g3")))
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0]),
                    ])),
            ]);
            let seen = parse(ApiKey::OffsetFetch, v, &body(&msg, v));
            assert_eq!(seen.groups, vec![("g3".into(), vec!["t".into()])], "v{v}");
        }
        for v in 0..=6 {
            let msg = if v <= 3 {
                FindCoordinatorRequest::default().with_key(s("g4"))
            } else {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g4")])
            };
            let seen = parse(ApiKey::FindCoordinator, v, &body(&msg, v));
            assert_eq!(seen.groups, vec![("g4".into(), vec![])], "v{v}");
        }
    }

    #[test]
    fn huge_counts_and_garbage_are_harmless() {
        let mut b = vec![0, 1, b'g'];
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
        let seen = parse(ApiKey::OffsetCommit, 2, &b);
        assert!(seen.commits.is_empty());
        let _ = parse(ApiKey::Produce, 9, &[0xff; 40]);
        let _ = parse(ApiKey::OffsetFetch, 8, &[]);
    }

    #[test]
    fn commits_are_accounted_from_relays_then_baselines() {
        let o = Observed::default();
        o.request(Seen {
            groups: vec![],
            commits: vec![("g".into(), "t".into(), 0, 10)],
            ..Seen::default()
        });
        assert_eq!(o.groups_for("t"), vec!["g".to_owned()]);
        assert!(o.groups_for("other").is_empty());
        assert_eq!(o.accounted("g", "t", 0, 8), 10);
        // A partition never committed through the proxy: first look is the baseline.
        assert_eq!(o.accounted("g", "t", 1, 5), 5);
        assert_eq!(o.accounted("g", "t", 1, 9), 5);
        let back = o.request(Seen {
            produced: vec![("t".into(), 0, 3)],
            answered: true,
            ..Seen::default()
        });
        assert_eq!(
            o.produced("t")[&0],
            Produced {
                requested: 3,
                answered: 0
            }
        );
        o.answered(&back);
        assert_eq!(
            o.produced("t")[&0],
            Produced {
                requested: 3,
                answered: 3
            }
        );
    }

    #[test]
    fn groups_and_topics_survive_a_snapshot() {
        let o = Observed::default();
        o.request(Seen {
            groups: vec![("g".into(), vec!["t".into()]), ("h".into(), vec![])],
            ..Seen::default()
        });
        assert_eq!(o.changes(), 1);
        o.request(Seen {
            groups: vec![("g".into(), vec!["t".into()])],
            ..Seen::default()
        });
        assert_eq!(o.changes(), 1, "nothing new, nothing to write");
        let (saved, whole) = o.snapshot();
        assert!(whole);
        let after = Observed::default();
        after.restore(saved);
        assert_eq!(after.groups_for("t"), vec!["g".to_owned(), "h".to_owned()]);
        assert!(after.groups_for("u") == vec!["h".to_owned()]);
    }

    #[test]
    fn groups_are_bounded() {
        let o = Observed::default();
        for i in 0..MAX_GROUPS + 10 {
            o.request(Seen {
                groups: vec![(format!("g{i}"), vec![])],
                ..Seen::default()
            });
        }
        assert_eq!(o.inner.lock().unwrap().groups.len(), MAX_GROUPS);
    }
}
