//! Where each partition's copy stands, kept in the state store
//! (docs/kafka-history-plan.md §3), so a restarted proxy (even after
//! kill -9) goes on copying instead of refusing a target it half filled:
//! the acknowledged position and runs of each partition (blob
//! `kafka-history-{migration}-{topic}-{partition}`, written at most once a
//! second while copying and whenever the copy stops) and the copier's
//! producer id (`kafka-history-producer-{migration}`, written once). A
//! position written before a crash is behind the target by the batches
//! acknowledged since; the copier counts those off the target's log end
//! (`copier::land`), and the unchanged producer id and sequences make the
//! target refuse a late request of the dead process as a duplicate.

use serde::{Deserialize, Serialize};

use super::plan::{Cursor, Producer};
use crate::kafka::splice::history::HistoryRuns;
use crate::migration::store::StateStore;

/// Where one partition's copy stands, as its status shows it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Status {
    pub(crate) partition: i32,
    /// `starting`, `mirroring`, `parked` (at the end of a closed source
    /// segment: the partition writes to the target), `retrying` or `stopped`.
    pub(crate) state: &'static str,
    /// The source's log start when the copy began (virtual).
    pub(crate) log_start: i64,
    /// The source's high watermark at the last read (virtual).
    pub(crate) end: i64,
    /// Every virtual offset below this is on the target or was skipped.
    pub(crate) copied_to: i64,
    /// The next source offset the copy reads (physical).
    pub(crate) source_next: i64,
    /// The target offset the next copied record gets.
    pub(crate) target_next: i64,
    /// The target offset after the last batch sent (acknowledged or not):
    /// records from here on were not written by the copy.
    pub(crate) target_sent: i64,
    pub(crate) records: i64,
    pub(crate) bytes: i64,
    pub(crate) runs: usize,
    /// Offsets not copied: markers, aborted and emptied batches, and
    /// ranges retention deleted before they were read.
    pub(crate) skipped: i64,
    pub(crate) lost_to_retention: i64,
    pub(crate) error: Option<String>,
}

/// The acknowledged position: what a restart of the loop goes on from.
#[derive(Clone, Debug)]
pub(super) struct Position {
    pub(super) cursor: Cursor,
    pub(super) runs: HistoryRuns,
}

impl Position {
    pub(super) fn target_next(&self) -> i64 {
        self.cursor.target_next
    }
}

/// Bumped when the blob's meaning changes; an unknown version refuses.
const VERSION: u32 = 1;

/// One partition's persisted copy.
#[derive(Serialize, Deserialize)]
struct Saved {
    v: u32,
    cursor: Cursor,
    runs: HistoryRuns,
    log_start: i64,
    records: i64,
    bytes: i64,
    skipped: i64,
    lost_to_retention: i64,
}

fn blob(migration: &str, topic: &str, partition: i32) -> String {
    format!("kafka-history-{migration}-{topic}-{partition}")
}

fn producer_blob(migration: &str) -> String {
    format!("kafka-history-producer-{migration}")
}

/// Writes `position` (and the counters of `status`) for the partition.
///
/// # Errors
/// When the store refuses the write.
pub(super) async fn save(
    store: &dyn StateStore,
    migration: &str,
    topic: &str,
    position: &Position,
    status: &Status,
) -> Result<(), String> {
    let saved = Saved {
        v: VERSION,
        cursor: position.cursor,
        runs: position.runs.clone(),
        log_start: status.log_start,
        records: status.records,
        bytes: status.bytes,
        skipped: status.skipped,
        lost_to_retention: status.lost_to_retention,
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| e.to_string())?;
    store
        .put_blob(&blob(migration, topic, status.partition), bytes)
        .await
        .map_err(|e| {
            format!(
                "saving the history copy of {topic}/{}: {e}",
                status.partition
            )
        })
}

/// The persisted copy of the partition, with the counters it had.
///
/// # Errors
/// When the store cannot be read or the blob does not parse (going on
/// from a guess could write records twice).
pub(super) async fn load(
    store: &dyn StateStore,
    migration: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<(Position, Status)>, String> {
    let name = blob(migration, topic, partition);
    let Some(bytes) = store
        .get_blob(&name)
        .await
        .map_err(|e| format!("reading \"{name}\": {e}"))?
    else {
        return Ok(None);
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
        format!("the history copy \"{name}\" in the state store does not parse: {e}")
    })?;
    if saved.v != VERSION {
        return Err(format!(
            "the history copy \"{name}\" has version {}, this build reads {VERSION}",
            saved.v
        ));
    }
    let status = Status {
        partition,
        state: "stopped",
        log_start: saved.log_start,
        copied_to: saved.runs.copied_to(),
        target_next: saved.cursor.target_next,
        records: saved.records,
        bytes: saved.bytes,
        runs: saved.runs.runs().len(),
        skipped: saved.skipped,
        lost_to_retention: saved.lost_to_retention,
        ..Status::default()
    };
    Ok(Some((
        Position {
            cursor: saved.cursor,
            runs: saved.runs,
        },
        status,
    )))
}

/// The copier's producer id, asked for with `init` and persisted the first
/// time, then always the persisted one.
///
/// # Errors
/// When the store fails, or `init` does.
pub(super) async fn producer<F, Fut>(
    store: &dyn StateStore,
    migration: &str,
    init: F,
) -> Result<Producer, String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Producer, String>>,
{
    let name = producer_blob(migration);
    if let Some(bytes) = store
        .get_blob(&name)
        .await
        .map_err(|e| format!("reading \"{name}\": {e}"))?
    {
        return serde_json::from_slice(&bytes)
            .map_err(|e| format!("the history copy's producer \"{name}\" does not parse: {e}"));
    }
    let producer = init().await?;
    let bytes = serde_json::to_vec(&producer).map_err(|e| e.to_string())?;
    store
        .put_blob(&name, bytes)
        .await
        .map_err(|e| format!("saving the history copy's producer: {e}"))?;
    Ok(producer)
}
