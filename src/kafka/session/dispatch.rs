//! Which handler a client request goes to. Requests that name partitions
//! are split by partition (Metadata, Produce, Fetch, ListOffsets,
//! DeleteRecords); those
//! that belong to a coordinator go to it; the answers that name brokers or
//! versions are rewritten; everything else goes to the source's bootstrap
//! endpoints, relabelled only.

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{ApiKey, DescribeClusterResponse};
use cutover_kafka::{RequestHeader, decode_response_body};

use super::delete_records;
use super::fetch;
use super::groups;
use super::metadata;
use super::offsets;
use super::produce;
use super::relay::{Close, Out, Reply, Session, answer};
use crate::kafka::observe;
use crate::kafka::rewrite;

pub(super) async fn route(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    observe_request(session, &frame, header);
    let reply = match header.key {
        ApiKey::Metadata => metadata::route(session, frame, header).await?,
        ApiKey::Produce => produce::route(session, frame, header).await?,
        ApiKey::Fetch => fetch::route(session, frame, header).await?,
        ApiKey::ListOffsets => offsets::route(session, frame, header).await?,
        ApiKey::DeleteRecords => delete_records::route(session, frame, header).await?,
        ApiKey::FindCoordinator => groups::find_coordinator(session, frame, header).await?,
        ApiKey::ConsumerGroupHeartbeat => groups::refuse_consumer_protocol(session, header)?,
        key if groups::coordinated(key) => groups::route(session, frame, header).await?,
        ApiKey::ApiVersions | ApiKey::DescribeCluster => rewritten(session, frame, header).await?,
        _ => {
            let home = session.shared.splice.home();
            let rx = session.forward(home, None, &frame, true).await?;
            let rx = rx.ok_or_else(|| Close::internal("no answer expected"))?;
            let id = header.correlation_id;
            Box::pin(async move { Ok(Out::Relabelled(answer(rx).await?, id)) })
        }
    };
    Ok(reply)
}

/// Records what the bypass checks need from the request (groups and
/// commits; Produce counts itself, see `produce`).
fn observe_request(session: &Session, frame: &Bytes, header: &RequestHeader) {
    if !observe::observed(header.key) {
        return;
    }
    let body = frame.get(header.body_offset..).unwrap_or_default();
    let seen = observe::parse(header.key, header.api_version, body);
    if !seen.commits.is_empty() {
        super::traffic::committed(&session.shared, &seen.commits);
    }
    session.shared.observed.request(seen);
}

/// ApiVersions and DescribeCluster: asked of the source, rewritten
/// (ApiVersions also narrowed to the target's versions). An
/// ApiVersions newer than the proxy implements is answered by the proxy
/// itself (KIP-511: UNSUPPORTED_VERSION in v0 form, with the versions it
/// does serve), so a client newer than the proxy negotiates down whatever
/// the broker would have made of it.
async fn rewritten(
    session: &mut Session,
    frame: Bytes,
    header: &RequestHeader,
) -> Result<Reply, Close> {
    if header.key == ApiKey::ApiVersions
        && let Some(refusal) =
            rewrite::api_versions_too_new(header.api_version, header.correlation_id)
    {
        let refusal = refusal.map_err(|e| Close::protocol_by("decoding the request", e))?;
        return Ok(Box::pin(async move { Ok(Out::Frame(refusal)) }));
    }
    let home = session.shared.splice.home();
    let rx = session.forward(home, None, &frame, true).await?;
    let rx = rx.ok_or_else(|| Close::internal("no answer expected"))?;
    let shared = session.shared.clone();
    let (key, id, version) = (header.key, header.correlation_id, header.api_version);
    Ok(Box::pin(async move {
        let failed = |e: cutover_kafka::FrameError| {
            Close::upstream_by(home, format!("its {key:?} answer"), e)
        };
        if key == ApiKey::ApiVersions {
            let (frame, target) = tokio::join!(answer(rx), shared.target_versions.rows(&shared));
            let frame = frame?;
            return Ok(
                match rewrite::api_versions(
                    &frame,
                    version,
                    id,
                    target.as_deref().map(Vec::as_slice),
                )
                .map_err(failed)?
                {
                    Some(out) => Out::Frame(out),
                    None => Out::Relabelled(frame, id),
                },
            );
        }
        let frame = answer(rx).await?;
        let body: DescribeClusterResponse =
            decode_response_body(&frame, key as i16, version).map_err(failed)?;
        let out =
            rewrite::describe_cluster(body, version, id, &shared.advertised_host, &shared.brokers)
                .map_err(failed)?;
        Ok(Out::Frame(out))
    }))
}
