//! Groups that first appear once their topics are in `target`: a consumer
//! group created after the migration (a new service, a renamed group) has
//! nothing on the source to carry over, so the target coordinates it from
//! its first JoinGroup instead of the source: in `target` the source is
//! no longer contacted, and the group's offsets live where the records do.
//!
//! A group is adopted when every topic its members subscribe to (read from
//! the consumer protocol's subscription in JoinGroup) is a migration topic
//! in `target`, and it has no committed offset on the source. The source is
//! asked about a group once per subscription; a refusal is remembered.

use std::collections::BTreeSet;

use dashmap::DashMap;
use futures::future::BoxFuture;

use super::group_admin::fetch_all;
use crate::kafka::Shared;
use crate::kafka::adoption::GroupAdoption;
use crate::kafka::cluster::Side;
use crate::migration::State;

/// Groups already looked at, with the subscription they were looked at for.
#[derive(Debug, Default)]
pub(crate) struct Looked(DashMap<String, BTreeSet<String>>);

impl GroupAdoption for Looked {
    fn adopt_if_new<'a>(
        &'a self,
        shared: &'a Shared,
        group: &'a str,
        topics: BTreeSet<String>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(adopt_if_new(self, shared, group, topics))
    }
}

/// Makes the target coordinate `group` if it is new and every topic in
/// `topics` is in `target`; returns whether it does now.
async fn adopt_if_new(
    looked: &Looked,
    shared: &Shared,
    group: &str,
    topics: BTreeSet<String>,
) -> bool {
    if shared.splice.group_home(group) == Side::Target {
        return true;
    }
    let all_in_target = topics.iter().all(|t| {
        shared
            .migration
            .topic(t)
            .is_some_and(|h| h.state() == State::Target)
    });
    if !all_in_target || looked.0.get(group).is_some_and(|t| *t == topics) {
        return false;
    }
    looked.0.insert(group.to_owned(), topics.clone());
    match fetch_all(shared, Side::Source, group).await {
        Ok(offsets) if offsets.is_empty() => {}
        Ok(_) => return false,
        Err(e) => {
            tracing::warn!(migration = %shared.migration.name, group, error = %e, "could not tell whether a group is new; the source keeps coordinating it");
            return false;
        }
    }
    let _one_at_a_time = shared.switching.lock().await;
    match shared
        .persist_maps(&format!("the coordination of group {group}"), |all| {
            all.set_group_home(group, Side::Target);
        })
        .await
    {
        Ok(()) => {
            tracing::info!(migration = %shared.migration.name, group, ?topics, "new consumer group coordinated by the target");
            true
        }
        Err(e) => {
            tracing::warn!(migration = %shared.migration.name, group, error = %e, "the source keeps coordinating a new group");
            false
        }
    }
}
