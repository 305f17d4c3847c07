//! One client connection to a broker endpoint, paired with one upstream
//! connection to the real broker; both directions are pumped concurrently,
//! so broker→client requests (transaction checks, rebalance notices,
//! running-info queries) reach the client, and a long-polled pull holds
//! nothing else up.
//!
//! Frames pass through with their opaque untouched. Only these change:
//! - on a target endpoint, the broker names clients use (suffixed) become
//!   the real one in requests (`bname`, V2 send key `n`, lock/unlock
//!   bodies) and back in answers naming queues (lock, query-assignment);
//! - a target broker's "no offset" answer to QUERY_CONSUMER_OFFSET becomes
//!   the queue's min offset, so a group first meeting a target queue reads
//!   it from its start instead of skipping to its end (DESIGN.md §2).
//!
//! The request side also learns groups and topics (heartbeats, sends,
//! pulls) and remembers, by opaque, the requests whose answers it counts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use cutover_rocketmq::{Encoding, Frame, Header, RequestCode, ResponseCode, encode, split_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::endpoints::{Endpoint, Side};
use super::observe::count_messages;
use super::pop;
use super::rpc::{self, Conn};
use crate::metrics;
use crate::proxy::Stream;

const READ_RESERVE: usize = 16 * 1024;

/// Answers awaited at once per connection; past this, answers are relayed
/// without being counted (a client pipelining this much is an outlier, and
/// the map must stay bounded).
const MAX_PENDING: usize = 16 * 1024;

/// Why a connection ended (the `reason` label of `CONNECTIONS_CLOSED`).
enum Close {
    Client,
    Idle,
    Shutdown,
    /// A request's signature was refused (ACL).
    Auth,
    Protocol(String),
    Upstream(String),
}

/// What the answer to a remembered request is awaited for.
struct Pending {
    code: i32,
    topic: String,
    messages: u64,
    started: Instant,
    encoding: Encoding,
    queue_id: Option<String>,
    /// A QUERY_ASSIGNMENT's body, asked again of the other cluster.
    body: Option<Bytes>,
}

type InFlight = Mutex<HashMap<i32, Pending>>;

/// Requests relayed to the broker whose answers have not come back yet,
/// so a draining connection knows when it owes the client nothing more.
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    settled: Notify,
}

impl Outstanding {
    fn sent(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn answered(&self) {
        let before = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            self.settled.notify_waiters();
        }
    }

    /// Resolves once every relayed request has its answer.
    async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    client: Stream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let name = shared.migration.name.to_string();
    let mut local = None;
    let mut tag = Tag::new(peer);
    let admitted = match super::acl::accounts(&name) {
        Some(accounts) => admit(&shared, &accounts, client, peer, &shutdown).await,
        None => Ok((client, Vec::new())),
    };
    let close = match admitted {
        Ok((client, pending)) => {
            relay(
                &shared, &endpoint, client, pending, &mut tag, &shutdown, &mut local,
            )
            .await
        }
        Err(close) => close,
    };
    if let Some(addr) = &local {
        shared.observed.local_addr(addr, false);
    }
    shared.observed.clients.closed(&tag.key);
    let reason = match &close {
        Close::Client => "client",
        Close::Idle => "idle",
        Close::Shutdown => "shutdown",
        Close::Auth => "auth",
        Close::Protocol(_) => "protocol_error",
        Close::Upstream(_) => "upstream",
    };
    metrics::counter!(metrics::CONNECTIONS_CLOSED, "migration" => name.clone(), "reason" => reason)
        .increment(1);
    let broker = &endpoint.virtual_name;
    match close {
        Close::Protocol(why) => {
            metrics::counter!(metrics::REQUEST_ERRORS, "migration" => name.clone(), "cluster" => "client", "kind" => "protocol")
                .increment(1);
            tracing::warn!(migration = %name, %peer, %broker, reason = %why, "closing rocketmq client connection");
        }
        Close::Upstream(why) => {
            tracing::warn!(migration = %name, %peer, %broker, reason = %why, "closing rocketmq client connection: upstream failed");
        }
        _ => {
            tracing::debug!(migration = %name, %peer, %broker, reason, "rocketmq client connection closed")
        }
    }
}

