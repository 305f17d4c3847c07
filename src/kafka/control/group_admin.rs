//! The proxy's own requests about consumer groups, to either cluster:
//! finding a group's coordinator, reading and writing its committed offsets
//! as an admin would, its members, and the groups a cluster lists. Used by
//! the checks and by `group_move`. Each retries the errors of a settling
//! cluster (`retry`), asking for the coordinator again every time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, Bytes};
use cutover_kafka::kafka_protocol::messages::leave_group_request::MemberIdentity;
use cutover_kafka::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use cutover_kafka::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::probe;
use crate::kafka::retry::{Failure, STEP_DEADLINE, describe, retrying};
use crate::kafka::splice::translate::from_target;
use crate::proxy::Upstream;

/// OffsetFetch v8: one group, and a null topic list means "every topic".
const OFFSET_FETCH_ALL: i16 = 8;
/// OffsetCommit v5: a generation of -1 and no member commit as an admin
/// would, accepted while the group has no members.
const OFFSET_COMMIT_ADMIN: i16 = 5;

/// One committed offset and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Committed {
    /// The offset, in the terms of the cluster holding it.
    pub(crate) offset: i64,
    /// The metadata committed with it.
    pub(crate) metadata: Option<String>,
}

/// A group's committed offsets, by topic and partition.
pub(super) type GroupOffsets = BTreeMap<(String, i32), Committed>;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

async fn call<Req: Encodable, Resp: Decodable>(
    shared: &Shared,
    upstream: &Upstream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, String> {
    shared
        .exchange(upstream, key, version, request)
        .await
        .map_err(|e| e.to_string())
}

/// The coordinator of `group` on `side`, asked until it is known or the
/// step's deadline passes.
pub(crate) async fn coordinator(
    shared: &Shared,
    side: Side,
    group: &str,
) -> Result<Upstream, String> {
    retrying(STEP_DEADLINE, || find_coordinator(shared, side, group)).await
}

/// One FindCoordinator of `group` on `side`.
async fn find_coordinator(shared: &Shared, side: Side, group: &str) -> Result<Upstream, Failure> {
    let base = shared.upstream(side, None)?;
    let find = FindCoordinatorRequest::default().with_key(s(group));
    let found: FindCoordinatorResponse =
        call(shared, &base, ApiKey::FindCoordinator, 1, &find).await?;
    if found.error_code != 0 {
        return Err(Failure::code(
            found.error_code,
            format!(
                "cluster \"{}\" found no coordinator for group {group}",
                base.cluster
            ),
        ));
    }
    Ok(shared.upstream(side, Some(&format!("{}:{}", found.host, found.port)))?)
}

/// Every offset `group` has committed on `side`, as that cluster holds them.
///
/// # Errors
/// When the coordinator cannot be asked or reports an error.
pub(super) async fn fetch_all(
    shared: &Shared,
    side: Side,
    group: &str,
) -> Result<GroupOffsets, String> {
    retrying(STEP_DEADLINE, || fetch_all_once(shared, side, group)).await
}

async fn fetch_all_once(shared: &Shared, side: Side, group: &str) -> Result<GroupOffsets, Failure> {
    let upstream = find_coordinator(shared, side, group).await?;
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
            return Err(Failure::code(
                g.error_code,
                format!(
                    "OffsetFetch of group {group} on cluster \"{}\"",
                    upstream.cluster
                ),
            ));
        }
        for t in &g.topics {
            for p in &t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        Committed {
                            offset: p.committed_offset,
                            metadata: p.metadata.as_ref().map(ToString::to_string),
                        },
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
        .filter_map(|((_, p), c)| {
            let virtual_offset = match home {
                Side::Source => Some(c.offset),
                Side::Target => {
                    from_target(
                        &shared.splice.map(topic, p),
                        c.offset,
                        c.metadata.as_deref(),
                    )
                    .0
                }
            };
            Some((p, virtual_offset?))
        })
        .collect())
}

/// Commits `offsets` to `group` on `side` as an admin (no member).
pub(super) async fn commit_all(
    shared: &Shared,
    side: Side,
    group: &str,
    offsets: &GroupOffsets,
) -> Result<(), String> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), c) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(c.offset)
                .with_committed_metadata(c.metadata.clone().map(StrBytes::from_string))
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
    retrying(STEP_DEADLINE, || commit_once(shared, side, group, &request)).await
}

/// One admin OffsetCommit; retriable when every refused partition was
/// refused for a reason that settles.
async fn commit_once(
    shared: &Shared,
    side: Side,
    group: &str,
    request: &OffsetCommitRequest,
) -> Result<(), Failure> {
    let upstream = find_coordinator(shared, side, group).await?;
    let response: OffsetCommitResponse = call(
        shared,
        &upstream,
        ApiKey::OffsetCommit,
        OFFSET_COMMIT_ADMIN,
        request,
    )
    .await?;
    let refused: Vec<(String, i16)> = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code != 0)
                .map(move |p| (format!("{}/{}", t.name.0, p.partition_index), p.error_code))
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let retriable = refused
        .iter()
        .all(|(_, code)| crate::kafka::retry::is_waited_out(*code));
    let listed: Vec<String> = refused
        .iter()
        .map(|(at, code)| format!("{at}: {}", describe(*code)))
        .collect();
    Err(Failure {
        retriable,
        message: format!(
            "cluster \"{}\" refused group {group}'s offsets: {}",
            upstream.cluster,
            listed.join(", ")
        ),
    })
}

