//! The consumer part of a client's HEART_BEAT body, which both the group
//! observations ([`super::observe`]) and the client table ([`super::seen`])
//! read: a leaf, so neither imports the other.

use serde::Deserialize;

/// A consumer group in a heartbeat body, with the topics it subscribes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConsumerData {
    pub(super) group_name: String,
    #[serde(default)]
    pub(super) subscription_data_set: Vec<Subscription>,
}

/// One subscription of a [`ConsumerData`].
#[derive(Deserialize)]
pub(super) struct Subscription {
    pub(super) topic: String,
}
