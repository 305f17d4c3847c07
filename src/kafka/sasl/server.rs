//! Clients logging in to the proxy (`kafka.users_file`): until a session
//! has authenticated, only ApiVersions, SaslHandshake and SaslAuthenticate
//! are answered, all by the proxy itself, so a client that fails to log in
//! never causes an upstream connection. Mechanisms: PLAIN and
//! SCRAM-SHA-256/512 with KIP-152 framing (SaslHandshake v1, then the
//! tokens inside SaslAuthenticate v0-v2).
//!
//! A failed login is answered SASL_AUTHENTICATION_FAILED with a message,
//! logged with the client's address, counted in
//! `cutover_request_errors_total{kind="auth"}`, held back per address by
//! [`crate::proxy::throttle::AuthThrottle`], and the connection is closed.
//!
//! With `kafka.client_session_lifetime`, each login holds that long
//! (KIP-368): the client is told, logs in again on its connection as the
//! same user, and a connection that does not is closed by the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::api_versions_response::ApiVersion;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::{RequestHeader, VersionRow, decode_request_body, intersect_api_versions};

use super::client::SaslLogin;
use super::identity::ClientIdentity;
use super::scram::{self, Mechanism};
use super::scram_server::{self, ScramServer};
use super::users::Users;
use crate::proxy::throttle::AuthThrottle;

/// Kafka's `UNSUPPORTED_SASL_MECHANISM`.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's `ILLEGAL_SASL_STATE`.
const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's `SASL_AUTHENTICATION_FAILED`.
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// Largest frame read before a client has logged in (Kafka's own
/// `sasl.server.max.receive.size` default), so an anonymous peer cannot
/// make the proxy buffer a large frame.
pub(crate) const MAX_PREAUTH_FRAME: usize = 512 * 1024;

/// The versions of the login keys the proxy answers, added to the
/// ApiVersions answer it gives before login. SaslHandshake v0 (tokens
/// outside Kafka framing) is not offered.
const LOGIN_ROWS: &[VersionRow] = &[
    (ApiKey::SaslHandshake as i16, 1, 1),
    (ApiKey::SaslAuthenticate as i16, 0, 2),
];

/// What every session of a migration needs to log clients in.
pub(crate) struct ClientLogins {
    /// The users file, reloaded when it changes.
    pub(crate) users: Arc<Users>,
    /// Slows repeated failures per address.
    pub(crate) throttle: AuthThrottle,
    /// `cutover_request_errors_total{kind="auth"}` of the migration.
    pub(crate) failures: metrics::Counter,
    /// Whom logged-in clients reach the clusters as.
    pub(crate) identity: ClientIdentity,
    /// How long a client's login holds before it must log in again on its
    /// connection (KIP-368); zero: for the connection's life.
    pub(crate) session_lifetime: std::time::Duration,
}

/// Where one session is in its login.
#[derive(Default)]
pub(crate) enum Login {
    /// Nothing asked yet (or ApiVersions only).
    #[default]
    Start,
    /// SaslHandshake accepted `Mechanism`.
    Handshaken(Mechanism),
    /// SCRAM: server-first sent, the client's proof is due.
    Scram(Box<ScramServer>, String, Mechanism),
    /// Logged in as `user`; `links` are the per-cluster logins its
    /// upstream connections use (`None`: each cluster's own `auth`).
    Done {
        /// The client's user name.
        user: String,
        /// `[source, target]` logins with `upstream_identity: client`.
        links: UserLinks,
        /// When the login runs out (`kafka.client_session_lifetime`).
        expires: Option<Instant>,
    },
}

/// What the session does with a request read before login.
pub(crate) enum Step {
    /// Answer with this frame and read on.
    Answer(Bytes),
    /// Answer with this frame after `delay`, then close: the login failed.
    Refuse(Bytes, std::time::Duration),
    /// Close without answering: a request Kafka would not take either.
    Close(String),
}

impl Login {
    /// Whether the session has logged in.
    #[must_use]
    pub(crate) fn done(&self) -> bool {
        matches!(self, Login::Done { .. })
    }

