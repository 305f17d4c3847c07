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

use cutover_kafka::RequestHeader;
use dashmap::DashMap;

use super::Shared;
use super::cluster::Side;
use super::group_admin::fetch_all;
use super::observe::Reader;
use crate::migration::State;

/// Groups already looked at, with the subscription they were looked at for.
#[derive(Debug, Default)]
pub struct Looked(DashMap<String, BTreeSet<String>>);

/// The topics a JoinGroup's members subscribe to, from every protocol's
/// consumer subscription (`None` when it is not a consumer group or does
/// not parse).
#[must_use]
pub fn subscribed_topics(frame: &[u8], header: &RequestHeader) -> Option<BTreeSet<String>> {
    let v = header.api_version;
    let mut r = Reader::new(frame.get(header.body_offset..)?, v >= 6);
    r.string()?;
    r.skip(if v >= 1 { 8 } else { 4 })?;
    r.string()?;
    if v >= 5 {
        r.string()?;
    }
    if r.string()?? != "consumer" {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..r.array_len()? {
        r.string()?;
        let metadata = r.bytes()?;
        if v >= 6 {
            r.tags()?;
        }
        // ConsumerProtocolSubscription: version, then the topic names.
        let mut m = Reader::new(metadata, false);
        m.i16()?;
        for _ in 0..m.array_len()? {
            topics.insert(m.string()??);
        }
    }
    (!topics.is_empty()).then_some(topics)
}

/// Makes the target coordinate `group` if it is new and every topic in
/// `topics` is in `target`; returns whether it does now.
pub(crate) async fn adopt_if_new(shared: &Shared, group: &str, topics: BTreeSet<String>) -> bool {
    if shared.splice.group_home(group) == Side::Target {
        return true;
    }
    let all_in_target = topics.iter().all(|t| {
        shared
            .migration
            .topic(t)
            .is_some_and(|h| h.state() == State::Target)
    });
    if !all_in_target || shared.looked.0.get(group).is_some_and(|t| *t == topics) {
        return false;
    }
    shared.looked.0.insert(group.to_owned(), topics.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use cutover_kafka::kafka_protocol::messages::{
        ApiKey, GroupId, JoinGroupRequest, RequestHeader as KpHeader,
    };
    use cutover_kafka::kafka_protocol::protocol::StrBytes;
    use cutover_kafka::{encode_request, peek_request};

    /// A ConsumerProtocolSubscription v1 naming `topics`.
    fn subscription(topics: &[&str]) -> bytes::Bytes {
        let mut b = vec![0, 1];
        b.extend_from_slice(&i32::try_from(topics.len()).unwrap().to_be_bytes());
        for t in topics {
            b.extend_from_slice(&i16::try_from(t.len()).unwrap().to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
        b.extend_from_slice(&0i32.to_be_bytes()); // no owned partitions
        b.into()
    }

    #[test]
    fn subscriptions_are_read_from_every_protocol_at_every_version() {
        for v in [0, 1, 5, 6, 9] {
            let body = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("fresh")))
                .with_member_id(StrBytes::from_static_str("m"))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(subscription(&["orders", "payments"])),
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("roundrobin"))
                        .with_metadata(subscription(&["orders"])),
                ]);
            let header = KpHeader::default()
                .with_request_api_key(ApiKey::JoinGroup as i16)
                .with_request_api_version(v);
            let frame = encode_request(&header, &body).unwrap();
            let topics = subscribed_topics(&frame, &peek_request(&frame).unwrap());
            assert_eq!(
                topics,
                Some(["orders".to_owned(), "payments".to_owned()].into()),
                "v{v}"
            );
            let connect = body.with_protocol_type(StrBytes::from_static_str("connect"));
            let frame = encode_request(&header, &connect).unwrap();
            assert_eq!(
                subscribed_topics(&frame, &peek_request(&frame).unwrap()),
                None
            );
        }
    }
}
