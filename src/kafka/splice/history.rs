//! Where a partition's copied history sits on the target (issue 16,
//! docs/kafka-history-plan.md §1): the runs `(virtual_start, target_start,
//! len)` the history copy wrote.
//!
//! The copy cannot keep the source's offset gaps (transaction markers,
//! aborted batches, compaction holes): Produce always assigns the target's
//! next dense offsets. A [`super::segments::Segment`] maps one contiguous
//! range and cannot hold a gap, so the copied history gets this run list
//! beside the segment map instead. It also keeps the segment blob small:
//! a transactional topic has one gap per commit.
//!
//! Pure: the copier pushes a run per acknowledged batch, the data plane
//! translates offsets through it.

use serde::{Deserialize, Serialize};

/// One contiguous range copied to the target: virtual offsets
/// `virtual_start..virtual_start + len` sit at target offsets
/// `target_start..target_start + len`. Persisted as `[virtual, target, len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(i64, i64, i64)", into = "(i64, i64, i64)")]
pub(crate) struct Run {
    /// First virtual offset of the run.
    pub(crate) virtual_start: i64,
    /// Its offset on the target.
    pub(crate) target_start: i64,
    /// Number of offsets, at least 1.
    pub(crate) len: i64,
}

impl Run {
    /// Virtual end (exclusive).
    #[must_use]
    pub(crate) fn virtual_end(&self) -> i64 {
        self.virtual_start + self.len
    }

    /// Target end (exclusive).
    #[must_use]
    pub(crate) fn target_end(&self) -> i64 {
        self.target_start + self.len
    }

    /// `virtual - target` inside this run.
    #[must_use]
    pub(crate) fn delta(&self) -> i64 {
        self.virtual_start - self.target_start
    }
}

impl From<(i64, i64, i64)> for Run {
    fn from((virtual_start, target_start, len): (i64, i64, i64)) -> Self {
        Run {
            virtual_start,
            target_start,
            len,
        }
    }
}

impl From<Run> for (i64, i64, i64) {
    fn from(r: Run) -> Self {
        (r.virtual_start, r.target_start, r.len)
    }
}

/// A run could not be added, or a persisted run list is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RunError {
    /// A run must cover at least one offset.
    #[error("a history run must hold at least one offset (got {len} at virtual {virtual_start})")]
    Empty {
        /// The run's virtual start.
        virtual_start: i64,
        /// Its length.
        len: i64,
    },
    /// A run starts before the end of what is already recorded, in either
    /// coordinate; the copy would then overwrite its own history.
    #[error(
        "history run (virtual {virtual_start}, target {target_start}) starts before the recorded end (virtual {virtual_end}, target {target_end})"
    )]
    Overlap {
        /// The new run's virtual start.
        virtual_start: i64,
        /// Its target start.
        target_start: i64,
        /// Virtual offsets below this are already recorded (copied or skipped).
        virtual_end: i64,
        /// Target end of the last run.
        target_end: i64,
    },
    /// `copied_to` may only move forward.
    #[error("history copied_to cannot move back from {from} to {to}")]
    Backwards {
        /// The recorded position.
        from: i64,
        /// The refused one.
        to: i64,
    },
}

/// One partition's runs, sorted and strictly increasing in both
/// coordinates, plus how far the copy has read (skipped offsets included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Stored")]
pub(crate) struct HistoryRuns {
    runs: Vec<Run>,
    /// Virtual offsets below this are copied or deliberately skipped.
    copied_to: i64,
}

/// The persisted form, checked before it becomes a [`HistoryRuns`]: a blob
/// edited or truncated by hand must not produce a map that translates
/// wrongly.
#[derive(Deserialize)]
struct Stored {
    runs: Vec<Run>,
    copied_to: i64,
}

impl TryFrom<Stored> for HistoryRuns {
    type Error = RunError;

    fn try_from(stored: Stored) -> Result<Self, RunError> {
        let mut runs = HistoryRuns::default();
        for r in stored.runs {
            runs.push(r.virtual_start, r.target_start, r.len)?;
        }
        runs.advance(stored.copied_to)?;
        Ok(runs)
    }
}

