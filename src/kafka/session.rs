//! One client connection: requests read in order, each routed (split per
//! partition where it names partitions) onto the session's own upstream
//! links, and answered in request order with the client's correlation ids.
//!
//! Two halves run concurrently: the request half reads a frame, sends its
//! upstream parts at once (so every link sees requests in client order,
//! which keeps each partition's produce order) and queues a *reply*, a
//! future that awaits the answers and builds the client's response; the
//! response half awaits replies in order and writes them. The queue is
//! bounded ([`WINDOW`]), which bounds a pipelining client's in-flight
//! requests and the memory they hold.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::messages::{ApiKey, RequestHeader as KpRequestHeader};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{
    RequestHeader, decode_response_body, encode_request, next_frame, peek_request,
};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::cluster::Side;
use super::link::{Answer, Link, LinkRounds, reauth_deadline};
use super::sasl::client::SaslLogin;
use super::sasl::server::{self as sasl_server, ClientLogins, Login, MAX_PREAUTH_FRAME, Step};
use super::split::Dest;
use super::versions::admit;
use super::{Door, Shared, dispatch};
use crate::metrics;
use crate::proxy::Stream;

/// Read buffer kept free before each read; larger frames grow it once
/// their prefix is seen (`next_frame` reserves).
const READ_RESERVE: usize = 16 * 1024;
/// Replies queued per connection before the session stops reading.
const WINDOW: usize = 64;
const CLIENT_WRITE_BUFFER: usize = 64 * 1024;

/// Why a connection ended (the `reason` label of `CONNECTIONS_CLOSED`).
#[derive(Debug)]
pub(super) enum Close {
    Client,
    Idle,
    Shutdown,
    Protocol(String),
    Upstream(String),
    /// The client's login failed; its refusal is queued, then the
    /// connection closes.
    Auth,
}

/// What a reply writes to the client.
pub(super) enum Out {
    /// Nothing (Produce with acks=0).
    Nothing,
    /// A frame already carrying the client's correlation id.
    Frame(Bytes),
    /// An upstream answer whose correlation id must become the client's.
    Relabelled(Bytes, i32),
}

/// A queued answer to one client request.
pub(super) type Reply = BoxFuture<'static, Result<Out, Close>>;

/// The request half's state: the links and the session's correlation ids.
pub(super) struct Session {
    pub shared: Arc<Shared>,
    links: HashMap<(Side, Option<String>), Link>,
    next_id: i32,
    peer: SocketAddr,
    /// Where the client is in its SASL login (only with `kafka.users_file`).
    login: Login,
    /// A login again in progress on a logged-in connection (KIP-368).
    relogin: Option<Login>,
}

impl Session {
    /// The next correlation id of the session's own id space.
    pub fn next_id(&mut self) -> i32 {
        self.next_id = self.next_id.wrapping_add(1) & i32::MAX;
        self.next_id
    }

    /// The link to `addr` of `side` (`None`: the cluster's bootstrap
    /// endpoints), connecting on first use.
    async fn link(&mut self, side: Side, addr: Option<&str>) -> Result<&mut Link, Close> {
        let key = (side, addr.map(str::to_owned));
        if let Some(why) = self.links.get(&key).and_then(Link::failed) {
            return Err(Close::Upstream(why));
        }
        let due = self
            .links
            .get(&key)
            .and_then(|l| l.reauth_at)
            .is_some_and(|at| std::time::Instant::now() >= at);
        if due {
            self.reauthenticate(side, &key).await?;
        }
        if !self.links.contains_key(&key) {
            let mut upstream = self.shared.upstream(side, addr).map_err(Close::Upstream)?;
            if let Login::Done {
                links: Some(links), ..
            } = &self.login
            {
                let login: Arc<dyn crate::proxy::Handshake> = links[side as usize].clone();
                upstream = upstream.with_handshake(Some(login));
            }
            let (stream, lifetime) = upstream
                .connect_for_lifetime()
                .await
                .map_err(|e| Close::Upstream(e.to_string()))?;
            let name = format!(
                "cluster \"{}\" at {}",
                upstream.cluster,
                addr.unwrap_or("its bootstrap endpoints")
            );
            metrics::counter!(metrics::KAFKA_SESSION_LINKS, "migration" => self.shared.migration.name.to_string(), "cluster" => upstream.cluster.to_string())
                .increment(1);
            let mut link = Link::new(name, stream, self.shared.max_frame);
            link.reauth_at = lifetime.map(reauth_deadline);
            self.links.insert(key.clone(), link);
        }
        self.links
            .get_mut(&key)
            .ok_or_else(|| Close::Upstream("link vanished".into()))
    }

