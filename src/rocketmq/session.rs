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
//!
//! The hot path (sends, pulls, pops and their answers on an endpoint whose
//! names need no translation) reads headers with the codec's in-place
//! [`peek`] and forwards the frame as received: no header map, no
//! `String`, no label vector, no shared lock and no await of the control
//! plane per request. Per-topic counters come pre-resolved from
//! [`super::handles`]; connection-level ones are resolved once. Only
//! frames that must be rewritten or checked (name translation, lock,
//! assignment, heartbeat, ACL check and re-signing) are decoded fully.
//! Writes go through a buffer flushed once per read batch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use cutover_rocketmq::{
    Encoding, Frame, FrameError, Header, Language, RequestCode, ResponseCode, encode, peek,
    split_frame,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::endpoints::{Endpoint, Side};
use super::handles::TopicHandles;
use super::observe::count_messages;
use super::pop;
use super::rpc::{self, Conn};
use crate::metrics;
use crate::proxy::Stream;

const READ_RESERVE: usize = 16 * 1024;

/// Bytes buffered per direction before a write reaches the socket; frames
/// of one read batch leave in one write (larger frames bypass the buffer).
const WRITE_BUFFER: usize = 64 * 1024;

/// Answers awaited at once per connection; past this, answers are relayed
/// without being counted (a client pipelining this much is an outlier, and
/// the map must stay bounded).
const MAX_PENDING: usize = 16 * 1024;

