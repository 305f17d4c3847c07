//! The history copy (issue 16, docs/kafka-history-plan.md): mirroring each
//! partition's source log onto the target in virtual order, so that at
//! `target` the proxy no longer needs the source.
//!
//! - `plan`: what one Fetch answer from the source becomes on the target
//!   (the read_committed filter, cuts at offset gaps, the copier's producer
//!   fields and sequences, the runs it extends).
//! - `io`: the copier's requests (Fetch, Produce, InitProducerId).
//! - `copier`: one partition's mirror loop.
//! - `align`: where a copy goes next given its partition's segment map.
//! - `progress`: a copy's position and status, persisted for restarts.
//! - `rate`: the copy's speed limit (`ctl history-rate`).
//! - `serve`: at `target`, the map that reads the history from the target.
//! - `checks`: the gates of a copied topic.
//! - [`Policy`]: which topics are copied (`kafka.history`,
//!   `topics[].history`).
//! - [`Copies`]: the running mirrors per topic, their positions kept
//!   across a stop (a rollback to `source`) and their status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{HistoryMode, TopicPattern};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::splice::segments::PartitionMap;
use crate::pattern::Pattern;

mod align;
pub(crate) mod checks;
mod copier;
mod io;
mod plan;
mod progress;
mod rate;
mod serve;

pub(crate) use progress::Status;

/// Which topics have their source log copied: the first pattern of the
/// migration that matches a topic and sets `history` decides, else the
/// migration's `kafka.history`.
#[derive(Debug)]
pub(crate) struct Policy {
    overrides: Vec<(Pattern, HistoryMode)>,
    default: HistoryMode,
}

impl Policy {
    /// The policy of a migration's `topics` and `kafka.history`. Patterns
    /// that do not compile were refused by `check`.
    pub(crate) fn new(topics: &[TopicPattern], default: HistoryMode) -> Self {
        let overrides = topics
            .iter()
            .filter_map(|t| Some((Pattern::compile(&t.pattern).ok()?, t.history?)))
            .collect();
        Policy { overrides, default }
    }

    /// How `topic`'s history is handled.
    pub(crate) fn of(&self, topic: &str) -> HistoryMode {
        self.overrides
            .iter()
            .find(|(p, _)| p.matches(topic.as_bytes()))
            .map_or(self.default, |(_, mode)| *mode)
    }
}

/// How far behind the source a copy may be when a switch fences produce:
/// the producers wait while the copy writes these last offsets.
pub(crate) const SWITCH_LAG: i64 = 5_000;
/// How often a switch looks at a copy it waits for.
const POLL: Duration = Duration::from_millis(5);

/// Starts or stops `topic`'s copy to agree with its new `state`: the copy
/// mirrors from `dual_read` on and stops on the way back to `source`,
/// keeping its position.
pub(crate) async fn follow_state(
    shared: &Arc<Shared>,
    topic: &str,
    state: crate::migration::State,
) {
    if shared.history.of(topic) != HistoryMode::Copy {
        return;
    }
    if state == crate::migration::State::Source || state == crate::migration::State::Target {
        // At `target` the copy is done: its history is read from there.
        shared.copies.stop(topic);
        return;
    }
    if let Err(e) = shared.copies.start(shared, topic).await {
        tracing::error!(migration = %shared.migration.name, topic, error = %e, "could not start the history copy; it starts again with the next transition or restart");
    }
}

/// At the move to `target`: every partition of `topic` whose history the
/// target holds reads it there from now on (its map's source segments
/// become the target segments of their copies, persisted at once), and the
/// copies stop. Partitions that cannot (`history_copied` said why, and the
/// move was forced) keep reading their history from the source.
///
/// # Errors
/// When the maps cannot be persisted.
pub(crate) async fn serve_from_target(
    shared: &Shared,
    topic: &str,
    count: i32,
) -> Result<(), String> {
    let mut served = Vec::new();
    for p in 0..count {
        let map = shared.splice.map(topic, p);
        match shared.copies.served(topic, p, &map) {
            Ok(next) if next != map => served.push((p, next)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(migration = %shared.migration.name, topic, partition = p, reason = %e, "the partition's history stays on the source")
            }
        }
    }
    if !served.is_empty() {
        shared
            .persist_maps(
                &format!("the history of {topic} read from the target"),
                |all| {
                    for (p, map) in served {
                        all.set(topic, p, map);
                    }
                },
            )
            .await?;
    }
    shared.copies.stop(topic);
    Ok(())
}

