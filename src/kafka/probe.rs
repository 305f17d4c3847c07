//! One request, one response, on a fresh connection the proxy opens itself:
//! the start-up Metadata probe that learns the source's brokers, and the
//! ApiVersions probe behind the `target_reachable` check.

use std::time::Duration;

use bytes::BytesMut;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{FrameError, decode_response_body, encode_request, next_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{Upstream, UpstreamError};

/// A probe failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProbeError {
    /// No connection.
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    /// The exchange failed on the wire.
    #[error("cluster \"{cluster}\": {reason}")]
    Exchange {
        /// Cluster name.
        cluster: String,
        /// What went wrong.
        reason: String,
    },
}

/// Client id the proxy's own requests carry, so broker logs tell them apart.
const CLIENT_ID: &str = "cutover";
/// Metadata v4: non-flexible, understood by every broker since Kafka 1.0,
/// and an empty topic list means "brokers only".
const METADATA_VERSION: i16 = 4;
/// ApiVersions v0 has no body fields, so any broker answers it.
const API_VERSIONS_VERSION: i16 = 0;

/// The source's brokers as `(node_id, "host:port")`, sorted by node id.
///
/// # Errors
/// [`ProbeError`] when the cluster cannot be reached or answers nonsense
/// within `deadline`.
pub(super) async fn brokers(
    upstream: &Upstream,
    deadline: Duration,
    max_frame: usize,
) -> Result<Vec<(i32, String)>, ProbeError> {
    let request = MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .with_allow_auto_topic_creation(false);
    let response: MetadataResponse = exchange(
        upstream,
        ApiKey::Metadata,
        METADATA_VERSION,
        &request,
        deadline,
        max_frame,
    )
    .await?;
    let mut brokers: Vec<_> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    brokers.sort();
    Ok(brokers)
}

/// The cluster's ApiVersions answer.
///
/// # Errors
/// [`ProbeError`] when the cluster cannot be reached or answers nonsense
/// within `deadline`.
pub(super) async fn api_versions(
    upstream: &Upstream,
    deadline: Duration,
    max_frame: usize,
) -> Result<ApiVersionsResponse, ProbeError> {
    exchange(
        upstream,
        ApiKey::ApiVersions,
        API_VERSIONS_VERSION,
        &ApiVersionsRequest::default(),
        deadline,
        max_frame,
    )
    .await
}

/// One request at `version` on a fresh connection, its answer decoded.
///
/// # Errors
/// [`ProbeError`] when the cluster cannot be reached or answers nonsense
/// within `deadline`.
pub(super) async fn exchange<Req: Encodable, Resp: Decodable>(
    upstream: &Upstream,
    key: ApiKey,
    version: i16,
    request: &Req,
    deadline: Duration,
    max_frame: usize,
) -> Result<Resp, ProbeError> {
    let failed = |reason: String| ProbeError::Exchange {
        cluster: upstream.cluster.to_string(),
        reason,
    };
    let work = async {
        let mut stream = upstream.connect().await?;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let frame = encode_request(&header, request).map_err(|e| failed(e.to_string()))?;
        stream
            .write_all(&frame)
            .await
            .map_err(|e| failed(format!("sending {key:?}: {e}")))?;
        stream.flush().await.map_err(|e| failed(e.to_string()))?;
        let mut buf = BytesMut::with_capacity(8 * 1024);
        loop {
            match next_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    return decode_response_body(&frame, key as i16, version)
                        .map_err(|e: FrameError| failed(e.to_string()));
                }
                Ok(None) => {}
                Err(e) => return Err(failed(e.to_string())),
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| failed(format!("reading the {key:?} answer: {e}")))?;
            if n == 0 {
                return Err(failed(format!(
                    "closed the connection before answering {key:?}"
                )));
            }
        }
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| failed(format!("no {key:?} answer within {deadline:?}")))?
}
