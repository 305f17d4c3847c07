//! OffsetCommit and OffsetFetch of a group the target coordinates: the
//! request or answer is translated between the virtual offsets clients see
//! and the physical offsets the target group holds (the translation itself
//! is in `translate`, which the group moves of the control plane share).

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchResponse,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable};
use cutover_kafka::{RequestHeader, decode_request_body, decode_response_body};
use tokio::sync::oneshot;

use super::relay::{Close, Out, Reply, Session, answer, client_id};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::rewrite::encode;
use crate::kafka::splice::gate::Inflight;
use crate::kafka::splice::split::Dest;
use crate::kafka::splice::translate::{add_refused, commit_to_target, fetched_to_virtual};

/// OffsetCommit of a group the target coordinates, sent to `dest`.
pub(crate) async fn commit(
    session: &mut Session,
    dest: Dest,
    frame: Bytes,
    header: &RequestHeader,
    inflight: Inflight,
) -> Result<Reply, Close> {
    let mut request: OffsetCommitRequest = decode_request_body(&frame, header)
        .map_err(|e| Close::protocol_by("decoding the request", e))?;
    let shared = session.shared.clone();
    let refused = commit_to_target(&mut request, |t, p| shared.splice.map(t, p));
    if !refused.is_empty() {
        tracing::warn!(
            migration = %shared.migration.name, group = %request.group_id.0, ?refused,
            "commit of offsets inside source segments refused: the target coordinates this group and cannot hold them"
        );
    }
    let (id, version) = (header.correlation_id, header.api_version);
    let client = client_id(&frame, header);
    let rx = session
        .send(&dest, ApiKey::OffsetCommit, version, client, &request, true)
        .await?
        .ok_or_else(|| Close::internal("no answer expected"))?;
    let side = dest.side;
    Ok(Box::pin(async move {
        let answer = Answered {
            rx,
            side,
            inflight,
            key: ApiKey::OffsetCommit,
            version,
            id,
        };
        answer
            .rewritten(|r: &mut OffsetCommitResponse| add_refused(r, &refused))
            .await
    }))
}

/// OffsetFetch of a group the target coordinates, sent to `dest` unchanged.
pub(super) async fn fetch(
    session: &mut Session,
    dest: Dest,
    frame: Bytes,
    header: &RequestHeader,
    inflight: Inflight,
) -> Result<Reply, Close> {
    let rx = session
        .forward(dest.side, dest.addr.as_deref(), &frame, true)
        .await?
        .ok_or_else(|| Close::internal("no answer expected"))?;
    let shared: std::sync::Arc<Shared> = session.shared.clone();
    let (id, version) = (header.correlation_id, header.api_version);
    let side = dest.side;
    Ok(Box::pin(async move {
        let answer = Answered {
            rx,
            side,
            inflight,
            key: ApiKey::OffsetFetch,
            version,
            id,
        };
        answer
            .rewritten(|r: &mut OffsetFetchResponse| {
                fetched_to_virtual(r, |t, p| shared.splice.map(t, p));
            })
            .await
    }))
}

/// An upstream answer still to come for a counted offset request.
struct Answered {
    rx: oneshot::Receiver<super::link::Answer>,
    side: Side,
    inflight: Inflight,
    key: ApiKey,
    version: i16,
    id: i32,
}

impl Answered {
    /// The answer, once arrived (the request stops counting in flight),
    /// decoded, changed by `change` and encoded for the client.
    async fn rewritten<T: Decodable + Encodable>(
        self,
        change: impl FnOnce(&mut T),
    ) -> Result<Out, Close> {
        let frame = answer(self.rx).await?;
        drop(self.inflight);
        let key = self.key;
        let mut body: T = decode_response_body(&frame, key as i16, self.version)
            .map_err(|e| Close::upstream_by(self.side, format!("its {key:?} answer"), e))?;
        change(&mut body);
        let out = encode(key, self.version, self.id, &body)
            .map_err(|e| Close::internal_by(format!("encoding the {key:?} answer"), e))?;
        Ok(Out::Frame(out))
    }
}
