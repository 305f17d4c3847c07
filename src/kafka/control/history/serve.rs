//! At `target`, a copied partition's history is read from the target
//! (docs/kafka-history-plan.md §1 and §6): each source segment of its map
//! becomes the target segment holding its copy, so no read needs the
//! source any more. That needs the copy of a segment to be one run of
//! consecutive target offsets ending exactly where the segment ends (the
//! first segment may start above its virtual start: offsets below the
//! source's log start were deleted there too). A segment whose copy has
//! offset gaps (transaction markers, aborted or compacted records) cannot
//! be one target segment, since a segment maps a range without holes; such
//! a partition keeps reading its history from the source.

use crate::kafka::cluster::Side;
use crate::kafka::splice::history::HistoryRuns;
use crate::kafka::splice::segments::{PartitionMap, Segment};

/// `map` with every source segment replaced by the target segment holding
/// its copy, consecutive segments of one delta merged.
///
/// # Errors
/// Why the partition's history cannot be read from the target.
pub(super) fn served(map: &PartitionMap, runs: &HistoryRuns) -> Result<PartitionMap, String> {
    let segments = map.segments();
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    for (i, s) in segments.iter().enumerate() {
        let segment = match s.side {
            Side::Target => *s,
            Side::Source => {
                let end = segments
                    .get(i + 1)
                    .map(|n| n.virtual_start)
                    .ok_or("it still writes to the source")?;
                copied_as_target(runs, s.virtual_start, end, i == 0)?
            }
        };
        match out.last() {
            Some(last)
                if last.side == segment.side
                    && last.virtual_start - last.physical_start
                        == segment.virtual_start - segment.physical_start => {}
            _ => out.push(segment),
        }
    }
    PartitionMap::from_segments(out).ok_or_else(|| "its segments do not increase".to_owned())
}

/// The target segment holding the copy of virtual `start..end`.
fn copied_as_target(
    runs: &HistoryRuns,
    start: i64,
    end: i64,
    first: bool,
) -> Result<Segment, String> {
    if runs.copied_to() < end {
        return Err(format!(
            "its history is copied to {} of {end}",
            runs.copied_to()
        ));
    }
    let inside: Vec<_> = runs
        .runs()
        .iter()
        .filter(|r| r.virtual_end() > start && r.virtual_start < end)
        .collect();
    let whole = match inside.as_slice() {
        [run] => run.virtual_end() == end && (run.virtual_start == start || first),
        [] => false,
        _ => false,
    };
    if !whole {
        return Err(format!(
            "its copy of offsets {start}..{end} has {} run(s) with gaps between or around them (transaction markers, aborted or compacted records); a target segment cannot hold gaps",
            inside.len()
        ));
    }
    let run = inside[0];
    Ok(Segment {
        side: Side::Target,
        physical_start: run.target_start - (run.virtual_start - start),
        virtual_start: start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(side: Side, physical_start: i64, virtual_start: i64) -> Segment {
        Segment::new(side, physical_start, virtual_start)
    }

    fn map(segments: &[Segment]) -> PartitionMap {
        PartitionMap::from_segments(segments.to_vec()).unwrap()
    }

    fn runs(list: &[(i64, i64, i64)], start: i64, copied_to: i64) -> HistoryRuns {
        let mut runs = HistoryRuns::starting_at(start);
        for &(v, t, len) in list {
            runs.push(v, t, len).unwrap();
        }
        runs.advance(copied_to).unwrap();
        runs
    }

    #[test]
    fn a_gapless_history_becomes_the_identity_on_the_target() {
        let m = map(&[seg(Side::Source, 0, 0), seg(Side::Target, 100, 100)]);
        let served = served(&m, &runs(&[(0, 0, 100)], 0, 100)).unwrap();
        assert_eq!(served.segments(), &[seg(Side::Target, 0, 0)]);
    }

    #[test]
    fn a_log_start_above_zero_keeps_the_delta() {
        // Retention had deleted 0..40 on the source: target 0 holds virtual 40.
        let m = map(&[seg(Side::Source, 0, 0), seg(Side::Target, 60, 100)]);
        let served = served(&m, &runs(&[(40, 0, 60)], 40, 100)).unwrap();
        assert_eq!(served.segments(), &[seg(Side::Target, -40, 0)]);
        assert_eq!(served.locate(40).physical, 0);
        assert_eq!(served.locate(100).physical, 60);
    }

    #[test]
    fn a_round_trip_interleaves_copies_and_live_segments() {
        // Source 0..100 → target 0..100; live target 100..130 (virtual
        // 100..130); source 100..120 (virtual 130..150) copied to target
        // 130..150; live target from 150 (virtual 150).
        let m = map(&[
            seg(Side::Source, 0, 0),
            seg(Side::Target, 100, 100),
            seg(Side::Source, 100, 130),
            seg(Side::Target, 150, 150),
        ]);
        let r = runs(&[(0, 0, 100), (130, 130, 20)], 0, 150);
        let served = served(&m, &r).unwrap();
        assert_eq!(served.segments(), &[seg(Side::Target, 0, 0)]);
    }

    #[test]
    fn gaps_and_unfinished_copies_are_refused_with_a_reason() {
        let m = map(&[seg(Side::Source, 0, 0), seg(Side::Target, 9, 10)]);
        let gapped = runs(&[(0, 0, 3), (4, 3, 5)], 0, 10);
        let e = served(&m, &gapped).unwrap_err();
        assert!(e.contains("2 run(s)"), "{e}");
        let trailing_marker = runs(&[(0, 0, 9)], 0, 10);
        assert!(
            served(&m, &trailing_marker)
                .unwrap_err()
                .contains("1 run(s)")
        );
        let short = runs(&[(0, 0, 5)], 0, 5);
        assert!(
            served(&m, &short)
                .unwrap_err()
                .contains("copied to 5 of 10")
        );
        let writing = map(&[seg(Side::Source, 0, 0)]);
        assert!(
            served(&writing, &short)
                .unwrap_err()
                .contains("writes to the source")
        );
    }
}
