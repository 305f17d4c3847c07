//! The splice's side of `ctl`: the checks before `target`, the `shift`
//! action of `dual_write`, and the per-partition status.
//!
//! Before `target` (the source stops being read):
//! - `consumers_past_source_segments`: every consumer group of the topic
//!   (seen through the proxy, or listed by the source with commits on the
//!   topic, so a restart or a group reading the source directly hides
//!   none) has committed, on every partition, at least the virtual offset
//!   where the partition's last source segment ends; otherwise it would
//!   lose what it has not read there. Named per group; so is a group the
//!   source lists with members assigned the topic but no commit on it; a
//!   source that cannot list or describe its groups fails the check. The
//!   groups seen through the proxy outlive a restart; after a start
//!   without a complete record of them this check and
//!   `groups_move_to_target` refuse for one heartbeat interval
//!   (`migration::recall`).
//! - `no_writes_bypassing_to_source`: no partition's source log grew past
//!   the end of its last source segment by a data record. Such records
//!   were written around the proxy after the switch; they are not hidden:
//!   a rollback appends a segment that starts exactly there, so consumers
//!   read them. A transaction marker there is not a write (`past_end`).
//! - `groups_move_to_target` (see `group_move`): which groups move with
//!   the topic and which stay on the source.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use super::bypass;
use super::group_admin;
use super::group_move;
use super::moves;
use super::switch;
use super::topics;
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::observe;
use crate::kafka::splice::segments::{PartitionMap, SegmentMaps};
use crate::migration::{CheckResult, State};

/// Where each partition's last source segment ends, virtually and
/// physically; `None` for a partition that never switched.
fn source_ends(map: &PartitionMap) -> Option<(i64, i64)> {
    let segments = map.segments();
    let i = segments.iter().rposition(|s| s.side == Side::Source)?;
    let next = segments.get(i + 1)?;
    let s = segments[i];
    Some((
        next.virtual_start,
        s.physical_start + (next.virtual_start - s.virtual_start),
    ))
}

/// The gate on groups still reading source segments.
const CONSUMERS: &str = "consumers_past_source_segments";

/// The checks before `cutover → target`.
pub(super) async fn before_target(shared: &Shared, topic: &str) -> Vec<CheckResult> {
    const WRITES: &str = "no_writes_bypassing_to_source";
    let count = match moves::partition_count(shared, topic).await {
        Ok(c) => c,
        Err(e) => {
            return vec![
                CheckResult::fail(CONSUMERS, e.clone()),
                CheckResult::fail(WRITES, e),
            ];
        }
    };
    let ends: Vec<(i32, Option<(i64, i64)>)> = (0..count)
        .map(|p| (p, source_ends(&shared.splice.map(topic, p))))
        .collect();
    let consumers = shared.recall.hedge(
        observe::GROUPS,
        consumers_past(shared, topic, count, &ends).await,
    );
    let grew: Vec<String> = match bypass::bypassed(shared, &shared.splice.snapshot(), topic).await {
        Ok(found) => found
            .get(&Side::Source)
            .into_iter()
            .flatten()
            .map(|(p, n)| format!("{topic}/{p}: {n} record offset(s) past the switch"))
            .collect(),
        Err(e) => vec![e],
    };
    let writes = if grew.is_empty() {
        CheckResult::pass(
            WRITES,
            format!("the source log of {topic} ends where the proxy switched every partition away"),
        )
    } else {
        CheckResult::fail(
            WRITES,
            format!(
                "written to the source around the proxy after the switch: {}; roll back to dual_write or dual_read to serve them (the new source segment starts at the first of them), then stop the producer that bypasses the proxy",
                grew.join(", ")
            ),
        )
    };
    let moves = shared
        .recall
        .hedge(observe::GROUPS, group_move::check(shared, topic).await);
    vec![consumers, writes, moves]
}

