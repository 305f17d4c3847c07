//! The proxy logging in to a Kafka broker: SaslHandshake v1 then
//! SaslAuthenticate (KIP-152 framing) with PLAIN or SCRAM-SHA-256/512, run
//! on every upstream connection before anything else (client sessions'
//! links and the control plane's own connections alike) through
//! [`crate::proxy::Handshake`].

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{decode_response_body, encode_request, next_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::scram::{self, Mechanism, ScramClient};
use crate::credentials::secret::Secret;
use crate::proxy::{Handshake, Stream};

/// SaslHandshake v1: KIP-152 framing (tokens inside SaslAuthenticate).
const HANDSHAKE_VERSION: i16 = 1;
/// SaslAuthenticate v1: not flexible, served by Kafka 2.0 to 4.x.
const AUTHENTICATE_VERSION: i16 = 1;
/// Pre-authentication answers are small; a broker sending more is broken.
const MAX_ANSWER: usize = 512 * 1024;
/// The client id the broker logs for the proxy's logins.
const CLIENT_ID: &str = "cutover";

/// A user and password to log in with (the password never printed; a
/// password file is read again at every login, so a rotated password
/// applies to the next connection or re-authentication).
#[derive(Clone)]
pub(crate) struct SaslLogin {
    /// How.
    pub(super) mechanism: Mechanism,
    /// Who.
    pub(super) username: String,
    password: Arc<Secret>,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SaslLogin {
    /// A login of `username` with `password`.
    #[must_use]
    pub(crate) fn new(mechanism: Mechanism, username: String, password: Secret) -> Self {
        SaslLogin {
            mechanism,
            username,
            password: Arc::new(password),
        }
    }
}

/// One request/answer round of a login: `make(id)` encodes the request
/// with correlation id `id`; the answer frame comes back. A fresh
/// connection does it on the raw stream; a live one (KIP-368
/// re-authentication) through its pipelined link.
#[async_trait::async_trait]
pub(crate) trait Rounds: Send {
    /// Sends what `make` encodes and returns the answer frame.
    ///
    /// # Errors
    /// What failed on the wire.
    async fn round(
        &mut self,
        make: &(dyn Fn(i32) -> Result<Bytes, String> + Sync),
    ) -> Result<Bytes, String>;
}

impl SaslLogin {
    /// Logs in over `rounds`; returns how long the broker keeps the
    /// session (KIP-368 `session_lifetime_ms`), when it limits it.
    ///
    /// # Errors
    /// The broker's refusal, or what failed.
    pub(crate) async fn login(&self, rounds: &mut dyn Rounds) -> Result<Option<Duration>, String> {
        let offered: SaslHandshakeResponse = call(
            rounds,
            ApiKey::SaslHandshake,
            HANDSHAKE_VERSION,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(self.mechanism.as_str())),
        )
        .await?;
        if offered.error_code != 0 {
            let names: Vec<&str> = offered.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(format!(
                "the broker does not enable {} (it offers {})",
                self.mechanism,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ));
        }
        let password = self.password.current();
        let last = match self.mechanism {
            Mechanism::Plain => {
                token(rounds, &scram::plain_message(&self.username, &password)).await?
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut login =
                    ScramClient::new(self.mechanism, &self.username, &password, scram::nonce()?);
                let server_first = token(rounds, &login.first()).await?;
                let last = login.answer(&server_first.auth_bytes)?;
                let server_final = token(rounds, &last).await?;
                login.verify(&server_final.auth_bytes)?;
                server_final
            }
        };
        Ok(u64::try_from(last.session_lifetime_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }
}

#[async_trait::async_trait]
impl Handshake for SaslLogin {
    async fn run(&self, stream: &mut Stream) -> Result<Option<Duration>, String> {
        let mut wire = Wire {
            stream,
            buf: BytesMut::new(),
            id: 0,
        };
        self.login(&mut wire).await
    }
}

/// One SaslAuthenticate round: sends `token`, returns the broker's answer.
async fn token(rounds: &mut dyn Rounds, token: &[u8]) -> Result<SaslAuthenticateResponse, String> {
    let answer: SaslAuthenticateResponse = call(
        rounds,
        ApiKey::SaslAuthenticate,
        AUTHENTICATE_VERSION,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    )
    .await?;
    if answer.error_code != 0 {
        let message = answer.error_message.as_ref().map_or("", |m| m.as_str());
        return Err(format!(
            "{} (Kafka error {})",
            if message.is_empty() {
                "the broker refused the credentials"
            } else {
                message
            },
            answer.error_code
        ));
    }
    Ok(answer)
}

async fn call<Req: Encodable + Sync, Resp: Decodable>(
    rounds: &mut dyn Rounds,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Result<Resp, String> {
    let make = |id: i32| {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        encode_request(&header, body).map_err(|e| e.to_string())
    };
    let frame = rounds.round(&make).await?;
    decode_response_body(&frame, key as i16, version).map_err(|e| format!("{key:?} answer: {e}"))
}

/// The rounds of a login on a fresh connection's raw stream.
struct Wire<'a> {
    stream: &'a mut Stream,
    buf: BytesMut,
    id: i32,
}

#[async_trait::async_trait]
impl Rounds for Wire<'_> {
    async fn round(
        &mut self,
        make: &(dyn Fn(i32) -> Result<Bytes, String> + Sync),
    ) -> Result<Bytes, String> {
        self.id += 1;
        let frame = make(self.id)?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| format!("sending a login request: {e}"))?;
        self.stream
            .flush()
            .await
            .map_err(|e| format!("sending a login request: {e}"))?;
        loop {
            match next_frame(&mut self.buf, MAX_ANSWER) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(format!("login answer: {e}")),
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("reading a login answer: {e}"))?;
            if n == 0 {
                return Err(
                    "the broker closed the connection instead of answering the login (is this a SASL listener?)"
                        .into(),
                );
            }
        }
    }
}
