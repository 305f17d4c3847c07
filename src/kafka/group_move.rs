//! Moving a consumer group's coordination between clusters (DESIGN.md §2
//! Kafka, `target`). When a topic reaches `target`, every group whose
//! committed topics are then all in `target` moves: its offsets are read
//! from the source (virtual), translated to target physical offsets and
//! committed to the target group (which must have no members there), the
//! move is persisted, and from then on the proxy sends the group's
//! requests to the target's coordinator. Members connected through the
//! proxy rejoin there: the forced rebalance. A
//! rollback out of `target` moves them back the same way, translating the
//! target's physical offsets to virtual ones.
//!
//! First every member connected through the proxy is made to rejoin and
//! held there (see `group_handoff`), so what it consumed is committed on
//! the old cluster before the offsets are read. Then the group's offset
//! requests pass a gate (see `gate`): the move raises
//! its fence and waits for the commits in flight, so no commit lands on
//! the old cluster after its offsets were read, and every commit released
//! afterwards goes to the new one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use cutover_kafka::kafka_protocol::messages::leave_group_request::MemberIdentity;
use cutover_kafka::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use cutover_kafka::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::Shared;
use super::cluster::Side;
use super::group_offsets::{to_physical, to_virtual};
use super::probe::{self, exchange};
use crate::migration::State;
use crate::proxy::Upstream;

/// Longest a move waits for the group's members to rejoin (a client
/// notices at its next heartbeat, every 3 s by default, then commits).
const HANDOFF_MAX: Duration = Duration::from_secs(10);
/// Longest a move waits for the group's commits in flight.
const MOVE_DRAIN_MAX: Duration = Duration::from_secs(5);
/// OffsetFetch v8: one group, and a null topic list means "every topic".
const OFFSET_FETCH_ALL: i16 = 8;
/// OffsetCommit v5: a generation of -1 and no member commit as an admin
/// would, accepted while the group has no members.
const OFFSET_COMMIT_ADMIN: i16 = 5;

/// A group's committed offsets, by topic and partition.
pub type GroupOffsets = BTreeMap<(String, i32), i64>;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

fn other(side: Side) -> Side {
    match side {
        Side::Source => Side::Target,
        Side::Target => Side::Source,
    }
}

async fn call<Req: Encodable, Resp: Decodable>(
    shared: &Shared,
    upstream: &Upstream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, String> {
    exchange(
        upstream,
        key,
        version,
        request,
        shared.connect_timeout,
        shared.max_frame,
    )
    .await
    .map_err(|e| e.to_string())
}

/// The coordinator of `group` on `side`.
async fn coordinator(shared: &Shared, side: Side, group: &str) -> Result<Upstream, String> {
    let base = shared.upstream(side, None)?;
    let find = FindCoordinatorRequest::default().with_key(s(group));
    let found: FindCoordinatorResponse =
        call(shared, &base, ApiKey::FindCoordinator, 1, &find).await?;
    if found.error_code != 0 {
        return Err(format!(
            "cluster \"{}\" found no coordinator for group {group}: error code {}",
            base.cluster, found.error_code
        ));
    }
    shared.upstream(side, Some(&format!("{}:{}", found.host, found.port)))
}

/// Every offset `group` has committed on `side`, as that cluster holds them.
///
/// # Errors
/// When the coordinator cannot be asked or reports an error.
pub(crate) async fn fetch_all(
    shared: &Shared,
    side: Side,
    group: &str,
) -> Result<GroupOffsets, String> {
    let upstream = coordinator(shared, side, group).await?;
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None),
    ]);
    let response: OffsetFetchResponse = call(
        shared,
        &upstream,
        ApiKey::OffsetFetch,
        OFFSET_FETCH_ALL,
        &request,
    )
    .await?;
    let mut out = GroupOffsets::new();
    for g in &response.groups {
        if g.error_code != 0 {
            return Err(format!(
                "OffsetFetch of group {group} on cluster \"{}\": error code {}",
                upstream.cluster, g.error_code
            ));
        }
        for t in &g.topics {
            for p in &t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
    }
    Ok(out)
}

/// `group`'s committed offsets for `topic` in virtual offsets, asked of the
/// cluster coordinating it, by partition (partitions without a commit left
/// out).
///
/// # Errors
/// When the coordinator cannot be asked or reports a group error.
pub(crate) async fn committed(
    shared: &Shared,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, i64>, String> {
    let home = shared.splice.group_home(group);
    let all = fetch_all(shared, home, group).await?;
    Ok(all
        .into_iter()
        .filter(|((t, p), _)| t == topic && partitions.contains(p))
        .filter_map(|((_, p), offset)| {
            let virtual_offset = match home {
                Side::Source => Some(offset),
                Side::Target => to_virtual(&shared.splice.map(topic, p), Side::Target, offset),
            };
            Some((p, virtual_offset?))
        })
        .collect())
}

/// Commits `offsets` to `group` on `side` as an admin (no member).
async fn commit_all(
    shared: &Shared,
    side: Side,
    group: &str,
    offsets: &GroupOffsets,
) -> Result<(), String> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let upstream = coordinator(shared, side, group).await?;
    let response: OffsetCommitResponse = call(
        shared,
        &upstream,
        ApiKey::OffsetCommit,
        OFFSET_COMMIT_ADMIN,
        &request,
    )
    .await?;
    let failed: Vec<String> = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code != 0)
                .map(move |p| {
                    format!(
                        "{}/{}: error code {}",
                        t.name.0, p.partition_index, p.error_code
                    )
                })
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cluster \"{}\" refused group {group}'s offsets: {}",
            upstream.cluster,
            failed.join(", ")
        ))
    }
}