    /// The logged-in user.
    #[must_use]
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            Login::Done { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Whether a login's session has run out at `now`.
    #[must_use]
    pub(crate) fn expired(&self, now: Instant) -> bool {
        matches!(self, Login::Done { expires: Some(at), .. } if now >= *at)
    }
}

/// Handles one request of a session that has not logged in (or that logs
/// in again as `relogin_of`, KIP-368); `versions` are the ApiVersions rows
/// the proxy offers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn step(
    logins: &ClientLogins,
    login: &mut Login,
    frame: &Bytes,
    header: &RequestHeader,
    peer: SocketAddr,
    migration: &str,
    versions: Option<&[VersionRow]>,
    relogin_of: Option<&str>,
) -> Step {
    let id = header.correlation_id;
    let version = header.api_version;
    match header.key {
        ApiKey::ApiVersions => api_versions(version, id, versions),
        ApiKey::SaslHandshake => {
            let Ok(request) = decode_request_body::<SaslHandshakeRequest>(frame, header) else {
                return Step::Close("SaslHandshake that does not decode".into());
            };
            if version != 1 {
                return Step::Close(format!(
                    "SaslHandshake v{version}: only v1 (KIP-152 framing) is offered"
                ));
            }
            let offered: Vec<StrBytes> = Mechanism::ALL
                .iter()
                .map(|m| StrBytes::from_static_str(m.as_str()))
                .collect();
            let mut body = SaslHandshakeResponse::default().with_mechanisms(offered);
            match (Mechanism::parse(request.mechanism.as_str()), &*login) {
                (Some(m), Login::Start) => *login = Login::Handshaken(m),
                (Some(_), _) => body.error_code = ILLEGAL_SASL_STATE,
                (None, _) => body.error_code = UNSUPPORTED_SASL_MECHANISM,
            }
            let failed = body.error_code != 0;
            match encode(ApiKey::SaslHandshake, version, id, &body) {
                Ok(out) if failed => Step::Refuse(out, std::time::Duration::ZERO),
                Ok(out) => Step::Answer(out),
                Err(e) => Step::Close(e),
            }
        }
        ApiKey::SaslAuthenticate => {
            let Ok(request) = decode_request_body::<SaslAuthenticateRequest>(frame, header) else {
                return Step::Close("SaslAuthenticate that does not decode".into());
            };
            authenticate(
                logins,
                login,
                &request.auth_bytes,
                header,
                (peer, migration),
                relogin_of,
            )
        }
        key => Step::Close(format!(
            "{key:?} before SASL authentication (the listener requires a SASL login: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
        )),
    }
}

fn authenticate(
    logins: &ClientLogins,
    login: &mut Login,
    token: &[u8],
    header: &RequestHeader,
    (peer, migration): (SocketAddr, &str),
    relogin_of: Option<&str>,
) -> Step {
    let (id, version) = (header.correlation_id, header.api_version);
    // KIP-368 lifetimes need SaslAuthenticate v1+ to tell the client.
    let lifetime = Some(logins.session_lifetime).filter(|l| !l.is_zero() && version >= 1);
    let expires = lifetime.map(|l| Instant::now() + l);
    let Some(outcome) = next_login_step(logins, login, token, expires, relogin_of) else {
        return Step::Close("SaslAuthenticate without a SaslHandshake first".into());
    };
    match outcome {
        Ok(token) => {
            let mut body = SaslAuthenticateResponse::default().with_auth_bytes(token);
            if let Login::Done { user, .. } = &*login {
                logins.throttle.succeeded(peer.ip());
                let again = relogin_of.is_some();
                tracing::info!(%migration, %peer, %user, again, "kafka client logged in");
                body.session_lifetime_ms =
                    lifetime.map_or(0, |l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX));
            }
            match encode(ApiKey::SaslAuthenticate, version, id, &body) {
                Ok(out) => Step::Answer(out),
                Err(e) => Step::Close(e),
            }
        }
        Err(failure) => refuse(logins, failure, (peer, migration), header),
    }
}

