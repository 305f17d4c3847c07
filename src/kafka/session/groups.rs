//! Requests that belong to a coordinator: consumer-group APIs go to the
//! group's coordinator and transaction APIs to the transactional id's
//! coordinator, on the cluster that is home to group coordination (the
//! source until the splice moves it). Clients are told a *virtual*
//! coordinator (a stable hash of the key); the real one is remembered from
//! FindCoordinator answers, or asked for by the proxy when a client goes
//! straight to a coordinator it learnt before a proxy restart.

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatResponse,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::{RequestHeader, decode_response_body, request_header_version};

use super::group_offsets;
use super::relay::{Close, Out, Reply, Session, answer};
use crate::kafka::Shared;
use crate::kafka::adoption::subscribed_topics;
use crate::kafka::cluster::{CoordinatorKind, Side};
use crate::kafka::group_handoff;
use crate::kafka::observe::Reader;
use crate::kafka::rewrite;
use crate::kafka::splice::split::Dest;

/// The coordinator a request of `key` needs, and where its key sits.
enum KeyAt {
    /// The body's first string.
    First(CoordinatorKind),
    /// The first element of the body's leading string array.
    FirstOfArray,
    /// The body's second string (TxnOffsetCommit: transactional id, group).
    Second,
}

fn key_at(key: ApiKey) -> Option<KeyAt> {
    use CoordinatorKind::{Group, Transaction};
    Some(match key {
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::OffsetDelete => KeyAt::First(Group),
        ApiKey::DescribeGroups | ApiKey::DeleteGroups => KeyAt::FirstOfArray,
        ApiKey::TxnOffsetCommit => KeyAt::Second,
        ApiKey::InitProducerId
        | ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::EndTxn => KeyAt::First(Transaction),
        _ => return None,
    })
}

/// The coordinator key of a request: `(kind, key)`, or `None` when the
/// request has none (an InitProducerId without transactional id) or is
/// not a coordinator request.
#[must_use]
fn coordinator_key(frame: &[u8], header: &RequestHeader) -> Option<(CoordinatorKind, String)> {
    let at = key_at(header.key)?;
    let flexible = request_header_version(header.api_key, header.api_version) == Some(2);
    let mut r = Reader::new(frame.get(header.body_offset..)?, flexible);
    match at {
        KeyAt::First(kind) => Some((kind, r.string()??)),
        KeyAt::FirstOfArray => {
            r.array_len()?;
            Some((CoordinatorKind::Group, r.string()??))
        }
        KeyAt::Second => {
            r.string()?;
            Some((CoordinatorKind::Group, r.string()??))
        }
    }
}

/// Whether requests of `key` go to a coordinator.
#[must_use]
pub(crate) fn coordinated(key: ApiKey) -> bool {
    key_at(key).is_some()
}

/// Requests that read or write a group's committed offsets: a group's
/// move waits for them, since they decide what it carries over.
fn touches_offsets(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::OffsetCommit | ApiKey::OffsetFetch | ApiKey::TxnOffsetCommit | ApiKey::OffsetDelete
    )
}

