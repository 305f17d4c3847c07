//! What the per-API handlers relay a client request with: the session's
//! upstream links (one per cluster and broker, connected on first use and
//! logged in again before their broker session expires), its own
//! correlation ids, and the reply a handler queues. The connection loop
//! that reads requests and writes replies is `session`; it dispatches to
//! the handlers, which see only this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{ApiKey, RequestHeader as KpRequestHeader};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{RequestHeader, decode_response_body, encode_request};
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::link::{Answer, Link, LinkError, LinkRounds, reauth_deadline};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::sasl::client::SaslLogin;
use crate::kafka::sasl::server::Login;
use crate::kafka::splice::split::Dest;
use crate::metrics;

/// Why a connection ended (the `reason` label of `CONNECTIONS_CLOSED`).
///
/// Each variant says whose failure it was (see [`Close::party`]), and a
/// failure keeps the error that caused it, so the close reason counted and
/// logged is the true one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Close {
    #[error("the client closed the connection")]
    Client,
    #[error("the client sent nothing within the idle timeout")]
    Idle,
    #[error("the proxy is shutting down")]
    Shutdown,
    /// The client's login failed; its refusal is queued, then the
    /// connection closes.
    #[error("the client's login failed")]
    Auth,
    /// The client sent what the proxy cannot serve.
    #[error("the client broke the protocol: {context}")]
    Protocol {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A cluster failed: it could not be reached or logged in to, its
    /// connection broke, or its answer does not decode.
    #[error("the {} failed: {context}", side.as_str())]
    Upstream {
        side: Side,
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The proxy's own work failed: encoding what it built, or a state it
    /// should never reach. Neither the client's fault nor a cluster's.
    #[error("the proxy failed: {context}")]
    Internal {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
}

/// The error behind a failure, kept for the log.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Whose failure closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Party {
    /// The client: it left, idled, failed its login or broke the protocol.
    Client,
    /// The source cluster.
    Source,
    /// The target cluster.
    Target,
    /// The proxy itself (including its shutdown).
    Internal,
}

impl Close {
    /// The client sent what cannot be served.
    pub(crate) fn protocol(context: impl Into<String>) -> Self {
        Self::Protocol {
            context: context.into(),
            cause: None,
        }
    }

    /// The client sent what cannot be served, as `cause` says.
    pub(crate) fn protocol_by(context: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Self::Protocol {
            context: context.into(),
            cause: Some(cause.into()),
        }
    }

    /// `side` failed.
    pub(crate) fn upstream(side: Side, context: impl Into<String>) -> Self {
        Self::Upstream {
            side,
            context: context.into(),
            cause: None,
        }
    }

    /// `side` failed, as `cause` says.
    pub(crate) fn upstream_by(
        side: Side,
        context: impl Into<String>,
        cause: impl Into<Cause>,
    ) -> Self {
        Self::Upstream {
            side,
            context: context.into(),
            cause: Some(cause.into()),
        }
    }

    /// The proxy failed at its own work.
    pub(crate) fn internal(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            cause: None,
        }
    }

    /// The proxy failed at its own work, as `cause` says.
    pub(crate) fn internal_by(context: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Self::Internal {
            context: context.into(),
            cause: Some(cause.into()),
        }
    }

    /// A request's link failed (the side is the link's).
    pub(crate) fn link(error: Arc<LinkError>) -> Self {
        Self::upstream_by(error.side, "its connection failed", error)
    }

    /// Whose failure it was.
    pub(crate) fn party(&self) -> Party {
        match self {
            Self::Client | Self::Idle | Self::Auth | Self::Protocol { .. } => Party::Client,
            Self::Upstream {
                side: Side::Source, ..
            } => Party::Source,
            Self::Upstream {
                side: Side::Target, ..
            } => Party::Target,
            Self::Shutdown | Self::Internal { .. } => Party::Internal,
        }
    }

    /// The `reason` label of `CONNECTIONS_CLOSED`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Idle => "idle",
            Self::Shutdown => "shutdown",
            Self::Auth => "auth",
            Self::Protocol { .. } => "protocol_error",
            Self::Upstream { .. } => "upstream",
            Self::Internal { .. } => "internal",
        }
    }
}

