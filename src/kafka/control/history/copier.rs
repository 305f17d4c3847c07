//! One partition's mirror (docs/kafka-history-plan.md §1–§3): reads the
//! source from where the copy stands (read_committed), plans each answer
//! (`plan`), writes the batches to the target with the copier's own
//! idempotent producer, up to [`IN_FLIGHT`] at a time, and records each
//! batch's run once the target acknowledged it at the offset the copy
//! expected.
//!
//! After any failure the copy goes on from the target's log end: the
//! batches that landed before the failure are counted off by replaying the
//! same plan from the last acknowledged position, which lands on the same
//! batches (the plan is a function of the position and the source's
//! records). A failure that cannot be cured (the target holds records the
//! copier did not write, a batch the target refuses for good) stops the
//! partition's copy with its reason, shown in the status.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::align::{Aligned, align};
use super::io::{self, Fetched, Read};
use super::plan::{Cursor, Planned, Producer, Round, plan};
use super::progress::{self, Position, Status};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::control::topics;
use crate::kafka::probe::Link;
use crate::kafka::retry::Failure;
use crate::kafka::splice::history::{HistoryRuns, Run};
use cutover_kafka::increment_sequence;

/// Batches written and not yet acknowledged: the idempotent producer's
/// window, within which the target keeps their order and deduplicates.
const IN_FLIGHT: usize = 5;
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often a parked copy looks at its map again without being woken.
const PARKED_POLL: Duration = Duration::from_secs(1);
/// How often a copying partition's position is persisted.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Why the loop ended.
enum Stop {
    /// Ask again from the target's log end after a pause.
    Again(String),
    /// The copy of the partition cannot go on.
    Fatal(String),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        if f.retriable {
            Stop::Again(f.message)
        } else {
            Stop::Fatal(f.message)
        }
    }
}

/// Drops the round's batches at or past the source offset `limit` (a
/// partition whose writes moved stops there), and ends the round at it.
fn cut(round: &mut Round, from: Cursor, limit: i64) {
    if round.next.source_next <= limit {
        return;
    }
    round
        .batches
        .retain(|b| b.run.virtual_start - from.delta < limit);
    let mut next = from;
    for b in &round.batches {
        next.target_next = b.run.target_end();
        next.sequence =
            increment_sequence(next.sequence, i32::try_from(b.run.len).unwrap_or(i32::MAX));
    }
    next.source_next = limit;
    round.next = next;
}

/// The topic's history series, shared by its partitions' copies.
pub(super) struct Meters {
    records: metrics::Counter,
    bytes: metrics::Counter,
    lag: metrics::Gauge,
}

impl Meters {
    pub(super) fn new(migration: &str, topic: &str) -> Meters {
        let labels = [
            ("migration", migration.to_owned()),
            ("topic", topic.to_owned()),
        ];
        Meters {
            records: metrics::counter!(crate::metrics::KAFKA_HISTORY_RECORDS, &labels),
            bytes: metrics::counter!(crate::metrics::KAFKA_HISTORY_BYTES, &labels),
            lag: metrics::gauge!(crate::metrics::KAFKA_HISTORY_LAG, &labels),
        }
    }
}

/// One partition's copy and what it reports.
pub(super) struct Copier {
    pub(super) shared: Arc<Shared>,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) producer: Producer,
    pub(super) slot: Arc<super::Part>,
    pub(super) meters: Arc<Meters>,
}

