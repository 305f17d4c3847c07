//! Backfill: copy every key of a keyspace that writes through the proxy have
//! not touched, by SCANning the authoritative cluster and feeding each key
//! to the copier.
//!
//! Going through the copier (rather than copying here) is what keeps a
//! backfill from overwriting a newer value: copies of one key are
//! serialized and each reads the key's current state. Progress (database,
//! cursor, counts) is persisted after every batch, so a restarted proxy
//! resumes where it stopped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::backfill_state::Progress;
use super::copier::Item;
use super::keyspace::Keyspace;
use super::route::route;
use super::scan;
use super::shared::Shared;
use super::side::Side;
use crate::migration::{CheckResult, State};

/// Keys asked of SCAN per step.
const SCAN_COUNT: usize = 500;
/// A batch counts as copied when the keyspace's backlog is this small.
const BATCH_DRAINED: usize = 64;
/// Longest wait for a batch's copies before scanning on.
const BATCH_DRAIN_WAIT: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

fn blob_name(shared: &Shared, keyspace: &Keyspace) -> String {
    format!(
        "redis-backfill.{}.{}",
        shared.migration.name, keyspace.topic.name
    )
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Source => "source",
        Side::Target => "target",
    }
}

async fn persist(shared: &Shared, keyspace: &Keyspace, progress: &Progress) {
    let bytes = serde_json::to_vec(progress).expect("progress serializes");
    if let Err(e) = shared
        .store
        .put_blob(&blob_name(shared, keyspace), bytes)
        .await
    {
        tracing::error!(keyspace = %keyspace.topic.name, error = %e, "backfill progress could not be persisted");
    }
}

/// Starts a backfill of `keyspace` from its authoritative side.
///
/// # Errors
/// When the keyspace does not converge in its state, or a backfill already runs.
pub async fn start(
    shared: &Arc<Shared>,
    keyspace: &Arc<Keyspace>,
    shutdown: &CancellationToken,
) -> Result<Progress, String> {
    let (state, epoch) = keyspace.topic.snapshot();
    let keyspace_route = route(state);
    if keyspace_route.converge_to.is_none() {
        return Err(format!(
            "backfill copies into the cluster that is not authoritative, so it runs in dual_write or cutover; keyspace {} is in {state}",
            keyspace.topic.name
        ));
    }
    let entry = &shared.backfills.entries[keyspace.index];
    if entry.running.swap(true, Ordering::SeqCst) {
        return Err(format!(
            "a backfill of keyspace {} is already running",
            keyspace.topic.name
        ));
    }
    entry.completed_here.store(false, Ordering::SeqCst);
    entry.converging_since.store(false, Ordering::SeqCst);
    let from = keyspace_route.primary;
    let mut pending = Vec::new();
    let mut total = 0;
    for side in [from, from.other()] {
        match scan::databases(shared, side).await {
            Ok(databases) => {
                total += databases.iter().map(|(_, keys)| keys).sum::<u64>();
                pending.extend(
                    databases
                        .iter()
                        .map(|(db, _)| (side_name(side).to_owned(), *db, 0)),
                );
            }
            Err(e) => {
                entry.running.store(false, Ordering::SeqCst);
                return Err(e);
            }
        }
    }
    let progress = Progress {
        from: side_name(from).into(),
        epoch,
        total,
        pending,
        started_ms: now_ms(),
        ..Progress::default()
    };
    shared.backfills.set(keyspace.index, progress.clone());
    persist(shared, keyspace, &progress).await;
    spawn(
        shared.clone(),
        keyspace.clone(),
        progress.clone(),
        shutdown.clone(),
    );
    Ok(progress)
}

fn spawn(
    shared: Arc<Shared>,
    keyspace: Arc<Keyspace>,
    progress: Progress,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let name = keyspace.topic.name.clone();
        let result = tokio::select! {
            result = run(&shared, &keyspace, progress) => result,
            () = shutdown.cancelled() => return,
        };
        let entry = &shared.backfills.entries[keyspace.index];
        let mut progress = shared
            .backfills
            .progress(keyspace.index)
            .unwrap_or_default();
        match result {
            Ok(()) => {
                progress.complete = true;
                progress.completed_ms = Some(now_ms());
                entry.failures_at_completion.store(
                    shared.copier.failed_copies(keyspace.index),
                    Ordering::SeqCst,
                );
                entry.converging_since.store(true, Ordering::SeqCst);
                entry.completed_here.store(true, Ordering::SeqCst);
                tracing::info!(migration = %shared.migration.name, keyspace = %name, queued = progress.queued, "backfill complete");
            }
            Err(e) => {
                tracing::warn!(migration = %shared.migration.name, keyspace = %name, error = %e, "backfill stopped");
                progress.error = Some(e);
            }
        }
        shared.backfills.set(keyspace.index, progress.clone());
        persist(&shared, &keyspace, &progress).await;
        entry.running.store(false, Ordering::SeqCst);
    });
}