/// Feeds `token` to the login under way and moves it on: the bytes to
/// answer with, or why the login failed. `None` when no handshake came
/// first (nothing to answer: the connection closes).
fn next_login_step(
    logins: &ClientLogins,
    login: &mut Login,
    token: &[u8],
    expires: Option<Instant>,
    relogin_of: Option<&str>,
) -> Option<Result<Bytes, Failure>> {
    // A re-authentication must not switch users: the connection's links
    // were chosen for the first one.
    let same_user = |user: &str, mechanism| match relogin_of {
        Some(was) if was != user => Err((
            Some(user.to_owned()),
            mechanism,
            format!("a connection logged in as {was} cannot log in again as another user"),
        )),
        _ => Ok(()),
    };
    let outcome = match std::mem::take(login) {
        Login::Handshaken(Mechanism::Plain) => plain(logins, token).and_then(|(user, links)| {
            same_user(&user, Mechanism::Plain)?;
            *login = Login::Done {
                user,
                links,
                expires,
            };
            Ok(Bytes::new())
        }),
        Login::Handshaken(mechanism) => {
            scram_first(logins, mechanism, token).map(|(server, user, out)| {
                *login = Login::Scram(Box::new(server), user, mechanism);
                out
            })
        }
        Login::Scram(server, user, mechanism) => match server.finish(token) {
            Ok(out) => match same_user(&user, mechanism).and_then(|()| {
                logins
                    .identity
                    .resolve(&user, None)
                    .map_err(|e| (Some(user.clone()), mechanism, e))
            }) {
                Ok(links) => {
                    *login = Login::Done {
                        user,
                        links,
                        expires,
                    };
                    Ok(Bytes::from(out))
                }
                Err(e) => Err(e),
            },
            Err(e) => Err((Some(user), mechanism, e)),
        },
        Login::Start | Login::Done { .. } => return None,
    };
    Some(outcome)
}

/// The answer to a failed login: counted, logged, and delayed by the
/// peer's throttle so guessing passwords is slow.
fn refuse(
    logins: &ClientLogins,
    (user, mechanism, reason): Failure,
    (peer, migration): (SocketAddr, &str),
    header: &RequestHeader,
) -> Step {
    let delay = logins.throttle.failed(peer.ip(), Instant::now());
    logins.failures.increment(1);
    let user = user.unwrap_or_else(|| "(unknown)".into());
    tracing::warn!(%migration, %peer, %user, %mechanism, %reason, delay_ms = delay.as_millis() as u64, "kafka client authentication failed");
    let message =
        format!("Authentication failed for user {user} with SASL mechanism {mechanism}: {reason}");
    let body = SaslAuthenticateResponse::default()
        .with_error_code(SASL_AUTHENTICATION_FAILED)
        .with_error_message(Some(StrBytes::from_string(message)));
    match encode(
        ApiKey::SaslAuthenticate,
        header.api_version,
        header.correlation_id,
        &body,
    ) {
        Ok(out) => Step::Refuse(out, delay),
        Err(e) => Step::Close(e),
    }
}

type Failure = (Option<String>, Mechanism, String);
/// `[source, target]` logins of one client user (`None`: the clusters' own).
type UserLinks = Option<[Arc<SaslLogin>; 2]>;

fn plain(logins: &ClientLogins, token: &[u8]) -> Result<(String, UserLinks), Failure> {
    let (user, password) = scram::parse_plain(token).map_err(|e| (None, Mechanism::Plain, e))?;
    if !logins.users.current().check_plain(&user, &password) {
        return Err((Some(user), Mechanism::Plain, "invalid credentials".into()));
    }
    let links = logins
        .identity
        .resolve(&user, Some(&password))
        .map_err(|e| (Some(user.clone()), Mechanism::Plain, e))?;
    Ok((user, links))
}

