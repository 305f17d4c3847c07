//! Switching one partition's writes to the other cluster (DESIGN.md §2
//! Kafka, "the switch"): fence produce on the partition, wait for the
//! produces in flight, read the closing cluster's end offset (refusing
//! while a transaction is open there), append the new segment, persist
//! every map in the state store, and only then release the held produces
//! onto the new map. The fenced window is measured and exported.
//!
//! Where the new segment starts on the opening cluster:
//! - a cluster the partition has written to before resumes at the end of
//!   its last segment there, so anything written to it meanwhile by
//!   producers that bypass the proxy is read, never hidden;
//! - a cluster new to the partition starts at its log start by default, so
//!   records already there (producers moved to the target directly) are
//!   read after the source's; `kafka.switch_start: log_end` skips them,
//!   for a target pre-seeded by an offset-preserving replication;
//! - a partition whose history is copied (`history: copy`) starts where
//!   its copy ends: before fencing, the switch waits for the copy to come
//!   close to the source's end, and inside the fence for it to reach the
//!   closing end, so the target holds the history before the first write
//!   it takes (docs/kafka-history-plan.md §1).

use std::time::Duration;

use super::topics::{self, refresh_layout};
use crate::config::{HistoryMode, SwitchStart};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::splice::routing::FENCE_DRAIN_MAX;
use crate::kafka::splice::segments::PartitionMap;
use crate::metrics;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;
/// How long a switch waits for an open transaction on the closing
/// cluster to finish before refusing. It waits, since most transactions
/// end within milliseconds, then refuses rather than wait longer: the
/// transaction may be one whose next records to this partition are held
/// by this very switch, and it cannot end before they are written. A
/// transaction may not span a switch, since its markers would be written
/// on the closing cluster only.
const TRANSACTION_WAIT: Duration = Duration::from_secs(3);
const TRANSACTION_POLL: Duration = Duration::from_millis(50);
/// How long a switch of a copied partition waits, before fencing, for its
/// history copy to come within a few offsets of the source's end.
const HISTORY_CATCH_UP_MAX: Duration = Duration::from_secs(10);
/// How long it holds the fence for the copy to reach the closing end.
const HISTORY_FENCE_MAX: Duration = Duration::from_secs(5);

/// What one switch did.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Switched {
    /// The partition.
    pub(crate) partition: i32,
    /// The cluster that received writes before.
    pub(crate) from: Side,
    /// The cluster receiving them now.
    pub(crate) to: Side,
    /// The closing cluster's end offset (physical) when fenced.
    pub(crate) closing_end: i64,
    /// The new segment's physical start on `to`.
    pub(crate) physical_start: i64,
    /// The new segment's virtual start.
    pub(crate) virtual_start: i64,
    /// How long produce on the partition was held, in milliseconds.
    fenced_ms: f64,
}

/// Moves `topic`/`partition`'s writes to `to`; `None` when it already writes there.
///
/// # Errors
/// Why the switch was abandoned (produce then continues on the cluster it
/// was on; nothing was persisted).
pub(super) async fn switch(
    shared: &Shared,
    topic: &str,
    partition: i32,
    to: Side,
) -> Result<Option<Switched>, String> {
    let _one_at_a_time = shared.switching.lock().await;
    let map = shared.splice.map(topic, partition);
    let from = map.writer();
    if from == to {
        return Ok(None);
    }
    refresh_layout(shared, from, topic).await?;
    refresh_layout(shared, to, topic).await?;
    // A copied partition's target segment starts where its history copy
    // ends, once the copy has every source record below the closing end.
    let copied = shared.history.of(topic) == HistoryMode::Copy && to == Side::Target;
    if copied {
        shared
            .copies
            .caught_up(topic, partition, HISTORY_CATCH_UP_MAX)
            .await?;
    }
    let start_on_new = if copied {
        None
    } else {
        opening_start(shared, &map, to, topic, partition).await?
    };
    let fence = shared.splice.fence(topic, partition);
    fence.drained(FENCE_DRAIN_MAX).await.map_err(|n| {
        format!(
            "{n} produce(s) to {topic}/{partition} still unanswered after {FENCE_DRAIN_MAX:?}; switch abandoned, writes stay on the {}",
            from.as_str()
        )
    })?;
    let (closing_end, physical_start) =
        ends(shared, topic, partition, (from, to), start_on_new, copied).await?;
    let next = match map.appended(to, closing_end, physical_start) {
        Ok(next) => next,
        Err(e) => {
            shared.copies.lift(topic, partition);
            return Err(format!("{topic}/{partition}: {e}"));
        }
    };
    let virtual_start = next.open().virtual_start;
    let persisted = shared
        .persist_maps(&format!("the segment map of {topic}/{partition}"), |all| {
            all.set(topic, partition, next)
        })
        .await;
    // The map now says where the copy stops (or, back on the source, that
    // it goes on); an abandoned switch lets it go on as before.
    shared.copies.lift(topic, partition);
    persisted?;
    let held = fence.since.elapsed();
    drop(fence);
    metrics::histogram!(metrics::KAFKA_FENCE_SECONDS, "migration" => shared.migration.name.to_string(), "topic" => topic.to_owned())
        .record(held.as_secs_f64());
    tracing::info!(
        migration = %shared.migration.name, topic, partition, from = from.as_str(), to = to.as_str(),
        closing_end, physical_start, virtual_start, fenced_ms = held.as_secs_f64() * 1e3,
        "kafka partition switched"
    );
    Ok(Some(Switched {
        partition,
        from,
        to,
        closing_end,
        physical_start,
        virtual_start,
        fenced_ms: held.as_secs_f64() * 1e3,
    }))
}

