//! The graceful half of a group's move between clusters: before its
//! offsets are read, every member connected through the proxy is made to
//! rejoin, so each first finishes its generation on the old coordinator
//! (revoking its partitions and committing what it consumed, as clients
//! with automatic commits do on a rebalance) and then waits in JoinGroup.
//! Only when all of them wait are the offsets carried over; the held
//! JoinGroups are then released to the new coordinator. A consumer thus
//! resumes at exactly the next record instead of re-reading what it had
//! consumed since its last commit.
//!
//! While a group hands off, the proxy answers its heartbeats itself with
//! REBALANCE_IN_PROGRESS and holds its JoinGroups. Members are known from
//! their own heartbeats, joins and syncs through the proxy, each until
//! its session timeout passes without one, or it leaves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use cutover_kafka::RequestHeader;
use cutover_kafka::kafka_protocol::messages::ApiKey;
use dashmap::DashMap;
use tokio::sync::Notify;

use super::observe::Reader;

/// Kafka's REBALANCE_IN_PROGRESS error code.
pub(super) const REBALANCE_IN_PROGRESS: i16 = 27;
/// How long a member counts as present after it was last heard from, when
/// its JoinGroup did not say its session timeout.
const DEFAULT_SESSION: Duration = Duration::from_secs(10);
/// How long a silent member's id is remembered at least (so a stale member
/// the old cluster still lists after a move is recognised as the proxy's).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// What a group request says about its member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MemberSeen {
    /// Heard from (heartbeat, sync), with the session timeout a join states.
    Alive(String, Option<Duration>),
    /// Left the group.
    Left(Vec<String>),
}

/// Reads the member a Heartbeat, JoinGroup, SyncGroup or LeaveGroup names.
#[must_use]
pub(super) fn member_of(frame: &[u8], header: &RequestHeader) -> Option<MemberSeen> {
    let v = header.api_version;
    let body = frame.get(header.body_offset..)?;
    match header.key {
        ApiKey::Heartbeat | ApiKey::SyncGroup => {
            let mut r = Reader::new(body, v >= 4);
            r.string()?;
            r.skip(4)?;
            Some(MemberSeen::Alive(r.string()??, None))
        }
        ApiKey::JoinGroup => {
            let mut r = Reader::new(body, v >= 6);
            r.string()?;
            let session = r.i32()?;
            if v >= 1 {
                r.skip(4)?;
            }
            let member = r.string()??;
            let timeout = u64::try_from(session).ok().map(Duration::from_millis);
            (!member.is_empty()).then_some(MemberSeen::Alive(member, timeout))
        }
        ApiKey::LeaveGroup => {
            let mut r = Reader::new(body, v >= 4);
            r.string()?;
            if v < 3 {
                return Some(MemberSeen::Left(vec![r.string()??]));
            }
            let mut left = Vec::new();
            for _ in 0..r.array_len()? {
                left.push(r.string()??);
                r.string()?;
                if v >= 5 {
                    r.string()?;
                }
                r.tags()?;
            }
            Some(MemberSeen::Left(left))
        }
        _ => None,
    }
}

/// A JoinGroup frame (length prefix included) with its member id emptied,
/// so the coordinator it is released to admits it as a new member instead
/// of refusing (Kafka) or waiting on (tansu) an id it never issued.
/// `None` when the frame does not parse or already names no member.
#[must_use]
pub(super) fn without_member_id(frame: &[u8], header: &RequestHeader) -> Option<Bytes> {
    let v = header.api_version;
    let at = header.body_offset;
    let mut r = Reader::new(frame.get(at..)?, v >= 6);
    r.string()?;
    r.skip(if v >= 1 { 8 } else { 4 })?;
    let start = at + r.position();
    if r.string()??.is_empty() {
        return None;
    }
    let end = at + r.position();
    let empty: &[u8] = if v >= 6 { &[1] } else { &[0, 0] };
    let mut out = BytesMut::with_capacity(frame.len());
    let size = frame.len() - (end - start) + empty.len() - 4;
    out.put_u32(u32::try_from(size).ok()?);
    out.put_slice(frame.get(4..start)?);
    out.put_slice(empty);
    out.put_slice(frame.get(end..)?);
    Some(out.freeze())
}

/// One group's hand-off in progress.
#[derive(Debug, Default)]
struct Handoff {
    /// Members whose JoinGroup is held.
    waiting: Mutex<HashSet<String>>,
    /// A member started waiting.
    joined: Notify,
    /// The hand-off ended; held JoinGroups proceed.
    released: Notify,
}

