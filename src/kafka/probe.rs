//! The proxy's own requests. One request, one response, on a fresh
//! connection ([`exchange`]): the start-up Metadata probe that learns the
//! source's brokers, and the ApiVersions probe behind the
//! `target_reachable` check. A kept connection with requests pipelined
//! ([`Link`]): the history copy's reads and writes, where a fresh
//! connection and a round trip per request would cap the copy's rate.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    RequestHeader,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{FrameError, decode_response_body, encode_request, next_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{Stream, Upstream, UpstreamError};

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
    let work = async {
        let mut link = Link::open(upstream, deadline, max_frame).await?;
        link.send(key, version, request).await?;
        link.receive().await
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| ProbeError::Exchange {
            cluster: upstream.cluster.to_string(),
            reason: format!("no {key:?} answer within {deadline:?}"),
        })?
}

/// A connection of the proxy's own kept open, with requests pipelined:
/// Kafka answers a connection's requests in the order they were sent, so
/// [`Link::receive`] returns the answer to the oldest request still waiting.
pub(crate) struct Link {
    stream: Stream,
    cluster: String,
    buf: BytesMut,
    next_id: i32,
    /// Requests sent and not yet answered: correlation id, key, version.
    waiting: VecDeque<(i32, ApiKey, i16)>,
    deadline: Duration,
    max_frame: usize,
}

impl Link {
    /// Connects (and logs in) to `upstream`; `deadline` bounds the connect
    /// and each later wait for an answer.
    ///
    /// # Errors
    /// [`ProbeError`] when the cluster cannot be reached within `deadline`.
    pub(crate) async fn open(
        upstream: &Upstream,
        deadline: Duration,
        max_frame: usize,
    ) -> Result<Link, ProbeError> {
        let cluster = upstream.cluster.to_string();
        let stream = tokio::time::timeout(deadline, upstream.connect())
            .await
            .map_err(|_| ProbeError::Exchange {
                cluster: cluster.clone(),
                reason: format!("no connection within {deadline:?}"),
            })??;
        Ok(Link {
            stream,
            cluster,
            buf: BytesMut::with_capacity(64 * 1024),
            next_id: 1,
            waiting: VecDeque::new(),
            deadline,
            max_frame,
        })
    }

    fn failed(&self, reason: String) -> ProbeError {
        ProbeError::Exchange {
            cluster: self.cluster.clone(),
            reason,
        }
    }

    /// Sends one request without waiting for its answer.
    ///
    /// # Errors
    /// [`ProbeError`] when the request cannot be encoded or written; the
    /// link is then unusable.
    pub(crate) async fn send<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<(), ProbeError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let frame = encode_request(&header, request).map_err(|e| self.failed(e.to_string()))?;
        let write = async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.deadline, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.failed(format!("sending {key:?}: {e}"))),
            Err(_) => {
                return Err(
                    self.failed(format!("could not send {key:?} within {:?}", self.deadline))
                );
            }
        }
        self.waiting.push_back((id, key, version));
        Ok(())
    }

    /// The answer to the oldest request still waiting, decoded.
    ///
    /// # Errors
    /// [`ProbeError`] when nothing waits, the cluster closes the
    /// connection, answers out of order or nonsense, or not within the
    /// deadline; the link is then unusable.
    pub(crate) async fn receive<Resp: Decodable>(&mut self) -> Result<Resp, ProbeError> {
        let Some(&(id, key, version)) = self.waiting.front() else {
            return Err(self.failed("no request waits for an answer".into()));
        };
        let frame = match tokio::time::timeout(self.deadline, self.next_frame(key)).await {
            Ok(frame) => frame?,
            Err(_) => {
                return Err(self.failed(format!("no {key:?} answer within {:?}", self.deadline)));
            }
        };
        self.waiting.pop_front();
        let answered = cutover_kafka::response_correlation_id(&frame);
        if answered != Some(id) {
            return Err(self.failed(format!(
                "answered correlation id {answered:?} where {id} was next"
            )));
        }
        decode_response_body(&frame, key as i16, version)
            .map_err(|e: FrameError| self.failed(e.to_string()))
    }

    async fn next_frame(&mut self, key: ApiKey) -> Result<bytes::Bytes, ProbeError> {
        loop {
            match next_frame(&mut self.buf, self.max_frame) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(self.failed(e.to_string())),
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| self.failed(format!("reading the {key:?} answer: {e}")))?;
            if n == 0 {
                return Err(self.failed(format!("closed the connection before answering {key:?}")));
            }
        }
    }
}
