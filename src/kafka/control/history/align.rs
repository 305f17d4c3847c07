//! Where a partition's copy goes next, given its segment map
//! (docs/kafka-history-plan.md §1): the copy follows the source segments in
//! virtual order. While the source writes, it mirrors the open source
//! segment; once the partition writes to the target, it stops at the end of
//! the last source segment (the switch waited for it to get there); after a
//! switch back to the source, it goes on with the new source segment,
//! writing after the target segment that came between, which is the
//! virtual order. Pure, so every case is tested here.

use super::plan::Cursor;
use crate::kafka::cluster::Side;
use crate::kafka::splice::segments::Segment;

/// What the copy does from `cursor` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Aligned {
    /// Where it stands (moved to the start of a later source segment when
    /// it finished the one it was in).
    pub(super) cursor: Cursor,
    /// Moved to a new segment: the target must end exactly at
    /// `cursor.target_next` before anything is written there.
    pub(super) fresh: bool,
    /// The source offset it stops at (the end of a closed segment); `None`
    /// while the segment is open.
    pub(super) limit: Option<i64>,
}

/// The copy's position does not fit the map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum AlignError {
    #[error(
        "the copy stands at source offset {source_next} (delta {delta}), in no source segment of the partition's map"
    )]
    Lost { source_next: i64, delta: i64 },
    #[error(
        "the copy read source offset {source_next}, past the end {end} of its segment: records were written to the source around the proxy after its writes moved"
    )]
    PastEnd { source_next: i64, end: i64 },
}

fn end_of(segments: &[Segment], i: usize) -> Option<i64> {
    let s = segments[i];
    segments
        .get(i + 1)
        .map(|n| s.physical_start + (n.virtual_start - s.virtual_start))
}

fn delta(s: &Segment) -> i64 {
    s.virtual_start - s.physical_start
}