/// The members of `group` on `side` that were never heard through the
/// proxy: consumers connected to that cluster directly. (Members the proxy
/// knows may linger there from before an earlier move.)
async fn strangers(shared: &Shared, side: Side, group: &str) -> Result<Vec<String>, String> {
    let upstream = coordinator(shared, side, group).await?;
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let response: DescribeGroupsResponse =
        call(shared, &upstream, ApiKey::DescribeGroups, 0, &request).await?;
    Ok(response
        .groups
        .iter()
        .flat_map(|g| &g.members)
        .map(|m| m.member_id.to_string())
        .filter(|id| !shared.handoffs.heard_of(group, id))
        .collect())
}

/// Takes `members` out of `group` on `side` after the group moved away, so
/// the old cluster does not keep them (and a move back finds it empty).
/// Best effort: a member left behind only expires later.
async fn leave(shared: &Shared, side: Side, group: &str, members: &[String]) {
    if members.is_empty() {
        return;
    }
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_members(
            members
                .iter()
                .map(|m| MemberIdentity::default().with_member_id(s(m)))
                .collect(),
        );
    let left: Result<LeaveGroupResponse, String> = match coordinator(shared, side, group).await {
        Ok(upstream) => call(shared, &upstream, ApiKey::LeaveGroup, 3, &request).await,
        Err(e) => Err(e),
    };
    match left {
        Ok(r) if r.error_code == 0 => {}
        Ok(r) => {
            tracing::warn!(migration = %shared.migration.name, group, code = r.error_code, "the old coordinator refused to let the moved members leave; they expire there later")
        }
        Err(e) => {
            tracing::warn!(migration = %shared.migration.name, group, error = %e, "could not take the moved members out of the old group; they expire there later")
        }
    }
}

/// Translates offsets `from` one cluster's terms to the other's.
///
/// # Errors
/// The partitions whose offsets have no place on the target (they lie in
/// a source segment: the group has not read past it).
fn translate(shared: &Shared, from: Side, offsets: &GroupOffsets) -> Result<GroupOffsets, String> {
    let mut out = GroupOffsets::new();
    let mut behind = Vec::new();
    for ((topic, p), offset) in offsets {
        let map = shared.splice.map(topic, *p);
        let moved = match from {
            Side::Source => to_physical(&map, Side::Target, *offset),
            Side::Target => to_virtual(&map, Side::Target, *offset),
        };
        match moved {
            Some(o) => {
                out.insert((topic.clone(), *p), o);
            }
            None => behind.push(format!("{topic}/{p} at {offset}")),
        }
    }
    if behind.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "committed inside source segments, which the target cannot hold: {}",
            behind.join(", ")
        ))
    }
}

/// Moves `group`'s coordination to `to`, carrying its committed offsets.
///
/// # Errors
/// Why the move was abandoned (the group stays where it was; nothing was
/// persisted, though offsets may already have been written to `to`).
pub(crate) async fn move_group(shared: &Shared, group: &str, to: Side) -> Result<usize, String> {
    let _one_at_a_time = shared.switching.lock().await;
    let from = other(to);
    if shared.splice.group_home(group) == to {
        return Ok(0);
    }
    let present = strangers(shared, to, group).await?;
    if !present.is_empty() {
        return Err(format!(
            "group {group} has {} member(s) on cluster \"{}\" ({}) that never came through the proxy, consumers connected to it directly ({}); stop them first",
            present.len(),
            shared.cluster_name(to),
            to.as_str(),
            present.join(", ")
        ));
    }
    let handoff = shared.handoffs.begin(group);
    let rejoining = match handoff.rejoined(HANDOFF_MAX).await {
        Ok(members) => {
            tracing::info!(migration = %shared.migration.name, group, members = members.len(), "every member of the group waits to rejoin");
            members
        }
        Err(missing) => {
            tracing::warn!(
                migration = %shared.migration.name, group, ?missing,
                "members did not rejoin within {HANDOFF_MAX:?}; they will be told they are unknown and rejoin from the last commit"
            );
            Vec::new()
        }
    };
    let fence = shared.splice.groups.fence(&group.to_owned());
    fence.drained(MOVE_DRAIN_MAX).await.map_err(|n| {
        format!("{n} offset request(s) of group {group} still unanswered after {MOVE_DRAIN_MAX:?}; the group stays on the {}", from.as_str())
    })?;
    let offsets = fetch_all(shared, from, group).await?;
    let moved = translate(shared, from, &offsets).map_err(|e| format!("group {group}: {e}"))?;
    commit_all(shared, to, group, &moved).await?;
    shared
        .persist_maps(&format!("the coordination of group {group}"), |all| {
            all.set_group_home(group, to);
        })
        .await?;
    drop(fence);
    drop(handoff);
    leave(shared, from, group, &rejoining).await;
    tracing::info!(
        migration = %shared.migration.name, group, from = from.as_str(), to = to.as_str(),
        partitions = moved.len(), "kafka consumer group moved"
    );
    Ok(moved.len())
}