/// `consumers_past_source_segments`: every group with commits on `topic`,
/// seen through the proxy or listed by the source, has committed past
/// every partition's last source segment.
async fn consumers_past(
    shared: &Shared,
    topic: &str,
    count: i32,
    ends: &[(i32, Option<(i64, i64)>)],
) -> CheckResult {
    let partitions: Vec<i32> = (0..count).collect();
    let mut behind = Vec::new();
    let seen = shared.observed.groups_for(topic);
    // A restarted proxy has seen nobody yet, and a group reading the
    // source directly is never seen: the source's own list counts too.
    let listed = match group_admin::list_groups(shared).await {
        Ok(listed) => listed,
        Err(e) => {
            return CheckResult::fail(
                CONSUMERS,
                format!(
                    "{e}; a group the proxy has not seen could still be reading the source's segments of {topic}"
                ),
            );
        }
    };
    let mut groups: BTreeSet<String> = seen.iter().cloned().collect();
    groups.extend(listed);
    let mut counted = 0;
    let mut counted_groups = BTreeSet::new();
    for group in &groups {
        match group_admin::committed(shared, group, topic, &partitions).await {
            Err(e) => {
                counted_groups.insert(group.clone());
                behind.push(format!("{group}: {e}"));
            }
            // Listed by the source but never committed on this topic: not
            // one of its consumers.
            Ok(committed) if committed.is_empty() && !seen.contains(group) => {}
            Ok(committed) => {
                counted += 1;
                counted_groups.insert(group.clone());
                behind.extend(commits_behind(group, topic, &committed, ends));
            }
        }
    }
    // A group with members reading the topic but no commit on it is not
    // counted above; the source still names it and where it reads from.
    let accounted: Vec<String> = counted_groups.into_iter().collect();
    behind.extend(uncommitted_readers(shared, topic, &accounted).await);
    if behind.is_empty() {
        CheckResult::pass(
            CONSUMERS,
            format!(
                "{counted} group(s) with commits on {topic} ({} seen through the proxy, the rest listed by the source) have read past every source segment",
                seen.len()
            ),
        )
    } else {
        CheckResult::fail(
            CONSUMERS,
            format!(
                "groups still reading the source: {}; wait for them to catch up",
                behind.join(", ")
            ),
        )
    }
}

/// Where `group`'s commits on `topic` stop short of the end of a
/// partition's last source segment, one sentence per partition.
fn commits_behind(
    group: &str,
    topic: &str,
    committed: &HashMap<i32, i64>,
    ends: &[(i32, Option<(i64, i64)>)],
) -> Vec<String> {
    let mut behind = Vec::new();
    for (p, end) in ends {
        let Some((virtual_end, _)) = end else {
            continue;
        };
        match committed.get(p) {
            Some(c) if c >= virtual_end => {}
            // An empty source segment holds nothing to lose.
            None if *virtual_end <= 0 => {}
            Some(c) => behind.push(format!(
                "{group} at {topic}/{p} committed {c} < {virtual_end}"
            )),
            None => behind.push(format!(
                "{group} has no commit on {topic}/{p} (source segment ends at {virtual_end})"
            )),
        }
    }
    behind
}

