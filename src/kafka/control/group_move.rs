//! Moving a consumer group's coordination between clusters (DESIGN.md §2
//! Kafka, `target`). When a topic reaches `target`, every group whose
//! committed topics are then all in `target` moves; the others stay on the
//! source until their last topic arrives (`ctl check` names them).
//!
//! A move, one group at a time:
//! 1. refuse if the new cluster's group has members that never came
//!    through the proxy (consumers connected to it directly);
//! 2. make every member connected through the proxy rejoin and hold it
//!    there (see `group_handoff`), so what it consumed is committed on the
//!    old cluster first;
//! 3. raise the group's gate (see `gate`) and wait for its commits in
//!    flight, so none lands on the old cluster after the offsets are read;
//! 4. read the offsets, translate them (virtual → target physical, or back
//!    on a rollback out of `target`) and commit them to the new cluster's
//!    group as an admin;
//! 5. persist the group's new home, then release the held joins there and
//!    take the moved members out of the old group.
//!
//! A position inside a source segment (a group still reading there, moved
//! with `--force`) travels in the commit metadata (see `translate`),
//! so nothing is skipped or read twice.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;

use super::group_admin::{
    Committed, GroupOffsets, commit_all, fetch_all, leave, list_groups, stale_members, strangers,
};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::splice::translate::{from_target, to_target};
use crate::migration::{CheckResult, State};

/// Longest a move waits for the group's members to rejoin (a client
/// notices at its next heartbeat, every 3 s by default, then commits).
const HANDOFF_MAX: Duration = Duration::from_secs(10);
/// Groups whose offsets are asked of the source at once while planning.
const LOOKUPS_AT_ONCE: usize = 16;
/// Longest a move waits for the group's commits in flight.
const MOVE_DRAIN_MAX: Duration = Duration::from_secs(5);

fn other(side: Side) -> Side {
    match side {
        Side::Source => Side::Target,
        Side::Target => Side::Source,
    }
}

/// Translates offsets `from` one cluster's terms to the other's (see
/// `translate::to_target` and `from_target`).
///
/// # Errors
/// The partitions the target cannot hold an offset for (they write to the
/// source, with no target segment after the position).
fn translate(shared: &Shared, from: Side, offsets: &GroupOffsets) -> Result<GroupOffsets, String> {
    let mut out = GroupOffsets::new();
    let mut unplaced = Vec::new();
    for ((topic, p), c) in offsets {
        let map = shared.splice.map(topic, *p);
        let metadata = c.metadata.as_deref();
        let moved = match from {
            Side::Source => to_target(&map, c.offset, metadata),
            Side::Target => match from_target(&map, c.offset, metadata) {
                (Some(offset), metadata) => Some((offset, metadata)),
                (None, _) => None,
            },
        };
        match moved {
            Some((offset, metadata)) => {
                out.insert((topic.clone(), *p), Committed { offset, metadata });
            }
            None => unplaced.push(format!("{topic}/{p} at {}", c.offset)),
        }
    }
    if unplaced.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "no place for the committed offsets of {} on the other cluster (the partitions write to the source)",
            unplaced.join(", ")
        ))
    }
}

/// Moves `group`'s coordination to `to`, carrying its committed offsets.
///
/// # Errors
/// Why the move was abandoned (the group stays where it was; nothing was
/// persisted, though offsets may already have been written to `to`).
pub(super) async fn move_group(shared: &Shared, group: &str, to: Side) -> Result<usize, String> {
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
    // Members left on `to` by an earlier move that they missed (they did
    // not rejoin in time) would make it refuse the commit until its session
    // timeout expires them: take them out first.
    let stale = stale_members(shared, to, group).await?;
    leave(shared, to, group, &stale).await;
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

/// What a topic's transition did to the groups that use it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct GroupMoves {
    /// Groups moved, with how many partitions' offsets they carried.
    pub(crate) moved: Vec<(String, usize)>,
    /// Groups that stay where they are, and why.
    pub(super) stayed: Vec<(String, String)>,
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

/// Which groups that committed on `topic` move to the target when it
/// arrives in `target`.
#[derive(Debug, Default)]
pub(crate) struct MovePlan {
    /// Groups whose committed topics will all be in `target`.
    movable: Vec<String>,
    /// Groups that stay on the source, and why.
    pub(super) stayed: Vec<(String, String)>,
    /// Groups the source lists with commits on `topic` that never used it
    /// through the proxy, with their committed positions: the proxy cannot
    /// account for what they read, so they are never moved silently.
    pub(super) unseen: Vec<(String, String)>,
}

/// The groups of `topic` still on the source (seen through the proxy or
/// listed by the source), sorted into those that move with it and those
/// that also use topics not in `target` yet.
///
/// # Errors
/// When a group's offsets cannot be read.
pub(crate) async fn plan(shared: &Shared, topic: &str) -> Result<MovePlan, String> {
    let seen: BTreeSet<String> = shared.observed.groups_for(topic).into_iter().collect();
    let mut groups = seen.clone();
    groups.extend(list_groups(shared).await?);
    groups.retain(|g| shared.splice.group_home(g) == Side::Source);
    // A cluster may list thousands of groups: ask about several at once.
    let mut asked: Vec<(String, Result<GroupOffsets, String>)> = futures::stream::iter(groups)
        .map(|group| async move {
            let offsets = fetch_all(shared, Side::Source, &group).await;
            (group, offsets)
        })
        .buffer_unordered(LOOKUPS_AT_ONCE)
        .collect()
        .await;
    asked.sort_by(|a, b| a.0.cmp(&b.0));
    let mut plan = MovePlan::default();
    for (group, offsets) in asked {
        let offsets = offsets?;
        if !offsets.keys().any(|(t, _)| t == topic) {
            continue;
        }
        if !seen.contains(&group) {
            let at: Vec<String> = offsets
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|((t, p), c)| format!("{t}/{p} at {}", c.offset))
                .collect();
            plan.unseen.push((group, at.join(", ")));
            continue;
        }
        let elsewhere: BTreeSet<&str> = offsets
            .keys()
            .map(|(t, _)| t.as_str())
            .filter(|t| !in_target(shared, t, topic))
            .collect();
        if elsewhere.is_empty() {
            plan.movable.push(group);
        } else {
            let why = format!(
                "also committed on {}, not in target yet; it moves when they arrive",
                elsewhere.into_iter().collect::<Vec<_>>().join(", ")
            );
            plan.stayed.push((group, why));
        }
    }
    Ok(plan)
}

