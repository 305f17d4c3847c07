//! What the migration core reports as it goes: topics becoming known,
//! their state changing, and every advance/rollback outcome. The core stays
//! free of any metrics system; the composition root (`app`) plugs in the
//! one that exports these as series.

use super::control::Outcome;
use super::registry::TopicHandle;
use super::state::Action;

/// Told of topic registrations, state changes and transition outcomes.
/// Calls come from the control plane (start-up, discovery, `ctl`), never
/// from a request's path.
pub trait Observer: Send + Sync {
    /// `topic` became known (at start or discovered from traffic); its
    /// current state is part of the news.
    fn registered(&self, topic: &TopicHandle);
    /// `topic`'s state or epoch changed.
    fn published(&self, topic: &TopicHandle);
    /// An advance or rollback of `topic` ended with `outcome`.
    fn transitioned(&self, topic: &TopicHandle, action: Action, outcome: &Outcome);
}

/// Reports nothing (unit tests, benchmarks of the core).
#[derive(Debug, Default)]
pub struct Unobserved;

impl Observer for Unobserved {
    fn registered(&self, _: &TopicHandle) {}
    fn published(&self, _: &TopicHandle) {}
    fn transitioned(&self, _: &TopicHandle, _: Action, _: &Outcome) {}
}
