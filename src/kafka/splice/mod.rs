//! The routing view both planes share (DESIGN.md §2 Kafka, the offset
//! splice): the control plane publishes it (switches, group moves), the
//! data plane reads it per request. Modules here import only `cluster`
//! and `partition_key`.
//!
//! - `segments`: a partition's append-only segment map and the
//!   virtual ↔ physical offset translations;
//! - `routing`: the live splice of one migration: every segment map, the
//!   per-partition produce fences, group homes, persisted in the store;
//! - `gate`: wait out the requests in flight on a key and hold new ones;
//! - `published`: a map read without a lock, copied when a key is added;
//! - `split`: where one partition's part of a request goes;
//! - `translate`: a target-coordinated group's committed offsets between
//!   virtual and target-physical;
//! - `history`: where the history copy put a partition's source records on
//!   the target (runs across the gaps Produce cannot keep).

pub(crate) mod gate;
// Used by the copier (issue 16, step 5).
#[allow(dead_code)]
pub(crate) mod history;
mod published;
pub(crate) mod routing;
pub(crate) mod segments;
pub(crate) mod split;
pub(crate) mod translate;
