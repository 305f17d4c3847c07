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

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::messages::ApiKey;
use cutover_kafka::{RequestHeader, next_frame, peek_request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dispatch;
use super::link::explain;
use super::relay::{Close, Out, Reply, Session};
use crate::kafka::Door;
use crate::kafka::Shared;
use crate::kafka::sasl::server::{self as sasl_server, ClientLogins, MAX_PREAUTH_FRAME, Step};
use crate::kafka::versions::admit;
use crate::metrics;
use crate::proxy::Stream;

/// Read buffer room made when it runs low; larger frames grow it once
/// their prefix is seen (`next_frame` reserves).
const READ_RESERVE: usize = 16 * 1024;
/// Free room below which the buffer grows before a read. Frames split off
/// it still share its memory, so growing before every read would allocate
/// a new buffer per request; growing only when nearly full allocates once
/// per [`READ_RESERVE`] or so of traffic.
const READ_MIN_SPARE: usize = 4 * 1024;
/// Replies queued per connection before the session stops reading.
const WINDOW: usize = 64;
const CLIENT_WRITE_BUFFER: usize = 64 * 1024;

pub(crate) async fn run(
    shared: Arc<Shared>,
    door: Door,
    client: Stream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let name = shared.migration.name.to_string();
    let (client_r, client_w) = tokio::io::split(client);
    let (tx, rx) = mpsc::channel(WINDOW);
    let mut session = Session::new(shared.clone(), peer);
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
    let reason = close.reason();
    metrics::counter!(metrics::CONNECTIONS_CLOSED, "migration" => name.clone(), "reason" => reason)
        .increment(1);
    let party = close.party();
    match &close {
        Close::Protocol { .. } => {
            metrics::counter!(metrics::REQUEST_ERRORS, "migration" => name.clone(), "cluster" => "client", "kind" => "protocol")
                .increment(1);
            tracing::warn!(migration = %name, %peer, ?door, ?party, reason = %explain(&close), "closing kafka client connection");
        }
        Close::Upstream { .. } => {
            tracing::warn!(migration = %name, %peer, ?door, ?party, reason = %explain(&close), "closing kafka client connection: upstream failed");
        }
        Close::Internal { .. } => {
            tracing::error!(migration = %name, %peer, ?door, ?party, reason = %explain(&close), "closing kafka client connection: the proxy failed");
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
                Err(e) => return Close::protocol_by("reading a request frame", e),
            };
            let header = match peek_request(&frame) {
                Ok(h) => h,
                Err(e) => return Close::protocol_by("reading a request header", e),
            };
            if let Err(close) = serve(session, logins, pending, frame, &header, &replies).await {
                return close;
            }
        }
        if let Err(close) = session.flush().await {
            return close;
        }
        if buf.capacity() - buf.len() < READ_MIN_SPARE {
            buf.reserve(READ_RESERVE);
        }
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

/// One request: a login step answered by the proxy, or (once logged in,
/// or with no login required) admitted and routed upstream; its reply is
/// queued in order. `Err` closes the connection.
async fn serve(
    session: &mut Session,
    logins: Option<Arc<ClientLogins>>,
    pending: bool,
    frame: Bytes,
    header: &RequestHeader,
    replies: &mpsc::Sender<Reply>,
) -> Result<(), Close> {
    if let Some(logins) = logins {
        let relogin = header.key == ApiKey::SaslHandshake
            || (session.relogin.is_some() && header.key == ApiKey::SaslAuthenticate);
        if pending || relogin {
            let (reply, close) = if pending {
                before_login(session, &logins, &frame, header).await
            } else {
                login_again(session, &logins, &frame, header)
            };
            queue(session, replies, reply).await?;
            return close.map_or(Ok(()), Err);
        }
        if session.login.expired(std::time::Instant::now()) {
            tracing::warn!(
                migration = %session.shared.migration.name, peer = %session.peer,
                user = session.login.user().unwrap_or_default(),
                "kafka client session expired without logging in again; closing"
            );
            return Err(Close::Auth);
        }
    }
    if let Err(refused) = admit(header.key, header.api_version) {
        return Err(Close::protocol_by(
            format!("request with correlation id {}", header.correlation_id),
            refused,
        ));
    }
    let reply = dispatch::route(session, frame, header).await?;
    queue(session, replies, reply).await
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
    let versions = if header.key == ApiKey::ApiVersions
        && shared.splice.home() == crate::kafka::cluster::Side::Target
    {
        shared
            .target_versions
            .rows(&shared)
            .await
            .map(|rows| rows.to_vec())
    } else if header.key == ApiKey::ApiVersions {
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
            Some(Close::protocol(why)),
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
    let bytes = shared.meters.to_client().clone();
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
