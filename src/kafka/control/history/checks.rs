//! The gates of a copied topic (docs/kafka-history-plan.md §5):
//! `target_partitions_empty` before `dual_read` (the copy writes the
//! target's partitions from their first offset, so anything already there
//! would sit before the history), and `history_caught_up` before
//! `dual_write`.

use super::Copies;
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::control::{moves, topics};
use crate::migration::CheckResult;

const EMPTY: &str = "target_partitions_empty";
const CAUGHT_UP: &str = "history_caught_up";

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

/// `dual_write` switches partitions' writes to the target; a copied
/// partition may only switch once its copy has reached the source's end
/// inside the switch's fence, which the switch does not do yet.
pub(crate) fn history_caught_up(topic: &str) -> CheckResult {
    CheckResult::fail(
        CAUGHT_UP,
        format!(
            "{topic} has history: copy, and switching a copied partition's writes to the target is not built yet (the copy mirrors the source in dual_read); roll back to source and set history: leave to walk it further"
        ),
    )
}