fn scram_first(
    logins: &ClientLogins,
    mechanism: Mechanism,
    token: &[u8],
) -> Result<(ScramServer, String, Bytes), Failure> {
    let first = scram_server::parse_client_first(token).map_err(|e| (None, mechanism, e))?;
    let credential = logins
        .users
        .current()
        .scram(&first.user, mechanism)
        .cloned();
    let nonce = scram::nonce().map_err(|e| (Some(first.user.clone()), mechanism, e))?;
    let (server, out) = ScramServer::start(mechanism, &first, credential, &nonce)
        .map_err(|e| (Some(first.user.clone()), mechanism, e))?;
    Ok((server, first.user, Bytes::from(out)))
}

/// The proxy's own ApiVersions answer before login: its table ∩ the
/// clusters' rows (when known), plus the login keys.
fn api_versions(version: i16, id: i32, clusters: Option<&[VersionRow]>) -> Step {
    if let Some(refusal) = crate::kafka::rewrite::api_versions_too_new(version, id) {
        return match refusal {
            Ok(out) => Step::Answer(out),
            Err(e) => Step::Close(e.to_string()),
        };
    }
    let mut rows = match clusters {
        Some(rows) => intersect_api_versions(rows, crate::kafka::versions::SUPPORTED),
        None => crate::kafka::versions::SUPPORTED.to_vec(),
    };
    rows.extend_from_slice(LOGIN_ROWS);
    rows.sort_unstable();
    let body = ApiVersionsResponse::default().with_api_keys(
        rows.into_iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    );
    match encode(ApiKey::ApiVersions, version, id, &body) {
        Ok(out) => Step::Answer(out),
        Err(e) => Step::Close(e),
    }
}