/// Opens the upstream connection and pumps both directions until one ends;
/// `pending` (bytes read while admitting the client) is relayed first.
/// `local` receives the upstream connection's local address.
async fn relay(
    shared: &Shared,
    endpoint: &Endpoint,
    client: Stream,
    pending: Vec<u8>,
    tag: &mut Tag,
    shutdown: &CancellationToken,
    local: &mut Option<String>,
) -> Close {
    let upstream = match connect(shared, endpoint).await {
        Ok(upstream) => upstream,
        Err(reason) => return Close::Upstream(reason),
    };
    *local = local_addr(&upstream);
    if let Some(addr) = local.as_ref() {
        shared.observed.local_addr(addr, true);
    }
    let (client_r, client_w) = tokio::io::split(client);
    let client_r = std::io::Cursor::new(pending).chain(client_r);
    let (up_r, up_w) = tokio::io::split(upstream);
    let inflight = InFlight::default();
    let outstanding = Outstanding::default();
    let pair = Pair {
        inflight: &inflight,
        outstanding: &outstanding,
    };
    let reads = requests(shared, endpoint, client_r, up_w, pair, tag, shutdown);
    let writes = responses(shared, endpoint, up_r, client_w, pair);
    tokio::pin!(reads, writes);
    tokio::select! {
        close = &mut reads => match close {
            // Draining: nothing new is read from the client, and the
            // answers it is owed (a send, a long-polled pull) are
            // relayed first. The proxy-wide grace bounds the wait.
            Close::Shutdown => tokio::select! {
                close = &mut writes => close,
                () = outstanding.settled() => Close::Shutdown,
            },
            other => other,
        },
        close = &mut writes => close,
    }
}

/// With client accounts configured, reads the client's first request and
/// checks its signature before any upstream connection opens: a refused
/// client gets RocketMQ's `NO_PERMISSION` answer and the connection
/// closes ([`Close::Auth`]). Returns the client and the bytes read so far.
async fn admit(
    shared: &Shared,
    accounts: &super::acl::Accounts,
    mut client: Stream,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(Stream, Vec<u8>), Close> {
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    let raw = loop {
        match split_frame(&mut buf, shared.max_frame) {
            Ok(Some(raw)) => break raw,
            Ok(None) => {}
            // A bad frame (left in `buf`) is for the relay to report.
            Err(_) => return Ok((client, buf.to_vec())),
        }
        buf.reserve(READ_RESERVE);
        let read = tokio::select! {
            () = shutdown.cancelled() => return Err(Close::Shutdown),
            read = tokio::time::timeout(shared.idle_timeout, client.read_buf(&mut buf)) => read,
        };
        match read {
            Err(_) => return Err(Close::Idle),
            Ok(Ok(0) | Err(_)) => return Err(Close::Client),
            Ok(Ok(_)) => {}
        }
    };
    // Relayed first, as read: the whole first frame, then what followed it.
    let mut pending = Vec::with_capacity(raw.len() + buf.len());
    pending.extend_from_slice(&raw);
    pending.extend_from_slice(&buf);
    let Ok(frame) = Frame::parse(raw) else {
        return Ok((client, pending));
    };
    if frame.header.is_response() {
        return Ok((client, pending));
    }
    match super::acl::check_client(accounts, &shared.migration.name, peer, &frame, false).await {
        Ok(()) => Ok((client, pending)),
        Err(answer) => {
            if !frame.header.is_oneway() {
                let _ = client.write_all(&answer).await;
                let _ = client.flush().await;
            }
            Err(Close::Auth)
        }
    }
}

async fn connect(shared: &Shared, endpoint: &Endpoint) -> Result<Stream, String> {
    let upstream = shared.broker_upstream(endpoint.side, &endpoint.upstream)?;
    upstream.connect().await.map_err(|e| e.to_string())
}

fn local_addr(stream: &Stream) -> Option<String> {
    let tcp = match stream {
        Stream::Plain(s) => s,
        Stream::TlsClient(s) => s.get_ref().0,
        Stream::TlsServer(s) => s.get_ref().0,
    };
    tcp.local_addr().ok().map(|a| a.to_string())
}

/// What both directions of one connection share about its requests.
#[derive(Clone, Copy)]
struct Pair<'a> {
    inflight: &'a InFlight,
    outstanding: &'a Outstanding,
}

