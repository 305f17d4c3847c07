//! One client connection: read pipelined requests, send each to the side
//! its keyspace's state names, and answer in request order.
//!
//! A single task owns the client and both upstream connections and waits
//! on whichever has something to say; so there is no locking on the
//! request path and ordering is a queue, not a protocol between tasks.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use cutover_redis::{ReplyKind, encode, parse_request, reply_kind, reply_len};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::copier::Item;
use super::keyspace::Keyspace;
use super::shared::Shared;
use super::side::{self, Mirror, Side, SideConn};
use super::slots::Slots;
use crate::proxy::Stream;

/// Requests in flight per client before the proxy stops reading from it:
/// deep enough for `redis-benchmark -P 32` × many, bounded so a client that
/// never reads its replies cannot grow our memory without limit.
pub(super) const WINDOW: usize = 4096;
/// Read buffer reserved per read; small so idle connections stay cheap.
const READ_CHUNK: usize = 4096;

/// What a pending upstream reply is for.
pub(super) enum Waiter {
    /// The whole reply of a client slot.
    Slot {
        id: u64,
        after: Option<Box<After>>,
        shadow: Option<u64>,
        sent: Instant,
        blocking: bool,
    },
    /// One part of a split command.
    Part {
        id: u64,
        part: usize,
        after: Option<Box<After>>,
    },
    /// A shadow read to compare with the primary's reply.
    Shadow(u64),
    /// A reply nobody needs (MULTI's +OK inside a forwarded transaction, mirrored SELECT).
    Discard,
    /// The upstream connection's own client id (CLIENT ID), for CLIENT UNBLOCK.
    UpstreamId,
    /// A forwarded SELECT, answering slot `id`; `previous` is the database
    /// to return to if Redis refuses it.
    Select { id: u64, previous: u32 },
    /// The connection switching to the user the client just authenticated
    /// as; refused, the client is disconnected (it must not go on as its
    /// previous user).
    Reauth,
}

/// Work to do once a write's reply arrives: converge its keys, release the fence count.
pub(super) struct After {
    pub keys: Vec<(Arc<Keyspace>, Bytes)>,
    pub converge_from: Option<Side>,
    pub keyspaces: Vec<Arc<Keyspace>>,
    pub db: u32,
}

/// A connected upstream with its queue of expected replies.
pub(super) struct SideState {
    pub conn: SideConn,
    pub waiters: VecDeque<Waiter>,
    pub out: BytesMut,
    /// Last time a reply arrived or the queue became non-empty.
    pub progress: Instant,
}

/// A shadow comparison waiting for its two replies.
pub(super) struct Shadow {
    pub keyspace: usize,
    pub key: Bytes,
    pub primary: Option<Bytes>,
    pub shadow: Option<Bytes>,
}

/// A request held because its keyspace is fenced.
pub(super) struct Parked {
    pub request: cutover_redis::Request,
    pub keyspace: Arc<Keyspace>,
    /// The transaction, when the parked request is EXEC.
    pub txn: Option<super::txn::Txn>,
}

/// One client's session state.
pub(super) struct Session {
    pub shared: Arc<Shared>,
    pub client: Stream,
    pub input: BytesMut,
    pub output: BytesMut,
    pub sides: [Option<SideState>; 2],
    pub slots: Slots,
    pub mirror: Mirror,
    pub authenticated: bool,
    /// The user the client authenticated as, with `upstream_identity:
    /// client` (None: `default`).
    pub user: Option<super::side::Credentials>,
    pub multi: Option<super::txn::Txn>,
    pub watch_side: Option<Side>,
    /// The connection holding the WATCH was lost: EXEC must abort.
    pub watch_lost: bool,
    /// This client's id as it sees it (CLIENT ID, HELLO, CLIENT UNBLOCK).
    pub client_id: u64,
    /// Cancelled when another client runs CLIENT KILL ID on this one.
    pub killed: CancellationToken,
    /// CLIENT NO-EVICT ON is in effect (applied to every upstream connection).
    pub no_evict: bool,
    /// CLIENT REPLY OFF is in effect.
    pub reply_off: bool,
    /// CLIENT REPLY SKIP: the next command's reply is dropped.
    pub skip_next_reply: bool,
    /// The command being dispatched follows a CLIENT REPLY SKIP.
    pub skipping: bool,
    pub parked: Option<Parked>,
    pub pubsub: Option<Side>,
    pub shadows: HashMap<u64, Shadow>,
    pub next_shadow: u64,
    pub closing: bool,
    pub rng: u64,
    pub peer: std::net::SocketAddr,
    /// Why the connection ends, for `cutover_client_connections_closed_total`.
    pub close_reason: &'static str,
    /// Shadow reads skip a side that failed to connect until this instant.
    pub shadow_backoff: [Option<Instant>; 2],
}