/// A link's cluster and broker address (`None`: its bootstrap endpoints).
type LinkKey = (Side, Option<Arc<str>>);

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
    pub(crate) shared: Arc<Shared>,
    /// One per cluster and broker address (`None`: the bootstrap
    /// endpoints): a handful, found by comparing, so no key is built per
    /// request.
    links: Vec<(LinkKey, Link)>,
    next_id: i32,
    pub(crate) peer: SocketAddr,
    /// Where the client is in its SASL login (only with `kafka.users_file`).
    pub(crate) login: Login,
    /// A login again in progress on a logged-in connection (KIP-368).
    pub(super) relogin: Option<Login>,
    /// The last split fetch asked to answer at once came back without
    /// records (see `fetch::zero_wait`); set by its answer.
    pub(super) zero_wait_came_back_empty: Arc<AtomicBool>,
}

impl Session {
    /// A session of a client at `peer` with no link yet and not logged in.
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr) -> Self {
        Self {
            shared,
            links: Vec::new(),
            next_id: 0,
            peer,
            login: Login::default(),
            relogin: None,
            zero_wait_came_back_empty: Arc::default(),
        }
    }

    /// The next correlation id of the session's own id space.
    fn next_id(&mut self) -> i32 {
        self.next_id = self.next_id.wrapping_add(1) & i32::MAX;
        self.next_id
    }

    /// Where the link to `addr` of `side` is in `links`.
    fn find(&self, side: Side, addr: Option<&str>) -> Option<usize> {
        self.links
            .iter()
            .position(|((s, a), _)| *s == side && a.as_deref() == addr)
    }

    /// The link to `addr` of `side` (`None`: the cluster's bootstrap
    /// endpoints), connecting on first use.
    async fn link(&mut self, side: Side, addr: Option<&str>) -> Result<&mut Link, Close> {
        let mut at = self.find(side, addr);
        if let Some(i) = at {
            let link = &self.links[i].1;
            if let Some(error) = link.failed() {
                return Err(Close::link(error));
            }
            if link
                .reauth_at
                .is_some_and(|at| std::time::Instant::now() >= at)
            {
                self.reauthenticate(side, i).await?;
                at = self.find(side, addr);
            }
        }
        let i = match at {
            Some(i) => i,
            None => self.connect(side, addr).await?,
        };
        self.links
            .get_mut(i)
            .map(|(_, link)| link)
            .ok_or_else(|| Close::internal("the link just made is gone"))
    }

    /// Connects a new link to `addr` of `side`; its place in `links`.
    async fn connect(&mut self, side: Side, addr: Option<&str>) -> Result<usize, Close> {
        let mut upstream = self
            .shared
            .upstream(side, addr)
            .map_err(|e| Close::upstream_by(side, "its TLS settings", e))?;
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
            .map_err(|e| Close::upstream_by(side, "connecting", e))?;
        let name = format!(
            "cluster \"{}\" at {}",
            upstream.cluster,
            addr.unwrap_or("its bootstrap endpoints")
        );
        metrics::counter!(metrics::KAFKA_SESSION_LINKS, "migration" => self.shared.migration.name.to_string(), "cluster" => upstream.cluster.to_string())
            .increment(1);
        let mut link = Link::new(side, name, stream, self.shared.max_frame);
        link.reauth_at = lifetime.map(reauth_deadline);
        self.links.push(((side, addr.map(Arc::from)), link));
        Ok(self.links.len() - 1)
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
    async fn reauthenticate(&mut self, side: Side, at: usize) -> Result<(), Close> {
        if at >= self.links.len() {
            return Ok(());
        }
        let (key, mut link) = self.links.swap_remove(at);
        let Some(login) = self.sasl_login(side) else {
            link.reauth_at = None;
            self.links.push((key, link));
            return Ok(());
        };
        let ids = vec![self.next_id(), self.next_id(), self.next_id()];
        let mut rounds = LinkRounds {
            link: &mut link,
            ids: ids.into_iter(),
        };
        let lifetime = login.login(&mut rounds).await.map_err(|e| {
            Close::upstream_by(side, format!("re-authenticating to {}", link.name), e)
        })?;
        link.reauth_at = lifetime.map(reauth_deadline);
        metrics::counter!(metrics::KAFKA_REAUTHENTICATIONS, "migration" => self.shared.migration.name.to_string(), "cluster" => self.shared.cluster_name(side))
            .increment(1);
        self.links.push((key, link));
        Ok(())
    }

    /// Forgets the link to `addr` of `side` if it failed, so the next
    /// request connects again. Only for requests that carry no order with
    /// the ones before (Metadata): a failed link's answers owed already
    /// failed their replies.
    pub(super) fn forget_failed(&mut self, side: Side, addr: Option<&str>) {
        if let Some(at) = self.find(side, addr)
            && self.links[at].1.failed().is_some()
        {
            self.links.swap_remove(at);
        }
    }

    /// Forwards the client's request frame unchanged but for the
    /// correlation id; returns the answer's receiver unless `answered` is
    /// false.
    pub(super) async fn forward(
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
            return Err(Close::protocol("request shorter than its header"));
        };
        self.count_out(side, frame.len());
        self.link(side, addr)
            .await?
            .send(&[head, &id_bytes, rest], id, answered)
            .await
            .map_err(Close::link)
    }

    /// Sends a request the proxy encoded itself (a split part or its own),
    /// with the client's id and `client_id` in the header.
    pub(super) async fn send<T: Encodable>(
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
            .map_err(|e| Close::internal_by(format!("re-encoding {key:?} v{version}"), e))?;
        self.count_out(dest.side, frame.len());
        self.link(dest.side, dest.addr.as_deref())
            .await?
            .send(&[&frame], id, answered)
            .await
            .map_err(Close::link)
    }

    /// The proxy's own request to `dest`, sent at once and its answer
    /// decoded (for lookups a client request waits on).
    ///
    /// # Errors
    /// [`Close::Upstream`] when the link fails or the answer does not decode.
    pub(crate) async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        dest: &Dest,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, Close> {
        let rx = self
            .send(dest, key, version, None, body, true)
            .await?
            .ok_or_else(|| Close::internal("no answer expected"))?;
        self.flush().await?;
        let frame = answer(rx).await?;
        decode_response_body(&frame, key as i16, version)
            .map_err(|e| Close::upstream_by(dest.side, format!("its {key:?} answer"), e))
    }

    fn count_out(&self, side: Side, len: usize) {
        self.shared.meters.to_upstream(side).increment(len as u64);
    }

    /// Pushes every link's buffered requests to its socket.
    pub(crate) async fn flush(&mut self) -> Result<(), Close> {
        for (_, link) in &mut self.links {
            link.flush().await.map_err(Close::link)?;
        }
        Ok(())
    }
}

