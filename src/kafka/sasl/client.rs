//! The proxy logging in to a Kafka broker: SaslHandshake v1 then
//! SaslAuthenticate (KIP-152 framing) with PLAIN or SCRAM-SHA-256/512, run
//! on every upstream connection before anything else (client sessions'
//! links and the control plane's own connections alike) through
//! [`crate::proxy::Handshake`].

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{decode_response_body, encode_request, next_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::scram::{self, Mechanism, ScramClient};
use crate::proxy::{Handshake, Stream};

/// SaslHandshake v1: KIP-152 framing (tokens inside SaslAuthenticate).
const HANDSHAKE_VERSION: i16 = 1;
/// SaslAuthenticate v1: not flexible, served by Kafka 2.0 to 4.x.
const AUTHENTICATE_VERSION: i16 = 1;
/// Pre-authentication answers are small; a broker sending more is broken.
const MAX_ANSWER: usize = 512 * 1024;
/// The client id the broker logs for the proxy's logins.
const CLIENT_ID: &str = "cutover";

/// A user and password to log in with (the password never printed).
#[derive(Clone)]
pub struct SaslLogin {
    /// How.
    pub mechanism: Mechanism,
    /// Who.
    pub username: String,
    password: String,
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
    pub fn new(mechanism: Mechanism, username: String, password: String) -> Self {
        SaslLogin {
            mechanism,
            username,
            password,
        }
    }
}

#[async_trait::async_trait]
impl Handshake for SaslLogin {
    async fn run(&self, stream: &mut Stream) -> Result<(), String> {
        let mut wire = Wire {
            stream,
            buf: BytesMut::new(),
            id: 0,
        };
        let offered: SaslHandshakeResponse = wire
            .call(
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
        match self.mechanism {
            Mechanism::Plain => {
                wire.token(&scram::plain_message(&self.username, &self.password))
                    .await?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut login = ScramClient::new(
                    self.mechanism,
                    &self.username,
                    &self.password,
                    scram::nonce()?,
                );
                let server_first = wire.token(&login.first()).await?;
                let last = login.answer(&server_first)?;
                let server_final = wire.token(&last).await?;
                login.verify(&server_final)?;
            }
        }
        Ok(())
    }
}

/// The pre-authentication request/answer exchange on a raw stream.
struct Wire<'a> {
    stream: &'a mut Stream,
    buf: BytesMut,
    id: i32,
}

impl Wire<'_> {
    /// One SaslAuthenticate round: sends `token`, returns the broker's.
    async fn token(&mut self, token: &[u8]) -> Result<Bytes, String> {
        let answer: SaslAuthenticateResponse = self
            .call(
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
        Ok(answer.auth_bytes)
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp, String> {
        self.id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let frame = encode_request(&header, body).map_err(|e| e.to_string())?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| format!("sending {key:?}: {e}"))?;
        self.stream
            .flush()
            .await
            .map_err(|e| format!("sending {key:?}: {e}"))?;
        loop {
            match next_frame(&mut self.buf, MAX_ANSWER) {
                Ok(Some(frame)) => {
                    return decode_response_body(&frame, key as i16, version)
                        .map_err(|e| format!("{key:?} answer: {e}"));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("{key:?} answer: {e}")),
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("reading the {key:?} answer: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "the broker closed the connection instead of answering {key:?} (is this a SASL listener?)"
                ));
            }
        }
    }
}