enum Event {
    Shutdown,
    Killed,
    Client(std::io::Result<usize>),
    Side(Side, std::io::Result<usize>),
    FenceLifted,
    Timer,
}

async fn read_side(side: &mut Option<SideState>) -> std::io::Result<usize> {
    match side {
        Some(state) => state.conn.stream.read_buf(&mut state.conn.buffer).await,
        None => std::future::pending().await,
    }
}

async fn fence_lifted(parked: &Option<Parked>) {
    match parked {
        Some(p) => p.keyspace.fence_lifted().await,
        None => std::future::pending().await,
    }
}

impl Session {
    pub(super) fn new(shared: Arc<Shared>, client: Stream, peer: std::net::SocketAddr) -> Self {
        let authenticated = shared.default_authenticated();
        let (client_id, killed) = shared.clients.register();
        Session {
            shared,
            client,
            input: BytesMut::new(),
            output: BytesMut::new(),
            sides: [None, None],
            slots: Slots::default(),
            mirror: Mirror {
                protocol: 2,
                db: 0,
                name: None,
            },
            authenticated,
            user: None,
            multi: None,
            watch_side: None,
            watch_lost: false,
            client_id,
            killed,
            no_evict: false,
            reply_off: false,
            skip_next_reply: false,
            skipping: false,
            parked: None,
            pubsub: None,
            shadows: HashMap::new(),
            next_shadow: 0,
            closing: false,
            rng: seed(&peer),
            peer,
            close_reason: "client",
            shadow_backoff: [None, None],
        }
    }

