//! The history copy (issue 16, docs/kafka-history-plan.md): mirroring each
//! partition's source log onto the target in virtual order, so that at
//! `target` the proxy no longer needs the source. Only the pure planning is
//! here so far; the copier, its progress, rate and gates follow.
//!
//! - `plan`: what one Fetch answer from the source becomes on the target
//!   (the read_committed filter, cuts at offset gaps, the copier's producer
//!   fields and sequences, the runs it extends).

// Used by the copier (issue 16, step 5).
#[allow(dead_code)]
mod plan;