/// Groups the source names as reading `topic` without a commit on it
/// (other than `accounted`), one sentence each; or why that is unknown.
async fn uncommitted_readers(shared: &Shared, topic: &str, accounted: &[String]) -> Vec<String> {
    match group_admin::unseen_consumers(shared, topic, accounted).await {
        Ok(reading) => reading
            .into_iter()
            .map(|(group, members)| {
                let hosts: BTreeSet<&str> = members.iter().map(|m| m.host.as_str()).collect();
                format!(
                    "{group} has {} member(s) from {} reading {topic} with no commit on it, so what it read of the source's segments is unknown",
                    members.len(),
                    hosts.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
            .collect(),
        Err(e) => vec![format!(
            "cannot tell which groups read {topic} without committing: {e}"
        )],
    }
}

/// `target_records_before_switch` (before `dual_write`, informational):
/// how many records the target already holds in the partitions that will
/// switch to it for the first time, and what `kafka.switch_start` does
/// with them. An information, never a gate: when the target cannot be
/// asked it says so, and `target_reachable` is the gate that refuses.
pub(super) async fn target_records(shared: &Shared, topic: &str) -> CheckResult {
    const NAME: &str = "target_records_before_switch";
    let count = match moves::partition_count(shared, topic).await {
        Ok(c) => c,
        Err(e) => return cannot_count(NAME, &e),
    };
    if let Err(e) = topics::refresh_layout(shared, Side::Target, topic).await {
        return cannot_count(NAME, &e);
    }
    let (mut records, mut partitions) = (0i64, 0);
    for p in 0..count {
        if shared
            .splice
            .map(topic, p)
            .segments()
            .iter()
            .any(|s| s.side == Side::Target)
        {
            continue; // resumes where its last target segment ended
        }
        let start = switch::offset(shared, Side::Target, topic, p, -2, 0).await;
        let end = switch::offset(shared, Side::Target, topic, p, -1, 0).await;
        match (start, end) {
            (Ok(s), Ok(e)) if e > s => {
                records += e - s;
                partitions += 1;
            }
            (Ok(_), Ok(_)) => {}
            (Err(e), _) | (_, Err(e)) => return cannot_count(NAME, &e),
        }
    }
    let reason = if records == 0 {
        format!("the target holds no records in {topic} yet; switched partitions start empty there")
    } else {
        let choice = match shared.switch_start {
            crate::config::SwitchStart::LogStart => {
                "switch_start: log_start reads them after the source's records"
            }
            crate::config::SwitchStart::LogEnd => "switch_start: log_end skips them",
        };
        format!(
            "the target already holds {records} record(s) in {partitions} partition(s) of {topic} (written around the proxy or by a replication tool); {choice}"
        )
    };
    CheckResult::info(NAME, reason)
}

fn cannot_count(name: &str, why: &str) -> CheckResult {
    CheckResult::info(
        name,
        format!("cannot count the records the target already holds: {why}"),
    )
}

/// `ctl shift`: sets which partitions `dual_write` puts on the target
/// (`{"partitions": [..]}` or `{"percent": N}`) and switches them.
///
/// # Errors
/// When the topic is not in `dual_write`, the parameters are wrong, or a switch fails.
pub(crate) async fn shift(shared: &Shared, topic: &str, params: &Value) -> Result<Value, String> {
    let state = shared
        .migration
        .topic(topic)
        .map(|t| t.state())
        .ok_or_else(|| format!("unknown topic {topic}"))?;
    if state != State::DualWrite {
        return Err(format!(
            "{topic} is in {state}; shift applies in dual_write"
        ));
    }
    let count = moves::partition_count(shared, topic).await?;
    let wanted: BTreeSet<i32> =
        if let Some(list) = params.get("partitions").and_then(Value::as_array) {
            let mut out = BTreeSet::new();
            for v in list {
                match v.as_i64().and_then(|p| i32::try_from(p).ok()) {
                    Some(p) if (0..count).contains(&p) => {
                        out.insert(p);
                    }
                    _ => return Err(format!("partition {v} is not one of {topic}'s 0..{count}")),
                }
            }
            out
        } else if let Some(pct) = params.get("percent").and_then(Value::as_u64) {
            if pct > 100 {
                return Err(format!("percent must be 0..100, not {pct}"));
            }
            moves::percent_of(count, u8::try_from(pct).unwrap_or(100))
        } else {
            return Err("give \"partitions\": [..] or \"percent\": N".into());
        };
    moves::set_shifted(shared, topic, wanted.clone()).await?;
    let switched = moves::apply(shared, topic, State::DualWrite).await?;
    Ok(json!({
        "topic": topic,
        "on_target": wanted,
        "switched": switched,
    }))
}

/// Per partition: the cluster receiving writes and the segments; and the
/// consumer groups the target coordinates.
pub(super) fn status(shared: &Shared, topic: &str) -> Value {
    let maps = shared.splice.snapshot();
    let partitions: Vec<Value> = maps
        .partitions(topic)
        .into_iter()
        .filter(|(_, m)| !m.is_identity())
        .map(|(p, m)| json!({ "partition": p, "writes_to": m.writer().as_str(), "segments": m.segments() }))
        .collect();
    json!({
        "spliced_partitions": partitions,
        "shifted": maps.shifted(topic),
        "groups_on_target": maps.moved_groups(),
        "source_retired": maps.source_retired(),
        "repoint_ready": repoint_ready(shared, &maps, topic),
    })
}

/// Whether clients of `topic` may be pointed straight at the target: the
/// topic is in `target` (its groups moved there in the target's own
/// offsets) and no partition reads anything from the source.
fn repoint_ready(shared: &Shared, maps: &SegmentMaps, topic: &str) -> bool {
    let in_target = shared
        .migration
        .topic(topic)
        .is_some_and(|t| t.state() == State::Target);
    let partitions = maps.partitions(topic);
    in_target
        && !partitions.is_empty()
        && partitions
            .iter()
            .all(|(_, m)| m.segments().iter().all(|s| s.side == Side::Target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ends_follow_the_last_source_segment() {
        assert_eq!(source_ends(&PartitionMap::default()), None);
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 0)
            .unwrap();
        assert_eq!(source_ends(&map), Some((100, 100)));
        let back = map.appended(Side::Source, 20, 100).unwrap();
        assert_eq!(source_ends(&back), None, "the source writes again");
        let again = back.appended(Side::Target, 130, 20).unwrap();
        assert_eq!(source_ends(&again), Some((150, 130)));
    }
}
