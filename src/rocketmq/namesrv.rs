//! The NameServer facade: one client connection at the migration's
//! `listen`. Route (105) and cluster-info (106) requests are answered from
//! both clusters' NameServers merged per the topic's state; every other
//! request is relayed to the source's NameServer and its answer relayed back.
//!
//! With `rocketmq.accounts_file`, each request's signature is checked
//! first ([`super::acl`]); a refused one is answered `NO_PERMISSION` and the
//! connection closes before any NameServer is asked.
//!
//! Requests are served in turn on each connection (NameServers answer in
//! milliseconds, and a client polls routes every 30 s), with one lazily
//! opened connection per upstream NameServer kept for the client's lifetime.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cutover_rocketmq::{
    Frame, Header, RequestCode, ResponseCode, TopicRouteData, encode, split_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::endpoints::Side;
use super::route::{self, Plan};
use super::rpc::{Conn, RpcError};
use crate::metrics;
use crate::proxy::Stream;

const READ_RESERVE: usize = 8 * 1024;

/// Lazily opened connections to both NameServers.
struct Upstreams {
    source: Option<Conn>,
    target: Option<Conn>,
}

impl Upstreams {
    async fn conn(&mut self, shared: &Shared, side: Side) -> Result<&mut Conn, RpcError> {
        let slot = match side {
            Side::Source => &mut self.source,
            Side::Target => &mut self.target,
        };
        if slot.is_none() {
            *slot = Some(Conn::open(shared.nameserver(side), shared.max_frame).await?);
        }
        Ok(slot.as_mut().expect("just opened"))
    }

    /// Sends a copy of `request` (re-encoded as JSON under a fresh opaque) to
    /// `side` and returns the answer; a failed connection is dropped so the
    /// next request reconnects.
    async fn ask(
        &mut self,
        shared: &Shared,
        side: Side,
        request: &Header,
    ) -> Result<Frame, RpcError> {
        let conn = self.conn(shared, side).await?;
        let result = conn
            .call(request.clone(), &[], shared.upstream_timeout)
            .await;
        if result.is_err() {
            match side {
                Side::Source => self.source = None,
                Side::Target => self.target = None,
            }
        }
        result
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    mut client: Stream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let name = shared.migration.name.to_string();
    let mut upstreams = Upstreams {
        source: None,
        target: None,
    };
    let accounts = super::acl::accounts(&name);
    let mut admitted = false;
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    let reason = 'conn: loop {
        loop {
            let frame = match split_frame(&mut buf, shared.max_frame)
                .and_then(|raw| raw.map(Frame::parse).transpose())
            {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    protocol_error(&shared, peer, &e.to_string());
                    break 'conn "protocol_error";
                }
            };
            if frame.header.is_response() {
                continue;
            }
            // Checked here too, so a refused client reaches no NameServer:
            // with accounts configured, only signed clients get routes.
            if let Some(accounts) = &accounts {
                if let Err(answer) =
                    super::acl::check_client(accounts, &name, peer, &frame, admitted).await
                {
                    if !frame.header.is_oneway() {
                        let _ = client.write_all(&answer).await;
                    }
                    break 'conn "auth";
                }
                admitted = true;
            }
            if let Some(answer) = serve(&shared, &mut upstreams, &frame).await
                && client.write_all(&answer).await.is_err()
            {
                break 'conn "client";
            }
        }
        buf.reserve(READ_RESERVE);
        tokio::select! {
            () = shutdown.cancelled() => break "shutdown",
            read = tokio::time::timeout(shared.idle_timeout, client.read_buf(&mut buf)) => match read {
                Err(_) => break "idle",
                Ok(Ok(0) | Err(_)) => break "client",
                Ok(Ok(_)) => {}
            },
        }
    };
    close(&name, reason);
}

fn protocol_error(shared: &Shared, peer: SocketAddr, why: &str) {
    let name = shared.migration.name.to_string();
    metrics::counter!(metrics::REQUEST_ERRORS, "migration" => name.clone(), "cluster" => "client", "kind" => "protocol")
        .increment(1);
    tracing::warn!(migration = %name, %peer, reason = %why, "closing rocketmq nameserver client connection");
}

