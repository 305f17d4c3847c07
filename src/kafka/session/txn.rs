//! Transactions whose records go to the target. A transactional client
//! gets its producer id from the source's transaction coordinator (its
//! InitProducerId, AddOffsetsToTxn and EndTxn go there), but once a
//! partition writes to the target its transactional batches must be known
//! to the target's coordinator, which adds the partition to a transaction
//! itself when it verifies the batch (transaction version 2, KIP-890: Kafka
//! 4 clients on Kafka 4 clusters add partitions implicitly with Produce).
//!
//! So the proxy runs a transaction of its own on the target under the
//! client's transactional id: at the first transactional batch of a client
//! transaction (producer id and epoch: version 2 bumps the epoch at every
//! EndTxn) bound for the target, it asks the target's coordinator for that
//! id (InitProducerId, which also aborts whatever the proxy left open there)
//! and rewrites the batches to it (see `producers`). The client's EndTxn
//! first ends that transaction on the target the same way (commit or
//! abort) and only then goes to the source; a target that refuses makes
//! the client's EndTxn fail with its error, before the source ends anything.
//! A transaction that wrote only to the target is empty on the source,
//! where a commit is refused: it is aborted there instead (see
//! [`end_on_source`]).
//! A transaction that wrote to both clusters (possible only while
//! `dual_write` has switched some of its partitions) is thus ended on each
//! in turn: a `read_committed` reader never sees an aborted record, but may
//! see the target's part committed a moment before the source's.

use std::time::Duration;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TransactionalId,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::{RequestHeader, decode_request_body};

use super::relay::{Close, Out, Reply, Session};
use crate::kafka::cluster::{CoordinatorKind, Side};
use crate::kafka::retry;
use crate::kafka::rewrite;
use crate::kafka::splice::split::Dest;

/// How long the proxy keeps asking the target's coordinator while it
/// settles, well inside the client's request timeout.
const COORDINATOR_WAIT: Duration = Duration::from_secs(10);
/// CONCURRENT_TRANSACTIONS: the previous transaction's markers are still
/// being written; clients retry it, and so does the proxy.
const CONCURRENT_TRANSACTIONS: i16 = 51;
/// INVALID_TXN_STATE: what Kafka answers a commit of an empty transaction.
const INVALID_TXN_STATE: i16 = 48;
/// NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE: ask where it is again.
const COORDINATOR_MOVED: [i16; 2] = [16, 15];
/// The transaction timeout of the proxy's transactions on the target (the
/// Java client's default): one the client abandons is aborted by then.
const TRANSACTION_TIMEOUT_MS: i32 = 60_000;
/// InitProducerId v3: carries producer id and epoch (-1: a new producer).
const INIT_PRODUCER_ID_VERSION: i16 = 3;

/// The target's producer id and epoch for a transaction of `txn`, asked
/// of the target's coordinator for it.
pub(super) async fn begin_on_target(session: &mut Session, txn: &str) -> Result<(i64, i16), Close> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(txn.to_owned()))))
        .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let answer: InitProducerIdResponse = ask(
        session,
        Side::Target,
        txn,
        ApiKey::InitProducerId,
        INIT_PRODUCER_ID_VERSION,
        &request,
        |a: &InitProducerIdResponse| a.error_code,
    )
    .await?;
    if answer.error_code != 0 {
        return Err(Close::upstream(
            Side::Target,
            format!(
                "it refused transactional id {txn} a producer id: {}; its transactional writes cannot move there",
                retry::describe(answer.error_code)
            ),
        ));
    }
    Ok((answer.producer_id.0, answer.producer_epoch))
}

/// A client's EndTxn: ends the proxy's transaction of the same id on the
/// target first, if one is open, then on the source. `None`: none is open
/// there, and the EndTxn goes to the source as any other.
pub(super) async fn end_on_target(
    session: &mut Session,
    frame: &Bytes,
    header: &RequestHeader,
) -> Result<Option<Reply>, Close> {
    let request: EndTxnRequest = decode_request_body(frame, header)
        .map_err(|e| Close::protocol_by("decoding the request", e))?;
    let txn = request.transactional_id.0.to_string();
    let Some((id, epoch)) = session.shared.producers.open_on_target(&txn) else {
        return Ok(None);
    };
    let ours = request
        .clone()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    let answer: EndTxnResponse = ask(
        session,
        Side::Target,
        &txn,
        ApiKey::EndTxn,
        header.api_version,
        &ours,
        |a: &EndTxnResponse| a.error_code,
    )
    .await?;
    if answer.error_code == 0 {
        session.shared.producers.closed_on_target(&txn);
        return end_on_source(session, request, header).await.map(Some);
    }
    tracing::warn!(
        migration = %session.shared.migration.name, transactional_id = %txn,
        committed = request.committed,
        "the target refused to end a transaction: {}; the client's EndTxn fails with it",
        retry::describe(answer.error_code)
    );
    let body = EndTxnResponse::default().with_error_code(answer.error_code);
    let out = rewrite::encode(
        ApiKey::EndTxn,
        header.api_version,
        header.correlation_id,
        &body,
    )
    .map_err(|e| Close::internal_by("encoding an EndTxn answer", e))?;
    Ok(Some(Box::pin(async move { Ok(Out::Frame(out)) })))
}

