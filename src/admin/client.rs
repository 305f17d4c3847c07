//! Minimal HTTP/1.1 client over the admin Unix socket, for `ctl`.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// `ctl` could not talk to the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error(
        "cannot reach cutover's admin socket {path}: {source} (is `cutover run` running with this socket?)"
    )]
    Connect {
        /// Socket path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed midway.
    #[error("admin request failed: {0}")]
    Http(#[from] hyper::Error),
    /// The answer was not the JSON expected.
    #[error("admin answer was not understood: {0}")]
    Decode(#[from] serde_json::Error),
}

/// One admin API answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: serde_json::Value,
}

/// Sends one request and reads the whole JSON answer.
///
/// # Errors
/// See [`ClientError`].
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<Answer, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.display().to_string(),
            source,
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cutover")
        .header("content-type", "application/json")
        .header(
            super::identity::ACTOR_HEADER,
            format!("ctl:{}", super::identity::local_user()),
        )
        .body(Full::new(payload))
        .expect("static request parts are valid");
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok(Answer { status, body })
}