impl HistoryRuns {
    /// No run yet; the copy starts at virtual offset `start` (the source's
    /// log start plus the copied segment's delta).
    #[must_use]
    pub(crate) fn starting_at(start: i64) -> Self {
        HistoryRuns {
            runs: Vec::new(),
            copied_to: start,
        }
    }

    /// The runs, oldest first.
    #[must_use]
    pub(crate) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Virtual offsets below this are copied or skipped.
    #[must_use]
    pub(crate) fn copied_to(&self) -> i64 {
        self.copied_to
    }

    /// The history's first readable virtual offset (its log start).
    #[must_use]
    pub(crate) fn virtual_start(&self) -> Option<i64> {
        self.runs.first().map(|r| r.virtual_start)
    }

    /// Where the next copied record lands on the target if nothing else
    /// wrote there: the last run's target end.
    #[must_use]
    pub(crate) fn target_end(&self) -> Option<i64> {
        self.runs.last().map(Run::target_end)
    }

    /// Records `len` offsets copied from `virtual_start` to `target_start`.
    /// A run that continues the last one in both spaces extends it, so a
    /// gapless history stays one run however many batches it took.
    ///
    /// # Errors
    /// [`RunError::Empty`] for `len < 1`, [`RunError::Overlap`] when the run
    /// starts below `copied_to` or below the last run's target end (or
    /// below 0 on the target).
    pub(crate) fn push(
        &mut self,
        virtual_start: i64,
        target_start: i64,
        len: i64,
    ) -> Result<(), RunError> {
        if len < 1 {
            return Err(RunError::Empty { virtual_start, len });
        }
        let target_end = self.target_end().unwrap_or(0);
        let virtual_end = self.copied_to;
        if virtual_start < virtual_end || target_start < target_end {
            return Err(RunError::Overlap {
                virtual_start,
                target_start,
                virtual_end,
                target_end,
            });
        }
        match self.runs.last_mut() {
            Some(last)
                if last.virtual_end() == virtual_start && last.target_end() == target_start =>
            {
                last.len += len;
            }
            _ => self.runs.push(Run {
                virtual_start,
                target_start,
                len,
            }),
        }
        self.copied_to = virtual_start + len;
        Ok(())
    }

    /// Moves `copied_to` to `to` over offsets the copy skipped (markers,
    /// aborted or empty batches, compaction or retention holes).
    ///
    /// # Errors
    /// [`RunError::Backwards`] when `to` is below `copied_to`.
    pub(crate) fn advance(&mut self, to: i64) -> Result<(), RunError> {
        if to < self.copied_to {
            return Err(RunError::Backwards {
                from: self.copied_to,
                to,
            });
        }
        self.copied_to = to;
        Ok(())
    }

    /// The target offset of virtual offset `v` and the delta
    /// (`virtual - target`) to translate what is read there. An offset in a
    /// gap between runs resolves to the next run's start, so a reader
    /// positioned on a skipped offset reads on from the next copied record,
    /// as it would on the source. `None` below the first run (under the log
    /// start) and from the last run's end on: offsets there belong to
    /// whatever follows the history (the next segment).
    #[must_use]
    pub(crate) fn to_target(&self, v: i64) -> Option<(i64, i64)> {
        // The first run ending past `v`: it holds `v`, or `v` is in the gap
        // just before it.
        let i = self.runs.partition_point(|r| r.virtual_end() <= v);
        let run = self.runs.get(i)?;
        if v < run.virtual_start {
            if i == 0 {
                return None;
            }
            return Some((run.target_start, run.delta()));
        }
        Some((run.target_start + (v - run.virtual_start), run.delta()))
    }