impl Copier {
    /// Copies until `stop` is cancelled or the copy fails for good.
    pub(super) async fn run(self, stop: CancellationToken) {
        let mut position = self.lock().parked.take();
        self.update(|s| {
            s.partition = self.partition;
            s.state = "starting";
        });
        let mut pause = FIRST_PAUSE;
        loop {
            let attempt = self.mirror(&mut position);
            let outcome = tokio::select! {
                () = stop.cancelled() => None,
                outcome = attempt => Some(outcome),
            };
            let Some(outcome) = outcome else {
                self.park(position, "stopped").await;
                return;
            };
            match outcome {
                Stop::Fatal(reason) => {
                    tracing::error!(topic = %self.topic, partition = self.partition, reason, "the history copy of the partition stopped");
                    self.update(|s| s.error = Some(reason));
                    self.park(position, "stopped").await;
                    return;
                }
                Stop::Again(reason) => {
                    tracing::warn!(topic = %self.topic, partition = self.partition, reason, "the history copy of the partition retries");
                    self.update(|s| {
                        s.state = "retrying";
                        s.error = Some(reason);
                    });
                }
            }
            if let Some(at) = &position {
                self.save(at).await;
            }
            tokio::select! {
                () = stop.cancelled() => {
                    self.park(position, "stopped").await;
                    return;
                }
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, super::Slot> {
        super::lock(&self.slot)
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        let mut slot = self.lock();
        change(&mut slot.status);
        self.lag_now(&mut slot);
    }

    /// Keeps where the copy stands for the next start, in memory and in
    /// the state store.
    async fn park(&self, position: Option<Position>, state: &'static str) {
        if let Some(at) = &position {
            self.save(at).await;
        }
        let mut slot = self.lock();
        slot.status.state = state;
        if let Some(at) = &position {
            slot.status.copied_to = at.runs.copied_to();
            slot.status.source_next = at.cursor.source_next;
            slot.status.target_next = at.cursor.target_next;
            slot.status.runs = at.runs.runs().len();
        }
        slot.parked = position;
    }

    /// Persists `at`; a failure is logged and the copy goes on (a restart
    /// then goes on from an older position, counting off what landed).
    async fn save(&self, at: &Position) {
        let status = self.lock().status.clone();
        let shared = &self.shared;
        let saved = progress::save(
            shared.store.as_ref(),
            &shared.migration.name,
            &self.topic,
            at,
            &status,
        )
        .await;
        if let Err(e) = saved {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not save the history copy's position");
        }
    }

    fn show(&self, position: &Position) {
        self.update(|s| {
            s.copied_to = position.runs.copied_to();
            s.source_next = position.cursor.source_next;
            s.target_sent = s.target_sent.max(position.cursor.target_next);
            s.target_next = position.cursor.target_next;
            s.runs = position.runs.runs().len();
        });
    }

    async fn log_end(&self, side: Side, at: i64) -> Result<i64, Stop> {
        let ends = topics::list_offsets(&self.shared, side, &self.topic, &[self.partition], at, 0)
            .await
            .map_err(Stop::Again)?;
        ends.get(&self.partition).copied().ok_or_else(|| {
            Stop::Again(format!(
                "no {} offset for {}/{}",
                side.as_str(),
                self.topic,
                self.partition
            ))
        })
    }

    /// Opens the links, lands on the target's log end and copies until
    /// something fails.
    async fn mirror(&self, position: &mut Option<Position>) -> Stop {
        match self.mirror_inner(position).await {
            Ok(never) => match never {},
            Err(stop) => stop,
        }
    }

    async fn mirror_inner(
        &self,
        position: &mut Option<Position>,
    ) -> Result<std::convert::Infallible, Stop> {
        let _ = topics::refresh_layout(&self.shared, Side::Source, &self.topic).await;
        let _ = topics::refresh_layout(&self.shared, Side::Target, &self.topic).await;
        let target_end = self.log_end(Side::Target, LATEST).await?;
        if position.is_none() {
            *position = Some(self.first_position(target_end).await?);
        }
        let at = position.as_mut().expect("set above");
        let mut source = io::open(&self.shared, Side::Source, &self.topic, self.partition).await?;
        if self.align(at)?.fresh {
            self.check_fresh(at, target_end)?;
        } else {
            self.land(&mut source, at, target_end).await?;
        }
        self.show(at);
        let mut target = io::open(&self.shared, Side::Target, &self.topic, self.partition).await?;
        loop {
            let aligned = self.align(at)?;
            if aligned.fresh {
                let target_end = self.log_end(Side::Target, LATEST).await?;
                self.check_fresh(at, target_end)?;
            }
            let limit = aligned.limit.into_iter().chain(self.lock().limit).min();
            if limit.is_some_and(|l| at.cursor.source_next >= l) {
                self.idle(at).await;
                continue;
            }
            self.update(|s| {
                s.state = "mirroring";
                s.error = None;
            });
            let read = tokio::select! {
                read = self.read(&mut source, at) => read?,
                () = self.slot.wake.notified() => {
                    // The read was dropped half way: its answer would
                    // arrive on the link later, so the link goes too.
                    source = io::open(&self.shared, Side::Source, &self.topic, self.partition).await?;
                    continue;
                }
            };
            let Some(read) = read else {
                continue;
            };
            let mut round = self.plan_round(&read, at)?;
            if let Some(limit) = limit {
                cut(&mut round, at.cursor, limit);
            }
            let batches = std::mem::take(&mut round.batches);
            self.write(&mut target, batches, at).await?;
            self.finish_round(&round, at)?;
            self.save_now_and_then(at).await;
        }
    }

    /// Moves `at` as the partition's segment map says (a new source
    /// segment after a switch back) and returns what the copy may do.
    fn align(&self, at: &mut Position) -> Result<Aligned, Stop> {
        let map = self.shared.splice.map(&self.topic, self.partition);
        if !map.segments().iter().any(|s| s.side == Side::Source) {
            // Its history is read from the target: nothing left to copy.
            return Ok(Aligned {
                cursor: at.cursor,
                fresh: false,
                limit: Some(at.cursor.source_next),
            });
        }
        let aligned = align(at.cursor, map.segments())
            .map_err(|e| Stop::Fatal(format!("{}/{}: {e}", self.topic, self.partition)))?;
        if aligned.cursor != at.cursor {
            at.cursor = aligned.cursor;
            at.runs
                .advance(aligned.cursor.source_next + aligned.cursor.delta)
                .map_err(|e| Stop::Fatal(e.to_string()))?;
        }
        Ok(aligned)
    }

    /// A copy moving to a new source segment writes after the target's
    /// segment in between, which must end where the map says.
    fn check_fresh(&self, at: &Position, target_end: i64) -> Result<(), Stop> {
        if target_end == at.cursor.target_next {
            return Ok(());
        }
        Err(Stop::Fatal(format!(
            "the target's {}/{} ends at {target_end}, not at {} where its last segment ended: records were written to the target around the proxy (or a copy's batches landed before a crash); the history copy cannot place the next source segment",
            self.topic, self.partition, at.cursor.target_next
        )))
    }

    /// Waits, parked at the source end the copy must stop at, until
    /// something changes (a switch back, a lifted stop).
    async fn idle(&self, at: &Position) {
        let first = self.lock().status.state != "parked";
        if first {
            self.save(at).await;
            self.show(at);
            let mut slot = self.lock();
            slot.runs = Some(at.runs.clone());
            slot.status.state = "parked";
            self.lag_now(&mut slot);
        }
        let _ = tokio::time::timeout(PARKED_POLL, self.slot.wake.notified()).await;
    }

    /// The position a fresh copy starts from: the source's log start, the
    /// target's log end (which must also be its log start: nothing else may
    /// have written there).
    async fn first_position(&self, target_end: i64) -> Result<Position, Stop> {
        let target_start = self.log_end(Side::Target, EARLIEST).await?;
        if target_start != target_end {
            return Err(Stop::Fatal(format!(
                "the target's {}/{} already holds offsets {target_start}..{target_end}; the history copy needs an empty target partition",
                self.topic, self.partition
            )));
        }
        let source_start = self.log_end(Side::Source, EARLIEST).await?;
        self.update(|s| s.log_start = source_start);
        Ok(Position {
            cursor: Cursor {
                source_next: source_start,
                target_next: target_end,
                sequence: 0,
                delta: 0,
            },
            runs: HistoryRuns::starting_at(source_start),
        })
    }

    /// Moves `at` over the batches that landed on the target after it was
    /// last acknowledged (the target's log end is `target_end`).
    async fn land(
        &self,
        source: &mut Link,
        at: &mut Position,
        target_end: i64,
    ) -> Result<(), Stop> {
        let mut landed = target_end - at.cursor.target_next;
        if landed < 0 {
            return Err(Stop::Fatal(format!(
                "the target's {}/{} ends at {target_end}, below the {} offsets the copy wrote and saw acknowledged: the target lost acknowledged records",
                self.topic, self.partition, at.cursor.target_next
            )));
        }
        while landed > 0 {
            let Some(read) = self.read(source, at).await? else {
                continue;
            };
            let round = self.plan_round(&read, at)?;
            if round.batches.is_empty()
                && round.next == at.cursor
                && read.high_watermark <= at.cursor.source_next
            {
                return Err(Stop::Fatal(format!(
                    "the target's {}/{} holds {landed} records more than the copy wrote: something else writes to the target partition",
                    self.topic, self.partition
                )));
            }
            for planned in &round.batches {
                if landed == 0 {
                    return Ok(());
                }
                if planned.run.len > landed {
                    return Err(Stop::Fatal(format!(
                        "the target's {}/{} ends inside a batch of the copy: the source's records changed since they were copied (compaction?)",
                        self.topic, self.partition
                    )));
                }
                landed -= planned.run.len;
                self.acknowledge(planned.run, at)?;
                self.count(planned.run.len, planned.batch.len());
            }
            if landed > 0 {
                self.finish_round(&round, at)?;
            }
        }
        Ok(())
    }

    /// One read from the position; `None` when retention overtook the copy
    /// (the position then jumped to the new log start).
    async fn read(&self, source: &mut Link, at: &mut Position) -> Result<Option<Read>, Stop> {
        match io::fetch(source, &self.topic, self.partition, at.cursor.source_next).await? {
            Fetched::Read(read) => {
                let delta = at.cursor.delta;
                self.update(|s| s.end = read.high_watermark + delta);
                Ok(Some(read))
            }
            Fetched::OutOfRange => {
                let start = self.log_end(Side::Source, EARLIEST).await?;
                let from = at.cursor.source_next;
                if start <= from {
                    return Err(Stop::Again(format!(
                        "the source answered OFFSET_OUT_OF_RANGE for {}/{} at {from}, within its log (start {start})",
                        self.topic, self.partition
                    )));
                }
                tracing::warn!(topic = %self.topic, partition = self.partition, from, start, "retention deleted source records before the history copy read them");
                at.cursor.source_next = start;
                at.runs
                    .advance(start + at.cursor.delta)
                    .map_err(|e| Stop::Fatal(e.to_string()))?;
                self.update(|s| {
                    s.lost_to_retention += start - from;
                    s.skipped += start - from;
                });
                Ok(None)
            }
        }
    }

    fn plan_round(&self, read: &Read, at: &Position) -> Result<Round, Stop> {
        let round = plan(&read.records, &read.aborted, at.cursor, self.producer).map_err(|e| {
            Stop::Fatal(format!(
                "{}/{} at {}: {e}",
                self.topic, self.partition, at.cursor.source_next
            ))
        })?;
        if round.partial_tail && round.batches.is_empty() && round.next == at.cursor {
            return Err(Stop::Fatal(format!(
                "a batch of {}/{} at {} is larger than the copy's read limit",
                self.topic, self.partition, at.cursor.source_next
            )));
        }
        Ok(round)
    }

    /// Writes the round's batches, at most [`IN_FLIGHT`] unacknowledged.
    async fn write(
        &self,
        target: &mut Link,
        batches: Vec<Planned>,
        at: &mut Position,
    ) -> Result<(), Stop> {
        let mut waiting = VecDeque::with_capacity(IN_FLIGHT);
        for planned in batches {
            if waiting.len() == IN_FLIGHT {
                let oldest = waiting.pop_front().expect("the window is full");
                self.acknowledged(target, oldest, at).await?;
            }
            self.shared.copies.rate.take(planned.batch.len()).await;
            let bytes = planned.batch.len();
            let sent_to = planned.run.target_end();
            self.update(|s| s.target_sent = s.target_sent.max(sent_to));
            io::send_batch(
                target,
                &self.topic,
                self.partition,
                Bytes::from(planned.batch),
            )
            .await?;
            waiting.push_back((planned.run, bytes));
        }
        for sent in waiting {
            self.acknowledged(target, sent, at).await?;
        }
        Ok(())
    }

    async fn acknowledged(
        &self,
        target: &mut Link,
        (run, bytes): (Run, usize),
        at: &mut Position,
    ) -> Result<(), Stop> {
        let base = io::acknowledged(target, &self.topic, self.partition).await?;
        if base != run.target_start {
            return Err(Stop::Fatal(format!(
                "the target stored a batch of the copy of {}/{} at offset {base} where the copy expected {}: something else writes to the target partition",
                self.topic, self.partition, run.target_start
            )));
        }
        self.acknowledge(run, at)?;
        self.count(run.len, bytes);
        self.save_now_and_then(at).await;
        Ok(())
    }

    /// Persists `at` when the last save is [`SAVE_EVERY`] old: a round
    /// can take long under the rate limit, so this runs per batch too.
    async fn save_now_and_then(&self, at: &Position) {
        let due = {
            let mut slot = self.lock();
            let due = slot.saved_at.is_none_or(|t| t.elapsed() >= SAVE_EVERY);
            if due {
                slot.saved_at = Some(Instant::now());
            }
            due
        };
        if due {
            self.save(at).await;
        }
    }

    /// Counts one batch on the target in the status.
    fn count(&self, records: i64, bytes: usize) {
        self.meters
            .records
            .increment(u64::try_from(records).unwrap_or(0));
        self.meters
            .bytes
            .increment(u64::try_from(bytes).unwrap_or(0));
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.update(|s| {
            s.records += records;
            s.bytes += bytes;
        });
    }

    /// Moves the topic's lag gauge by this partition's change (its share
    /// is kept in the slot, so a copy started again takes it over).
    fn lag_now(&self, slot: &mut super::Slot) {
        let status = &slot.status;
        let lag = if status.state == "parked" {
            0
        } else {
            (status.end - status.copied_to).max(0)
        };
        #[allow(clippy::cast_precision_loss)] // Offsets far below 2^52.
        self.meters.lag.increment((lag - slot.shown_lag) as f64);
        slot.shown_lag = lag;
    }

    /// Moves the position past one acknowledged batch.
    fn acknowledge(&self, run: Run, at: &mut Position) -> Result<(), Stop> {
        at.runs
            .push(run.virtual_start, run.target_start, run.len)
            .map_err(|e| Stop::Fatal(e.to_string()))?;
        let count = i32::try_from(run.len).map_err(|e| Stop::Fatal(e.to_string()))?;
        let cursor = &mut at.cursor;
        cursor.source_next = run.virtual_start - cursor.delta + run.len;
        cursor.target_next = run.target_start + run.len;
        cursor.sequence = increment_sequence(cursor.sequence, count);
        Ok(())
    }

    /// Moves the position to the round's end (over the offsets it skipped).
    fn finish_round(&self, round: &Round, at: &mut Position) -> Result<(), Stop> {
        let skipped = round.skipped.control + round.skipped.aborted + round.skipped.empty;
        at.cursor = round.next;
        at.runs
            .advance(round.next.source_next + round.next.delta)
            .map_err(|e| Stop::Fatal(e.to_string()))?;
        self.update(|s| s.skipped += skipped);
        self.show(at);
        Ok(())
    }
}
