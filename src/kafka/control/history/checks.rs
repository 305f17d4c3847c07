//! The gates of a copied topic (docs/kafka-history-plan.md §5):
//! `target_partitions_empty` before `dual_read` (the copy writes the
//! target's partitions from their first offset, so anything already there
//! would sit before the history), and `history_caught_up` before
//! `dual_write` and `cutover`, `history_copied` before `target`.

use super::{Copies, SWITCH_LAG};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::control::{moves, topics};
use crate::migration::CheckResult;

const EMPTY: &str = "target_partitions_empty";
const CAUGHT_UP: &str = "history_caught_up";
const COPIED: &str = "history_copied";

/// Before `target`: every partition's history is on the target in one
/// piece per source segment, so from `target` on it is read there and the
/// source is no longer needed for it.
pub(crate) async fn history_copied(shared: &Shared, copies: &Copies, topic: &str) -> CheckResult {
    let count = match moves::partition_count(shared, topic).await {
        Ok(c) => c,
        Err(e) => return CheckResult::fail(COPIED, format!("cannot tell: {e}")),
    };
    let missing: Vec<String> = (0..count)
        .filter_map(|p| {
            let map = shared.splice.map(topic, p);
            copies
                .served(topic, p, &map)
                .err()
                .map(|e| format!("{topic}/{p}: {e}"))
        })
        .collect();
    if missing.is_empty() {
        CheckResult::pass(
            COPIED,
            format!(
                "the target holds the history of every partition of {topic}; from target on it is read there"
            ),
        )
    } else {
        CheckResult::fail(
            COPIED,
            format!(
                "{}; forced, those partitions keep reading their history from the source, which must then stay up",
                missing.join("; ")
            ),
        )
    }
}

/// Whether every target partition of `topic` is empty, or holds only what
/// an earlier copy of this proxy wrote there (it goes on from there).
pub(crate) async fn target_partitions_empty(
    shared: &Shared,
    copies: &Copies,
    topic: &str,
) -> CheckResult {
    match empty_or_ours(shared, copies, topic).await {
        Ok(problems) if problems.is_empty() => CheckResult::pass(
            EMPTY,
            format!(
                "every partition of {topic} on the target is empty or holds only this proxy's copy"
            ),
        ),
        Ok(problems) => CheckResult::fail(
            EMPTY,
            format!(
                "{}; history: copy needs empty target partitions (the copy starts at their first offset): delete and recreate the target topic, or set history: leave for it",
                problems.join("; ")
            ),
        ),
        Err(e) => CheckResult::fail(
            EMPTY,
            format!("cannot tell whether the target's partitions are empty: {e}"),
        ),
    }
}

async fn empty_or_ours(
    shared: &Shared,
    copies: &Copies,
    topic: &str,
) -> Result<Vec<String>, String> {
    let count = moves::partition_count(shared, topic).await?;
    let partitions: Vec<i32> = (0..count).collect();
    let starts = topics::list_offsets(shared, Side::Target, topic, &partitions, -2, 0).await?;
    let ends = topics::list_offsets(shared, Side::Target, topic, &partitions, -1, 0).await?;
    let copied = copies.partitions(topic);
    let resumes = copies.resumes_at(shared, topic, count).await?;
    let mut problems = Vec::new();
    for p in partitions {
        let (start, end) = (
            starts.get(&p).copied().unwrap_or(0),
            ends.get(&p).copied().unwrap_or(0),
        );
        let parked = usize::try_from(p)
            .ok()
            .and_then(|i| resumes.get(i).copied().flatten());
        let ours = parked.is_some_and(|next| next <= end)
            || copied
                .iter()
                .any(|s| s.partition == p && s.state != "stopped");
        if start != end && !ours {
            problems.push(format!(
                "target {topic}/{p} already holds {} records (offsets {start}..{end})",
                end - start
            ));
        }
    }
    Ok(problems)
}

/// Before `dual_write` and `cutover`, which switch partitions' writes to
/// the target: every partition's copy runs (or waits at its end, its
/// writes already on the target) within [`SWITCH_LAG`] offsets of the
/// source, so each switch's fence waits only for the last few.
pub(crate) fn history_caught_up(copies: &Copies, topic: &str) -> CheckResult {
    let partitions = copies.partitions(topic);
    if partitions.is_empty() {
        return CheckResult::fail(
            CAUGHT_UP,
            format!(
                "no history copy of {topic} has run in this process; it starts with dual_read (roll back to source and advance again)"
            ),
        );
    }
    let behind: Vec<String> = partitions
        .iter()
        .filter_map(|p| match p.state {
            "mirroring" | "parked" if p.end - p.copied_to <= SWITCH_LAG => None,
            "mirroring" | "parked" => Some(format!(
                "{topic}/{} is {} offsets behind the source ({} of {})",
                p.partition,
                p.end - p.copied_to,
                p.copied_to,
                p.end
            )),
            state => Some(format!(
                "{topic}/{} is {state}{}",
                p.partition,
                p.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
        })
        .collect();
    if behind.is_empty() {
        CheckResult::pass(
            CAUGHT_UP,
            format!(
                "every partition's history copy of {topic} is within {SWITCH_LAG} offsets of the source"
            ),
        )
    } else {
        CheckResult::fail(CAUGHT_UP, behind.join("; "))
    }
}
