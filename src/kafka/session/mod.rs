//! The data plane: one client connection and the per-API handlers it
//! dispatches to. Modules here read the routing view (`splice`), the
//! clusters' layouts (`cluster`) and `Shared`; they never import the
//! control plane (`control`): the one request that asks it for something
//! (a new group's adoption) goes through [`super::adoption`].
//!
//! Import order, with no cycle: `connection` → `dispatch` → the handlers →
//! `relay` → `link`.
//!
//! - `connection`: the connection loop: frames, login, admission, the
//!   bounded reply queue, the close reason;
//! - `dispatch`: which handler a request goes to;
//! - `relay`: the [`relay::Session`] handlers relay with: upstream links,
//!   correlation ids, the queued reply and the close it may end in;
//! - `link`: one upstream broker connection of one session;
//! - handlers: `metadata`, `produce`, `fetch`, `offsets` (ListOffsets) and
//!   `offsets_by_time` (by timestamp on a spliced partition),
//!   `delete_records`, `groups` (coordinator requests), `group_offsets`
//!   (OffsetCommit/OffsetFetch of a target-coordinated group), `txn`
//!   (transactions writing to the target);
//! - `hints`: KIP-951 leader hints stripped from answers and learnt;
//! - `traffic`: per-topic metrics and group lag from what a request holds;
//! - `walk`: single-pass reads of Produce and Fetch requests and answers
//!   for the paths that relay them untouched.

pub(crate) mod connection;
mod delete_records;
mod dispatch;
mod fetch;
mod group_offsets;
mod groups;
mod hints;
mod link;
mod metadata;
mod offsets;
mod offsets_by_time;
mod produce;
mod relay;
pub(crate) mod traffic;
mod txn;
mod walk;