/// A hand-off under way; ends (releasing the held JoinGroups) when dropped.
#[derive(Debug)]
pub(crate) struct HandoffGuard {
    handoffs: Arc<Handoffs>,
    group: String,
    handoff: Arc<Handoff>,
}

impl Drop for HandoffGuard {
    fn drop(&mut self) {
        self.handoffs.active.remove(&self.group);
        self.handoff.released.notify_waiters();
    }
}

impl HandoffGuard {
    /// Waits until every member the proxy knows waits in JoinGroup, at
    /// most `within`; returns the members waiting.
    ///
    /// # Errors
    /// The members that did not rejoin in time.
    pub(super) async fn rejoined(&self, within: Duration) -> Result<Vec<String>, Vec<String>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.handoff.joined.notified();
            let expected = self.handoffs.members(&self.group);
            let missing: Vec<String> = {
                let waiting = self
                    .handoff
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                expected
                    .into_iter()
                    .filter(|m| !waiting.contains(m))
                    .collect()
            };
            if missing.is_empty() {
                let waiting = self
                    .handoff
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                return Ok(waiting.iter().cloned().collect());
            }
            // Poll as well as wait: members also drop out by expiring.
            let step = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(200));
            if tokio::time::Instant::now() >= deadline {
                return Err(missing);
            }
            let _ = tokio::time::timeout(step, notified).await;
        }
    }
}

/// The members of every group as heard through the proxy, and the
/// hand-offs under way.
#[derive(Debug, Default)]
pub(super) struct Handoffs {
    active: DashMap<String, Arc<Handoff>>,
    /// Per group, member id → until when it counts as present.
    members: DashMap<String, HashMap<String, (Instant, Duration)>>,
}

impl Handoffs {
    /// Starts `group`'s hand-off.
    #[must_use]
    pub(super) fn begin(self: &Arc<Self>, group: &str) -> HandoffGuard {
        let handoff = Arc::new(Handoff::default());
        self.active.insert(group.to_owned(), handoff.clone());
        HandoffGuard {
            handoffs: self.clone(),
            group: group.to_owned(),
            handoff,
        }
    }

    /// Whether `group` is handing off.
    #[must_use]
    pub(super) fn active(&self, group: &str) -> bool {
        self.active.contains_key(group)
    }

    /// Records what a group request says about its member.
    pub(super) fn heard(&self, group: &str, seen: MemberSeen) {
        let mut members = self.members.entry(group.to_owned()).or_default();
        // Ids of members long gone are forgotten (a restarted client joins
        // under a new one), so the map stays as small as the group.
        members.retain(|_, (at, session)| at.elapsed() < FORGET_AFTER.max(*session * 6));
        match seen {
            MemberSeen::Alive(member, session) => {
                let entry = members
                    .entry(member)
                    .or_insert((Instant::now(), DEFAULT_SESSION));
                entry.0 = Instant::now();
                if let Some(s) = session {
                    entry.1 = s;
                }
            }
            MemberSeen::Left(left) => {
                for m in left {
                    members.remove(&m);
                }
            }
        }
    }

    /// Retires `member` of `group`: its JoinGroup went to the other
    /// cluster without its id (which issues it a new one), so the id is
    /// dead and a later hand-off must not wait for it. It stays known to
    /// [`Self::heard_of`], since the cluster the group left may still list it.
    pub(super) fn retire(&self, group: &str, member: &str) {
        if let Some(mut members) = self.members.get_mut(group)
            && let Some(entry) = members.get_mut(member)
        {
            entry.1 = Duration::ZERO;
        }
    }

