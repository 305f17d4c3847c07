//! The one thing a client request asks of the control plane: that the
//! target coordinate a consumer group first seen once its topics are all in
//! `target` (`group_adopt`). The request path (`groups`) reads the
//! JoinGroup's subscription here and calls [`GroupAdoption`], which the
//! composition root installs in `Shared`, so it does not import the group
//! administration it would otherwise reach into.

use std::collections::BTreeSet;

use cutover_kafka::RequestHeader;
use futures::future::BoxFuture;

use super::Shared;
use super::observe::Reader;

/// Adoption of new groups by the target, as the request path sees it.
pub(super) trait GroupAdoption: Send + Sync {
    /// Makes the target coordinate `group` if it is new and every topic in
    /// `topics` is in `target`; resolves to whether it does now.
    fn adopt_if_new<'a>(
        &'a self,
        shared: &'a Shared,
        group: &'a str,
        topics: BTreeSet<String>,
    ) -> BoxFuture<'a, bool>;
}

/// The topics a JoinGroup's members subscribe to, from every protocol's
/// consumer subscription (`None` when it is not a consumer group or does
/// not parse).
#[must_use]
pub(super) fn subscribed_topics(frame: &[u8], header: &RequestHeader) -> Option<BTreeSet<String>> {
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