/// Notes the member a group request names and plays the proxy's part in
/// a hand-off under way (see `group_handoff`): a heartbeat is answered
/// REBALANCE_IN_PROGRESS by the proxy itself, a JoinGroup waits until the
/// hand-off ends and then goes to whichever cluster coordinates the group.
async fn hand_off(
    session: &mut Session,
    group: &str,
    frame: &[u8],
    header: &RequestHeader,
) -> Result<Option<Reply>, Close> {
    let shared = session.shared.clone();
    let seen = group_handoff::member_of(frame, header);
    let member = match &seen {
        Some(group_handoff::MemberSeen::Alive(m, _)) => Some(m.clone()),
        _ => None,
    };
    if let Some(seen) = seen {
        shared.handoffs.heard(group, seen);
    }
    if !shared.handoffs.active(group) {
        if header.key == ApiKey::JoinGroup {
            adopt(&shared, group, frame, header).await;
        }
        return Ok(None);
    }
    match header.key {
        ApiKey::Heartbeat => {
            let body =
                HeartbeatResponse::default().with_error_code(group_handoff::REBALANCE_IN_PROGRESS);
            let out = rewrite::encode(
                ApiKey::Heartbeat,
                header.api_version,
                header.correlation_id,
                &body,
            )
            .map_err(|e| Close::internal_by("encoding a Heartbeat answer", e))?;
            Ok(Some(Box::pin(async move { Ok(Out::Frame(out)) })))
        }
        ApiKey::JoinGroup => {
            session.flush().await?;
            let home = shared.splice.group_home(group);
            shared.handoffs.hold_join(group, member.as_deref()).await;
            if shared.splice.group_home(group) == home {
                return Ok(None);
            }
            let Some(blank) = group_handoff::without_member_id(frame, header) else {
                return Ok(None);
            };
            if let Some(m) = &member {
                shared.handoffs.retire(group, m);
            }
            // Routed as a fresh request: the new coordinator never issued the old id.
            let peeked = cutover_kafka::peek_request(&blank)
                .map_err(|e| Close::internal_by("re-reading the JoinGroup it rebuilt", e))?;
            Box::pin(route(session, blank, &peeked)).await.map(Some)
        }
        _ => Ok(None),
    }
}

/// Kafka's INVALID_REQUEST error code: what a broker answers a request it
/// cannot serve ("sent to an incompatible broker").
const INVALID_REQUEST: i16 = 42;

/// Why a consumer of the new group protocol is refused, in its own words.
const CONSUMER_PROTOCOL_REFUSED: &str = "cutover does not support the consumer group protocol \
     (KIP-848, group.protocol=consumer) yet: set group.protocol=classic";

/// ConsumerGroupHeartbeat (KIP-848), answered by the proxy itself with
/// INVALID_REQUEST and [`CONSUMER_PROTOCOL_REFUSED`]. The group hand-off
/// between clusters makes classic members rejoin; a member of the new
/// protocol has its assignment computed and versioned by the coordinator
/// (member epochs), which the proxy cannot carry to the other cluster yet.
/// The key is advertised rather than left out so the client is refused
/// at its first heartbeat with this message: the Java client makes
/// INVALID_REQUEST fatal and shows the message (UNSUPPORTED_VERSION, or a
/// key not advertised, would be shown as the client's own "the cluster
/// does not support" text, which names neither cutover nor the way out).
pub(super) fn refuse_consumer_protocol(
    session: &Session,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    tracing::warn!(
        migration = %session.shared.migration.name,
        "a consumer asked for the consumer group protocol (KIP-848); refused: {CONSUMER_PROTOCOL_REFUSED}"
    );
    let body = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(INVALID_REQUEST)
        .with_error_message(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_REFUSED)))
        .with_member_epoch(-1);
    let out = rewrite::encode(
        ApiKey::ConsumerGroupHeartbeat,
        header.api_version,
        header.correlation_id,
        &body,
    )
    .map_err(|e| Close::internal_by("encoding a ConsumerGroupHeartbeat answer", e))?;
    Ok(Box::pin(async move { Ok(Out::Frame(out)) }))
}

/// Lets the target coordinate a new group whose topics are all in `target`
/// (see `group_adopt`); the source is asked about a group at most once
/// per subscription.
async fn adopt(shared: &Shared, group: &str, frame: &[u8], header: &RequestHeader) {
    if shared.splice.group_home(group) == Side::Target || !shared.any_topic_in_target() {
        return;
    }
    if let Some(topics) = subscribed_topics(frame, header) {
        shared.adoption.adopt_if_new(shared, group, topics).await;
    }
}