/// Who is on the client side of one connection, for the client table
/// ([`super::seen`]).
struct Tag {
    peer: String,
    /// The client's id once a heartbeat named it, its provisional key before.
    key: String,
    /// When the table last heard of this connection: other requests update
    /// it at most once per [`TOUCH_EVERY`], so the hot path rarely locks it.
    touched: Option<Instant>,
    /// The topic of the last send recorded, for the same reason.
    last_topic: String,
}

/// How often a busy connection refreshes its client's "last seen".
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Tag {
    fn new(peer: SocketAddr) -> Self {
        let peer = peer.to_string();
        Tag {
            key: super::seen::provisional_key(&peer),
            peer,
            touched: None,
            last_topic: String::new(),
        }
    }

    /// Records what `frame` tells about the client.
    fn observe(&mut self, shared: &Shared, frame: &Frame, topic: Option<&str>) {
        let header = &frame.header;
        let hello = super::seen::Hello {
            peer: &self.peer,
            language: header.language.name().unwrap_or("UNKNOWN"),
            version: header.version,
        };
        let table = &shared.observed.clients;
        let due = self.touched.is_none_or(|at| at.elapsed() >= TOUCH_EVERY);
        match (header.code, topic) {
            (RequestCode::HEART_BEAT, _) => {
                if let Some(id) = table.heartbeat(&self.key, hello, &frame.body) {
                    self.key = id;
                }
            }
            (code, Some(topic)) if RequestCode::is_send(code) => {
                if !due && topic == self.last_topic {
                    return;
                }
                let group = header
                    .ext(if is_v2_send(code) {
                        "a"
                    } else {
                        "producerGroup"
                    })
                    .unwrap_or_default();
                table.sent(&self.key, hello, topic, group);
                topic.clone_into(&mut self.last_topic);
            }
            _ if due => table.touch(&self.key, hello),
            _ => return,
        }
        self.touched = Some(Instant::now());
    }
}

