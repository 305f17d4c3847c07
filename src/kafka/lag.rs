//! Consumer-group lag: each partition's last seen high watermark (kept by
//! the data plane in [`crate::kafka::marks`]) minus the group's last
//! commit relayed through the proxy (virtual offsets), summed over every
//! partition the group committed, so one member's commit does not hide
//! the partitions the other members hold.
//!
//! The gauge is published by one task every [`LAG_EVERY`], not by the
//! requests that move its inputs: a Fetch answer would otherwise build
//! label strings and look the series up for every group of its topic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use metrics::Gauge;
use tokio_util::sync::CancellationToken;

use crate::kafka::Shared;
use crate::kafka::meters::Meters;
use crate::metrics as names;

/// How often the lag gauges are published.
pub(crate) const LAG_EVERY: Duration = Duration::from_secs(1);

/// Group commits remembered at most, counted as (topic, group) pairs, and
/// partitions per pair.
const MAX_COMMITTED: usize = 65_536;
const MAX_COMMITTED_PARTITIONS: usize = 4_096;

/// A group's last commit per partition of one topic.
type GroupCommits = HashMap<i32, i64>;

/// Last commit per topic, group and partition (written on OffsetCommit,
/// which is rare next to Produce and Fetch).
#[derive(Debug, Default)]
pub(crate) struct Commits {
    by_topic: DashMap<String, HashMap<String, GroupCommits>>,
}

impl Commits {
    /// `group` committed `offset` on `topic`/`partition`.
    pub(crate) fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        if self.by_topic.len() >= MAX_COMMITTED && !self.by_topic.contains_key(topic) {
            return;
        }
        let mut groups = self.by_topic.entry(topic.to_owned()).or_default();
        if groups.len() >= MAX_COMMITTED && !groups.contains_key(group) {
            return;
        }
        let parts = groups.entry(group.to_owned()).or_default();
        if parts.len() < MAX_COMMITTED_PARTITIONS || parts.contains_key(&partition) {
            parts.insert(partition, offset);
        }
    }

    /// Lag per (topic, group): partitions with both a commit and a
    /// watermark.
    fn lags(&self, meters: &Meters) -> Vec<((String, String), i64)> {
        let mut out = Vec::new();
        for entry in &self.by_topic {
            let topic = meters.topic(entry.key());
            let marks = topic.marks();
            for (group, parts) in entry.value() {
                let lag = parts
                    .iter()
                    .filter_map(|(p, offset)| Some((marks.get(*p)? - offset).max(0)))
                    .sum();
                out.push(((entry.key().clone(), group.clone()), lag));
            }
        }
        out
    }
}

/// Publishes every group's lag each [`LAG_EVERY`] until `token` is
/// cancelled.
pub(crate) async fn publish_every(shared: Arc<Shared>, token: CancellationToken) {
    let mut gauges: HashMap<(String, String), Gauge> = HashMap::new();
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(LAG_EVERY) => {}
        }
        for (key, lag) in shared.commits.lags(&shared.meters) {
            let gauge = gauges.entry(key).or_insert_with_key(|(topic, group)| {
                metrics::gauge!(names::KAFKA_GROUP_LAG, "migration" => shared.migration.name.to_string(), "group" => group.clone(), "topic" => topic.clone())
            });
            gauge.set(lag as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_sums_every_committed_partition_with_a_watermark() {
        let meters = Meters::new("m", ["a", "b"]);
        let commits = Commits::default();
        commits.commit("g", "t", 0, 10);
        commits.commit("g", "t", 1, 20);
        commits.commit("g", "t", 2, 5);
        commits.commit("h", "t", 0, 30);
        let marks = meters.topic("t");
        marks.marks().note(0, 30);
        marks.marks().note(1, 30);
        let mut lags = commits.lags(&meters);
        lags.sort();
        // Partition 2 has no watermark yet: left out, not counted as 0 lag.
        assert_eq!(
            lags,
            vec![
                (("t".into(), "g".into()), 20 + 10),
                (("t".into(), "h".into()), 0)
            ]
        );
        marks.marks().raise(2, 9);
        let g = commits
            .lags(&meters)
            .into_iter()
            .find(|(k, _)| k.1 == "g")
            .unwrap();
        assert_eq!(g.1, 34);
    }
}