/// Forwards a coordinator request to the real coordinator on the cluster
/// that coordinates its key (its bootstrap endpoints when the request names
/// no key). A group's requests wait while the group moves; its offset
/// requests count in flight until answered, and are translated once the
/// target coordinates it (see `group_offsets`).
pub(super) async fn route(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let key = coordinator_key(&frame, header);
    if let Some((CoordinatorKind::Group, group)) = &key
        && let Some(reply) = hand_off(session, group, &frame, header).await?
    {
        return Ok(reply);
    }
    if header.key == ApiKey::EndTxn
        && let Some(reply) = super::txn::end_on_target(session, &frame, header).await?
    {
        return Ok(reply);
    }
    let inflight = match &key {
        Some((CoordinatorKind::Group, group)) => {
            let guard = session.shared.splice.groups.try_enter(group);
            let guard = match guard {
                Some(g) => g,
                None => {
                    session.flush().await?;
                    session.shared.splice.groups.enter(group).await
                }
            };
            touches_offsets(header.key).then_some(guard)
        }
        _ => None,
    };
    let home = match &key {
        Some((CoordinatorKind::Group, group)) => session.shared.splice.group_home(group),
        _ => session.shared.splice.home(),
    };
    let addr = match &key {
        Some((kind, key)) => coordinator(session, home, *kind, key).await?,
        None => None,
    };
    let dest = Dest {
        side: home,
        addr: addr.map(Into::into),
    };
    match (home, header.key, inflight) {
        (Side::Target, ApiKey::OffsetCommit, Some(guard)) => {
            group_offsets::commit(session, dest, frame, header, guard).await
        }
        (Side::Target, ApiKey::OffsetFetch, Some(guard)) => {
            group_offsets::fetch(session, dest, frame, header, guard).await
        }
        (_, _, guard) => {
            let rx = session
                .forward(home, dest.addr.as_deref(), &frame, true)
                .await?
                .ok_or_else(|| Close::internal("no answer expected"))?;
            let id = header.correlation_id;
            Ok(Box::pin(async move {
                let frame = answer(rx).await?;
                drop(guard);
                Ok(Out::Relabelled(frame, id))
            }))
        }
    }
}

/// The real coordinator's address, asking the cluster when unknown;
/// `None` (the bootstrap endpoints, which answer NOT_COORDINATOR and send
/// the client to FindCoordinator) when the cluster cannot say.
async fn coordinator(
    session: &mut Session,
    side: Side,
    kind: CoordinatorKind,
    key: &str,
) -> Result<Option<String>, Close> {
    if let Some(addr) = session.shared.layout(side).coordinator(kind, key) {
        return Ok(Some(addr.to_owned()));
    }
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(key.to_owned()))
        .with_key_type(match kind {
            CoordinatorKind::Group => 0,
            CoordinatorKind::Transaction => 1,
        });
    let found: FindCoordinatorResponse = session
        .call(&Dest::bootstrap(side), ApiKey::FindCoordinator, 1, &request)
        .await?;
    if found.error_code != 0 || found.node_id.0 < 0 {
        return Ok(None);
    }
    let addr = format!("{}:{}", found.host, found.port);
    session
        .shared
        .update_layout(side, |l| l.set_coordinator(kind, key, addr.clone()));
    Ok(Some(addr))
}

/// FindCoordinator: asked of the home cluster; the answer's real
/// coordinators are remembered and replaced by virtual ones.
pub(crate) async fn find_coordinator(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let home = find_home(&session.shared, &frame, header);
    let asked = asked_keys(&frame, header);
    let rx = session
        .forward(home, None, &frame, true)
        .await?
        .ok_or_else(|| Close::internal("no answer expected"))?;
    let shared = session.shared.clone();
    let (id, version) = (header.correlation_id, header.api_version);
    Ok(Box::pin(async move {
        let frame = answer(rx).await?;
        let failed = |e: cutover_kafka::FrameError| {
            Close::upstream_by(home, "its FindCoordinator answer", e)
        };
        let body: FindCoordinatorResponse =
            decode_response_body(&frame, ApiKey::FindCoordinator as i16, version)
                .map_err(failed)?;
        let Some(asked) = asked else {
            return Ok(Out::Relabelled(frame, id));
        };
        let out = rewrite::find_coordinator(
            body,
            version,
            id,
            &asked,
            &shared.advertised_host,
            &shared.brokers,
            &mut |kind, key, addr| {
                shared.update_layout(home, |l| l.set_coordinator(kind, key, addr.clone()));
            },
        )
        .map_err(failed)?;
        Ok(Out::Frame(out))
    }))
}