/// Retires the source once every topic of the migration is in `target`
/// with no partition reading from the source (every history read from the
/// target): requests that name no partition go to the target from then on,
/// and the source may be turned off. Logged; a failure to persist is
/// logged too and retried by the next move to `target`.
pub(crate) async fn retire_source_if_done(shared: &Shared) {
    if shared.splice.home() == Side::Target {
        return;
    }
    let topics = shared.migration.topics();
    if topics.is_empty()
        || topics
            .iter()
            .any(|t| t.state() != crate::migration::State::Target)
    {
        return;
    }
    for topic in &topics {
        let name = topic.name.to_string();
        let Ok(count) = super::moves::partition_count(shared, &name).await else {
            return;
        };
        let maps = shared.splice.snapshot();
        let all_on_target = (0..count).all(|p| {
            maps.get(&name, p)
                .is_some_and(|m| m.segments().iter().all(|s| s.side == Side::Target))
        });
        if !all_on_target {
            return;
        }
    }
    match shared
        .persist_maps("the retirement of the source", |all| {
            all.set_source_retired(true)
        })
        .await
    {
        Ok(()) => tracing::info!(migration = %shared.migration.name, topics = topics.len(),
            "source retired: every topic is in target with its history read from the target; the source cluster may be turned off"),
        Err(e) => {
            tracing::error!(migration = %shared.migration.name, error = %e, "could not record the source's retirement")
        }
    }
}

/// Brings the source back before anything leaves `target`.
///
/// # Errors
/// When the maps cannot be persisted.
pub(crate) async fn unretire_source(shared: &Shared) -> Result<(), String> {
    if shared.splice.home() == Side::Source {
        return Ok(());
    }
    shared
        .persist_maps("the source's return", |all| all.set_source_retired(false))
        .await
}

fn rate_blob(migration: &str) -> String {
    format!("kafka-history-rate-{migration}")
}

/// The `history_rate` action (`ctl history-rate`): sets the copy's speed
/// limit at once for every partition and persists it, so it outlives a
/// restart (over `kafka.history_mb_per_second`).
///
/// # Errors
/// A missing or zero `mb_per_second`, or a store that refuses the write.
pub(crate) async fn set_rate(
    shared: &Shared,
    params: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let mb = params["mb_per_second"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or("history_rate needs {\"mb_per_second\": N} with N at least 1 (to stop a copy, roll the topic back to source)")?;
    shared
        .store
        .put_blob(
            &rate_blob(&shared.migration.name),
            mb.to_string().into_bytes(),
        )
        .await
        .map_err(|e| format!("saving the history copy's rate: {e}"))?;
    let was = shared.copies.rate.set(mb);
    tracing::info!(migration = %shared.migration.name, mb_per_second = mb, was, "history copy rate changed");
    Ok(serde_json::json!({ "mb_per_second": mb, "was": was }))
}

/// Applies a rate set by `ctl history-rate` before a restart.
///
/// # Errors
/// When the store cannot be read or holds a rate that does not parse.
pub(crate) async fn restore_rate(shared: &Shared) -> Result<(), String> {
    let name = rate_blob(&shared.migration.name);
    let Some(bytes) = shared
        .store
        .get_blob(&name)
        .await
        .map_err(|e| format!("reading \"{name}\": {e}"))?
    else {
        return Ok(());
    };
    let mb: u32 = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            format!("the history copy's rate \"{name}\" in the state store does not parse")
        })?;
    shared.copies.rate.set(mb);
    Ok(())
}