/// Aligns `cursor` with `segments` (a partition map, oldest first).
///
/// # Errors
/// [`AlignError`] when the cursor is in no source segment or past the end
/// of a closed one.
pub(super) fn align(mut cursor: Cursor, segments: &[Segment]) -> Result<Aligned, AlignError> {
    let lost = AlignError::Lost {
        source_next: cursor.source_next,
        delta: cursor.delta,
    };
    let found = segments.iter().rposition(|s| {
        s.side == Side::Source && delta(s) == cursor.delta && cursor.source_next >= s.physical_start
    });
    let (mut k, mut fresh) = match found {
        Some(k) => (k, false),
        None => {
            // Its history was read from the target (no source segment
            // left), then the partition went back to the source: the new
            // source segment starts where the copy stopped.
            let j = segments
                .iter()
                .position(|s| s.side == Side::Source && s.physical_start == cursor.source_next)
                .filter(|&j| j > 0 && segments[j - 1].side == Side::Target)
                .ok_or(lost)?;
            cursor.target_next = end_of(segments, j - 1).unwrap_or(cursor.target_next);
            cursor.delta = delta(&segments[j]);
            (j, true)
        }
    };
    loop {
        let Some(end) = end_of(segments, k) else {
            return Ok(Aligned {
                cursor,
                fresh,
                limit: None,
            });
        };
        if cursor.source_next > end {
            return Err(AlignError::PastEnd {
                source_next: cursor.source_next,
                end,
            });
        }
        let next = (k + 1..segments.len()).find(|&j| segments[j].side == Side::Source);
        match next {
            Some(j) if cursor.source_next == end => {
                let s = segments[j];
                let before = j - 1;
                if segments[before].side == Side::Target {
                    cursor.target_next = end_of(segments, before).unwrap_or(cursor.target_next);
                }
                cursor.source_next = s.physical_start;
                cursor.delta = delta(&s);
                fresh = true;
                k = j;
            }
            _ => {
                return Ok(Aligned {
                    cursor,
                    fresh,
                    limit: Some(end),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(side: Side, physical_start: i64, virtual_start: i64) -> Segment {
        Segment::new(side, physical_start, virtual_start)
    }

    fn at(source_next: i64, target_next: i64, delta: i64) -> Cursor {
        Cursor {
            source_next,
            target_next,
            sequence: 7,
            delta,
        }
    }

    #[test]
    fn an_open_source_segment_is_mirrored_without_limit() {
        let map = [seg(Side::Source, 0, 0)];
        let aligned = align(at(40, 40, 0), &map).unwrap();
        assert_eq!(
            aligned,
            Aligned {
                cursor: at(40, 40, 0),
                fresh: false,
                limit: None
            }
        );
    }

    #[test]
    fn writes_on_the_target_stop_the_copy_at_the_source_end() {
        let map = [seg(Side::Source, 0, 0), seg(Side::Target, 100, 100)];
        assert_eq!(align(at(60, 60, 0), &map).unwrap().limit, Some(100));
        let done = align(at(100, 100, 0), &map).unwrap();
        assert_eq!(
            done,
            Aligned {
                cursor: at(100, 100, 0),
                fresh: false,
                limit: Some(100)
            }
        );
    }

    #[test]
    fn after_a_rollback_the_copy_goes_on_after_the_target_segment() {
        // Source 0..100 copied to target 0..100; the target took 30 live
        // writes (100..130); the source writes again from its end 100,
        // virtual 130.
        let map = [
            seg(Side::Source, 0, 0),
            seg(Side::Target, 100, 100),
            seg(Side::Source, 100, 130),
        ];
        let aligned = align(at(100, 100, 0), &map).unwrap();
        assert_eq!(
            aligned,
            Aligned {
                cursor: at(100, 130, 30),
                fresh: true,
                limit: None
            }
        );
        // Once under way in the new segment it is no longer fresh.
        let later = align(at(120, 150, 30), &map).unwrap();
        assert_eq!(
            later,
            Aligned {
                cursor: at(120, 150, 30),
                fresh: false,
                limit: None
            }
        );
    }

    #[test]
    fn a_copy_short_of_a_closed_segment_finishes_it_first() {
        let map = [
            seg(Side::Source, 0, 0),
            seg(Side::Target, 100, 100),
            seg(Side::Source, 100, 130),
        ];
        let aligned = align(at(80, 80, 0), &map).unwrap();
        assert_eq!(aligned.limit, Some(100));
        assert!(!aligned.fresh);
    }

    #[test]
    fn an_empty_target_segment_between_keeps_the_target_position() {
        // Switched to the target and straight back: the empty target
        // segment was dropped, the source resumes at its end.
        let map = [seg(Side::Source, 0, 0), seg(Side::Source, 100, 100)];
        let aligned = align(at(100, 100, 0), &map).unwrap();
        assert_eq!(aligned.cursor, at(100, 100, 0));
        assert_eq!(aligned.limit, None);
    }

    #[test]
    fn two_round_trips_land_in_the_last_source_segment() {
        let map = [
            seg(Side::Source, 0, 0),
            seg(Side::Target, 100, 100),
            seg(Side::Source, 100, 130),
            seg(Side::Target, 130, 160),
            seg(Side::Source, 160, 200),
        ];
        let aligned = align(at(100, 100, 0), &map).unwrap();
        // Finishes segment 2 first (100..130 on the source), then jumps.
        assert_eq!(aligned.cursor, at(100, 130, 30));
        assert_eq!(aligned.limit, Some(130));
        let jumped = align(at(130, 160, 30), &map).unwrap();
        assert_eq!(
            jumped,
            Aligned {
                cursor: at(160, 170, 40),
                fresh: true,
                limit: None
            }
        );
    }

    #[test]
    fn back_on_the_source_after_the_history_was_served_from_the_target() {
        // At target the history 0..100 was read from the target (the map
        // became all target); back on the source, it writes from its end.
        let map = [seg(Side::Target, 0, 0), seg(Side::Source, 100, 140)];
        let aligned = align(at(100, 100, 0), &map).unwrap();
        assert_eq!(
            aligned,
            Aligned {
                cursor: at(100, 140, 40),
                fresh: true,
                limit: None
            }
        );
    }

    #[test]
    fn positions_off_the_map_are_refused() {
        let map = [seg(Side::Source, 0, 0), seg(Side::Target, 100, 100)];
        assert!(matches!(
            align(at(10, 10, 5), &map),
            Err(AlignError::Lost { .. })
        ));
        assert!(matches!(
            align(at(101, 101, 0), &map),
            Err(AlignError::PastEnd {
                source_next: 101,
                end: 100
            })
        ));
    }
}