/// The cluster a FindCoordinator request is asked of: the target when
/// every group it names is coordinated there, else the source (a group
/// the target coordinates is then looked up there when its requests come).
fn find_home(shared: &Shared, frame: &[u8], header: &RequestHeader) -> Side {
    let keys = group_keys(frame, header).unwrap_or_default();
    if !keys.is_empty()
        && keys
            .iter()
            .all(|g| shared.splice.group_home(g) == Side::Target)
    {
        Side::Target
    } else {
        shared.splice.home()
    }
}

/// The group names a FindCoordinator request asks for (none for other kinds).
fn group_keys(frame: &[u8], header: &RequestHeader) -> Option<Vec<String>> {
    let v = header.api_version;
    let mut r = Reader::new(frame.get(header.body_offset..)?, v >= 3);
    if v < 4 {
        let key = r.string()??;
        let key_type = if v >= 1 { r.i8()? } else { 0 };
        return (key_type == 0).then(|| vec![key]);
    }
    if r.i8()? != 0 {
        return Some(Vec::new());
    }
    let n = r.array_len()?;
    let mut keys = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        keys.push(r.string()??);
    }
    Some(keys)
}

/// The kind a FindCoordinator request asks for, and its key in v0-3
/// (whose answers carry none); `None` for kinds the proxy does not route.
fn asked_keys(frame: &[u8], header: &RequestHeader) -> Option<rewrite::Asked> {
    let v = header.api_version;
    let mut r = Reader::new(frame.get(header.body_offset..)?, v >= 3);
    if v >= 4 {
        let kind = CoordinatorKind::from_key_type(r.i8()?)?;
        return Some(rewrite::Asked { kind, key: None });
    }
    let key = r.string()??;
    let key_type = if v >= 1 { r.i8()? } else { 0 };
    Some(rewrite::Asked {
        kind: CoordinatorKind::from_key_type(key_type)?,
        key: Some(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::kafka_protocol::messages::{
        DescribeGroupsRequest, GroupId, JoinGroupRequest, RequestHeader as KpHeader,
        TransactionalId, TxnOffsetCommitRequest,
    };
    use cutover_kafka::kafka_protocol::protocol::Encodable;
    use cutover_kafka::{encode_request, peek_request};

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let header = KpHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        encode_request(&header, body).unwrap()
    }

    fn key_of(frame: &Bytes) -> Option<(CoordinatorKind, String)> {
        coordinator_key(frame, &peek_request(frame).unwrap())
    }

    #[test]
    fn group_keys_are_read_at_flexible_and_classic_versions() {
        for version in [0, 5, 6, 9] {
            let body = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("orders-app")));
            assert_eq!(
                key_of(&frame(ApiKey::JoinGroup, version, &body)),
                Some((CoordinatorKind::Group, "orders-app".into())),
                "v{version}"
            );
        }
        let describe = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("g2"))]);
        assert_eq!(
            key_of(&frame(ApiKey::DescribeGroups, 5, &describe)),
            Some((CoordinatorKind::Group, "g2".into()))
        );
        let txn = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
            .with_group_id(GroupId(StrBytes::from_static_str("g3")));
        assert_eq!(
            key_of(&frame(ApiKey::TxnOffsetCommit, 3, &txn)),
            Some((CoordinatorKind::Group, "g3".into()))
        );
    }

    #[test]
    fn producer_ids_without_transactions_have_no_coordinator() {
        use cutover_kafka::kafka_protocol::messages::InitProducerIdRequest;
        let plain = InitProducerIdRequest::default().with_transactional_id(None);
        assert_eq!(key_of(&frame(ApiKey::InitProducerId, 4, &plain)), None);
        let txn = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t1"))));
        assert_eq!(
            key_of(&frame(ApiKey::InitProducerId, 4, &txn)),
            Some((CoordinatorKind::Transaction, "t1".into()))
        );
        assert!(!coordinated(ApiKey::Metadata));
    }
}
