//! The proxy's own requests to a NameServer or broker: one connection,
//! requests in turn, each answered within a deadline. Used by the
//! NameServer facade (queries to both NameServers, forwarding) and by the
//! readiness checks (offsets, consumer connections).

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cutover_rocketmq::{Encoding, Frame, Header, encode, split_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{Stream, Upstream};

/// A request of the proxy's own failed; the message names the cluster and
/// address.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Could not connect.
    #[error(transparent)]
    Connect(#[from] crate::proxy::UpstreamError),
    /// The connection failed or the peer closed it.
    #[error("cluster \"{cluster}\": {reason}")]
    Io {
        /// Cluster name.
        cluster: String,
        /// What happened.
        reason: String,
    },
    /// No answer in time.
    #[error("cluster \"{cluster}\" did not answer request code {code} within {timeout:?}")]
    Timeout {
        /// Cluster name.
        cluster: String,
        /// The request code.
        code: i32,
        /// The deadline.
        timeout: Duration,
    },
    /// The answer could not be framed or decoded.
    #[error("cluster \"{cluster}\" answered request code {code} with a bad frame: {reason}")]
    Protocol {
        /// Cluster name.
        cluster: String,
        /// The request code.
        code: i32,
        /// Decoder error.
        reason: String,
    },
}

/// Opaques of the proxy's own requests, unique per process; the peers of
/// these connections see no other requests.
static NEXT_OPAQUE: AtomicI32 = AtomicI32::new(1);

/// A fresh opaque for a request of the proxy's own.
pub fn next_opaque() -> i32 {
    NEXT_OPAQUE.fetch_add(1, Ordering::Relaxed) & i32::MAX
}

/// One connection to a NameServer or broker.
pub struct Conn {
    cluster: String,
    stream: Stream,
    buf: BytesMut,
    max_frame: usize,
}

impl Conn {
    /// Connects to `upstream` (its first reachable endpoint).
    ///
    /// # Errors
    /// [`RpcError::Connect`] naming the cluster and address.
    pub async fn open(upstream: &Upstream, max_frame: usize) -> Result<Conn, RpcError> {
        let stream = upstream.connect().await?;
        Ok(Conn {
            cluster: upstream.cluster.to_string(),
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            max_frame,
        })
    }

    /// Sends `header` + `body` (JSON header, which every peer accepts with
    /// `serializeTypeCurrentRPC`) under a fresh opaque, and returns the
    /// response to it.
    ///
    /// # Errors
    /// [`RpcError`] when the exchange fails; the connection must then be dropped.
    pub async fn call(
        &mut self,
        mut header: Header,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Frame, RpcError> {
        header.opaque = next_opaque();
        header.flag = 0;
        if let Some(signer) = super::acl::signer(&self.cluster) {
            signer.credentials().sign(&mut header, body);
        }
        let frame =
            encode(&header, body, Encoding::Json).map_err(|e| self.protocol(header.code, &e))?;
        self.exchange(&frame, header.code, header.opaque, timeout)
            .await
    }

    /// Sends an already encoded request and returns the response carrying
    /// `opaque` (other frames are skipped).
    ///
    /// # Errors
    /// [`RpcError`] when the exchange fails; the connection must then be dropped.
    pub async fn call_raw(
        &mut self,
        frame: &Bytes,
        code: i32,
        opaque: i32,
        timeout: Duration,
    ) -> Result<Frame, RpcError> {
        let signed = self.signed(frame, code)?;
        self.exchange(&signed, code, opaque, timeout).await
    }

    /// Writes `frame` and reads until the response carrying `opaque`.
    async fn exchange(
        &mut self,
        frame: &Bytes,
        code: i32,
        opaque: i32,
        timeout: Duration,
    ) -> Result<Frame, RpcError> {
        let cluster = self.cluster.clone();
        let exchange = async {
            self.stream
                .write_all(frame)
                .await
                .map_err(|e| self.io(&e))?;
            self.stream.flush().await.map_err(|e| self.io(&e))?;
            loop {
                match split_frame(&mut self.buf, self.max_frame) {
                    Ok(Some(raw)) => {
                        let answer = Frame::parse(raw).map_err(|e| self.protocol(code, &e))?;
                        if answer.header.is_response() && answer.header.opaque == opaque {
                            return Ok(answer);
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(self.protocol(code, &e)),
                }
                self.buf.reserve(8 * 1024);
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) => {
                        return Err(RpcError::Io {
                            cluster: self.cluster.clone(),
                            reason: "the peer closed the connection".into(),
                        });
                    }
                    Ok(_) => {}
                    Err(e) => return Err(self.io(&e)),
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RpcError::Timeout {
                cluster,
                code,
                timeout,
            })?
    }

    /// Sends a one-way request (no answer comes).
    ///
    /// # Errors
    /// [`RpcError::Io`] when the write fails.
    pub async fn send_oneway(&mut self, frame: &Bytes) -> Result<(), RpcError> {
        let frame = &self.signed(frame, 0)?;
        self.stream
            .write_all(frame)
            .await
            .map_err(|e| self.io(&e))?;
        self.stream.flush().await.map_err(|e| self.io(&e))
    }

    /// `frame` signed with the cluster's credentials when it has any (a
    /// client's frame relayed as is carries the client's own signature).
    fn signed(&self, frame: &Bytes, code: i32) -> Result<Bytes, RpcError> {
        match super::acl::signer(&self.cluster) {
            Some(signer) => signer
                .credentials()
                .resign_raw(frame.clone())
                .map_err(|e| self.protocol(code, &e)),
            None => Ok(frame.clone()),
        }
    }

    fn io(&self, e: &std::io::Error) -> RpcError {
        RpcError::Io {
            cluster: self.cluster.clone(),
            reason: e.to_string(),
        }
    }

    fn protocol(&self, code: i32, e: &dyn std::fmt::Display) -> RpcError {
        RpcError::Protocol {
            cluster: self.cluster.clone(),
            code,
            reason: e.to_string(),
        }
    }
}

/// A request header with `code` and the given ext fields.
#[must_use]
pub fn request(code: i32, ext: &[(&str, &str)]) -> Header {
    let mut header = Header::request(code, 0);
    header.language = cutover_rocketmq::Language::RUST;
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    header
}