/// Moves the groups of `topic` as its transition `from → to` requires:
/// into `target`, every group whose committed topics are then all in
/// `target` moves to the target (see [`plan`]); out of it, every group the
/// target coordinates that committed on `topic` moves back. A failed move
/// undoes the ones before it.
///
/// # Errors
/// The first move that failed.
pub(super) async fn follow_topic(
    shared: &Shared,
    topic: &str,
    from: State,
    to: State,
) -> Result<GroupMoves, String> {
    let (groups, stayed, dest) = if to == State::Target {
        let mut plan = plan(shared, topic).await?;
        // Only a forced advance gets here with such groups (the check
        // refuses otherwise): they stay, and the report says so.
        for (group, at) in plan.unseen {
            tracing::warn!(migration = %shared.migration.name, group, topic, position = %at, "a group never seen through the proxy stays on the source");
            plan.stayed.push((
                group,
                format!("never seen through the proxy; left on the source, committed at {at}"),
            ));
        }
        (plan.movable, plan.stayed, Side::Target)
    } else if from == State::Target {
        let mut back = Vec::new();
        for group in shared.splice.snapshot().moved_groups() {
            let offsets = fetch_all(shared, Side::Target, group).await?;
            if offsets.keys().any(|(t, _)| t == topic) {
                back.push(group.clone());
            }
        }
        (back, Vec::new(), Side::Source)
    } else {
        return Ok(GroupMoves::default());
    };
    let mut result = GroupMoves {
        moved: Vec::new(),
        stayed,
    };
    for group in groups {
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

/// `groups_move_to_target` (before `target`): names the groups that will
/// move with `topic` and those that stay on the source; fails when a group
/// that would move has members on the target that never came through the
/// proxy (the move would refuse).
pub(super) async fn check(shared: &Shared, topic: &str) -> CheckResult {
    const NAME: &str = "groups_move_to_target";
    let plan = match plan(shared, topic).await {
        Ok(p) => p,
        Err(e) => return CheckResult::fail(NAME, e),
    };
    let mut blocked: Vec<String> = plan
        .unseen
        .iter()
        .map(|(group, at)| {
            format!("{group} committed on {topic} without ever using it through the proxy (at {at}); the proxy cannot account for what it read, so it is not moved (`--force` leaves it on the source)")
        })
        .collect();
    for group in &plan.movable {
        match strangers(shared, Side::Target, group).await {
            Ok(s) if s.is_empty() => {}
            Ok(s) => blocked.push(format!(
                "{group} has {} member(s) on the target that never came through the proxy ({})",
                s.len(),
                s.join(", ")
            )),
            Err(e) => blocked.push(format!("{group}: {e}")),
        }
    }
    if !blocked.is_empty() {
        return CheckResult::fail(
            NAME,
            format!(
                "{}; stop the consumers connected to a cluster directly",
                blocked.join("; ")
            ),
        );
    }
    let stayed: Vec<String> = plan
        .stayed
        .iter()
        .map(|(g, why)| format!("{g} ({why})"))
        .collect();
    CheckResult::pass(
        NAME,
        format!(
            "move to the target with {topic}: {}; stay on the source: {}",
            if plan.movable.is_empty() {
                "none".to_owned()
            } else {
                plan.movable.join(", ")
            },
            if stayed.is_empty() {
                "none".to_owned()
            } else {
                stayed.join(", ")
            }
        ),
    )
}

/// Moves `groups` back to `home` after a failed or aborted transition.
async fn undo(shared: &Shared, groups: &[(String, usize)], home: Side) {
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