fn close(name: &str, reason: &'static str) {
    metrics::counter!(metrics::CONNECTIONS_CLOSED, "migration" => name.to_owned(), "reason" => reason)
        .increment(1);
}

/// The answer to one client request, or `None` for a one-way request.
async fn serve(shared: &Arc<Shared>, upstreams: &mut Upstreams, frame: &Frame) -> Option<Bytes> {
    let header = &frame.header;
    let answer = match header.code {
        RequestCode::GET_ROUTEINFO_BY_TOPIC => route_info(shared, upstreams, header).await,
        RequestCode::GET_BROKER_CLUSTER_INFO => cluster_info(shared, upstreams, header).await,
        _ => return forward(shared, upstreams, frame).await,
    };
    let (head, body) = answer;
    match encode(&head, &body, frame.encoding) {
        Ok(out) => Some(out),
        Err(e) => {
            let remark = format!("cutover could not encode the answer: {e}");
            let head = Header::response(ResponseCode::SYSTEM_ERROR, header.opaque, Some(remark));
            encode(&head, &[], frame.encoding).ok()
        }
    }
}

fn error(opaque: i32, remark: String) -> (Header, Vec<u8>) {
    (
        Header::response(ResponseCode::SYSTEM_ERROR, opaque, Some(remark)),
        Vec::new(),
    )
}

/// What a side says about a topic's route: the route, no such topic, or an error.
enum SideRoute {
    Found(TopicRouteData),
    Missing(Header),
    Failed(String),
    NotAsked,
}

async fn ask_route(
    shared: &Shared,
    upstreams: &mut Upstreams,
    side: Side,
    request: &Header,
) -> SideRoute {
    match upstreams.ask(shared, side, request).await {
        Err(e) => SideRoute::Failed(e.to_string()),
        Ok(answer) if answer.header.code == ResponseCode::SUCCESS => {
            match TopicRouteData::decode(&answer.body) {
                Ok(route) => SideRoute::Found(route),
                Err(e) => SideRoute::Failed(format!("cluster \"{}\": {e}", shared.cluster(side))),
            }
        }
        Ok(answer) if answer.header.code == ResponseCode::TOPIC_NOT_EXIST => {
            SideRoute::Missing(answer.header)
        }
        Ok(answer) => SideRoute::Failed(format!(
            "cluster \"{}\" answered code {}: {}",
            shared.cluster(side),
            answer.header.code,
            answer.header.remark.unwrap_or_default()
        )),
    }
}

async fn route_info(
    shared: &Arc<Shared>,
    upstreams: &mut Upstreams,
    request: &Header,
) -> (Header, Vec<u8>) {
    let opaque = request.opaque;
    let Some(topic) = request.ext("topic").map(str::to_owned) else {
        return error(opaque, "GET_ROUTEINFO_BY_TOPIC without a topic".into());
    };
    let plan = shared.plan(&topic).await;
    let mut answers = Vec::new();
    for side in [Side::Source, Side::Target] {
        let need = plan.need(side);
        let answer = if need.mask == 0 {
            SideRoute::NotAsked
        } else {
            ask_route(shared, upstreams, side, request).await
        };
        if need.required {
            if let SideRoute::Failed(why) = &answer {
                return error(opaque, format!("cutover: route of {topic}: {why}"));
            }
        } else if let SideRoute::Failed(why) = &answer {
            tracing::warn!(migration = %shared.migration.name, %topic, side = side.as_str(), error = %why,
                "route answered without this cluster");
        }
        answers.push(answer);
    }
    let mut missing = None;
    let mut routes = answers.into_iter().map(|a| match a {
        SideRoute::Found(r) => Some(r),
        SideRoute::Missing(h) => {
            missing.get_or_insert(h);
            None
        }
        _ => None,
    });
    let (source, target) = (routes.next().flatten(), routes.next().flatten());
    let name = |side: Side, real: &str| shared.virtual_name(side, real);
    let mut addr = |side: Side, broker: &str, real: &str| shared.endpoint_addr(side, broker, real);
    match route::merge_route(plan, source, target, &name, &mut addr) {
        Err(e) => error(opaque, format!("cutover: route of {topic}: {e}")),
        Ok(Some(merged)) => {
            count_route(shared, &topic, plan);
            let mut head = Header::response(ResponseCode::SUCCESS, opaque, None);
            head.language = cutover_rocketmq::Language::RUST;
            (head, merged.encode())
        }
        Ok(None) => {
            let remark = missing.and_then(|h| h.remark).unwrap_or_else(|| {
                format!("No topic route info in name server for the topic: {topic}")
            });
            (
                Header::response(ResponseCode::TOPIC_NOT_EXIST, opaque, Some(remark)),
                Vec::new(),
            )
        }
    }
}