async fn run(shared: &Shared, keyspace: &Keyspace, mut progress: Progress) -> Result<(), String> {
    let from = side_named(&progress.from);
    let rate = f64::from(shared.options.backfill_keys_per_second);
    #[allow(clippy::cast_precision_loss)]
    let byte_rate = shared.options.backfill_bytes_per_second as f64;
    let bytes_at_start = shared.copier.copied_bytes();
    let started = Instant::now();
    let mut visited_here = 0u64;
    while let Some((scanned, db, cursor)) = progress.pending.first().cloned() {
        let scanned = side_named(&scanned);
        let mut conn = scan::connect(shared, scanned, db).await?;
        let mut cursor = cursor;
        loop {
            if keyspace.topic.snapshot().1 != progress.epoch {
                return Err("the keyspace changed state during the backfill; run it again".into());
            }
            let (next, keys) = scan::step(shared, &mut conn, cursor, SCAN_COUNT).await?;
            progress.queued += mark_keys(shared, keyspace, db, from, &keys);
            // Let this batch's copies land before pacing, so the byte count
            // the limit is checked against includes them (bounded: live writes
            // keep the backlog from ever reaching zero on a busy keyspace).
            let _ = shared
                .copier
                .drain_below(keyspace.index, BATCH_DRAINED, BATCH_DRAIN_WAIT)
                .await;
            progress.visited += keys.len() as u64;
            visited_here += keys.len() as u64;
            cursor = next;
            progress.pending[0].2 = cursor;
            shared.backfills.set(keyspace.index, progress.clone());
            persist(shared, keyspace, &progress).await;
            #[allow(clippy::cast_precision_loss)]
            let by_keys = Duration::from_secs_f64(visited_here as f64 / rate);
            let copied = shared.copier.copied_bytes().saturating_sub(bytes_at_start);
            let by_bytes = Duration::from_secs_f64(copied as f64 / byte_rate);
            if let Some(wait) = by_keys.max(by_bytes).checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            if cursor == 0 {
                break;
            }
        }
        progress.pending.remove(0);
        shared.backfills.set(keyspace.index, progress.clone());
        persist(shared, keyspace, &progress).await;
    }
    copies_landed(shared, keyspace, progress.epoch).await
}

/// The side a persisted progress names ("target", else the source).
fn side_named(name: &str) -> Side {
    if name == "target" {
        Side::Target
    } else {
        Side::Source
    }
}

/// Queues a copy from `from` of each scanned key that belongs to
/// `keyspace` (a SCAN sees every keyspace of the database); how many.
fn mark_keys(shared: &Shared, keyspace: &Keyspace, db: u32, from: Side, keys: &[Bytes]) -> u64 {
    let mut queued = 0;
    for key in keys {
        if shared
            .keyspace_for(key)
            .is_some_and(|k| k.index == keyspace.index)
        {
            shared.copier.mark(Item {
                keyspace: keyspace.index,
                db,
                key: key.clone(),
                from,
            });
            queued += 1;
        }
    }
    queued
}

/// Returns once every queued copy has landed: a backfill is complete only
/// then. Fails when the keyspace moves to another epoch meanwhile.
async fn copies_landed(shared: &Shared, keyspace: &Keyspace, epoch: u64) -> Result<(), String> {
    loop {
        if keyspace.topic.snapshot().1 != epoch {
            return Err(
                "the keyspace changed state before the backfill's copies landed; run it again"
                    .into(),
            );
        }
        if shared
            .copier
            .drain(keyspace.index, Duration::from_secs(1))
            .await
        {
            return Ok(());
        }
    }
}

/// Resumes backfills a previous process left running in the current epoch.
pub async fn resume(shared: &Arc<Shared>, shutdown: &CancellationToken) {
    for (_, keyspace) in &shared.keyspaces {
        let Ok(Some(blob)) = shared.store.get_blob(&blob_name(shared, keyspace)).await else {
            continue;
        };
        let Ok(progress) = serde_json::from_slice::<Progress>(&blob) else {
            continue;
        };
        let resumable = !progress.complete
            && progress.error.is_none()
            && progress.epoch == keyspace.topic.snapshot().1;
        shared.backfills.set(keyspace.index, progress.clone());
        if resumable {
            tracing::info!(keyspace = %keyspace.topic.name, percent = progress.percent(), "resuming backfill");
            shared.backfills.entries[keyspace.index]
                .running
                .store(true, Ordering::SeqCst);
            spawn(shared.clone(), keyspace.clone(), progress, shutdown.clone());
        }
    }
}