    /// The SASL login the session's links to `side` use: the client's
    /// mapped principal, else the cluster's own.
    fn sasl_login(&self, side: Side) -> Option<Arc<SaslLogin>> {
        match &self.login {
            Login::Done {
                links: Some(links), ..
            } => Some(links[side as usize].clone()),
            _ => self.shared.cluster_logins[side as usize].proxy.clone(),
        }
    }

    /// Logs in again on the link at `key` before its broker session
    /// expires (KIP-368), through the link itself: requests already sent
    /// are answered first, as the broker processes them in order.
    async fn reauthenticate(
        &mut self,
        side: Side,
        key: &(Side, Option<String>),
    ) -> Result<(), Close> {
        let Some(mut link) = self.links.remove(key) else {
            return Ok(());
        };
        let Some(login) = self.sasl_login(side) else {
            link.reauth_at = None;
            self.links.insert(key.clone(), link);
            return Ok(());
        };
        let ids = vec![self.next_id(), self.next_id(), self.next_id()];
        let mut rounds = LinkRounds {
            link: &mut link,
            ids: ids.into_iter(),
        };
        let lifetime = login
            .login(&mut rounds)
            .await
            .map_err(|e| Close::Upstream(format!("re-authenticating to {}: {e}", link.name)))?;
        link.reauth_at = lifetime.map(reauth_deadline);
        metrics::counter!(metrics::KAFKA_REAUTHENTICATIONS, "migration" => self.shared.migration.name.to_string(), "cluster" => self.shared.cluster_name(side))
            .increment(1);
        self.links.insert(key.clone(), link);
        Ok(())
    }

    /// Forgets the link to `addr` of `side` if it failed, so the next
    /// request connects again. Only for requests that carry no order with
    /// the ones before (Metadata): a failed link's answers owed already
    /// failed their replies.
    pub fn forget_failed(&mut self, side: Side, addr: Option<&str>) {
        let key = (side, addr.map(str::to_owned));
        if self.links.get(&key).and_then(Link::failed).is_some() {
            self.links.remove(&key);
        }
    }

    /// Forwards the client's request frame unchanged but for the
    /// correlation id; returns the answer's receiver unless `answered` is
    /// false.
    pub async fn forward(
        &mut self,
        side: Side,
        addr: Option<&str>,
        frame: &Bytes,
        answered: bool,
    ) -> Result<Option<oneshot::Receiver<Answer>>, Close> {
        let id = self.next_id();
        let id_bytes = id.to_be_bytes();
        let (head, rest) = (frame.get(..8), frame.get(12..));
        let (Some(head), Some(rest)) = (head, rest) else {
            return Err(Close::Protocol("request shorter than its header".into()));
        };
        self.count_out(side, frame.len());
        self.link(side, addr)
            .await?
            .send(&[head, &id_bytes, rest], id, answered)
            .await
            .map_err(Close::Upstream)
    }

    /// Sends a request the proxy encoded itself (a split part or its own),
    /// with the client's id and `client_id` in the header.
    pub async fn send<T: Encodable>(
        &mut self,
        dest: &Dest,
        key: ApiKey,
        version: i16,
        client_id: Option<StrBytes>,
        body: &T,
        answered: bool,
    ) -> Result<Option<oneshot::Receiver<Answer>>, Close> {
        let id = self.next_id();
        let header = KpRequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(client_id);
        let frame = encode_request(&header, body)
            .map_err(|e| Close::Protocol(format!("re-encoding {key:?} v{version}: {e}")))?;
        self.count_out(dest.side, frame.len());
        self.link(dest.side, dest.addr.as_deref())
            .await?
            .send(&[&frame], id, answered)
            .await
            .map_err(Close::Upstream)
    }

    /// The proxy's own request to `dest`, sent at once and its answer
    /// decoded (for lookups a client request waits on).
    ///
    /// # Errors
    /// [`Close::Upstream`] when the link fails or the answer does not decode.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        dest: &Dest,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, Close> {
        let rx = self
            .send(dest, key, version, None, body, true)
            .await?
            .ok_or_else(|| Close::Upstream("no answer expected".into()))?;
        self.flush().await?;
        let frame = answer(rx).await?;
        decode_response_body(&frame, key as i16, version).map_err(|e| {
            Close::Upstream(format!(
                "{key:?} answer from the {}: {e}",
                dest.side.as_str()
            ))
        })
    }

    fn count_out(&self, side: Side, len: usize) {
        metrics::counter!(metrics::BYTES, "migration" => self.shared.migration.name.to_string(), "cluster" => self.shared.cluster_name(side), "direction" => "to_upstream")
            .increment(len as u64);
    }

    /// Pushes every link's buffered requests to its socket.
    pub async fn flush(&mut self) -> Result<(), Close> {
        for link in self.links.values_mut() {
            link.flush().await.map_err(Close::Upstream)?;
        }
        Ok(())
    }
}

