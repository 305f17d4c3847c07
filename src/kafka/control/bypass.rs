//! Writes that reach a cluster around the proxy after a partition's writes
//! left it (DESIGN.md §2 Kafka, "writes that bypass the proxy"). Such
//! records lie past the end of the partition's last segment on that
//! cluster, where no virtual offset points, so a watcher counts them for
//! every switched partition and exports the count; `ctl check` before
//! `target` refuses while the source has any.
//!
//! On a copied topic (`history: copy`) the history copy writes the
//! source's records to the target past its closed segment, so there the
//! count starts where the copy has written to.
//!
//! They are never silently hidden: a partition that switches back to a
//! cluster opens its new segment at the end of its last one there, which
//! is exactly the first bypassing record, so a rollback (source) or the
//! next switch to the target serves them, in their order on that cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::past_end;
use super::topics;
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::splice::segments::{PartitionMap, SegmentMaps};
use crate::metrics;

/// How often the watcher reads the log ends.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Where the partition's last segment on each cluster that no longer
/// receives its writes ends (physical, exclusive).
#[must_use]
fn closed_ends(map: &PartitionMap) -> Vec<(Side, i64)> {
    let segments = map.segments();
    let writer = map.writer();
    [Side::Source, Side::Target]
        .into_iter()
        .filter(|side| *side != writer)
        .filter_map(|side| {
            let i = segments.iter().rposition(|s| s.side == side)?;
            let s = segments[i];
            let next = segments.get(i + 1)?;
            Some((
                side,
                s.physical_start + (next.virtual_start - s.virtual_start),
            ))
        })
        .collect()
}

/// Per cluster, the records written to `topic` around the proxy past the
/// end of each switched partition's last segment there, by partition:
/// data records only, since a transaction coordinator may write a marker
/// there without any client writing around the proxy.
///
/// # Errors
/// When a cluster cannot be asked.
pub(super) async fn bypassed(
    shared: &Shared,
    maps: &SegmentMaps,
    topic: &str,
) -> Result<HashMap<Side, Vec<(i32, i64)>>, String> {
    let mut ends: HashMap<Side, Vec<(i32, i64)>> = HashMap::new();
    for (p, map) in maps.partitions(topic) {
        for (side, end) in closed_ends(map) {
            ends.entry(side).or_default().push((p, end));
        }
    }
    let mut out = HashMap::new();
    for (side, parts) in ends {
        let partitions: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
        let leo = topics::list_offsets(shared, side, topic, &partitions, -1, 0).await?;
        let mut grown = Vec::new();
        for (p, end) in parts {
            // Past a closed target segment, a history copy writes the
            // source's records on the way back: those are not bypasses.
            // Asked after the log end, so whatever the copy wrote below
            // that end counts as sent.
            let end = match side {
                Side::Target => shared
                    .copies
                    .target_written(topic, p)
                    .map_or(end, |w| end.max(w)),
                Side::Source => end,
            };
            let Some(&leo) = leo.get(&p).filter(|leo| **leo > end) else {
                continue;
            };
            // A transaction marker past the end is not a write (past_end).
            let n = past_end::data_offsets(shared, side, topic, p, end, leo).await?;
            if n > 0 {
                grown.push((p, n));
            }
        }
        out.insert(side, grown);
    }
    Ok(out)
}

/// Every [`WATCH_INTERVAL`], exports `cutover_kafka_bypassed_records` per
/// topic and cluster, and warns when a count grows.
pub(crate) async fn watch(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut last: HashMap<(String, Side), i64> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
        let maps = shared.splice.snapshot();
        for topic in shared.migration.topics() {
            let name = topic.name.to_string();
            let found = match bypassed(&shared, &maps, &name).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(migration = %shared.migration.name, topic = %name, error = %e, "could not read log ends for the bypass watch");
                    continue;
                }
            };
            for (side, grown) in found {
                let total: i64 = grown.iter().map(|(_, n)| n).sum();
                metrics::gauge!(metrics::KAFKA_BYPASSED, "migration" => shared.migration.name.to_string(), "topic" => name.clone(), "cluster" => shared.cluster_name(side))
                    .set(total as f64);
                let before = last.insert((name.clone(), side), total).unwrap_or(0);
                if total > before {
                    tracing::warn!(
                        migration = %shared.migration.name, topic = %name, cluster = side.as_str(), records = total, partitions = ?grown,
                        "records written to a cluster around the proxy after the partition's writes left it; they are served once the partition writes there again (roll back, or switch it back)"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_ends_are_where_each_old_cluster_stopped() {
        assert!(closed_ends(&PartitionMap::default()).is_empty());
        let map = PartitionMap::default()
            .appended(Side::Target, 100, 0)
            .unwrap();
        assert_eq!(closed_ends(&map), vec![(Side::Source, 100)]);
        let back = map.appended(Side::Source, 30, 100).unwrap();
        assert_eq!(closed_ends(&back), vec![(Side::Target, 30)]);
    }
}