    /// The members of `group` heard from within their session timeout.
    #[must_use]
    pub(super) fn members(&self, group: &str) -> Vec<String> {
        self.members
            .get(group)
            .map(|m| {
                m.iter()
                    .filter(|(_, (at, session))| at.elapsed() < *session)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `member` of `group` was ever heard through the proxy (it
    /// may since have moved with the group and left a stale entry behind).
    #[must_use]
    pub(super) fn heard_of(&self, group: &str, member: &str) -> bool {
        self.members
            .get(group)
            .is_some_and(|m| m.contains_key(member))
    }

    /// Holds a JoinGroup of `member` until `group`'s hand-off ends (at once
    /// when none is under way).
    pub(super) async fn hold_join(&self, group: &str, member: Option<&str>) {
        let Some(handoff) = self.active.get(group).map(|h| h.clone()) else {
            return;
        };
        let released = handoff.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if !self.active.contains_key(group) {
            return;
        }
        if let Some(m) = member {
            handoff
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(m.to_owned());
            handoff.joined.notify_waiters();
        }
        released.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hand_off_waits_for_every_known_member_and_releases_their_joins() {
        let handoffs = Arc::new(Handoffs::default());
        handoffs.heard("g", MemberSeen::Alive("a".into(), None));
        handoffs.heard("g", MemberSeen::Alive("b".into(), None));
        handoffs.heard("g", MemberSeen::Alive("c".into(), None));
        handoffs.heard("g", MemberSeen::Left(vec!["c".into()]));
        let guard = handoffs.begin("g");
        assert!(handoffs.active("g"));
        let joins: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|m| {
                let h = handoffs.clone();
                tokio::spawn(async move { h.hold_join("g", Some(m)).await })
            })
            .collect();
        let mut rejoined = guard.rejoined(Duration::from_secs(2)).await.unwrap();
        rejoined.sort();
        assert_eq!(rejoined, ["a", "b"]);
        assert!(handoffs.heard_of("g", "a") && !handoffs.heard_of("g", "c"));
        assert!(joins.iter().all(|j| !j.is_finished()), "held until the end");
        drop(guard);
        for j in joins {
            tokio::time::timeout(Duration::from_secs(1), j)
                .await
                .unwrap()
                .unwrap();
        }
        assert!(!handoffs.active("g"));
        handoffs.hold_join("g", Some("a")).await; // nothing under way: passes
    }

    #[test]
    fn released_joins_lose_their_member_id_and_keep_everything_else() {
        use cutover_kafka::kafka_protocol::messages::{
            GroupId, JoinGroupRequest, RequestHeader as KpHeader,
        };
        use cutover_kafka::kafka_protocol::protocol::StrBytes;
        use cutover_kafka::{decode_request_body, encode_request, peek_request};
        for v in [0, 1, 5, 6, 9] {
            let body = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("app")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(30_000)
                .with_member_id(StrBytes::from_static_str("rdkafka-1234"))
                .with_protocol_type(StrBytes::from_static_str("consumer"));
            let header = KpHeader::default()
                .with_request_api_key(ApiKey::JoinGroup as i16)
                .with_request_api_version(v)
                .with_correlation_id(3);
            let frame = encode_request(&header, &body).unwrap();
            let peeked = peek_request(&frame).unwrap();
            let member = member_of(&frame, &peeked);
            assert_eq!(
                member,
                Some(MemberSeen::Alive(
                    "rdkafka-1234".into(),
                    Some(Duration::from_secs(10))
                )),
                "v{v}"
            );
            let blank = without_member_id(&frame, &peeked).unwrap();
            let peeked = peek_request(&blank).unwrap();
            let back: JoinGroupRequest = decode_request_body(&blank, &peeked).unwrap();
            let sent: JoinGroupRequest =
                decode_request_body(&frame, &peek_request(&frame).unwrap()).unwrap();
            assert_eq!(back, sent.with_member_id(StrBytes::default()), "v{v}");
            assert_eq!(without_member_id(&blank, &peeked), None);
        }
    }

    #[tokio::test]
    async fn members_that_never_rejoin_are_named_at_the_deadline() {
        let handoffs = Arc::new(Handoffs::default());
        handoffs.heard("g", MemberSeen::Alive("quiet".into(), None));
        let guard = handoffs.begin("g");
        assert_eq!(
            guard.rejoined(Duration::from_millis(50)).await,
            Err(vec!["quiet".to_owned()])
        );
    }

    #[tokio::test]
    async fn a_retired_member_is_not_waited_for_but_still_known() {
        let handoffs = Arc::new(Handoffs::default());
        handoffs.heard(
            "g",
            MemberSeen::Alive("moved".into(), Some(Duration::from_secs(45))),
        );
        handoffs.retire("g", "moved");
        handoffs.retire("g", "never-heard");
        assert!(handoffs.members("g").is_empty());
        assert!(handoffs.heard_of("g", "moved"));
        let guard = handoffs.begin("g");
        assert_eq!(guard.rejoined(Duration::from_millis(50)).await, Ok(vec![]));
    }
}
