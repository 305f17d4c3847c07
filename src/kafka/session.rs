//! One client connection paired with one upstream connection, both
//! directions pumped concurrently, frames forwarded as they arrive.
//!
//! Correlation ids are not remapped: the pairing is 1:1 and every request
//! goes to the same upstream, so the broker answers with the client's own
//! ids in request order, and a Produce with acks=0 simply gets no answer.
//! (Splitting requests across upstreams later brings a proxy id space;
//! `cutover_kafka::with_correlation_id` is ready for it.) The request side
//! remembers only the requests whose responses are rewritten, by
//! correlation id, so nothing waits for answers that never come.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::messages::ApiKey;
use cutover_kafka::{next_frame, peek_request, response_correlation_id};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::observe;
use super::rewrite::{needs_rewrite, rewrite};
use super::versions::admit;
use super::{Door, Shared};
use crate::metrics;
use crate::proxy::Stream;

/// Read buffer kept free before each read; frames larger than this grow
/// the buffer once their prefix is seen (`next_frame` reserves).
const READ_RESERVE: usize = 16 * 1024;

/// Why a connection ended (the `reason` label of `CONNECTIONS_CLOSED`).
enum Close {
    Client,
    Idle,
    Shutdown,
    Protocol(String),
    Upstream(String),
}

/// What a response is awaited for: a rewrite, or confirming produce counts.
enum Pending {
    Rewrite(ApiKey, i16),
    Produced(Vec<(String, i32, u64)>),
}

type InFlight = Mutex<HashMap<i32, Pending>>;

pub(super) async fn run(
    shared: Arc<Shared>,
    door: Door,
    client: Stream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let name = shared.migration.name.to_string();
    let close = match connect(&shared, door).await {
        Ok((upstream, cluster)) => {
            let (client_r, client_w) = tokio::io::split(client);
            let (up_r, up_w) = tokio::io::split(upstream);
            let inflight = InFlight::default();
            tokio::select! {
                close = requests(&shared, &cluster, client_r, up_w, &inflight) => close,
                close = responses(&shared, &cluster, up_r, client_w, &inflight) => close,
                () = shutdown.cancelled() => Close::Shutdown,
            }
        }
        Err(reason) => Close::Upstream(reason),
    };
    let reason = match &close {
        Close::Client => "client",
        Close::Idle => "idle",
        Close::Shutdown => "shutdown",
        Close::Protocol(_) => "protocol_error",
        Close::Upstream(_) => "upstream",
    };
    metrics::counter!(metrics::CONNECTIONS_CLOSED, "migration" => name.clone(), "reason" => reason)
        .increment(1);
    match close {
        Close::Protocol(why) => {
            metrics::counter!(metrics::REQUEST_ERRORS, "migration" => name.clone(), "cluster" => "client", "kind" => "protocol")
                .increment(1);
            tracing::warn!(migration = %name, %peer, ?door, reason = %why, "closing kafka client connection");
        }
        Close::Upstream(why) => {
            tracing::warn!(migration = %name, %peer, ?door, reason = %why, "closing kafka client connection: upstream failed");
        }
        _ => {
            tracing::debug!(migration = %name, %peer, ?door, reason, "kafka client connection closed")
        }
    }
}

async fn connect(shared: &Shared, door: Door) -> Result<(Stream, String), String> {
    let upstream = shared.upstream_for(door)?;
    let stream = upstream.connect().await.map_err(|e| e.to_string())?;
    Ok((stream, upstream.cluster.to_string()))
}

/// Client → upstream: frame, peek, admit, remember rewrites, forward.
async fn requests(
    shared: &Shared,
    cluster: &str,
    mut client: impl AsyncRead + Unpin,
    mut upstream: impl AsyncWrite + Unpin,
    inflight: &InFlight,
) -> Close {
    let bytes = metrics::counter!(metrics::BYTES, "migration" => shared.migration.name.to_string(), "cluster" => cluster.to_owned(), "direction" => "to_upstream");
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    loop {
        loop {
            let frame = match next_frame(&mut buf, shared.max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Close::Protocol(e.to_string()),
            };
            let header = match peek_request(&frame) {
                Ok(h) => h,
                Err(e) => return Close::Protocol(e.to_string()),
            };
            if let Err(refused) = admit(header.key, header.api_version) {
                return Close::Protocol(format!(
                    "request with correlation id {}: {refused}",
                    header.correlation_id
                ));
            }
            let mut pending = needs_rewrite(header.key)
                .then_some(Pending::Rewrite(header.key, header.api_version));
            if observe::observed(header.key) {
                let body = frame.get(header.body_offset..).unwrap_or_default();
                let seen = observe::parse(header.key, header.api_version, body);
                let produced = shared.observed.request(seen);
                if !produced.is_empty() {
                    pending = Some(Pending::Produced(produced));
                }
            }
            if let Some(pending) = pending {
                inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(header.correlation_id, pending);
            }
            if let Err(e) = upstream.write_all(&frame).await {
                return Close::Upstream(format!("writing to the broker: {e}"));
            }
            bytes.increment(frame.len() as u64);
        }
        if let Err(e) = upstream.flush().await {
            return Close::Upstream(format!("writing to the broker: {e}"));
        }
        buf.reserve(READ_RESERVE);
        match tokio::time::timeout(shared.idle_timeout, client.read_buf(&mut buf)).await {
            Err(_) => return Close::Idle,
            Ok(Ok(0)) => return Close::Client,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Close::Client,
        }
    }
}

/// Upstream → client: frame, rewrite the remembered ones, forward.
async fn responses(
    shared: &Arc<Shared>,
    cluster: &str,
    mut upstream: impl AsyncRead + Unpin,
    mut client: impl AsyncWrite + Unpin,
    inflight: &InFlight,
) -> Close {
    let bytes = metrics::counter!(metrics::BYTES, "migration" => shared.migration.name.to_string(), "cluster" => cluster.to_owned(), "direction" => "to_client");
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    loop {
        loop {
            let frame = match next_frame(&mut buf, shared.max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Close::Upstream(format!("broker response: {e}")),
            };
            let frame = match rewritten(shared, frame, inflight).await {
                Ok(frame) => frame,
                Err(reason) => return Close::Upstream(reason),
            };
            if client.write_all(&frame).await.is_err() {
                return Close::Client;
            }
            bytes.increment(frame.len() as u64);
        }
        if client.flush().await.is_err() {
            return Close::Client;
        }
        buf.reserve(READ_RESERVE);
        match upstream.read_buf(&mut buf).await {
            Ok(0) => return Close::Upstream("the broker closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Close::Upstream(format!("reading from the broker: {e}")),
        }
    }
}

async fn rewritten(
    shared: &Arc<Shared>,
    frame: Bytes,
    inflight: &InFlight,
) -> Result<Bytes, String> {
    let Some(pending) = response_correlation_id(&frame).and_then(|id| {
        inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
    }) else {
        return Ok(frame);
    };
    let (key, version) = match pending {
        Pending::Rewrite(key, version) => (key, version),
        Pending::Produced(produced) => {
            shared.observed.answered(&produced);
            return Ok(frame);
        }
    };
    let out = rewrite(
        &frame,
        key,
        version,
        &shared.advertised_host,
        &mut |node_id, host, port| shared.door_port(node_id, host, port),
    )
    .map_err(|e| format!("{key:?} v{version} response: {e}"))?;
    if !out.topics.is_empty() {
        shared.discover(&out.topics).await;
    }
    Ok(out.frame)
}