/// The client's EndTxn on the source, once the target's part has ended.
/// A transaction that wrote only to the target is empty on the source,
/// and Kafka refuses to commit an empty transaction (INVALID_TXN_STATE,
/// transaction version 2): it is aborted there instead, which changes
/// nothing on the source but ends its epoch as the client expects (the
/// answer carries the next one).
async fn end_on_source(
    session: &mut Session,
    request: EndTxnRequest,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    let txn = request.transactional_id.0.to_string();
    let version = header.api_version;
    let code = |a: &EndTxnResponse| a.error_code;
    let mut answer: EndTxnResponse = ask(
        session,
        Side::Source,
        &txn,
        ApiKey::EndTxn,
        version,
        &request,
        code,
    )
    .await?;
    if answer.error_code == INVALID_TXN_STATE && request.committed {
        let abort = request.with_committed(false);
        answer = ask(
            session,
            Side::Source,
            &txn,
            ApiKey::EndTxn,
            version,
            &abort,
            code,
        )
        .await?;
    }
    let out = rewrite::encode(ApiKey::EndTxn, version, header.correlation_id, &answer)
        .map_err(|e| Close::internal_by("encoding an EndTxn answer", e))?;
    Ok(Box::pin(async move { Ok(Out::Frame(out)) }))
}

/// Sends `request` to `side`'s coordinator of `txn`, asking again with
/// backoff (and finding the coordinator again when it moved) while the
/// answer's code is one that clears by itself (the previous transaction's
/// markers still being written, too), up to [`COORDINATOR_WAIT`]. The
/// last answer is returned, error or not.
async fn ask<Req, Resp>(
    session: &mut Session,
    side: Side,
    txn: &str,
    key: ApiKey,
    version: i16,
    request: &Req,
    code: impl Fn(&Resp) -> i16,
) -> Result<Resp, Close>
where
    Req: cutover_kafka::kafka_protocol::protocol::Encodable,
    Resp: cutover_kafka::kafka_protocol::protocol::Decodable,
{
    let deadline = tokio::time::Instant::now() + COORDINATOR_WAIT;
    let mut backoff = Duration::from_millis(20);
    let mut find = false;
    loop {
        let dest = coordinator(session, side, txn, find).await?;
        let answer: Resp = session.call(&dest, key, version, request).await?;
        let c = code(&answer);
        let again = c == CONCURRENT_TRANSACTIONS || retry::is_waited_out(c);
        if !again || tokio::time::Instant::now() + backoff > deadline {
            return Ok(answer);
        }
        find = COORDINATOR_MOVED.contains(&c);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// `side`'s transaction coordinator of `txn`: remembered, or found
/// (always when `find`); its bootstrap endpoints while it has none.
async fn coordinator(
    session: &mut Session,
    side: Side,
    txn: &str,
    find: bool,
) -> Result<Dest, Close> {
    let kind = CoordinatorKind::Transaction;
    if !find && let Some(addr) = session.shared.layout(side).coordinator(kind, txn) {
        return Ok(Dest {
            side,
            addr: Some(addr.into()),
        });
    }
    let request = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(txn.to_owned()))
        .with_key_type(1);
    let found: FindCoordinatorResponse = session
        .call(&Dest::bootstrap(side), ApiKey::FindCoordinator, 1, &request)
        .await?;
    if found.error_code != 0 || found.node_id.0 < 0 {
        return Ok(Dest::bootstrap(side));
    }
    let addr = format!("{}:{}", found.host, found.port);
    session
        .shared
        .update_layout(side, |l| l.set_coordinator(kind, txn, addr.clone()));
    Ok(Dest {
        side,
        addr: Some(addr.into()),
    })
}