    /// The virtual offset of target offset `t`, or `None` when `t` is not a
    /// copied record (a live write to the target between copied segments,
    /// or past the history).
    #[must_use]
    pub(crate) fn to_virtual(&self, t: i64) -> Option<i64> {
        let i = self.runs.partition_point(|r| r.target_start <= t);
        let run = self.runs.get(i.checked_sub(1)?)?;
        (t < run.target_end()).then(|| t + run.delta())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs_of(list: &[(i64, i64, i64)]) -> HistoryRuns {
        let mut runs = HistoryRuns::default();
        for &(v, t, len) in list {
            runs.push(v, t, len).unwrap();
        }
        runs
    }

    fn tuples(runs: &HistoryRuns) -> Vec<(i64, i64, i64)> {
        runs.runs().iter().map(|&r| r.into()).collect()
    }

    #[test]
    fn a_gapless_copy_from_offset_zero_is_the_identity() {
        // Source log start 0, end E = 9, copied in three batches.
        let mut runs = HistoryRuns::starting_at(0);
        for (v, len) in [(0, 4), (4, 3), (7, 2)] {
            runs.push(v, v, len).unwrap();
        }
        assert_eq!(tuples(&runs), [(0, 0, 9)]);
        assert_eq!(runs.copied_to(), 9);
        for v in 0..9 {
            assert_eq!(runs.to_target(v), Some((v, 0)));
            assert_eq!(runs.to_virtual(v), Some(v));
        }
        assert_eq!(runs.to_target(9), None);
        assert_eq!(runs.to_virtual(9), None);
    }

    #[test]
    fn a_log_start_above_zero_shifts_every_offset_by_it() {
        // Retention deleted 0..100; the source end is 250.
        let mut runs = HistoryRuns::starting_at(100);
        runs.push(100, 0, 50).unwrap();
        runs.push(150, 50, 100).unwrap();
        assert_eq!(tuples(&runs), [(100, 0, 150)]);
        assert_eq!(runs.virtual_start(), Some(100));
        assert_eq!(runs.to_target(99), None, "below the log start");
        assert_eq!(runs.to_target(100), Some((0, 100)));
        assert_eq!(runs.to_target(249), Some((149, 100)));
        assert_eq!(runs.to_virtual(0), Some(100));
        assert_eq!(runs.to_virtual(149), Some(249));
        assert_eq!(runs.target_end(), Some(150));
    }

    #[test]
    fn markers_and_compaction_holes_become_gaps() {
        // 0..3 transactional data, 3 its commit marker, 4..6 data, 6..8
        // removed by compaction, 8 data; E = 9.
        let mut runs = HistoryRuns::starting_at(0);
        runs.push(0, 0, 3).unwrap();
        runs.advance(4).unwrap(); // the marker
        runs.push(4, 3, 2).unwrap();
        runs.push(8, 5, 1).unwrap();
        runs.advance(9).unwrap();
        assert_eq!(tuples(&runs), [(0, 0, 3), (4, 3, 2), (8, 5, 1)]);
        let expected = [
            (0, 0, 0),
            (1, 1, 0),
            (2, 2, 0),
            (3, 3, 1), // the marker: the next record
            (4, 3, 1),
            (5, 4, 1),
            (6, 5, 3), // compacted away: the next record
            (7, 5, 3),
            (8, 5, 3),
        ];
        for (v, t, delta) in expected {
            assert_eq!(runs.to_target(v), Some((t, delta)), "virtual {v}");
        }
        assert_eq!(runs.to_target(9), None);
        let back: Vec<_> = (0..7).map(|t| runs.to_virtual(t)).collect();
        assert_eq!(
            back,
            [Some(0), Some(1), Some(2), Some(4), Some(5), Some(8), None]
        );
        assert_eq!(runs.copied_to(), 9);
    }

    #[test]
    fn target_offsets_between_copied_segments_are_not_history() {
        // Copy, then 10 live target writes (a switch and a rollback), then
        // the copy resumes at the source end.
        let runs = runs_of(&[(0, 0, 5), (15, 15, 5)]);
        assert_eq!(runs.to_virtual(4), Some(4));
        assert_eq!(runs.to_virtual(5), None);
        assert_eq!(runs.to_virtual(14), None);
        assert_eq!(runs.to_virtual(15), Some(15));
        assert_eq!(runs.runs().len(), 2, "contiguous in virtual space only");
    }

    #[test]
    fn runs_may_not_overlap_or_be_empty() {
        let mut runs = runs_of(&[(0, 0, 3)]);
        assert!(matches!(runs.push(2, 3, 1), Err(RunError::Overlap { .. })));
        assert!(matches!(runs.push(3, 2, 1), Err(RunError::Overlap { .. })));
        assert!(matches!(runs.push(3, 3, 0), Err(RunError::Empty { .. })));
        runs.advance(10).unwrap();
        assert!(matches!(runs.push(5, 3, 1), Err(RunError::Overlap { .. })));
        assert!(matches!(runs.advance(9), Err(RunError::Backwards { .. })));
        assert_eq!(tuples(&runs), [(0, 0, 3)]);
    }

    #[test]
    fn serde_keeps_runs_as_triples_and_refuses_overlaps() {
        let runs = runs_of(&[(0, 0, 3), (4, 3, 2)]);
        let json = serde_json::to_string(&runs).unwrap();
        assert_eq!(json, r#"{"runs":[[0,0,3],[4,3,2]],"copied_to":6}"#);
        let back: HistoryRuns = serde_json::from_str(&json).unwrap();
        assert_eq!(back, runs);
        let bad = r#"{"runs":[[0,0,3],[2,3,2]],"copied_to":6}"#;
        assert!(serde_json::from_str::<HistoryRuns>(bad).is_err());
        let behind = r#"{"runs":[[0,0,3]],"copied_to":1}"#;
        assert!(serde_json::from_str::<HistoryRuns>(behind).is_err());
    }

    /// Random histories: each step skips some virtual offsets and some
    /// target offsets (live writes), then copies a run.
    fn histories() -> impl proptest::strategy::Strategy<Value = Vec<(i64, i64, i64)>> {
        proptest::collection::vec((0i64..4, 0i64..3, 1i64..6), 1..40)
    }

    fn build(steps: &[(i64, i64, i64)]) -> HistoryRuns {
        let (mut v, mut t) = (7, 0);
        let mut runs = HistoryRuns::starting_at(v);
        for &(skip_v, skip_t, len) in steps {
            v += skip_v;
            t += skip_t;
            runs.push(v, t, len).unwrap();
            v += len;
            t += len;
        }
        runs
    }

    proptest::proptest! {
        #[test]
        fn every_copied_offset_maps_back_to_itself(steps in histories()) {
            let runs = build(&steps);
            let mut copied = 0;
            for r in runs.runs() {
                for v in r.virtual_start..r.virtual_end() {
                    let (t, delta) = runs.to_target(v).unwrap();
                    proptest::prop_assert_eq!(runs.to_virtual(t), Some(v));
                    proptest::prop_assert_eq!(t + delta, v);
                    copied += 1;
                }
            }
            proptest::prop_assert_eq!(copied, steps.iter().map(|s| s.2).sum::<i64>());
        }

        #[test]
        fn offsets_in_gaps_map_to_the_next_runs_start(steps in histories()) {
            let runs = build(&steps);
            for pair in runs.runs().windows(2) {
                let (before, next) = (pair[0], pair[1]);
                for v in before.virtual_end()..next.virtual_start {
                    proptest::prop_assert_eq!(
                        runs.to_target(v),
                        Some((next.target_start, next.delta()))
                    );
                }
                for t in before.target_end()..next.target_start {
                    proptest::prop_assert_eq!(runs.to_virtual(t), None);
                }
            }
            let first = runs.runs()[0];
            proptest::prop_assert_eq!(runs.to_target(first.virtual_start - 1), None);
            let last = runs.runs()[runs.runs().len() - 1];
            proptest::prop_assert_eq!(runs.to_target(last.virtual_end()), None);
        }

        #[test]
        fn adjacent_runs_are_always_merged(steps in histories()) {
            let runs = build(&steps);
            for pair in runs.runs().windows(2) {
                proptest::prop_assert!(
                    pair[0].virtual_end() < pair[1].virtual_start
                        || pair[0].target_end() < pair[1].target_start
                );
            }
        }
    }
}
