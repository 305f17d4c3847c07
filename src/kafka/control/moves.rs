//! Which partitions of a topic write to the target in each state, and the
//! switches that make it so (DESIGN.md §2 Kafka):
//!
//! | state | partitions writing to the target |
//! |---|---|
//! | `source`, `dual_read` | none |
//! | `dual_write` | the topic's *shifted* set (`kafka.dual_write_percent` on entry, then `ctl shift`) |
//! | `cutover`, `target` | all |
//!
//! A transition switches every partition whose side changes, one at a
//! time (each behind its own short fence), before the new state is
//! committed; if one fails, those already switched are switched back and
//! the transition is refused with the reason.

use std::collections::BTreeSet;

use super::switch::{Switched, switch};
use super::topics;
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::metrics;
use crate::migration::State;

/// The partitions that write to the target in `state`.
#[must_use]
pub(super) fn on_target(state: State, count: i32, shifted: &BTreeSet<i32>) -> BTreeSet<i32> {
    match state {
        State::Source | State::DualRead => BTreeSet::new(),
        State::DualWrite => shifted.iter().copied().filter(|p| *p < count).collect(),
        State::Cutover | State::Target => (0..count).collect(),
    }
}

/// The lowest `percent`% of `count` partitions (rounded up).
#[must_use]
pub(super) fn percent_of(count: i32, percent: u8) -> BTreeSet<i32> {
    let n = (i64::from(count.max(0)) * i64::from(percent.min(100)) + 99) / 100;
    (0..i32::try_from(n).unwrap_or(count)).collect()
}

/// The source's partition count of `topic`.
///
/// # Errors
/// When the source cannot be asked or lacks the topic.
pub(crate) async fn partition_count(shared: &Shared, topic: &str) -> Result<i32, String> {
    // Once the source is retired, the target (which holds the source's
    // partitions; any it added are not shown) is asked.
    let (upstream, side) = match shared.splice.home() {
        Side::Source => (&shared.bootstrap, "source"),
        Side::Target => (&shared.target, "target"),
    };
    let view = topics::view(shared, upstream, topic).await?;
    let shape = view.topic.ok_or_else(|| {
        format!(
            "cluster \"{}\" ({side}) has no topic {topic}",
            upstream.cluster
        )
    })?;
    i32::try_from(shape.partitions.len()).map_err(|e| e.to_string())
}

/// Switches `topic`'s partitions to match `state`.
///
/// # Errors
/// The first switch that failed, after the ones before it were undone.
pub(super) async fn apply(
    shared: &Shared,
    topic: &str,
    state: State,
) -> Result<Vec<Switched>, String> {
    let count = partition_count(shared, topic).await?;
    let wanted = on_target(state, count, &shared.splice.snapshot().shifted(topic));
    let mut done: Vec<Switched> = Vec::new();
    for p in 0..count {
        let side = if wanted.contains(&p) {
            Side::Target
        } else {
            Side::Source
        };
        match switch(shared, topic, p, side).await {
            Ok(Some(s)) => {
                count_switch(shared, topic, side, "switched");
                done.push(s);
            }
            Ok(None) => {}
            Err(reason) => {
                count_switch(shared, topic, side, "failed");
                for s in done.iter().rev() {
                    if let Err(e) = switch(shared, topic, s.partition, s.from).await {
                        tracing::error!(
                            migration = %shared.migration.name, topic, partition = s.partition, error = %e,
                            "could not switch a partition back after a failed transition; it keeps writing to the {}",
                            s.to.as_str()
                        );
                    }
                }
                publish(shared, topic, count);
                return Err(reason);
            }
        }
    }
    publish(shared, topic, count);
    Ok(done)
}

/// Persists `topic`'s shifted set.
///
/// # Errors
/// When the state store refuses the write.
pub(crate) async fn set_shifted(
    shared: &Shared,
    topic: &str,
    partitions: BTreeSet<i32>,
) -> Result<(), String> {
    let _one_at_a_time = shared.switching.lock().await;
    shared
        .persist_maps(&format!("the shifted partitions of {topic}"), |all| {
            all.set_shifted(topic, partitions);
        })
        .await
}

fn count_switch(shared: &Shared, topic: &str, to: Side, outcome: &'static str) {
    metrics::counter!(metrics::KAFKA_SWITCHES, "migration" => shared.migration.name.to_string(), "topic" => topic.to_owned(), "to" => to.as_str(), "outcome" => outcome)
        .increment(1);
}

fn publish(shared: &Shared, topic: &str, count: i32) {
    let on_target = (0..count)
        .filter(|p| shared.splice.map(topic, *p).writer() == Side::Target)
        .count();
    metrics::gauge!(metrics::KAFKA_PARTITIONS_ON_TARGET, "migration" => shared.migration.name.to_string(), "topic" => topic.to_owned())
        .set(on_target as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_decide_which_partitions_write_to_the_target() {
        let shifted: BTreeSet<i32> = [1, 4, 9].into();
        assert!(on_target(State::DualRead, 6, &shifted).is_empty());
        assert_eq!(on_target(State::DualWrite, 6, &shifted), [1, 4].into());
        assert_eq!(on_target(State::Cutover, 3, &shifted), [0, 1, 2].into());
        assert_eq!(percent_of(6, 50), [0, 1, 2].into());
        assert_eq!(percent_of(5, 50), [0, 1, 2].into(), "rounded up");
        assert_eq!(percent_of(4, 0), BTreeSet::new());
        assert_eq!(percent_of(4, 255).len(), 4);
    }
}