/// The `backfill_complete` check for leaving a converging state forward.
pub fn complete_check(shared: &Shared, keyspace: &Keyspace, from: Side) -> CheckResult {
    const NAME: &str = "backfill_complete";
    let command = format!(
        "run `cutover ctl backfill {} {}`",
        shared.migration.name, keyspace.topic.name
    );
    let entry = &shared.backfills.entries[keyspace.index];
    let Some(progress) = shared.backfills.progress(keyspace.index) else {
        return CheckResult::fail(
            NAME,
            format!("no backfill has run for this keyspace; {command}"),
        );
    };
    let epoch = keyspace.topic.snapshot().1;
    if progress.epoch != epoch {
        return match convergence_broken(shared, keyspace, &progress) {
            None => CheckResult::pass(
                NAME,
                format!(
                    "the backfill from the {} (epoch {}) still counts: since it completed the keyspace moved only between dual_write and cutover, every copy landed (no failed copy, repair set empty) and the proxy did not restart",
                    progress.from, progress.epoch
                ),
            ),
            Some(why) => CheckResult::fail(
                NAME,
                format!(
                    "the last backfill ran before the keyspace's current state and does not count: {why}; {command}"
                ),
            ),
        };
    }
    if progress.from != side_name(from) {
        return CheckResult::fail(
            NAME,
            format!(
                "the last backfill copied from the {}; {command}",
                progress.from
            ),
        );
    }
    if let Some(error) = &progress.error {
        return CheckResult::fail(NAME, format!("the backfill stopped: {error}; {command}"));
    }
    if !progress.complete {
        return CheckResult::fail(
            NAME,
            format!(
                "backfill at {:.1}% ({} keys queued so far)",
                progress.percent(),
                progress.queued
            ),
        );
    }
    if !entry.completed_here.load(Ordering::SeqCst) {
        return CheckResult::fail(
            NAME,
            format!(
                "the proxy restarted after the backfill completed, so writes acknowledged just before the restart may not have been copied; {command}"
            ),
        );
    }
    CheckResult::pass(
        NAME,
        format!(
            "backfill complete: {} keys copied from the {}",
            progress.queued, progress.from
        ),
    )
}

/// Why a backfill of an earlier epoch no longer vouches for the keyspace,
/// or `None` when convergence held since it completed: it completed in this
/// process, the keyspace entered no state that leaves writes uncopied, no
/// copy failed and nothing awaits repair.
fn convergence_broken(shared: &Shared, keyspace: &Keyspace, progress: &Progress) -> Option<String> {
    let entry = &shared.backfills.entries[keyspace.index];
    if let Some(error) = &progress.error {
        return Some(format!("it stopped: {error}"));
    }
    if !progress.complete {
        return Some(format!("it stopped at {:.1}%", progress.percent()));
    }
    if !entry.completed_here.load(Ordering::SeqCst) {
        return Some(
            "the proxy restarted since it completed, so writes acknowledged just before the restart may not have been copied".into(),
        );
    }
    if !entry.converging_since.load(Ordering::SeqCst) {
        return Some(
            "since it completed the keyspace was in a state that does not copy writes (source, dual_read or target)".into(),
        );
    }
    let failed = shared
        .copier
        .failed_copies(keyspace.index)
        .saturating_sub(entry.failures_at_completion.load(Ordering::SeqCst));
    if failed > 0 {
        return Some(format!("{failed} copy(ies) failed since it completed"));
    }
    let repairs = shared.copier.repair_len(keyspace.index);
    if repairs > 0 {
        return Some(format!("{repairs} key(s) await repair"));
    }
    None
}

/// Records that `keyspace` entered `state`: a state that does not copy
/// writes ends what a completed backfill vouches for.
pub fn entered(shared: &Shared, keyspace: &Keyspace, state: State) {
    if route(state).converge_to.is_none() {
        shared.backfills.entries[keyspace.index]
            .converging_since
            .store(false, Ordering::SeqCst);
    }
}

/// Readiness for `dual_write → cutover`: backfill complete and a clean verify sample.
pub async fn readiness(shared: &Shared, keyspace: &Keyspace) -> Vec<CheckResult> {
    vec![
        complete_check(shared, keyspace, Side::Source),
        super::verify::clean_check(shared, keyspace).await,
    ]
}

/// Backfill progress for `ctl status` and the dashboard.
pub fn status(shared: &Shared, keyspace: &Keyspace) -> Option<serde_json::Value> {
    let progress = shared.backfills.progress(keyspace.index)?;
    let running = shared.backfills.entries[keyspace.index]
        .running
        .load(Ordering::SeqCst);
    Some(serde_json::json!({
        "running": running,
        "percent": progress.percent(),
        "complete": progress.complete,
        "from": progress.from,
        "queued": progress.queued,
        "visited": progress.visited,
        "error": progress.error,
    }))
}

/// Whether entering `to` from `from` should start a backfill on its own.
#[must_use]
pub fn starts_on_enter(from: State, to: State) -> bool {
    matches!(
        (from, to),
        (State::DualRead, State::DualWrite) | (State::Target, State::Cutover)
    )
}