/// Awaits one upstream answer.
///
/// # Errors
/// [`Close::Upstream`] when the link failed or went away.
pub(super) async fn answer(rx: oneshot::Receiver<Answer>) -> Result<Bytes, Close> {
    match rx.await {
        Ok(Ok(frame)) => Ok(frame),
        Ok(Err(why)) => Err(Close::Upstream(why)),
        Err(_) => Err(Close::Upstream("the upstream link closed".into())),
    }
}

/// The client id of a request, for the proxy's own re-encoded parts.
pub(super) fn client_id(frame: &[u8], header: &RequestHeader) -> Option<StrBytes> {
    header
        .client_id(frame)
        .map(|id| StrBytes::from_string(String::from_utf8_lossy(id).into_owned()))
}

pub(super) async fn run(
    shared: Arc<Shared>,
    door: Door,
    client: Stream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let name = shared.migration.name.to_string();
    let (client_r, client_w) = tokio::io::split(client);
    let (tx, rx) = mpsc::channel(WINDOW);
    let mut session = Session {
        shared: shared.clone(),
        links: HashMap::new(),
        next_id: 0,
        peer,
        login: Login::default(),
        relogin: None,
    };
    let reads = requests(&mut session, client_r, tx, &shutdown);
    let writes = responses(&shared, rx, client_w);
    tokio::pin!(reads, writes);
    let close = tokio::select! {
        close = &mut reads => match close {
            // Draining: no new request is read, and the answers already
            // owed (a produce, a long-polled fetch) are written before the
            // connection closes. The proxy-wide grace bounds the wait.
            Close::Shutdown => match writes.await {
                Close::Client => Close::Shutdown,
                other => other,
            },
            // The refusal is queued: write it, then close.
            Close::Auth => {
                let _ = writes.await;
                Close::Auth
            }
            other => other,
        },
        close = &mut writes => close,
    };
    let reason = match &close {
        Close::Client => "client",
        Close::Idle => "idle",
        Close::Shutdown => "shutdown",
        Close::Protocol(_) => "protocol_error",
        Close::Upstream(_) => "upstream",
        Close::Auth => "auth",
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
            tracing::debug!(migration = %name, %peer, ?door, reason, "kafka client connection closed");
        }
    }
}

/// Client → upstream: frame, peek, admit, route, queue the reply.
async fn requests(
    session: &mut Session,
    mut client: impl AsyncRead + Unpin,
    replies: mpsc::Sender<Reply>,
    shutdown: &CancellationToken,
) -> Close {
    let idle = session.shared.idle_timeout;
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    loop {
        loop {
            let logins = session.shared.logins.clone();
            let pending = logins.is_some() && !session.login.done();
            let max_frame = if pending {
                MAX_PREAUTH_FRAME.min(session.shared.max_frame)
            } else {
                session.shared.max_frame
            };
            let frame = match next_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Close::Protocol(e.to_string()),
            };
            let header = match peek_request(&frame) {
                Ok(h) => h,
                Err(e) => return Close::Protocol(e.to_string()),
            };
            if let Some(logins) = logins {
                let relogin = header.key == ApiKey::SaslHandshake
                    || (session.relogin.is_some() && header.key == ApiKey::SaslAuthenticate);
                if pending || relogin {
                    let (reply, close) = if pending {
                        before_login(session, &logins, &frame, &header).await
                    } else {
                        login_again(session, &logins, &frame, &header)
                    };
                    if let Err(close) = queue(session, &replies, reply).await {
                        return close;
                    }
                    match close {
                        Some(close) => return close,
                        None => continue,
                    }
                }
                if session.login.expired(std::time::Instant::now()) {
                    tracing::warn!(
                        migration = %session.shared.migration.name, peer = %session.peer,
                        user = session.login.user().unwrap_or_default(),
                        "kafka client session expired without logging in again; closing"
                    );
                    return Close::Auth;
                }
            }
            if let Err(refused) = admit(header.key, header.api_version) {
                return Close::Protocol(format!(
                    "request with correlation id {}: {refused}",
                    header.correlation_id
                ));
            }
            let reply = match dispatch::route(session, frame, &header).await {
                Ok(reply) => reply,
                Err(close) => return close,
            };
            if let Err(close) = queue(session, &replies, reply).await {
                return close;
            }
        }
        if let Err(close) = session.flush().await {
            return close;
        }
        buf.reserve(READ_RESERVE);
        let read = tokio::select! {
            () = shutdown.cancelled() => return Close::Shutdown,
            read = tokio::time::timeout(idle, client.read_buf(&mut buf)) => read,
        };
        match read {
            Err(_) => return Close::Idle,
            Ok(Ok(0) | Err(_)) => return Close::Client,
            Ok(Ok(_)) => {}
        }
    }
}