fn encode<T: cutover_kafka::kafka_protocol::protocol::Encodable>(
    key: ApiKey,
    version: i16,
    id: i32,
    body: &T,
) -> Result<Bytes, String> {
    crate::kafka::rewrite::encode(key, version, id, body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamIdentity;
    use crate::kafka::sasl::identity::{ClientIdentity, ClusterLogins};
    use cutover_kafka::kafka_protocol::messages::{MetadataRequest, RequestHeader as KpHeader};
    use cutover_kafka::kafka_protocol::protocol::Encodable;
    use cutover_kafka::{decode_response_body, encode_request, peek_request};

    fn logins(dir: &std::path::Path) -> ClientLogins {
        let path = dir.join("users");
        super::super::users::add(&path, "alice", Mechanism::ScramSha256, "pw", 4096).unwrap();
        let cluster = |name: &str| {
            let config: crate::config::ClusterConfig = serde_norway::from_str(&format!(
                "{{ name: {name}, protocol: kafka, endpoints: [\"127.0.0.1:1\"] }}"
            ))
            .unwrap();
            Arc::new(ClusterLogins::of(&config).unwrap())
        };
        ClientLogins {
            users: crate::kafka::sasl::users::open(&path).unwrap(),
            throttle: AuthThrottle::default(),
            failures: metrics::Counter::noop(),
            identity: ClientIdentity::new(UpstreamIdentity::Proxy, [cluster("a"), cluster("b")]),
            session_lifetime: std::time::Duration::ZERO,
        }
    }

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> (Bytes, RequestHeader) {
        let header = KpHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        let frame = encode_request(&header, body).unwrap();
        let header = peek_request(&frame).unwrap();
        (frame, header)
    }

    fn run(logins: &ClientLogins, login: &mut Login, req: (Bytes, RequestHeader)) -> Step {
        run_as(logins, login, req, None)
    }

    fn run_as(
        logins: &ClientLogins,
        login: &mut Login,
        req: (Bytes, RequestHeader),
        relogin_of: Option<&str>,
    ) -> Step {
        step(
            logins,
            login,
            &req.0,
            &req.1,
            "127.0.0.1:5".parse().unwrap(),
            "m",
            None,
            relogin_of,
        )
    }

    #[test]
    fn a_login_again_must_be_the_same_user_and_sessions_expire() {
        let dir = tempfile::tempdir().unwrap();
        let mut logins = logins(dir.path());
        logins.session_lifetime = std::time::Duration::from_secs(60);
        let handshake = frame(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        );
        let plain = frame(
            ApiKey::SaslAuthenticate,
            1,
            &SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from(scram::plain_message("alice", "pw"))),
        );
        let mut login = Login::default();
        assert!(matches!(
            run(&logins, &mut login, handshake.clone()),
            Step::Answer(_)
        ));
        let Step::Answer(out) = run(&logins, &mut login, plain.clone()) else {
            panic!("PLAIN login expected to pass");
        };
        let done: SaslAuthenticateResponse =
            decode_response_body(&out, ApiKey::SaslAuthenticate as i16, 1).unwrap();
        assert_eq!(done.session_lifetime_ms, 60_000);
        assert!(!login.expired(Instant::now()));
        assert!(login.expired(Instant::now() + std::time::Duration::from_secs(61)));
        let mut again = Login::default();
        assert!(matches!(
            run_as(&logins, &mut again, handshake, Some("bob")),
            Step::Answer(_)
        ));
        let Step::Refuse(out, _) = run_as(&logins, &mut again, plain, Some("bob")) else {
            panic!("another user must be refused");
        };
        let refused: SaslAuthenticateResponse =
            decode_response_body(&out, ApiKey::SaslAuthenticate as i16, 1).unwrap();
        assert!(
            refused
                .error_message
                .unwrap()
                .as_str()
                .ends_with("a connection logged in as bob cannot log in again as another user")
        );
    }

    #[test]
    fn scram_login_then_wrong_proof_and_refusals_before_login() {
        let dir = tempfile::tempdir().unwrap();
        let logins = logins(dir.path());
        let mut login = Login::default();
        match run(
            &logins,
            &mut login,
            frame(ApiKey::Metadata, 4, &MetadataRequest::default()),
        ) {
            Step::Close(why) => assert!(
                why.starts_with("Metadata before SASL authentication"),
                "{why}"
            ),
            _ => panic!("Metadata before login must close"),
        }
        let handshake = |m: &'static str| {
            frame(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(m)),
            )
        };
        assert!(matches!(
            run(&logins, &mut login, handshake("GSSAPI")),
            Step::Refuse(..)
        ));
        let token = |bytes: Vec<u8>| {
            frame(
                ApiKey::SaslAuthenticate,
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
            )
        };
        for (password, ok) in [("nope", false), ("pw", true)] {
            let mut login = Login::default();
            assert!(matches!(
                run(&logins, &mut login, handshake("SCRAM-SHA-256")),
                Step::Answer(_)
            ));
            let mut client =
                scram::ScramClient::new(Mechanism::ScramSha256, "alice", password, "n1".into());
            let Step::Answer(out) = run(&logins, &mut login, token(client.first())) else {
                panic!("server-first expected");
            };
            let first: SaslAuthenticateResponse =
                decode_response_body(&out, ApiKey::SaslAuthenticate as i16, 2).unwrap();
            let last = client.answer(&first.auth_bytes).unwrap();
            match run(&logins, &mut login, token(last)) {
                Step::Answer(out) => {
                    assert!(ok);
                    let done: SaslAuthenticateResponse =
                        decode_response_body(&out, ApiKey::SaslAuthenticate as i16, 2).unwrap();
                    client.verify(&done.auth_bytes).unwrap();
                    assert!(login.done());
                }
                Step::Refuse(out, _) => {
                    assert!(!ok);
                    let refused: SaslAuthenticateResponse =
                        decode_response_body(&out, ApiKey::SaslAuthenticate as i16, 2).unwrap();
                    assert_eq!(refused.error_code, SASL_AUTHENTICATION_FAILED);
                    assert_eq!(
                        refused.error_message.unwrap().as_str(),
                        "Authentication failed for user alice with SASL mechanism SCRAM-SHA-256: invalid credentials"
                    );
                    assert!(!login.done());
                }
                Step::Close(why) => panic!("{why}"),
            }
        }
    }
}