/// One partition's copy as the supervisor keeps it: what it reports, and
/// where it stood when it last stopped (taken by the next start).
#[derive(Default)]
pub(super) struct Slot {
    status: progress::Status,
    parked: Option<progress::Position>,
    /// Whether the state store was asked for an earlier run's position.
    loaded: bool,
    /// When the position was last persisted.
    saved_at: Option<std::time::Instant>,
    /// A source offset a switch asked the copy to stop at (its map does not
    /// say so yet).
    limit: Option<i64>,
    /// The runs of a copy waiting at its end, for the move to `target`.
    runs: Option<crate::kafka::splice::history::HistoryRuns>,
    /// This partition's share of the topic's lag gauge.
    shown_lag: i64,
}

/// One partition's copy: its slot, and the signal that wakes its copier
/// when what it should do changed (a switch set or lifted a stop, or its
/// segment map changed).
#[derive(Default)]
pub(super) struct Part {
    slot: Mutex<Slot>,
    wake: tokio::sync::Notify,
}

type Slots = Arc<Part>;

fn lock(part: &Part) -> std::sync::MutexGuard<'_, Slot> {
    part.slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Fills a fresh slot with the position an earlier run of the proxy
/// persisted for the partition, if any.
async fn load(shared: &Shared, topic: &str, partition: i32, slot: &Slots) -> Result<(), String> {
    if lock(slot).loaded {
        return Ok(());
    }
    let saved = progress::load(
        shared.store.as_ref(),
        &shared.migration.name,
        topic,
        partition,
    )
    .await?;
    let mut slot = lock(slot);
    if !slot.loaded {
        slot.loaded = true;
        if let Some((position, status)) = saved {
            slot.parked = Some(position);
            slot.status = status;
        }
    }
    Ok(())
}

/// The history copies of a migration.
pub(crate) struct Copies {
    /// The copy's speed limit, shared by every partition.
    rate: rate::Rate,
    /// Each copied topic's partitions, running or not.
    slots: Mutex<HashMap<String, Vec<Slots>>>,
    /// The running topics' stop signals.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// The copier's idempotent producer on the target, asked for once.
    producer: tokio::sync::Mutex<Option<plan::Producer>>,
    /// Cancelled at shutdown; every topic's signal is a child.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copies").finish_non_exhaustive()
    }
}