/// A request read before the client logged in, answered by the proxy
/// (no upstream connection is made for it); the close, when the login
/// failed or the request is not one a client may send yet.
async fn before_login(
    session: &mut Session,
    logins: &ClientLogins,
    frame: &Bytes,
    header: &RequestHeader,
) -> (Reply, Option<Close>) {
    let shared = session.shared.clone();
    let versions = if header.key == ApiKey::ApiVersions {
        let (source, target) = tokio::join!(
            shared.source_versions.rows_of(&shared, &shared.bootstrap),
            shared.target_versions.rows(&shared)
        );
        match (source, target) {
            (Some(s), Some(t)) => Some(cutover_kafka::intersect_api_versions(&s, &t)),
            (Some(rows), None) | (None, Some(rows)) => Some(rows.to_vec()),
            (None, None) => None,
        }
    } else {
        None
    };
    let step = sasl_server::step(
        logins,
        &mut session.login,
        frame,
        header,
        session.peer,
        &shared.migration.name,
        versions.as_deref(),
        None,
    );
    reply_to(step)
}

/// SaslHandshake/SaslAuthenticate on a logged-in connection: the client
/// logs in again before its session runs out (KIP-368), as the same user.
fn login_again(
    session: &mut Session,
    logins: &ClientLogins,
    frame: &Bytes,
    header: &RequestHeader,
) -> (Reply, Option<Close>) {
    let mut relogin = session.relogin.take().unwrap_or_default();
    let user = session.login.user().unwrap_or_default().to_owned();
    let step = sasl_server::step(
        logins,
        &mut relogin,
        frame,
        header,
        session.peer,
        &session.shared.migration.name,
        None,
        Some(&user),
    );
    if relogin.done() {
        session.login = relogin;
    } else {
        session.relogin = Some(relogin);
    }
    reply_to(step)
}

/// The reply (and close, if any) for a login step.
fn reply_to(step: Step) -> (Reply, Option<Close>) {
    match step {
        Step::Answer(out) => (Box::pin(async move { Ok(Out::Frame(out)) }), None),
        Step::Refuse(out, delay) => (
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(Out::Frame(out))
            }),
            Some(Close::Auth),
        ),
        Step::Close(why) => (
            Box::pin(async { Ok(Out::Nothing) }),
            Some(Close::Protocol(why)),
        ),
    }
}

/// Queues a reply; when the window is full, first pushes buffered
/// requests upstream so the replies ahead can complete.
async fn queue(
    session: &mut Session,
    replies: &mpsc::Sender<Reply>,
    reply: Reply,
) -> Result<(), Close> {
    match replies.try_send(reply) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(reply)) => {
            session.flush().await?;
            replies.send(reply).await.map_err(|_| Close::Client)
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Close::Client),
    }
}

/// Replies → client, in request order.
async fn responses(
    shared: &Shared,
    mut replies: mpsc::Receiver<Reply>,
    client: impl AsyncWrite + Unpin,
) -> Close {
    let bytes = metrics::counter!(metrics::BYTES, "migration" => shared.migration.name.to_string(), "cluster" => "client", "direction" => "to_client");
    let mut client = BufWriter::with_capacity(CLIENT_WRITE_BUFFER, client);
    loop {
        let reply = if let Ok(reply) = replies.try_recv() {
            reply
        } else {
            if client.flush().await.is_err() {
                return Close::Client;
            }
            match replies.recv().await {
                Some(reply) => reply,
                None => return Close::Client,
            }
        };
        let written = match reply.await {
            Ok(Out::Nothing) => Ok(0),
            Ok(Out::Frame(frame)) => client.write_all(&frame).await.map(|()| frame.len()),
            Ok(Out::Relabelled(frame, id)) => write_relabelled(&mut client, &frame, id).await,
            Err(close) => return close,
        };
        match written {
            Ok(n) => bytes.increment(n as u64),
            Err(_) => return Close::Client,
        }
    }
}

/// Writes a response frame with its correlation id replaced, without
/// copying the body.
async fn write_relabelled(
    client: &mut (impl AsyncWrite + Unpin),
    frame: &Bytes,
    id: i32,
) -> std::io::Result<usize> {
    let (Some(len), Some(rest)) = (frame.get(..4), frame.get(8..)) else {
        return Err(std::io::Error::other("answer shorter than its header"));
    };
    client.write_all(len).await?;
    client.write_all(&id.to_be_bytes()).await?;
    client.write_all(rest).await?;
    Ok(frame.len())
}