/// Inside the fence: the closing cluster's end and where the new segment
/// starts on the opening one (`start_on_new` when known before fencing;
/// for a `copied` partition, where its history copy stops at that end).
async fn ends(
    shared: &Shared,
    topic: &str,
    partition: i32,
    (from, to): (Side, Side),
    start_on_new: Option<i64>,
    copied: bool,
) -> Result<(i64, i64), String> {
    // Both clusters are asked at once: every round trip here is time
    // the partition's producers wait.
    let (settled, physical_start) =
        tokio::try_join!(settled_end(shared, from, topic, partition), async {
            match start_on_new {
                Some(start) => Ok(start),
                // Taken from the copy below, not the target's log end.
                None if copied => Ok(0),
                None => offset(shared, to, topic, partition, LATEST, READ_UNCOMMITTED).await,
            }
        })?;
    // The broker's end, but never before what the proxy itself was
    // acknowledged there: a high watermark can lag or be read stale, and a
    // segment closed early would hide acknowledged records.
    let closing_end = settled.max(
        shared
            .splice
            .acknowledged_end(from, topic, partition)
            .unwrap_or(i64::MIN),
    );
    if !copied {
        return Ok((closing_end, physical_start));
    }
    let copy_end = shared
        .copies
        .stop_at(topic, partition, closing_end, HISTORY_FENCE_MAX)
        .await?;
    Ok((closing_end, copy_end))
}

/// Where the new segment starts on `to`, when known before fencing:
/// the end of its last segment there, or its log start for a cluster new
/// to the partition. `None`: its log end, read inside the fence.
async fn opening_start(
    shared: &Shared,
    map: &PartitionMap,
    to: Side,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, String> {
    let segments = map.segments();
    if let Some(i) = segments.iter().rposition(|s| s.side == to) {
        let end = segments
            .get(i + 1)
            .map_or(segments[i].physical_start, |next| {
                segments[i].physical_start + (next.virtual_start - segments[i].virtual_start)
            });
        return Ok(Some(end));
    }
    if to == Side::Source {
        // Every source segment was replaced by the target segment holding
        // its copy (history read from the target at `target`): the source
        // holds nothing the target lacks, so it writes on from its end.
        return Ok(None);
    }
    match shared.switch_start {
        SwitchStart::LogStart => offset(shared, to, topic, partition, EARLIEST, READ_UNCOMMITTED)
            .await
            .map(Some),
        SwitchStart::LogEnd => Ok(None),
    }
}

/// The closing cluster's end offset once no transaction is open there
/// (its last stable offset has caught up with its high watermark).
async fn settled_end(
    shared: &Shared,
    side: Side,
    topic: &str,
    partition: i32,
) -> Result<i64, String> {
    let deadline = tokio::time::Instant::now() + TRANSACTION_WAIT;
    loop {
        let (end, stable) = tokio::try_join!(
            offset(shared, side, topic, partition, LATEST, READ_UNCOMMITTED),
            offset(shared, side, topic, partition, LATEST, READ_COMMITTED)
        )?;
        if stable >= end {
            return Ok(end);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{topic}/{partition} has an open transaction on the {} (stable offset {stable} < end {end}) after {TRANSACTION_WAIT:?}; transactions may not span a switch, retry when it commits or aborts",
                side.as_str()
            ));
        }
        tokio::time::sleep(TRANSACTION_POLL).await;
    }
}

/// One ListOffsets answer for `topic`/`partition` from its leader on `side`.
///
/// # Errors
/// When the leader cannot be asked or answers an error.
pub(crate) async fn offset(
    shared: &Shared,
    side: Side,
    topic: &str,
    partition: i32,
    timestamp: i64,
    isolation: i8,
) -> Result<i64, String> {
    let found =
        topics::list_offsets(shared, side, topic, &[partition], timestamp, isolation).await?;
    found.get(&partition).copied().ok_or_else(|| {
        format!(
            "the {} did not answer for {topic}/{partition}",
            side.as_str()
        )
    })
}
