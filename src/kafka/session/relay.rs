//! What the per-API handlers relay a client request with: the session's
//! upstream links (one per cluster and broker, connected on first use and
//! logged in again before their broker session expires), its own
//! correlation ids, and the reply a handler queues. The connection loop
//! that reads requests and writes replies is `session`; it dispatches to
//! the handlers, which see only this.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{ApiKey, RequestHeader as KpRequestHeader};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{RequestHeader, decode_response_body, encode_request};
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::link::{Answer, Link, LinkRounds, reauth_deadline};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::sasl::client::SaslLogin;
use crate::kafka::sasl::server::Login;
use crate::kafka::splice::split::Dest;
use crate::metrics;

/// Why a connection ended (the `reason` label of `CONNECTIONS_CLOSED`).
#[derive(Debug)]
pub(crate) enum Close {
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
    pub(crate) shared: Arc<Shared>,
    links: HashMap<(Side, Option<String>), Link>,
    next_id: i32,
    pub(crate) peer: SocketAddr,
    /// Where the client is in its SASL login (only with `kafka.users_file`).
    pub(crate) login: Login,
    /// A login again in progress on a logged-in connection (KIP-368).
    pub(super) relogin: Option<Login>,
}

impl Session {
    /// A session of a client at `peer` with no link yet and not logged in.
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr) -> Self {
        Self {
            shared,
            links: HashMap::new(),
            next_id: 0,
            peer,
            login: Login::default(),
            relogin: None,
        }
    }

    /// The next correlation id of the session's own id space.
    fn next_id(&mut self) -> i32 {
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
    pub(super) fn forget_failed(&mut self, side: Side, addr: Option<&str>) {
        let key = (side, addr.map(str::to_owned));
        if self.links.get(&key).and_then(Link::failed).is_some() {
            self.links.remove(&key);
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
    pub(crate) async fn flush(&mut self) -> Result<(), Close> {
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
pub(crate) async fn answer(rx: oneshot::Receiver<Answer>) -> Result<Bytes, Close> {
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
