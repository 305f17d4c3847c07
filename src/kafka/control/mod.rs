//! The control plane: what `ctl` runs (checks, transitions, actions), the
//! switches and group moves that change routing, and the watches that run
//! beside the traffic. Modules here publish the routing view (`splice`:
//! segment maps, fences, group homes) and the clusters' layouts, and make
//! the proxy's own requests (`probe`, `retry`); they never import the data
//! plane (`session`).
//!
//! - `driver`: the Kafka driver `migration` calls: checks per transition,
//!   prepare/commit, the `migrate_metadata` action;
//! - `moves`: which partitions write to the target in each state, and the
//!   switches that get them there;
//! - `switch`: one partition's switch (fence, drain, end offset, persist);
//! - `splice_checks`: the checks before `target`, `shift`, the status;
//! - `reconcile`: after a restart, routing made to agree with the
//!   persisted states;
//! - `bypass` and `past_end`: writes that reach a cluster around the proxy;
//! - `topics`: the proxy's own requests about a topic (shape, configs,
//!   log ends, leaders);
//! - `group_admin`: the proxy's own requests about consumer groups;
//! - `group_move`: moving a group's coordination between clusters;
//! - `group_adopt`: the target coordinating a group new in `target`
//!   (installed as [`super::adoption::GroupAdoption`]);
//! - `history`: the history copy of each partition's source log onto the
//!   target (issue 16).

pub(crate) mod bypass;
pub(crate) mod driver;
mod group_admin;
pub(crate) mod group_adopt;
mod group_move;
pub(crate) mod history;
mod moves;
mod past_end;
pub(crate) mod reconcile;
mod splice_checks;
mod switch;
mod topics;
