//! What each protocol plugs into the controller: its readiness checks and
//! the traffic work around a transition (fence, drain, flip).

use async_trait::async_trait;

use super::machine::CheckResult;
use super::state::State;

/// A protocol's part in a transition of one topic.
///
/// Order for each accepted transition: [`Driver::checks`], then
/// [`Driver::prepare`], then the store commit, then the registry publish,
/// then [`Driver::applied`]. If the commit fails, [`Driver::aborted`] runs.
#[async_trait]
pub trait Driver: Send + Sync {
    /// Named readiness checks for moving `topic` from `from` to `to`.
    async fn checks(&self, topic: &str, from: State, to: State) -> Vec<CheckResult>;

    /// Prepares traffic for `to` without routing to it yet (e.g. fence
    /// writes and drain copies). An error aborts the transition.
    async fn prepare(&self, _topic: &str, _from: State, _to: State) -> Result<(), String> {
        Ok(())
    }

    /// The new state is durable and published; release what `prepare` held.
    async fn applied(&self, _topic: &str, _from: State, _to: State) {}

    /// The transition did not happen after `prepare` succeeded; undo it.
    async fn aborted(&self, _topic: &str, _from: State, _to: State) {}

    /// Protocol-specific live status of a topic for `ctl status` and the
    /// dashboard (copy backlog, backfill progress, ...).
    fn status(&self, _topic: &str) -> Option<serde_json::Value> {
        None
    }

    /// A protocol-specific operator action on a topic (Redis: `backfill`,
    /// `verify`), with JSON parameters and a JSON report.
    async fn action(
        &self,
        _topic: &str,
        action: &str,
        _params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        Err(format!("{action} is not available for this protocol"))
    }

    /// A protocol-specific operator action on the whole migration
    /// (RocketMQ: `metadata_plan`, `metadata_apply`), with JSON parameters
    /// and a JSON report.
    async fn migration_action(
        &self,
        action: &str,
        _params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        Err(format!("{action} is not available for this protocol"))
    }
}

/// Stands in while no protocol driver is installed (a listener that has
/// not started). It knows nothing, so its one check fails: no transition
/// goes ahead unforced on checks that never ran.
#[derive(Debug, Default)]
pub(crate) struct NotServed;

#[async_trait]
impl Driver for NotServed {
    async fn checks(&self, _topic: &str, _from: State, _to: State) -> Vec<CheckResult> {
        vec![CheckResult::fail(
            "protocol_served",
            "no protocol driver is running for this migration (its listener has not started), so no readiness check could run",
        )]
    }
}