/// Client → broker.
async fn requests(
    shared: &Shared,
    endpoint: &Endpoint,
    mut client: impl AsyncRead + Unpin,
    mut upstream: impl AsyncWrite + Unpin,
    pair: Pair<'_>,
    tag: &mut Tag,
    shutdown: &CancellationToken,
) -> Close {
    let cluster = shared.cluster(endpoint.side).to_owned();
    let bytes = metrics::counter!(metrics::BYTES, "migration" => shared.migration.name.to_string(), "cluster" => cluster.clone(), "direction" => "to_upstream");
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    let accounts = super::acl::accounts(&shared.migration.name);
    let signer = super::acl::signer(&cluster);
    let peer: SocketAddr = tag
        .peer
        .parse()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        loop {
            let frame = match split_frame(&mut buf, shared.max_frame)
                .and_then(|raw| raw.map(Frame::parse).transpose())
            {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Close::Protocol(e.to_string()),
            };
            let out = if frame.header.is_response() {
                frame.raw
            } else {
                if let Some(accounts) = &accounts
                    && super::acl::check_client(
                        accounts,
                        &shared.migration.name,
                        peer,
                        &frame,
                        true,
                    )
                    .await
                    .is_err()
                {
                    // Logged and counted by the check; the answer channel
                    // belongs to the other direction, so the client sees
                    // the connection close.
                    return Close::Auth;
                }
                if !frame.header.is_oneway() {
                    pair.outstanding.sent();
                }
                let out = match request(shared, endpoint, &cluster, frame, pair.inflight, tag).await
                {
                    Ok(out) => out,
                    Err(why) => return Close::Protocol(why),
                };
                match &signer {
                    Some(signer) => match signer.resign_raw(out) {
                        Ok(out) => out,
                        Err(why) => return Close::Protocol(why),
                    },
                    None => out,
                }
            };
            if let Err(e) = upstream.write_all(&out).await {
                return Close::Upstream(format!("writing to the broker: {e}"));
            }
            bytes.increment(out.len() as u64);
        }
        if let Err(e) = upstream.flush().await {
            return Close::Upstream(format!("writing to the broker: {e}"));
        }
        buf.reserve(READ_RESERVE);
        let read = tokio::select! {
            () = shutdown.cancelled() => return Close::Shutdown,
            read = tokio::time::timeout(shared.idle_timeout, client.read_buf(&mut buf)) => read,
        };
        match read {
            Err(_) => return Close::Idle,
            Ok(Ok(0) | Err(_)) => return Close::Client,
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `code` reads messages (pull, lite pull, pop).
fn is_consume(code: i32) -> bool {
    matches!(
        code,
        RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE | RequestCode::POP_MESSAGE
    )
}

/// Apache `ResponseCode.POLLING_FULL` / `POLLING_TIMEOUT`: a pop long poll
/// that found nothing (normal, like PULL_NOT_FOUND).
const POLLING_FULL: i32 = 209;
const POLLING_TIMEOUT: i32 = 210;

/// Whether `code` is a send whose header uses the one-letter V2 keys.
fn is_v2_send(code: i32) -> bool {
    matches!(
        code,
        RequestCode::SEND_MESSAGE_V2
            | RequestCode::SEND_BATCH_MESSAGE
            | RequestCode::SEND_REPLY_MESSAGE_V2
    )
}

/// Observes, translates and remembers one client request; returns the
/// bytes to relay.
async fn request(
    shared: &Shared,
    endpoint: &Endpoint,
    cluster: &str,
    frame: Frame,
    inflight: &InFlight,
    tag: &mut Tag,
) -> Result<Bytes, String> {
    let code = frame.header.code;
    let v2 = is_v2_send(code);
    let topic = frame
        .header
        .ext(if v2 { "b" } else { "topic" })
        .map(str::to_owned);
    tag.observe(shared, &frame, topic.as_deref());
    let migration = shared.migration.name.to_string();
    let counted = RequestCode::is_send(code) || is_consume(code);
    if code == RequestCode::HEART_BEAT {
        let topics = shared.observed.heartbeat(&frame.body);
        shared.discover(&topics).await;
    }
    if let (true, Some(topic)) = (counted, &topic) {
        metrics::counter!(metrics::REQUESTS, "migration" => migration, "topic" => topic.clone(), "cluster" => cluster.to_owned())
            .increment(1);
        if RequestCode::is_send(code) {
            shared.observed.sent(topic, endpoint.side);
            if !frame.header.is_oneway() {
                shared.discover(std::slice::from_ref(topic)).await;
            }
        }
    }
    let remember = counted
        || (code == RequestCode::QUERY_CONSUMER_OFFSET && endpoint.side == Side::Target)
        || matches!(
            code,
            RequestCode::LOCK_BATCH_MQ | RequestCode::QUERY_ASSIGNMENT
        );
    if remember && !frame.header.is_oneway() {
        let mut map = inflight.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < MAX_PENDING {
            let messages = match code {
                RequestCode::SEND_BATCH_MESSAGE => count_messages(&frame.body),
                c if RequestCode::is_send(c) => 1,
                _ => 0,
            };
            map.insert(
                frame.header.opaque,
                Pending {
                    code,
                    topic: topic.unwrap_or_default(),
                    messages,
                    started: Instant::now(),
                    encoding: frame.encoding,
                    queue_id: frame.header.ext("queueId").map(str::to_owned),
                    body: (code == RequestCode::QUERY_ASSIGNMENT).then(|| frame.body.clone()),
                },
            );
        }
    }
    if endpoint.virtual_name == endpoint.real_name {
        return Ok(frame.raw);
    }
    to_real(endpoint, frame, v2)
}

/// Replaces the virtual broker name with the real one where a request
/// carries it; re-encodes only when something changed.
fn to_real(endpoint: &Endpoint, frame: Frame, v2: bool) -> Result<Bytes, String> {
    let mut header = frame.header.clone();
    let mut changed = false;
    for key in ["bname", "brokerName", if v2 { "n" } else { "bname" }] {
        if header.ext(key) == Some(endpoint.virtual_name.as_str()) {
            header.set_ext(key, endpoint.real_name.clone());
            changed = true;
        }
    }
    changed |= pop::ack_to_real(&mut header, endpoint);
    let body = match frame.header.code {
        RequestCode::LOCK_BATCH_MQ
        | RequestCode::UNLOCK_BATCH_MQ
        | RequestCode::BATCH_ACK_MESSAGE => {
            rename_in_body(&frame.body, &endpoint.virtual_name, &endpoint.real_name)
        }
        _ => None,
    };
    if !changed && body.is_none() {
        return Ok(frame.raw);
    }
    let body = body.as_deref().unwrap_or(&frame.body);
    encode(&header, body, frame.encoding).map_err(|e| e.to_string())
}

/// `"brokerName":"from"` → `"brokerName":"to"` in a JSON body, if present.
fn rename_in_body(body: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    let needle = format!("\"brokerName\":\"{from}\"");
    let text = std::str::from_utf8(body).ok()?;
    text.contains(&needle).then(|| {
        text.replace(&needle, &format!("\"brokerName\":\"{to}\""))
            .into_bytes()
    })
}

/// Broker → client.
async fn responses(
    shared: &Shared,
    endpoint: &Endpoint,
    mut upstream: impl AsyncRead + Unpin,
    mut client: impl AsyncWrite + Unpin,
    pair: Pair<'_>,
) -> Close {
    let cluster = shared.cluster(endpoint.side).to_owned();
    let bytes = metrics::counter!(metrics::BYTES, "migration" => shared.migration.name.to_string(), "cluster" => cluster.clone(), "direction" => "to_client");
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    loop {
        loop {
            let raw = match split_frame(&mut buf, shared.max_frame) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => return Close::Upstream(format!("broker frame: {e}")),
            };
            let out = answer(shared, endpoint, &cluster, raw, pair).await;
            if client.write_all(&out).await.is_err() {
                return Close::Client;
            }
            bytes.increment(out.len() as u64);
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

/// Counts a remembered request's answer and rewrites it where needed.
async fn answer(
    shared: &Shared,
    endpoint: &Endpoint,
    cluster: &str,
    raw: Bytes,
    pair: Pair<'_>,
) -> Bytes {
    let Ok(frame) = Frame::parse(raw.clone()) else {
        return raw;
    };
    if !frame.header.is_response() {
        return raw;
    }
    pair.outstanding.answered();
    let Some(pending) = pair
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&frame.header.opaque)
    else {
        return raw;
    };
    let code = frame.header.code;
    let labels = |extra: Option<(&'static str, String)>| {
        let mut l = vec![
            ("migration", shared.migration.name.to_string()),
            ("topic", pending.topic.clone()),
            ("cluster", cluster.to_owned()),
        ];
        l.extend(extra);
        l
    };
    let ok = code == ResponseCode::SUCCESS;
    match pending.code {
        c if RequestCode::is_send(c) => {
            metrics::counter!(metrics::ROCKETMQ_SENDS, &labels(None)).increment(1);
            metrics::histogram!(metrics::REQUEST_DURATION, "migration" => shared.migration.name.to_string(), "cluster" => cluster.to_owned())
                .record(pending.started.elapsed().as_secs_f64());
            if ok {
                metrics::counter!(
                    metrics::ROCKETMQ_MESSAGES,
                    &labels(Some(("direction", "produced".into())))
                )
                .increment(pending.messages);
            }
        }
        c if is_consume(c) => {
            metrics::counter!(metrics::ROCKETMQ_PULLS, &labels(None)).increment(1);
            if ok {
                metrics::counter!(
                    metrics::ROCKETMQ_MESSAGES,
                    &labels(Some(("direction", "consumed".into())))
                )
                .increment(count_messages(&frame.body));
            }
        }
        RequestCode::QUERY_CONSUMER_OFFSET if code == ResponseCode::QUERY_NOT_FOUND => {
            return min_offset_answer(shared, endpoint, &frame, &pending)
                .await
                .unwrap_or(raw);
        }
        RequestCode::QUERY_ASSIGNMENT => {
            if let Some(merged) = match &pending.body {
                Some(ask) => pop::merged_assignment(shared, endpoint, &frame, ask).await,
                None => None,
            } {
                return merged;
            }
            if endpoint.virtual_name == endpoint.real_name {
                return raw;
            }
            if let Some(body) =
                rename_in_body(&frame.body, &endpoint.real_name, &endpoint.virtual_name)
            {
                return encode(&frame.header, &body, frame.encoding).unwrap_or(raw);
            }
            return raw;
        }
        RequestCode::LOCK_BATCH_MQ if endpoint.virtual_name != endpoint.real_name => {
            if let Some(body) =
                rename_in_body(&frame.body, &endpoint.real_name, &endpoint.virtual_name)
            {
                return encode(&frame.header, &body, frame.encoding).unwrap_or(raw);
            }
            return raw;
        }
        _ => return raw,
    }
    let normal = ok
        || (is_consume(pending.code)
            && matches!(
                code,
                ResponseCode::PULL_NOT_FOUND
                    | ResponseCode::PULL_RETRY_IMMEDIATELY
                    | POLLING_FULL
                    | POLLING_TIMEOUT
            ));
    if !normal {
        metrics::counter!(
            metrics::ROCKETMQ_ERRORS,
            &labels(Some(("code", code.to_string())))
        )
        .increment(1);
    }
    raw
}

/// The answer "start at the queue's min offset" to a QUERY_CONSUMER_OFFSET
/// the target broker had no offset for, in the encoding the client used.
async fn min_offset_answer(
    shared: &Shared,
    endpoint: &Endpoint,
    frame: &Frame,
    pending: &Pending,
) -> Option<Bytes> {
    let queue_id = pending.queue_id.as_deref()?;
    let upstream = shared
        .broker_upstream(endpoint.side, &endpoint.upstream)
        .ok()?;
    let mut conn = Conn::open(&upstream, shared.max_frame).await.ok()?;
    let ask = rpc::request(
        RequestCode::GET_MIN_OFFSET,
        &[("topic", pending.topic.as_str()), ("queueId", queue_id)],
    );
    let got = conn.call(ask, &[], shared.upstream_timeout).await.ok()?;
    if got.header.code != ResponseCode::SUCCESS {
        return None;
    }
    let min = got.header.ext("offset")?.to_owned();
    let mut head = Header::response(ResponseCode::SUCCESS, frame.header.opaque, None);
    head.language = frame.header.language;
    head.version = frame.header.version;
    head.set_ext("offset", min.clone());
    tracing::debug!(migration = %shared.migration.name, topic = %pending.topic, queue_id, offset = %min,
        "target queue has no offset for the group; starting it at the queue's min offset");
    encode(&head, &[], pending.encoding).ok()
}