/// Why a connection ended: who failed, with the error that says how.
/// [`Close::reason`] is the `reason` label of `CONNECTIONS_CLOSED`.
#[derive(Debug, thiserror::Error)]
enum Close {
    #[error("the client closed the connection")]
    ClientGone,
    #[error("the client was idle past the idle timeout")]
    Idle,
    #[error("the proxy is shutting down")]
    Shutdown,
    /// A request's signature was refused (ACL).
    #[error("the client's signature was refused")]
    Auth,
    /// A later request's signature was refused: the answer to send before
    /// closing (it goes out through the answer direction).
    #[error("the client's signature was refused")]
    Refused(Bytes),
    /// The client sent bytes that cannot be framed or a header that
    /// cannot be read.
    #[error("the client sent a malformed frame")]
    ClientFrame(#[source] FrameError),
    /// The broker of `side` failed or went away.
    #[error("the {} broker failed", .side.as_str())]
    Broker {
        side: Side,
        #[source]
        source: BrokerError,
    },
    /// The proxy could not re-encode or re-sign a request it had read.
    #[error("the proxy could not rewrite a request")]
    Internal(#[source] FrameError),
}

impl Close {
    /// The `reason` label (README, Metrics): `internal` is the proxy's own
    /// failure, which used to be reported as a protocol error.
    fn reason(&self) -> &'static str {
        match self {
            Close::ClientGone => "client",
            Close::Idle => "idle",
            Close::Shutdown => "shutdown",
            Close::Auth | Close::Refused(_) => "auth",
            Close::ClientFrame(_) => "protocol_error",
            Close::Broker { .. } => "upstream",
            Close::Internal(_) => "internal",
        }
    }
}

/// How a broker connection failed.
#[derive(Debug, thiserror::Error)]
enum BrokerError {
    #[error("no upstream for the broker: {0}")]
    Upstream(String),
    #[error("connecting to the broker")]
    Connect(#[source] crate::proxy::UpstreamError),
    #[error("writing to the broker")]
    Write(#[source] std::io::Error),
    #[error("reading from the broker")]
    Read(#[source] std::io::Error),
    #[error("the broker sent a frame that cannot be framed")]
    Frame(#[source] FrameError),
    #[error("the broker closed the connection")]
    Closed,
}

impl Close {
    fn broker(side: Side, source: BrokerError) -> Self {
        Close::Broker { side, source }
    }
}

/// How long a refused request's answer may take to reach the client
/// before its connection closes anyway.
const REFUSAL_WRITE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the answer to a remembered request is awaited for.
struct Pending {
    code: i32,
    /// The topic's counters (and name), shared with the published handles.
    topic: Option<Arc<TopicHandles>>,
    messages: u64,
    started: Instant,
    encoding: Encoding,
    /// A target QUERY_CONSUMER_OFFSET's topic and queue, asked again as
    /// GET_MIN_OFFSET if the broker has no offset.
    offset_query: Option<(Box<str>, Box<str>)>,
    /// A QUERY_ASSIGNMENT's body, asked again of the other cluster.
    body: Option<Bytes>,
}

impl Pending {
    fn topic(&self) -> &str {
        self.topic.as_deref().map_or("", |t| &t.topic)
    }
}

/// Requests awaiting their answers, by opaque. Shared only by the two
/// halves of one connection, so the lock is never contended by other
/// connections; bounded by [`MAX_PENDING`].
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

/// The connection-level series, resolved once per connection.
struct ConnMetrics {
    to_upstream: ::metrics::Counter,
    to_client: ::metrics::Counter,
    duration: ::metrics::Histogram,
}

impl ConnMetrics {
    fn new(shared: &Shared, side: Side) -> Self {
        let migration = shared.migration.name.to_string();
        let cluster = shared.cluster(side).to_owned();
        let bytes = |direction: &'static str| metrics::counter!(metrics::BYTES, "migration" => migration.clone(), "cluster" => cluster.clone(), "direction" => direction);
        ConnMetrics {
            to_upstream: bytes("to_upstream"),
            to_client: bytes("to_client"),
            duration: metrics::histogram!(metrics::REQUEST_DURATION, "migration" => migration.clone(), "cluster" => cluster.clone()),
        }
    }
}

/// A close and its causes, for the log line.
fn chain(close: &Close) -> String {
    let mut out = close.to_string();
    let mut source = std::error::Error::source(close);
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
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
    let reason = close.reason();
    metrics::counter!(metrics::CONNECTIONS_CLOSED, "migration" => name.clone(), "reason" => reason)
        .increment(1);
    let broker = &endpoint.virtual_name;
    match &close {
        Close::ClientFrame(_) => {
            metrics::counter!(metrics::REQUEST_ERRORS, "migration" => name.clone(), "cluster" => "client", "kind" => "protocol")
                .increment(1);
            tracing::warn!(migration = %name, %peer, %broker, reason = %chain(&close), "closing rocketmq client connection");
        }
        Close::Broker { .. } | Close::Internal(_) => {
            tracing::warn!(migration = %name, %peer, %broker, reason = %chain(&close), "closing rocketmq client connection");
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
        Err(e) => return Close::broker(endpoint.side, e),
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
    let conn = ConnMetrics::new(shared, endpoint.side);
    let up_w = BufWriter::with_capacity(WRITE_BUFFER, up_w);
    let client_w = BufWriter::with_capacity(WRITE_BUFFER, client_w);
    // With client accounts, a refused request is answered (NO_PERMISSION)
    // through the answer direction, which owns the client's writer.
    let (said, heard) = match super::acl::accounts(&shared.migration.name) {
        Some(_) => {
            let (said, heard) = oneshot::channel();
            (Some(said), Some(heard))
        }
        None => (None, None),
    };
    let reads = requests(
        shared, endpoint, client_r, up_w, pair, tag, shutdown, &conn, said,
    );
    let writes = responses(shared, endpoint, up_r, client_w, pair, &conn, heard);
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
            Close::Auth => {
                let _ = tokio::time::timeout(REFUSAL_WRITE, &mut writes).await;
                Close::Auth
            }
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
            Ok(Ok(0) | Err(_)) => return Err(Close::ClientGone),
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

async fn connect(shared: &Shared, endpoint: &Endpoint) -> Result<Stream, BrokerError> {
    let upstream = shared
        .broker_upstream(endpoint.side, &endpoint.upstream)
        .map_err(BrokerError::Upstream)?;
    upstream.connect().await.map_err(BrokerError::Connect)
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

/// The ext keys the relay reads from a request: V2 send topic and group,
/// their long forms (sends, pulls, pops), and the queue.
const KEYS: [&str; 5] = ["b", "topic", "a", "producerGroup", "queueId"];

/// What the relay reads from one request, from a [`peek`] or a full decode.
struct Req<'a> {
    code: i32,
    opaque: i32,
    oneway: bool,
    language: Language,
    version: i32,
    encoding: Encoding,
    topic: Option<&'a str>,
    group: Option<&'a str>,
    queue_id: Option<&'a str>,
    /// A slice of the frame (no copy).
    body: Bytes,
}

impl<'a> Req<'a> {
    fn peeked(p: &cutover_rocketmq::Peek<'a, 5>, raw: &Bytes) -> Self {
        let [b, topic, a, producer_group, queue_id] = p.values;
        let v2 = is_v2_send(p.code);
        Req {
            code: p.code,
            opaque: p.opaque,
            oneway: p.is_oneway(),
            language: p.language,
            version: p.version,
            encoding: p.encoding,
            topic: if v2 { b } else { topic },
            group: if v2 { a } else { producer_group },
            queue_id,
            body: raw.slice(p.body_start..),
        }
    }

    fn decoded(frame: &'a Frame) -> Self {
        let h = &frame.header;
        let v2 = is_v2_send(h.code);
        Req {
            code: h.code,
            opaque: h.opaque,
            oneway: h.is_oneway(),
            language: h.language,
            version: h.version,
            encoding: frame.encoding,
            topic: h.ext(if v2 { "b" } else { "topic" }),
            group: h.ext(if v2 { "a" } else { "producerGroup" }),
            queue_id: h.ext("queueId"),
            body: frame.body.clone(),
        }
    }
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

    /// Records what `req` tells about the client.
    fn observe(&mut self, shared: &Shared, req: &Req<'_>) {
        let hello = super::seen::Hello {
            peer: &self.peer,
            language: req.language.name().unwrap_or("UNKNOWN"),
            version: req.version,
        };
        let table = &shared.observed.clients;
        let due = self.touched.is_none_or(|at| at.elapsed() >= TOUCH_EVERY);
        match (req.code, req.topic) {
            (RequestCode::HEART_BEAT, _) => {
                if let Some(id) = table.heartbeat(&self.key, hello, &req.body) {
                    self.key = id;
                }
            }
            (code, Some(topic)) if RequestCode::is_send(code) => {
                if !due && topic == self.last_topic {
                    return;
                }
                table.sent(&self.key, hello, topic, req.group.unwrap_or_default());
                topic.clone_into(&mut self.last_topic);
            }
            _ if due => table.touch(&self.key, hello),
            _ => return,
        }
        self.touched = Some(Instant::now());
    }
}

/// Client → broker.
#[allow(clippy::too_many_arguments)] // one call site; the pieces are distinct
async fn requests(
    shared: &Shared,
    endpoint: &Endpoint,
    mut client: impl AsyncRead + Unpin,
    mut upstream: impl AsyncWrite + Unpin,
    pair: Pair<'_>,
    tag: &mut Tag,
    shutdown: &CancellationToken,
    conn: &ConnMetrics,
    mut last_word: Option<oneshot::Sender<Bytes>>,
) -> Close {
    let side = endpoint.side;
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    let checks = Checks {
        accounts: super::acl::accounts(&shared.migration.name),
        signer: super::acl::signer(shared.cluster(side)),
        peer: tag
            .peer
            .parse()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
    };
    // Requests on this endpoint pass as received unless a signature is
    // checked or replaced, or broker names are translated.
    let unsigned = checks.accounts.is_none() && checks.signer.is_none();
    let plain = unsigned && endpoint.virtual_name == endpoint.real_name;
    // On a target endpoint sends carry the virtual broker name, swapped for
    // the real one in place rather than by decoding the header.
    let renames = unsigned && !plain;
    // One shutdown waiter and one idle timer for the connection's life:
    // registering either per read would lock the token's waiter list and
    // the timer wheel for every batch.
    let cancelled = shutdown.cancelled();
    let mut last_read = tokio::time::Instant::now();
    let idle = tokio::time::sleep_until(idle_deadline(last_read, shared.idle_timeout));
    tokio::pin!(cancelled, idle);
    loop {
        loop {
            let raw = match split_frame(&mut buf, shared.max_frame) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => return Close::ClientFrame(e),
            };
            let out = match peek(&raw, KEYS) {
                Some(p) if p.is_response() => Ok(raw),
                Some(p) if plain => {
                    noted(shared, endpoint, &p, &raw, pair, tag).await;
                    Ok(raw)
                }
                Some(p) if renames && RequestCode::is_send(p.code) => {
                    match renamed_send(endpoint, &raw, p.encoding) {
                        Some(out) => {
                            noted(shared, endpoint, &p, &raw, pair, tag).await;
                            Ok(out)
                        }
                        None => decoded(shared, endpoint, raw, pair, tag, &checks).await,
                    }
                }
                _ => decoded(shared, endpoint, raw, pair, tag, &checks).await,
            };
            let out = match out {
                Ok(out) => out,
                Err(Close::Refused(answer)) => {
                    if let Some(tx) = last_word.take() {
                        let _ = tx.send(answer);
                    }
                    return Close::Auth;
                }
                Err(close) => return close,
            };
            if let Err(e) = upstream.write_all(&out).await {
                return Close::broker(side, BrokerError::Write(e));
            }
            conn.to_upstream.increment(out.len() as u64);
        }
        if let Err(e) = upstream.flush().await {
            return Close::broker(side, BrokerError::Write(e));
        }
        buf.reserve(READ_RESERVE);
        let read = loop {
            tokio::select! {
                () = &mut cancelled => return Close::Shutdown,
                read = client.read_buf(&mut buf) => break read,
                () = &mut idle => {
                    // Woken once per idle timeout, not per read: the
                    // deadline follows the last read lazily.
                    let deadline = idle_deadline(last_read, shared.idle_timeout);
                    if deadline <= tokio::time::Instant::now() {
                        return Close::Idle;
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        };
        match read {
            Ok(0) | Err(_) => return Close::ClientGone,
            Ok(_) => last_read = tokio::time::Instant::now(),
        }
    }
}

/// Observes, counts and remembers a request read in place.
async fn noted(
    shared: &Shared,
    endpoint: &Endpoint,
    p: &cutover_rocketmq::Peek<'_, 5>,
    raw: &Bytes,
    pair: Pair<'_>,
    tag: &mut Tag,
) {
    let req = Req::peeked(p, raw);
    if !req.oneway {
        pair.outstanding.sent();
    }
    note(shared, endpoint, &req, pair.inflight, tag).await;
}

/// The ext keys that name a broker on a send: the V2 key and the RPC
/// header's (5.x clients send both).
const SEND_BROKER_KEYS: [&str; 3] = ["n", "bname", "brokerName"];

/// A send with the virtual broker name replaced by the real one in place
/// (the frame itself when it names none); `None` when only the full
/// decoder can do it.
fn renamed_send(endpoint: &Endpoint, raw: &Bytes, encoding: Encoding) -> Option<Bytes> {
    let p = peek(raw, SEND_BROKER_KEYS)?;
    let unused = cutover_rocketmq::Edit { old: "", new: "" };
    let mut edits = [unused; SEND_BROKER_KEYS.len()];
    let mut count = 0;
    for old in p.values.into_iter().flatten() {
        if old == endpoint.virtual_name {
            edits[count] = cutover_rocketmq::Edit {
                old,
                new: &endpoint.real_name,
            };
            count += 1;
        }
    }
    if count == 0 {
        return Some(raw.clone());
    }
    cutover_rocketmq::replace_values(raw, encoding, &edits[..count])
}

/// When a connection last read at `from` is idle (far in the future for a
/// timeout too large to add).
fn idle_deadline(from: tokio::time::Instant, idle: std::time::Duration) -> tokio::time::Instant {
    const FAR: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 86_400);
    from.checked_add(idle.min(FAR)).unwrap_or(from)
}

/// The ACL checks of one connection's requests.
struct Checks {
    accounts: Option<Arc<super::acl::Accounts>>,
    signer: Option<Arc<super::acl::ClusterSigner>>,
    peer: SocketAddr,
}

/// The slow path of one request: decodes it fully, checks its signature,
/// observes and remembers it, translates broker names and re-signs it.
/// Returns the bytes to relay.
async fn decoded(
    shared: &Shared,
    endpoint: &Endpoint,
    raw: Bytes,
    pair: Pair<'_>,
    tag: &mut Tag,
    checks: &Checks,
) -> Result<Bytes, Close> {
    let frame = Frame::parse(raw).map_err(Close::ClientFrame)?;
    if frame.header.is_response() {
        return Ok(frame.raw);
    }
    if let Some(accounts) = &checks.accounts
        && let Err(answer) =
            super::acl::check_client(accounts, &shared.migration.name, checks.peer, &frame, true)
                .await
    {
        // Logged and counted by the check; answered, then closed.
        return Err(Close::Refused(answer));
    }
    if !frame.header.is_oneway() {
        pair.outstanding.sent();
    }
    note(shared, endpoint, &Req::decoded(&frame), pair.inflight, tag).await;
    let out = if endpoint.virtual_name == endpoint.real_name {
        frame.raw
    } else {
        to_real(endpoint, frame).map_err(Close::Internal)?
    };
    match &checks.signer {
        Some(signer) => signer
            .credentials()
            .resign_raw(out)
            .map_err(Close::Internal),
        None => Ok(out),
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

/// `topic`'s counters on `side`: from the published handles, or, the
/// first time this process meets the topic, after registering it (the
/// only await of the control plane, once per topic).
async fn topic_handles(shared: &Shared, side: Side, topic: &str) -> Arc<TopicHandles> {
    if let Some(handles) = shared.handles.get(side, topic) {
        return handles;
    }
    shared.discover(&[topic.to_owned()]).await;
    shared.handles.publish(side, topic)
}

/// Observes, counts and remembers one client request.
async fn note(
    shared: &Shared,
    endpoint: &Endpoint,
    req: &Req<'_>,
    inflight: &InFlight,
    tag: &mut Tag,
) {
    let code = req.code;
    tag.observe(shared, req);
    if code == RequestCode::HEART_BEAT {
        let topics = shared.observed.heartbeat(&req.body);
        shared.discover(&topics).await;
    }
    let send = RequestCode::is_send(code);
    let counted = send || is_consume(code);
    let handles = match (counted, req.topic) {
        (true, Some(topic)) => Some(topic_handles(shared, endpoint.side, topic).await),
        _ => None,
    };
    if let Some(handles) = &handles {
        handles.requests.increment(1);
        if send {
            shared.handles.sent(handles);
        }
    }
    let offset_miss = code == RequestCode::QUERY_CONSUMER_OFFSET && endpoint.side == Side::Target;
    let remember = counted
        || offset_miss
        || matches!(
            code,
            RequestCode::LOCK_BATCH_MQ | RequestCode::QUERY_ASSIGNMENT
        );
    if !remember || req.oneway {
        return;
    }
    let messages = match code {
        RequestCode::SEND_BATCH_MESSAGE => count_messages(&req.body),
        c if RequestCode::is_send(c) => 1,
        _ => 0,
    };
    let pending = Pending {
        code,
        topic: handles,
        messages,
        started: Instant::now(),
        encoding: req.encoding,
        offset_query: match (offset_miss, req.topic, req.queue_id) {
            (true, Some(topic), Some(queue)) => Some((topic.into(), queue.into())),
            _ => None,
        },
        body: (code == RequestCode::QUERY_ASSIGNMENT).then(|| req.body.clone()),
    };
    let mut map = inflight.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() < MAX_PENDING {
        map.insert(req.opaque, pending);
    }
}

/// Replaces the virtual broker name with the real one where a request
/// carries it; re-encodes only when something changed.
fn to_real(endpoint: &Endpoint, frame: Frame) -> Result<Bytes, FrameError> {
    let v2 = is_v2_send(frame.header.code);
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
    encode(&header, body, frame.encoding)
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
    conn: &ConnMetrics,
    mut last_word: Option<oneshot::Receiver<Bytes>>,
) -> Close {
    let side = endpoint.side;
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    loop {
        loop {
            let raw = match split_frame(&mut buf, shared.max_frame) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => return Close::broker(side, BrokerError::Frame(e)),
            };
            let out = answer(shared, endpoint, raw, pair, conn).await;
            if client.write_all(&out).await.is_err() {
                return Close::ClientGone;
            }
            conn.to_client.increment(out.len() as u64);
        }
        if client.flush().await.is_err() {
            return Close::ClientGone;
        }
        buf.reserve(READ_RESERVE);
        let read = match last_word.as_mut() {
            None => upstream.read_buf(&mut buf).await,
            Some(heard) => tokio::select! {
                read = upstream.read_buf(&mut buf) => read,
                answer = heard => {
                    last_word = None;
                    if let Ok(answer) = answer {
                        // A refused request's answer, the last one sent.
                        let _ = client.write_all(&answer).await;
                        let _ = client.flush().await;
                        return Close::Auth;
                    }
                    continue;
                }
            },
        };
        match read {
            Ok(0) => return Close::broker(side, BrokerError::Closed),
            Ok(_) => {}
            Err(e) => return Close::broker(side, BrokerError::Read(e)),
        }
    }
}

/// Counts a remembered request's answer and rewrites it where needed.
async fn answer(
    shared: &Shared,
    endpoint: &Endpoint,
    raw: Bytes,
    pair: Pair<'_>,
    conn: &ConnMetrics,
) -> Bytes {
    let (code, opaque, body_start) = match peek(&raw, []) {
        Some(p) if !p.is_response() => return raw,
        Some(p) => (p.code, p.opaque, p.body_start),
        None => match Frame::parse(raw.clone()) {
            Ok(f) if f.header.is_response() => {
                (f.header.code, f.header.opaque, raw.len() - f.body.len())
            }
            _ => return raw,
        },
    };
    pair.outstanding.answered();
    let Some(pending) = pair
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&opaque)
    else {
        return raw;
    };
    let ok = code == ResponseCode::SUCCESS;
    match pending.code {
        c if RequestCode::is_send(c) => {
            if let Some(topic) = &pending.topic {
                topic.sends.increment(1);
                if ok {
                    topic.produced.increment(pending.messages);
                }
            }
            conn.duration
                .record(pending.started.elapsed().as_secs_f64());
        }
        c if is_consume(c) => {
            if let Some(topic) = &pending.topic {
                topic.pulls.increment(1);
                if ok {
                    topic.consumed.increment(count_messages(&raw[body_start..]));
                }
            }
        }
        RequestCode::QUERY_CONSUMER_OFFSET if code == ResponseCode::QUERY_NOT_FOUND => {
            let Ok(frame) = Frame::parse(raw.clone()) else {
                return raw;
            };
            return min_offset_answer(shared, endpoint, &frame, &pending)
                .await
                .unwrap_or(raw);
        }
        RequestCode::QUERY_ASSIGNMENT => {
            let Ok(frame) = Frame::parse(raw.clone()) else {
                return raw;
            };
            if let Some(merged) = match &pending.body {
                Some(ask) => pop::merged_assignment(shared, endpoint, &frame, ask).await,
                None => None,
            } {
                return merged;
            }
            return to_virtual(endpoint, &frame).unwrap_or(raw);
        }
        RequestCode::LOCK_BATCH_MQ => {
            let Ok(frame) = Frame::parse(raw.clone()) else {
                return raw;
            };
            return to_virtual(endpoint, &frame).unwrap_or(raw);
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
        // Rare, and its code label is open-ended: resolved here.
        metrics::counter!(
            metrics::ROCKETMQ_ERRORS,
            "migration" => shared.migration.name.to_string(),
            "topic" => pending.topic().to_owned(),
            "cluster" => shared.cluster(endpoint.side).to_owned(),
            "code" => code.to_string()
        )
        .increment(1);
    }
    raw
}

/// An answer naming queues (lock, assignment) with the real broker name
/// replaced by the one clients use; `None` when nothing changes.
fn to_virtual(endpoint: &Endpoint, frame: &Frame) -> Option<Bytes> {
    if endpoint.virtual_name == endpoint.real_name {
        return None;
    }
    let body = rename_in_body(&frame.body, &endpoint.real_name, &endpoint.virtual_name)?;
    encode(&frame.header, &body, frame.encoding).ok()
}

/// The answer "start at the queue's min offset" to a QUERY_CONSUMER_OFFSET
/// the target broker had no offset for, in the encoding the client used.
async fn min_offset_answer(
    shared: &Shared,
    endpoint: &Endpoint,
    frame: &Frame,
    pending: &Pending,
) -> Option<Bytes> {
    let (topic, queue_id) = pending.offset_query.as_ref()?;
    let queue_id = &**queue_id;
    let upstream = shared
        .broker_upstream(endpoint.side, &endpoint.upstream)
        .ok()?;
    let mut conn = Conn::open(&upstream, shared.max_frame).await.ok()?;
    let ask = rpc::request(
        RequestCode::GET_MIN_OFFSET,
        &[("topic", topic), ("queueId", queue_id)],
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
    tracing::debug!(migration = %shared.migration.name, %topic, queue_id, offset = %min,
        "target queue has no offset for the group; starting it at the queue's min offset");
    encode(&head, &[], pending.encoding).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_endpoint() -> Endpoint {
        Endpoint {
            side: Side::Target,
            upstream: "127.0.0.1:10911".into(),
            real_name: "broker-a".into(),
            virtual_name: "broker-a@new".into(),
            port: 20000,
            vip_port: 19998,
        }
    }

    /// A 5.x send names the broker twice (`n` and `bname`): both become
    /// the real name in place, in both encodings, and equal what the full
    /// decoder's path ([`to_real`]) writes.
    #[test]
    fn a_send_to_a_target_broker_is_renamed_in_place_like_the_decoder_does() {
        let endpoint = target_endpoint();
        let mut h = Header::request(RequestCode::SEND_MESSAGE_V2, 9);
        h.set_ext("a", "producers");
        h.set_ext("b", "orders");
        h.set_ext("n", "broker-a@new");
        h.set_ext("bname", "broker-a@new");
        for encoding in [Encoding::Json, Encoding::Binary] {
            let raw = encode(&h, b"body", encoding).unwrap();
            let fast = renamed_send(&endpoint, &raw, encoding).expect("in place");
            let slow = to_real(&endpoint, Frame::parse(raw.clone()).unwrap()).unwrap();
            assert_eq!(fast, slow, "{encoding:?}");
            let got = Frame::parse(fast).unwrap();
            assert_eq!(
                (got.header.ext("n"), got.header.ext("bname")),
                (Some("broker-a"), Some("broker-a"))
            );
        }
        // Naming another broker (or none): relayed as received.
        h.set_ext("n", "broker-b@new");
        h.remove_ext("bname");
        let raw = encode(&h, b"", Encoding::Json).unwrap();
        assert_eq!(renamed_send(&endpoint, &raw, Encoding::Json), Some(raw));
    }
}