impl Copies {
    /// No copy yet; together they write at most `mb_per_second`.
    pub(crate) fn new(mb_per_second: u32) -> Copies {
        Copies {
            rate: rate::Rate::new(mb_per_second),
            slots: Mutex::default(),
            running: Mutex::default(),
            producer: tokio::sync::Mutex::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Stops every copy (the proxy is shutting down).
    pub(crate) fn shut_down(&self) {
        self.shutdown.cancel();
    }

    async fn producer(&self, shared: &Arc<Shared>) -> Result<plan::Producer, String> {
        let mut producer = self.producer.lock().await;
        if let Some(p) = *producer {
            return Ok(p);
        }
        let p = progress::producer(shared.store.as_ref(), &shared.migration.name, || {
            io::init_producer(shared)
        })
        .await?;
        *producer = Some(p);
        Ok(p)
    }

    /// `topic`'s first `count` slots, each filled once with what an earlier
    /// run of the proxy persisted.
    ///
    /// # Errors
    /// When the state store cannot be read or holds a copy that does not parse.
    async fn slots(&self, shared: &Shared, topic: &str, count: i32) -> Result<Vec<Slots>, String> {
        let slots = {
            let mut all = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let slots = all.entry(topic.to_owned()).or_default();
            while slots.len() < usize::try_from(count).unwrap_or(0) {
                slots.push(Slots::default());
            }
            slots.clone()
        };
        for (partition, slot) in (0..count).zip(&slots) {
            load(shared, topic, partition, slot).await?;
        }
        Ok(slots)
    }

    /// Where a stopped copy of each of `topic`'s `count` partitions goes on
    /// writing the target (`None`: no copy ran), as persisted.
    ///
    /// # Errors
    /// As [`Copies::slots`].
    pub(crate) async fn resumes_at(
        &self,
        shared: &Shared,
        topic: &str,
        count: i32,
    ) -> Result<Vec<Option<i64>>, String> {
        let slots = self.slots(shared, topic, count).await?;
        Ok(slots
            .iter()
            .map(|s| lock(s).parked.as_ref().map(progress::Position::target_next))
            .collect())
    }

    /// Starts mirroring every partition of `topic` (from where an earlier
    /// copy stopped, if one ran); does nothing while it runs.
    ///
    /// # Errors
    /// When the partition count or the copier's producer id cannot be had.
    pub(crate) async fn start(&self, shared: &Arc<Shared>, topic: &str) -> Result<(), String> {
        if self.running(topic) {
            return Ok(());
        }
        let count = super::moves::partition_count(shared, topic).await?;
        let producer = self.producer(shared).await?;
        let stop = self.shutdown.child_token();
        let slots = self.slots(shared, topic, count).await?;
        {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if running.contains_key(topic) {
                return Ok(());
            }
            running.insert(topic.to_owned(), stop.clone());
        }
        let meters = Arc::new(copier::Meters::new(&shared.migration.name, topic));
        for (partition, slot) in (0..count).zip(slots) {
            let copier = copier::Copier {
                shared: shared.clone(),
                topic: topic.to_owned(),
                partition,
                producer,
                slot,
                meters: meters.clone(),
            };
            tokio::spawn(copier.run(stop.clone()));
        }
        tracing::info!(migration = %shared.migration.name, topic, partitions = count, "history copy started");
        Ok(())
    }

    /// Stops mirroring `topic`; each partition keeps its position.
    pub(crate) fn stop(&self, topic: &str) {
        let stopped = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(topic);
        if let Some(token) = stopped {
            token.cancel();
        }
    }

    /// The copy of `topic`/`partition`, if one ever started in this process.
    fn part(&self, topic: &str, partition: i32) -> Option<Slots> {
        let all = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(topic)?
            .get(usize::try_from(partition).ok()?)
            .cloned()
    }

    /// Waits (at most `within`) until the copy of `topic`/`partition` is no
    /// more than [`SWITCH_LAG`] offsets behind the source, so a switch's
    /// fence waits only for the last few.
    ///
    /// # Errors
    /// When it is not, with where the copy stands.
    pub(crate) async fn caught_up(
        &self,
        topic: &str,
        partition: i32,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self.part(topic, partition).map(|p| lock(&p).status.clone());
            let behind = match &status {
                Some(s) if s.state == "mirroring" || s.state == "parked" => {
                    let lag = s.end - s.copied_to;
                    if lag <= SWITCH_LAG {
                        return Ok(());
                    }
                    format!("{lag} offsets behind the source")
                }
                Some(s) => format!("{} ({})", s.state, s.error.as_deref().unwrap_or("no error")),
                None => "not running".to_owned(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the history copy of {topic}/{partition} is {behind} after {within:?}; the switch waits for it to get within {SWITCH_LAG} offsets (raise kafka.history_mb_per_second or retry later)"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the copy of `topic`/`partition` at source offset `end` (the
    /// switch's closing end, read inside its fence) and waits, at most
    /// `within`, until every record below it is on the target.
    ///
    /// # Errors
    /// When the copy does not get there in time or read past `end`; the
    /// stop is lifted then.
    pub(crate) async fn stop_at(
        &self,
        topic: &str,
        partition: i32,
        end: i64,
        within: Duration,
    ) -> Result<i64, String> {
        let Some(part) = self.part(topic, partition) else {
            return Err(format!("no history copy runs for {topic}/{partition}"));
        };
        lock(&part).limit = Some(end);
        part.wake.notify_one();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = lock(&part).status.clone();
            if status.state == "parked" && status.source_next >= end {
                if status.source_next > end {
                    self.lift(topic, partition);
                    return Err(format!(
                        "the history copy of {topic}/{partition} read to {}, past the source end {end}: records were written to the source around the proxy",
                        status.source_next
                    ));
                }
                return Ok(status.target_next);
            }
            if status.state == "stopped" || tokio::time::Instant::now() >= deadline {
                self.lift(topic, partition);
                return Err(format!(
                    "the history copy of {topic}/{partition} is at source offset {} of {end} ({}) after {within:?}; switch abandoned, writes stay on the source",
                    status.source_next,
                    status.error.as_deref().unwrap_or(status.state)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Where the copy of `topic`/`partition` has written the target up to
    /// (sent, acknowledged or not), if it ever ran in this process.
    pub(crate) fn target_written(&self, topic: &str, partition: i32) -> Option<i64> {
        let part = self.part(topic, partition)?;
        let status = lock(&part).status.clone();
        (!status.state.is_empty()).then_some(status.target_sent)
    }

    /// `topic`/`partition`'s map with its history read from the target,
    /// as the copy waiting at its end says.
    ///
    /// # Errors
    /// Why its history cannot be read from the target.
    pub(crate) fn served(
        &self,
        topic: &str,
        partition: i32,
        map: &PartitionMap,
    ) -> Result<PartitionMap, String> {
        if !map.segments().iter().any(|s| s.side == Side::Source) {
            return Ok(map.clone());
        }
        let part = self
            .part(topic, partition)
            .ok_or("no history copy of it ran in this process")?;
        let slot = lock(&part);
        let runs = match (&slot.runs, slot.status.state) {
            (Some(runs), "parked") => runs,
            _ => {
                return Err(format!(
                    "its history copy is {}{}",
                    slot.status.state,
                    slot.status
                        .error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        };
        serve::served(map, runs)
    }

    /// Lifts a stop set by [`Copies::stop_at`] (the map now says where the
    /// copy stops, or the switch was abandoned).
    pub(crate) fn lift(&self, topic: &str, partition: i32) {
        if let Some(part) = self.part(topic, partition) {
            lock(&part).limit = None;
            part.wake.notify_one();
        }
    }

    fn running(&self, topic: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(topic)
    }

    /// Each partition's copy of `topic`, by partition; empty when none ran.
    pub(crate) fn partitions(&self, topic: &str) -> Vec<Status> {
        let all = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(topic)
            .map(|slots| {
                slots
                    .iter()
                    .map(|s| lock(s).status.clone())
                    .filter(|s| !s.state.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The status `ctl status` shows for `topic`'s copy.
    pub(crate) fn status(&self, topic: &str) -> serde_json::Value {
        let rate = self.rate.mb_per_second();
        let partitions = self.partitions(topic);
        let (done, total) = partitions.iter().fold((0i64, 0i64), |(d, t), p| {
            (
                d + (p.copied_to - p.log_start).max(0),
                t + (p.end - p.log_start).max(0),
            )
        });
        let percent = if total == 0 {
            if partitions.is_empty() { 0.0 } else { 100.0 }
        } else {
            (done as f64 * 1000.0 / total as f64).floor() / 10.0
        };
        serde_json::json!({
            "mode": "copy",
            "state": if self.running(topic) { "mirroring" } else { "stopped" },
            "records": partitions.iter().map(|p| p.records).sum::<i64>(),
            "bytes": partitions.iter().map(|p| p.bytes).sum::<i64>(),
            "percent": percent,
            "mb_per_second": rate,
            "partitions": partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str, history: Option<HistoryMode>) -> TopicPattern {
        TopicPattern {
            name: None,
            pattern: text.to_owned(),
            history,
        }
    }

    #[test]
    fn the_first_matching_pattern_that_says_wins() {
        let topics = [
            pattern("logs-*", Some(HistoryMode::Leave)),
            pattern("*", None),
            pattern("log*", Some(HistoryMode::Copy)),
        ];
        let policy = Policy::new(&topics, HistoryMode::Copy);
        assert_eq!(policy.of("logs-a"), HistoryMode::Leave);
        assert_eq!(policy.of("logx"), HistoryMode::Copy);
        assert_eq!(policy.of("orders"), HistoryMode::Copy);
        let policy = Policy::new(&topics, HistoryMode::Leave);
        assert_eq!(policy.of("orders"), HistoryMode::Leave);
        assert_eq!(policy.of("logx"), HistoryMode::Copy);
    }
}