/// Every group the source lists, asking each of its brokers.
async fn list_groups(shared: &Shared) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let base = shared.bootstrap.clone();
    let brokers = probe::brokers(&base, shared.connect_timeout, shared.max_frame)
        .await
        .unwrap_or_default();
    let mut upstreams: Vec<Upstream> = brokers
        .iter()
        .filter_map(|(_, addr)| shared.upstream(Side::Source, Some(addr)).ok())
        .collect();
    if upstreams.is_empty() {
        upstreams.push(base);
    }
    for upstream in upstreams {
        let listed: Result<ListGroupsResponse, String> = call(
            shared,
            &upstream,
            ApiKey::ListGroups,
            0,
            &ListGroupsRequest::default(),
        )
        .await;
        match listed {
            Ok(r) => out.extend(r.groups.iter().map(|g| g.group_id.0.to_string())),
            Err(e) => {
                tracing::warn!(migration = %shared.migration.name, error = %e, "could not list the source's groups")
            }
        }
    }
    out
}

/// What a topic's transition did to the groups that use it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GroupMoves {
    /// Groups moved, with how many partitions' offsets they carried.
    pub moved: Vec<(String, usize)>,
    /// Groups that stay where they are, and why.
    pub stayed: Vec<(String, String)>,
}

/// Whether `topic` is in `target` once `arriving` (the topic whose
/// transition is being prepared) has arrived there.
fn in_target(shared: &Shared, topic: &str, arriving: &str) -> bool {
    topic == arriving
        || shared
            .migration
            .topic(topic)
            .is_some_and(|t| t.state() == State::Target)
}

/// Moves the groups of `topic` as its transition `from → to` requires:
/// into `target`, every group whose committed topics are then all in
/// `target` moves to the target; out of it, every group the target
/// coordinates that committed on `topic` moves back. A failed move undoes
/// the ones before it.
///
/// # Errors
/// The first move that failed.
pub(crate) async fn follow_topic(
    shared: &Shared,
    topic: &str,
    from: State,
    to: State,
) -> Result<GroupMoves, String> {
    let (candidates, dest) = if to == State::Target {
        let mut groups: BTreeSet<String> = shared.observed.groups_for(topic).into_iter().collect();
        groups.extend(list_groups(shared).await);
        groups.retain(|g| shared.splice.group_home(g) == Side::Source);
        (groups, Side::Target)
    } else if from == State::Target {
        (
            shared.splice.snapshot().moved_groups().clone(),
            Side::Source,
        )
    } else {
        return Ok(GroupMoves::default());
    };
    let mut result = GroupMoves::default();
    for group in candidates {
        let offsets = fetch_all(shared, other(dest), &group).await?;
        if !offsets.keys().any(|(t, _)| t == topic) {
            continue;
        }
        if dest == Side::Target {
            let elsewhere: BTreeSet<&str> = offsets
                .keys()
                .map(|(t, _)| t.as_str())
                .filter(|t| !in_target(shared, t, topic))
                .collect();
            if !elsewhere.is_empty() {
                let why = format!(
                    "also committed on {}, not in target yet; it moves when they arrive",
                    elsewhere.into_iter().collect::<Vec<_>>().join(", ")
                );
                result.stayed.push((group, why));
                continue;
            }
        }
        match move_group(shared, &group, dest).await {
            Ok(n) => result.moved.push((group, n)),
            Err(e) => {
                undo(shared, &result.moved, other(dest)).await;
                return Err(e);
            }
        }
    }
    Ok(result)
}

/// Moves `groups` back to `home` after a failed or aborted transition.
pub(crate) async fn undo(shared: &Shared, groups: &[(String, usize)], home: Side) {
    for (group, _) in groups.iter().rev() {
        if let Err(e) = move_group(shared, group, home).await {
            tracing::error!(
                migration = %shared.migration.name, group, error = %e,
                "could not move a group back after a failed transition; the {} coordinates it",
                other(home).as_str()
            );
        }
    }
}