/// Awaits one upstream answer.
///
/// # Errors
/// [`Close::Upstream`] when the link failed or went away.
pub(crate) async fn answer(rx: oneshot::Receiver<Answer>) -> Result<Bytes, Close> {
    match rx.await {
        Ok(Ok(frame)) => Ok(frame),
        Ok(Err(error)) => Err(Close::link(error)),
        // The link went away without failing its waiters: a session bug.
        Err(_) => Err(Close::internal("the link was dropped with answers owed")),
    }
}

/// The client id of a request, for the proxy's own re-encoded parts.
pub(super) fn client_id(frame: &[u8], header: &RequestHeader) -> Option<StrBytes> {
    header
        .client_id(frame)
        .map(|id| StrBytes::from_string(String::from_utf8_lossy(id).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::session::link::explain;

    #[test]
    fn each_close_names_whose_failure_it_was_and_a_documented_reason() {
        let cases = [
            (Close::Client, Party::Client, "client"),
            (Close::Idle, Party::Client, "idle"),
            (Close::Auth, Party::Client, "auth"),
            (Close::protocol("short"), Party::Client, "protocol_error"),
            (Close::Shutdown, Party::Internal, "shutdown"),
            (
                Close::upstream(Side::Source, "refused"),
                Party::Source,
                "upstream",
            ),
            (
                Close::upstream(Side::Target, "refused"),
                Party::Target,
                "upstream",
            ),
            (
                Close::internal("no answer expected"),
                Party::Internal,
                "internal",
            ),
        ];
        for (close, party, reason) in cases {
            assert_eq!((close.party(), close.reason()), (party, reason), "{close}");
        }
    }

    #[test]
    fn a_failure_keeps_its_cause_for_the_log() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let close = Close::upstream_by(Side::Target, "connecting", io);
        assert!(std::error::Error::source(&close).is_some());
        assert_eq!(
            explain(&close),
            "the target failed: connecting: reset by peer"
        );
    }
}