fn count_route(shared: &Shared, topic: &str, plan: Plan) {
    if let Plan::Migrated(_) = plan {
        metrics::counter!(metrics::ROCKETMQ_ROUTES, "migration" => shared.migration.name.to_string(), "topic" => topic.to_owned())
            .increment(1);
    }
}

async fn cluster_info(
    shared: &Arc<Shared>,
    upstreams: &mut Upstreams,
    request: &Header,
) -> (Header, Vec<u8>) {
    let opaque = request.opaque;
    let mut infos = Vec::new();
    for side in [Side::Source, Side::Target] {
        let info = match upstreams.ask(shared, side, request).await {
            Ok(a) if a.header.code == ResponseCode::SUCCESS => {
                cutover_rocketmq::ClusterInfo::decode(&a.body).map_err(|e| e.to_string())
            }
            Ok(a) => Err(format!(
                "cluster \"{}\" answered code {}",
                shared.cluster(side),
                a.header.code
            )),
            Err(e) => Err(e.to_string()),
        };
        match info {
            Ok(i) => infos.push(Some(i)),
            Err(why) if side == Side::Source => {
                return error(opaque, format!("cutover: cluster info: {why}"));
            }
            Err(why) => {
                tracing::warn!(migration = %shared.migration.name, error = %why, "cluster info answered without the target");
                infos.push(None);
            }
        }
    }
    let target = infos.pop().flatten();
    let source = infos.pop().flatten();
    let name = |side: Side, real: &str| shared.virtual_name(side, real);
    let mut addr = |side: Side, broker: &str, real: &str| shared.endpoint_addr(side, broker, real);
    match route::merge_cluster_info(source, target, &name, &mut addr) {
        Ok(merged) => (
            Header::response(ResponseCode::SUCCESS, opaque, None),
            merged.encode(),
        ),
        Err(e) => error(opaque, format!("cutover: cluster info: {e}")),
    }
}

/// Relays a request to the source's NameServer as the client sent it and
/// returns its answer untouched (same opaque).
async fn forward(shared: &Shared, upstreams: &mut Upstreams, frame: &Frame) -> Option<Bytes> {
    let header = &frame.header;
    let conn = match upstreams.conn(shared, Side::Source).await {
        Ok(c) => c,
        Err(e) => return reply_error(frame, e.to_string()),
    };
    if header.is_oneway() {
        if conn.send_oneway(&frame.raw).await.is_err() {
            upstreams.source = None;
        }
        return None;
    }
    match conn
        .call_raw(
            &frame.raw,
            header.code,
            header.opaque,
            shared.upstream_timeout,
        )
        .await
    {
        Ok(answer) => Some(answer.raw),
        Err(e) => {
            upstreams.source = None;
            reply_error(frame, e.to_string())
        }
    }
}

fn reply_error(frame: &Frame, why: String) -> Option<Bytes> {
    let head = Header::response(
        ResponseCode::SYSTEM_ERROR,
        frame.header.opaque,
        Some(format!("cutover: {why}")),
    );
    encode(&head, &[], frame.encoding).ok()
}