    /// Serves the client until it leaves, breaks the protocol, idles out, or shutdown drains it.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut timer: std::pin::Pin<Box<Sleep>> =
            Box::pin(tokio::time::sleep(self.shared.idle_timeout));
        let mut last_client = Instant::now();
        let mut armed = last_client + self.shared.idle_timeout;
        loop {
            if let Err(e) = self.flush().await {
                tracing::debug!(peer = %self.peer, error = %e, "client write failed");
                break;
            }
            if self.closing && self.slots.is_empty() {
                break;
            }
            let read_client = !self.closing && self.parked.is_none() && self.slots.len() < WINDOW;
            if self.input.capacity() - self.input.len() < READ_CHUNK {
                self.input.reserve(READ_CHUNK);
            }
            let closing = self.closing;
            let event = {
                let Session {
                    client,
                    input,
                    sides,
                    parked,
                    killed,
                    ..
                } = &mut self;
                let [source, target] = sides;
                tokio::select! {
                    () = shutdown.cancelled(), if !closing => Event::Shutdown,
                    () = killed.cancelled() => Event::Killed,
                    read = client.read_buf(input), if read_client => Event::Client(read),
                    read = read_side(source) => Event::Side(Side::Source, read),
                    read = read_side(target) => Event::Side(Side::Target, read),
                    () = fence_lifted(parked) => Event::FenceLifted,
                    () = timer.as_mut() => Event::Timer,
                }
            };
            let fired = matches!(event, Event::Timer);
            if self.handle(event, &mut last_client).await.is_break() {
                break;
            }
            // Re-arming a timer takes a lock in tokio's timer wheel: do it only
            // when the deadline moves earlier, or after the timer fired.
            let next = self.next_deadline(last_client);
            if next < armed || fired {
                armed = next;
                timer.as_mut().reset(next.into());
            }
        }
        let _ = self.flush().await;
        self.release_all();
        crate::metrics::counter!(
            crate::metrics::CONNECTIONS_CLOSED,
            "migration" => self.shared.migration.name.to_string(),
            "reason" => self.close_reason
        )
        .increment(1);
    }

    /// Acts on one event of [`Session::run`]'s loop; `Break` leaves the
    /// loop, and the connection closes.
    async fn handle(&mut self, event: Event, last_client: &mut Instant) -> ControlFlow<()> {
        match event {
            Event::Shutdown => {
                self.closing = true;
                self.close_reason = "shutdown";
            }
            // As Redis: the connection closes at once, owed replies or not.
            Event::Killed => {
                self.close_reason = "client";
                return ControlFlow::Break(());
            }
            // A half-closed client still gets the replies it is owed.
            Event::Client(Ok(0)) => self.closing = true,
            Event::Client(Err(_)) => return ControlFlow::Break(()),
            Event::Client(Ok(_)) => {
                *last_client = Instant::now();
                self.process_input().await;
            }
            Event::Side(side, Ok(0)) => self.fail_side(side, "the cluster closed the connection"),
            Event::Side(side, Err(e)) => self.fail_side(side, &e.to_string()),
            Event::Side(side, Ok(n)) => {
                self.shared.side_metrics[side.index()]
                    .bytes_in
                    .increment(n as u64);
                self.process_replies(side);
            }
            Event::FenceLifted => self.resume_parked().await,
            Event::Timer => {
                if self.check_timeouts(*last_client) {
                    self.close_reason = "idle";
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// The fence a request was parked behind has lifted: dispatch it (in
    /// its transaction, if it was in one), then read on unless it parked again.
    async fn resume_parked(&mut self) {
        if let Some(parked) = self.parked.take() {
            if let Some(txn) = parked.txn {
                self.multi = Some(txn);
            }
            self.dispatch(parked.request).await;
            if self.parked.is_none() {
                self.process_input().await;
            }
        }
    }

    fn next_deadline(&self, last_client: Instant) -> Instant {
        let idle = last_client + self.shared.idle_timeout;
        self.sides
            .iter()
            .flatten()
            .filter(|s| !s.waiters.is_empty())
            .map(|s| s.progress + self.shared.upstream_timeout)
            .fold(idle, Instant::min)
    }

    /// Returns true when the client has been idle too long.
    fn check_timeouts(&mut self, last_client: Instant) -> bool {
        let now = Instant::now();
        for side in [Side::Source, Side::Target] {
            let Some(state) = &self.sides[side.index()] else {
                continue;
            };
            let blocking = state
                .waiters
                .iter()
                .any(|w| matches!(w, Waiter::Slot { blocking: true, .. }));
            if !state.waiters.is_empty()
                && !blocking
                && now >= state.progress + self.shared.upstream_timeout
            {
                self.shared.side_metrics[side.index()].timeouts.increment(1);
                let reason = format!("no reply within {:?}", self.shared.upstream_timeout);
                self.fail_side(side, &reason);
            }
        }
        let idle = self.slots.is_empty()
            && self.pubsub.is_none()
            && now >= last_client + self.shared.idle_timeout;
        if idle {
            tracing::debug!(peer = %self.peer, "closing idle client");
        }
        idle
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        for side in [Side::Source, Side::Target] {
            let Some(state) = &mut self.sides[side.index()] else {
                continue;
            };
            if state.out.is_empty() {
                continue;
            }
            let sent = state.out.len() as u64;
            if let Err(e) = state.conn.stream.write_all(&state.out).await {
                self.fail_side(side, &e.to_string());
                continue;
            }
            state.out.clear();
            self.shared.side_metrics[side.index()]
                .bytes_out
                .increment(sent);
        }
        self.slots.drain_ready(&mut self.output);
        if !self.output.is_empty() {
            self.client.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    async fn process_input(&mut self) {
        while self.parked.is_none() && !self.closing && self.slots.len() < WINDOW {
            match parse_request(&mut self.input, &self.shared.limits) {
                Ok(Some(request)) => self.dispatch(request).await,
                Ok(None) => break,
                Err(e) => {
                    self.shared.protocol_errors.increment(1);
                    tracing::info!(peer = %self.peer, error = %e, "closing client after a protocol error");
                    self.slots.ready(e.client_reply());
                    self.closing = true;
                    self.close_reason = "protocol_error";
                }
            }
        }
    }

    /// Makes sure `side` is connected; answers nothing itself.
    pub(super) async fn connect(&mut self, side: Side) -> Result<(), String> {
        if self.sides[side.index()].is_some() {
            return Ok(());
        }
        let credentials = self.side_credentials(side);
        let shared = &self.shared;
        match side::open(
            &shared.upstreams[side.index()],
            &credentials,
            &self.mirror,
            &shared.limits,
        )
        .await
        {
            Ok(conn) => {
                self.sides[side.index()] = Some(SideState {
                    conn,
                    waiters: VecDeque::new(),
                    out: BytesMut::new(),
                    progress: Instant::now(),
                });
                // Pipelined ahead of the first command: costs no round trip.
                self.send(
                    side,
                    &encode::command(&[b"CLIENT", b"ID"]),
                    Waiter::UpstreamId,
                );
                if self.no_evict {
                    let command = encode::command(&[b"CLIENT", b"NO-EVICT", b"ON"]);
                    self.send(side, &command, Waiter::Discard);
                }
                Ok(())
            }
            Err(e) => {
                shared.side_metrics[side.index()].unreachable.increment(1);
                tracing::warn!(migration = %shared.migration.name, cluster = shared.cluster(side), error = %e, "upstream unavailable");
                Err(e.to_string())
            }
        }
    }

    /// Queues `raw` to `side` expecting one reply for `waiter`.
    pub(super) fn send(&mut self, side: Side, raw: &[u8], waiter: Waiter) {
        let state = self.sides[side.index()]
            .as_mut()
            .expect("connect() before send()");
        if state.waiters.is_empty() {
            state.progress = Instant::now();
        }
        state.out.extend_from_slice(raw);
        state.waiters.push_back(waiter);
    }

    /// Queues `raw` with no reply expected (pub/sub mode relays replies raw).
    pub(super) fn send_unanswered(&mut self, side: Side, raw: &[u8]) {
        if let Some(state) = self.sides[side.index()].as_mut() {
            state.out.extend_from_slice(raw);
        }
    }

    fn process_replies(&mut self, side: Side) {
        loop {
            let Some(state) = self.sides[side.index()].as_mut() else {
                return;
            };
            let frame = match reply_len(&state.conn.buffer, &self.shared.limits) {
                Ok(Some(len)) => state.conn.buffer.split_to(len).freeze(),
                Ok(None) => return,
                Err(e) => {
                    self.fail_side(side, &format!("unreadable reply: {e}"));
                    return;
                }
            };
            state.progress = Instant::now();
            let is_push = reply_kind(&frame) == ReplyKind::Push;
            let waiter = if is_push {
                None
            } else {
                state.waiters.pop_front()
            };
            match waiter {
                Some(waiter) => self.complete(side, waiter, frame),
                // Pub/sub messages and RESP3 pushes are not answers to a request.
                None => self.output.extend_from_slice(&frame),
            }
        }
    }

    fn complete(&mut self, side: Side, waiter: Waiter, reply: Bytes) {
        match waiter {
            Waiter::Slot {
                id,
                after,
                shadow,
                sent,
                ..
            } => {
                self.shared.side_metrics[side.index()]
                    .latency
                    .record(sent.elapsed().as_secs_f64());
                if let Some(shadow) = shadow {
                    self.shadow_reply(shadow, true, reply.clone());
                }
                self.slots.fill(id, reply);
                if let Some(after) = after {
                    self.after_write(*after);
                }
            }
            Waiter::Part { id, part, after } => {
                self.slots.fill_part(id, part, reply);
                if let Some(after) = after {
                    self.after_write(*after);
                }
            }
            Waiter::Shadow(id) => self.shadow_reply(id, false, reply),
            Waiter::Discard => {}
            Waiter::Reauth => {
                if reply.starts_with(b"-") {
                    tracing::warn!(peer = %self.peer, cluster = self.shared.cluster(side), reply = %String::from_utf8_lossy(&reply).trim_end(), "cluster refused the client's new user; disconnecting the client");
                    self.closing = true;
                    self.close_reason = "upstream_auth";
                }
            }
            Waiter::Select { id, previous } => self.select_answered(id, previous, reply),
            Waiter::UpstreamId => {
                let id = super::slots::parse_integer(&reply).and_then(|n| u64::try_from(n).ok());
                self.shared.clients.set_upstream(self.client_id, side, id);
            }
        }
    }

    /// Queues the written keys for convergence, then releases the fence count.
    fn after_write(&self, after: After) {
        if let Some(from) = after.converge_from {
            for (keyspace, key) in after.keys {
                self.shared.copier.mark(Item {
                    keyspace: keyspace.index,
                    db: after.db,
                    key,
                    from,
                });
            }
        }
        for keyspace in after.keyspaces {
            keyspace.end_write();
        }
    }

    fn shadow_reply(&mut self, id: u64, primary: bool, reply: Bytes) {
        let Some(entry) = self.shadows.get_mut(&id) else {
            return;
        };
        if primary {
            entry.primary = Some(reply);
        } else {
            entry.shadow = Some(reply);
        }
        let (Some(a), Some(b)) = (&entry.primary, &entry.shadow) else {
            return;
        };
        let metrics = &self.shared.keyspace_metrics[entry.keyspace];
        if a == b {
            metrics.shadow[0].increment(1);
        } else {
            metrics.shadow[1].increment(1);
            let logged = metrics
                .logged_mismatches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if logged < super::MISMATCHES_LOGGED {
                tracing::warn!(
                    migration = %self.shared.migration.name,
                    keyspace = %self.shared.keyspaces[entry.keyspace].1.topic.name,
                    key = %String::from_utf8_lossy(&entry.key),
                    primary = %String::from_utf8_lossy(&a[..a.len().min(80)]),
                    shadow = %String::from_utf8_lossy(&b[..b.len().min(80)]),
                    "shadow read differs"
                );
            }
        }
        self.shadows.remove(&id);
    }

    /// Answers every pending request on `side` with an error and drops the connection.
    pub(super) fn fail_side(&mut self, side: Side, reason: &str) {
        let Some(state) = self.sides[side.index()].take() else {
            return;
        };
        self.shared.clients.set_upstream(self.client_id, side, None);
        self.transaction_lost(side);
        let cluster = self.shared.cluster(side).to_owned();
        tracing::warn!(migration = %self.shared.migration.name, %cluster, %reason, pending = state.waiters.len(), "upstream connection lost");
        let error = encode::error(&format!(
            "ERR cutover: connection to cluster \"{cluster}\" lost: {reason}"
        ));
        for waiter in state.waiters {
            match waiter {
                Waiter::Shadow(id) => {
                    self.shared.keyspace_metrics[self.shadows.get(&id).map_or(0, |s| s.keyspace)]
                        .shadow[2]
                        .increment(1);
                    self.shadows.remove(&id);
                }
                other => self.complete(side, other, error.clone()),
            }
        }
        if self.pubsub == Some(side) {
            self.closing = true;
            self.close_reason = "upstream";
        }
    }

    /// Connection ends: writes still counted as in flight are released.
    fn release_all(&mut self) {
        for side in [Side::Source, Side::Target] {
            if self.sides[side.index()]
                .as_ref()
                .is_some_and(|s| !s.waiters.is_empty())
            {
                self.fail_side(side, "the client went away");
            }
        }
    }

    /// Cheap per-session sampler for shadow reads (xorshift; not for security).
    pub(super) fn sample(&mut self, ratio: f64) -> bool {
        if ratio <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        unit < ratio
    }
}

impl Drop for Session {
    /// The client id is forgotten however the session ends (even when its
    /// task is dropped mid-way), so the registry holds live clients only.
    fn drop(&mut self) {
        self.shared.clients.remove(self.client_id);
    }
}

fn seed(peer: &std::net::SocketAddr) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos());
    (u64::from(peer.port()) << 32 | u64::from(nanos)) | 1
}