/// The members of `group` on `side` that were never heard through the
/// proxy: consumers connected to that cluster directly. (Members the proxy
/// knows may linger there from before an earlier move.)
pub(super) async fn strangers(
    shared: &Shared,
    side: Side,
    group: &str,
) -> Result<Vec<String>, String> {
    Ok(members(shared, side, group)
        .await?
        .into_iter()
        .filter(|id| !shared.handoffs.heard_of(group, id))
        .collect())
}

/// The members of `group` on `side` that the proxy has heard of: left
/// there from an earlier generation (a member that did not rejoin before
/// an earlier move). The cluster refuses an admin's commit while they
/// stay, until its session timeout expires them.
pub(super) async fn stale_members(
    shared: &Shared,
    side: Side,
    group: &str,
) -> Result<Vec<String>, String> {
    Ok(members(shared, side, group)
        .await?
        .into_iter()
        .filter(|id| shared.handoffs.heard_of(group, id))
        .collect())
}

/// Every member id of `group` on `side`.
async fn members(shared: &Shared, side: Side, group: &str) -> Result<Vec<String>, String> {
    Ok(describe_members(shared, side, group)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// One member of a group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) id: String,
    /// Where the member connects from, as the coordinator saw it.
    pub(crate) host: String,
    /// The topics assigned to it (empty while the group rebalances, or for
    /// a protocol other than the consumer's).
    pub(crate) topics: BTreeSet<String>,
}

/// The topics of a consumer-protocol assignment (its version first).
fn assigned_topics(assignment: &Bytes) -> BTreeSet<String> {
    let mut buf = assignment.clone();
    if buf.len() < 2 {
        return BTreeSet::new();
    }
    let version = buf.get_i16();
    ConsumerProtocolAssignment::decode(&mut buf, version)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .map(|tp| tp.topic.0.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every member of `group` on `side`, with its host and assigned topics.
async fn describe_members(shared: &Shared, side: Side, group: &str) -> Result<Vec<Member>, String> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let response: DescribeGroupsResponse = retrying(STEP_DEADLINE, || async {
        let upstream = find_coordinator(shared, side, group).await?;
        let response: DescribeGroupsResponse =
            call(shared, &upstream, ApiKey::DescribeGroups, 0, &request).await?;
        match response.groups.iter().find(|g| g.error_code != 0) {
            Some(g) => Err(Failure::code(
                g.error_code,
                format!(
                    "DescribeGroups of {group} on cluster \"{}\"",
                    upstream.cluster
                ),
            )),
            None => Ok(response),
        }
    })
    .await?;
    Ok(response
        .groups
        .iter()
        .flat_map(|g| &g.members)
        .map(|m| Member {
            id: m.member_id.to_string(),
            host: m.client_host.to_string(),
            topics: assigned_topics(&m.member_assignment),
        })
        .collect())
}

/// Takes `members` out of `group` on `side` after the group moved away, so
/// the old cluster does not keep them (and a move back finds it empty).
/// Best effort: a member left behind only expires later.
pub(super) async fn leave(shared: &Shared, side: Side, group: &str, members: &[String]) {
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

/// Every group the source lists, asking each of its brokers.
///
/// # Errors
/// When the brokers cannot be found or one of them cannot list its groups:
/// a partial list would hide groups, so none is returned.
pub(super) async fn list_groups(shared: &Shared) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    let base = shared.bootstrap.clone();
    let brokers = probe::brokers(&base, shared.connect_timeout, shared.max_frame)
        .await
        .map_err(|e| format!("listing the source's groups: its brokers are unknown: {e}"))?;
    let mut upstreams: Vec<Upstream> = brokers
        .iter()
        .filter_map(|(_, addr)| shared.upstream(Side::Source, Some(addr)).ok())
        .collect();
    if upstreams.is_empty() {
        upstreams.push(base);
    }
    for upstream in upstreams {
        let listed: ListGroupsResponse = retrying(STEP_DEADLINE, || async {
            let r: ListGroupsResponse = call(
                shared,
                &upstream,
                ApiKey::ListGroups,
                0,
                &ListGroupsRequest::default(),
            )
            .await?;
            if r.error_code != 0 {
                return Err(Failure::code(
                    r.error_code,
                    format!(
                        "ListGroups on broker {} of cluster \"{}\"",
                        upstream.endpoints().join(","),
                        upstream.cluster
                    ),
                ));
            }
            Ok(r)
        })
        .await?;
        out.extend(listed.groups.iter().map(|g| g.group_id.0.to_string()));
    }
    Ok(out)
}

/// Groups the source coordinates that have members assigned `topic` and
/// that the proxy never saw use it (`seen`): consumers reading the source
/// directly. Each comes with those members.
///
/// # Errors
/// When the source's groups cannot be listed or one cannot be described:
/// a group not asked about could be one of them.
pub(super) async fn unseen_consumers(
    shared: &Shared,
    topic: &str,
    seen: &[String],
) -> Result<Vec<(String, Vec<Member>)>, String> {
    use futures::StreamExt;
    let listed = list_groups(shared).await?;
    let asked: Vec<(String, Result<Vec<Member>, String>)> =
        futures::stream::iter(listed.into_iter().filter(|g| !seen.contains(g)))
            .map(|group| async move {
                let members = describe_members(shared, Side::Source, &group).await;
                (group, members)
            })
            .buffer_unordered(LOOKUPS_AT_ONCE)
            .collect()
            .await;
    let mut out = Vec::new();
    for (group, members) in asked {
        let on_topic: Vec<Member> = members?
            .into_iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if !on_topic.is_empty() {
            out.push((group, on_topic));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Groups asked about at once.
const LOOKUPS_AT_ONCE: usize = 16;
