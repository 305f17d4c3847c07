//! After a restart, routing is made to agree with the persisted states.
//!
//! A transition persists its switches and group moves in `prepare`, and
//! the new state only when it commits; `ctl shift` persists the shifted
//! set before switching. A crash in between leaves the segment maps ahead
//! of (or behind) what the state says. Nothing is lost either way, since
//! routing follows the maps, but the state is the operator's word: so once
//! started, the proxy switches every partition to where its topic's state
//! puts it and moves back any group the target coordinates whose topics
//! are not all in `target`. Upstreams may still be starting, so each topic
//! is retried a bounded number of times.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use super::group_admin::fetch_all;
use super::group_move::move_group;
use super::moves;
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::migration::State;

const ATTEMPTS: u32 = 10;
const PAUSE: Duration = Duration::from_secs(3);

/// Reconciles every topic and moved group; logs what changed.
/// Holds `_transitions` (the migration's transition lock) throughout.
pub(crate) async fn run(shared: Arc<Shared>, _transitions: OwnedMutexGuard<()>) {
    for topic in shared.migration.topics() {
        let name = topic.name.to_string();
        // A copied partition switching to the target waits for its copy,
        // so the copy runs first.
        super::history::follow_state(&shared, &name, topic.state()).await;
        for attempt in 1..=ATTEMPTS {
            match moves::apply(&shared, &name, topic.state()).await {
                Ok(done) => {
                    if !done.is_empty() {
                        tracing::warn!(
                            migration = %shared.migration.name, topic = %name, state = topic.state().as_str(),
                            switched = ?done.iter().map(|s| s.partition).collect::<Vec<_>>(),
                            "partitions switched to agree with the persisted state (a transition or shift was interrupted)"
                        );
                    }
                    break;
                }
                Err(e) if attempt == ATTEMPTS => {
                    tracing::error!(migration = %shared.migration.name, topic = %name, error = %e, "could not reconcile the partitions with the persisted state; run `ctl shift` or a transition to retry");
                }
                Err(_) => tokio::time::sleep(PAUSE).await,
            }
        }
    }
    let moved = shared.splice.snapshot().moved_groups().clone();
    for group in moved {
        if let Err(e) = reconcile_group(&shared, &group).await {
            tracing::error!(migration = %shared.migration.name, group, error = %e, "could not reconcile the group's coordinator with the persisted states");
        }
    }
}

/// Moves `group` back to the source when a topic it committed on is not in `target`.
async fn reconcile_group(shared: &Shared, group: &str) -> Result<(), String> {
    let offsets = fetch_all(shared, Side::Target, group).await?;
    let behind: Vec<&str> = offsets
        .keys()
        .map(|(t, _)| t.as_str())
        .filter(|t| {
            shared
                .migration
                .topic(t)
                .is_some_and(|h| h.state() != State::Target)
        })
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        migration = %shared.migration.name, group, topics = ?behind,
        "moving the group back to the source: its topics are not all in target (a transition was interrupted)"
    );
    move_group(shared, group, Side::Source).await.map(|_| ())
}
