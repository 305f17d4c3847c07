//! RocketMQ ACL (AccessKey / SecretKey): the proxy checks the signature a
//! client put on each request against the migration's accounts, and signs
//! every request it sends to a cluster with that cluster's own credentials
//! (a rewritten request no longer matches the client's signature, and the
//! clusters may know different accounts anyway).
//!
//! Apache RocketMQ signs the values of the request's ext fields, sorted by
//! key (`Signature` itself left out), followed by the body, with HMAC-SHA1
//! keyed by the secret; the ext field `Signature` carries it in base64 and
//! `AccessKey` names the account. A broker refusing a signature answers
//! `NO_PERMISSION` with the reason as remark; the proxy answers the same.
//!
//! Credentials are registered per cluster and per migration when a
//! migration starts, so every path that sends a request (the broker
//! sessions, the NameServer facade, the checks) finds them by name. A
//! cluster's `password_file` is read again while it runs, so its secret
//! rotates without a restart ([`ClusterSigner`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use cutover_rocketmq::{Frame, FrameError, Header, ResponseCode, encode};
use ring::hmac;

use crate::config::ClusterConfig;
use crate::credentials::rocketmq_accounts::{self, AccountsError};
use crate::credentials::secret::{Secret, SecretError};
use crate::proxy::throttle::AuthThrottle;

/// Ext field naming the account.
pub const ACCESS_KEY: &str = "AccessKey";
/// Ext field carrying the base64 signature.
pub const SIGNATURE: &str = "Signature";
/// Ext field of temporary (STS) credentials; a client's token means
/// nothing to a cluster the proxy signs for with its own account.
pub const SECURITY_TOKEN: &str = "SecurityToken";

/// Why credentials could not be loaded or a signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// A cluster's secret cannot be had (its file cannot be read).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The accounts file cannot be used.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The request carries no `AccessKey`.
    #[error("the request is not signed (no AccessKey)")]
    Unsigned,
    /// No account has this access key.
    #[error("User:{0} is not found.")]
    UnknownUser(String),
    /// The signature does not match the account's secret.
    #[error("check signature failed for AccessKey {0}.")]
    BadSignature(String),
}

/// One account's key pair.
#[derive(Clone)]
pub struct Credentials {
    access_key: String,
    key: hmac::Key,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials for `access_key` / `secret_key`.
    #[must_use]
    pub fn new(access_key: &str, secret_key: &str) -> Self {
        Credentials {
            access_key: access_key.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret_key.as_bytes()),
        }
    }

    /// The access key.
    #[must_use]
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Signs `header` (+ `body`) as this account, replacing any signature,
    /// access key and security token it carried.
    pub fn sign(&self, header: &mut Header, body: &[u8]) {
        header.remove_ext(SIGNATURE);
        header.remove_ext(SECURITY_TOKEN);
        header.set_ext(ACCESS_KEY, self.access_key.clone());
        let tag = hmac::sign(&self.key, &content(header, body));
        header.set_ext(SIGNATURE, BASE64.encode(tag.as_ref()));
    }

    /// Re-encodes an encoded request signed as this account.
    ///
    /// # Errors
    /// The frame's decoder or encoder error.
    pub fn resign_raw(&self, raw: Bytes) -> Result<Bytes, FrameError> {
        let frame = Frame::parse(raw)?;
        let mut header = frame.header;
        self.sign(&mut header, &frame.body);
        encode(&header, &frame.body, frame.encoding)
    }

    fn verify(&self, header: &Header, body: &[u8], given: &str) -> bool {
        BASE64
            .decode(given)
            .is_ok_and(|tag| hmac::verify(&self.key, &content(header, body), &tag).is_ok())
    }
}

/// What is signed: the ext field values in key order (without the
/// signature), then the body. Keys are compared as Java strings; for the
/// ASCII keys RocketMQ uses that is byte order.
fn content(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut fields: Vec<(&str, &str)> = header
        .ext_fields
        .iter()
        .filter(|(k, _)| k != SIGNATURE)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out =
        Vec::with_capacity(fields.iter().map(|(_, v)| v.len()).sum::<usize>() + body.len());
    for (_, value) in fields {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// The accounts clients of one migration sign with.
#[derive(Debug, Default)]
pub struct Accounts {
    by_key: HashMap<String, Credentials>,
}

impl Accounts {
    /// The accounts of an accounts file's text (`path` names it in errors).
    ///
    /// # Errors
    /// [`AclError::Accounts`] naming `path`.
    pub fn parse(path: &str, text: &str) -> Result<Self, AclError> {
        Ok(Accounts::of(rocketmq_accounts::parse(path, text)?))
    }

    /// Reads and parses an accounts file.
    ///
    /// # Errors
    /// [`AclError::Accounts`] when the file cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, AclError> {
        Ok(Accounts::of(rocketmq_accounts::load(path)?))
    }

    fn of(pairs: Vec<(String, String)>) -> Self {
        let by_key = pairs
            .into_iter()
            .map(|(ak, sk)| {
                let credentials = Credentials::new(&ak, &sk);
                (ak, credentials)
            })
            .collect();
        Accounts { by_key }
    }

    /// Whether no account is defined (no client could sign).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Checks a request's signature; returns the account's access key.
    ///
    /// # Errors
    /// [`AclError::Unsigned`], [`AclError::UnknownUser`] or
    /// [`AclError::BadSignature`].
    pub fn verify(&self, header: &Header, body: &[u8]) -> Result<&str, AclError> {
        let ak = header.ext(ACCESS_KEY).ok_or(AclError::Unsigned)?;
        let account = self
            .by_key
            .get(ak)
            .ok_or_else(|| AclError::UnknownUser(ak.to_owned()))?;
        let given = header.ext(SIGNATURE).unwrap_or_default();
        if account.verify(header, body, given) {
            Ok(&account.access_key)
        } else {
            Err(AclError::BadSignature(ak.to_owned()))
        }
    }
}

/// The answer RocketMQ gives a request it refuses to authenticate.
///
/// # Errors
/// The encoder's error, as text.
pub fn refusal(request: &Frame, error: &AclError) -> Result<Bytes, String> {
    let header = Header::response(
        ResponseCode::NO_PERMISSION,
        request.header.opaque,
        Some(error.to_string()),
    );
    encode(&header, &[], request.encoding).map_err(|e| e.to_string())
}

/// Signing credentials per cluster name, accounts per migration name.
#[derive(Default)]
struct Registry {
    signers: HashMap<String, Arc<ClusterSigner>>,
    accounts: HashMap<String, Arc<Accounts>>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(RwLock::default);
static THROTTLE: LazyLock<AuthThrottle> = LazyLock::new(AuthThrottle::default);

/// How often a cluster's secret file is read again for signing.
pub const SECRET_RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A cluster's signing credentials (user name = access key, password =
/// secret key). Unlike a Kafka login, every RocketMQ request is signed, so
/// a rotated secret must reach connections already open: the secret file
/// is read again at most once per [`SECRET_RELOAD_EVERY`], by whichever
/// request first finds it due, and the credentials rebuilt when it
/// changed. Reading them otherwise takes no lock.
pub struct ClusterSigner {
    access_key: String,
    secret: Secret,
    /// The credentials of `signed_with`.
    current: ArcSwap<Credentials>,
    signed_with: Mutex<String>,
    /// Milliseconds after `born` of the last read of the file.
    checked: AtomicU64,
    born: Instant,
}

impl std::fmt::Debug for ClusterSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSigner")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl ClusterSigner {
    fn new(access_key: &str, secret: Secret) -> Self {
        let now = secret.current();
        ClusterSigner {
            access_key: access_key.to_owned(),
            current: ArcSwap::from_pointee(Credentials::new(access_key, &now)),
            signed_with: Mutex::new(now),
            secret,
            checked: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// The credentials to sign with now.
    #[must_use]
    pub fn credentials(&self) -> Arc<Credentials> {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.checked.load(Ordering::Relaxed);
        let every = u64::try_from(SECRET_RELOAD_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) >= every
            && self
                .checked
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.reload();
        }
        self.current.load_full()
    }

    fn reload(&self) {
        let secret = self.secret.current();
        let mut signed_with = self.signed_with.lock().unwrap_or_else(|e| e.into_inner());
        if *signed_with != secret {
            tracing::info!(access_key = %self.access_key, "the cluster's secret file changed: signing with the new secret");
            self.current
                .store(Arc::new(Credentials::new(&self.access_key, &secret)));
            *signed_with = secret;
        }
    }
}

/// The signer of a cluster's `auth`, if it has a user name and a secret.
///
/// # Errors
/// [`AclError::Secret`] when the password file cannot be read.
pub fn cluster_signer(cluster: &ClusterConfig) -> Result<Option<ClusterSigner>, AclError> {
    let Some(auth) = &cluster.auth else {
        return Ok(None);
    };
    let Some(ak) = &auth.username else {
        return Ok(None);
    };
    if auth.password.is_none() && auth.password_file.is_none() {
        return Ok(None);
    }
    let secret = Secret::open(auth.password.as_ref(), auth.password_file.as_deref())?;
    Ok(Some(ClusterSigner::new(ak, secret)))
}

/// Registers the signing credentials of both clusters and the migration's
/// client accounts (from `accounts_file`, when given).
///
/// # Errors
/// [`AclError`] when a secret or the accounts file cannot be loaded.
pub fn register(
    migration: &str,
    clusters: [&ClusterConfig; 2],
    accounts_file: Option<&Path>,
) -> Result<(), AclError> {
    let mut signers = Vec::new();
    for cluster in clusters {
        if let Some(c) = cluster_signer(cluster)? {
            signers.push((cluster.name.clone(), Arc::new(c)));
        }
    }
    let accounts = accounts_file.map(Accounts::load).transpose()?;
    if accounts.is_some() {
        // At zero from the start, so a dashboard sees the series.
        let _ = auth_errors(migration);
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    registry.signers.extend(signers);
    match accounts {
        Some(a) => registry.accounts.insert(migration.to_owned(), Arc::new(a)),
        None => registry.accounts.remove(migration),
    };
    Ok(())
}

/// The signer of requests to `cluster`, if it signs.
#[must_use]
pub fn signer(cluster: &str) -> Option<Arc<ClusterSigner>> {
    REGISTRY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .signers
        .get(cluster)
        .cloned()
}

/// The accounts clients of `migration` must sign with; `None` accepts
/// unsigned clients.
#[must_use]
pub fn accounts(migration: &str) -> Option<Arc<Accounts>> {
    REGISTRY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .accounts
        .get(migration)
        .cloned()
}

/// Refused client signatures of `migration` (off the hot path: only a
/// refusal looks it up).
fn auth_errors(migration: &str) -> metrics::Counter {
    metrics::counter!(crate::metrics::REQUEST_ERRORS, "migration" => migration.to_owned(), "cluster" => "client", "kind" => "auth")
}

/// Checks a client request of `migration` from `peer`; a refusal is logged
/// with the address and held back when the address keeps failing, then
/// returned as the answer to send. `admitted`: an earlier request of the
/// connection passed, so the address's failures were already forgotten
/// (the throttle's lock stays off the path of every later request).
pub async fn check_client(
    accounts: &Accounts,
    migration: &str,
    peer: std::net::SocketAddr,
    frame: &Frame,
    admitted: bool,
) -> Result<(), Bytes> {
    match accounts.verify(&frame.header, &frame.body) {
        Ok(_) => {
            if !admitted {
                THROTTLE.succeeded(peer.ip());
            }
            Ok(())
        }
        Err(e) => {
            auth_errors(migration).increment(1);
            let delay = THROTTLE.failed(peer.ip(), std::time::Instant::now());
            tracing::warn!(
                migration = %migration,
                %peer,
                code = frame.header.code,
                reason = %e,
                held_back_ms = delay.as_millis(),
                "rocketmq client authentication failed"
            );
            tokio::time::sleep(delay).await;
            Err(refusal(frame, &e).unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fields: &[(&str, &str)]) -> Header {
        let mut h = Header::request(10, 1);
        for (k, v) in fields {
            h.set_ext(*k, *v);
        }
        h
    }

    #[test]
    fn content_is_sorted_values_then_body() {
        let h = header(&[
            ("topic", "T"),
            ("AccessKey", "ak"),
            ("Signature", "x"),
            ("b", "2"),
        ]);
        assert_eq!(content(&h, b"BODY"), b"ak2TBODY".to_vec());
    }

    #[test]
    fn signature_is_hmac_sha1_base64() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let creds = Credentials::new("ak", "Jefe");
        let mut h = Header::request(10, 1);
        h.ext_fields.clear();
        creds.sign(&mut h, b"");
        // Signed content is "ak" (the access key) alone here; check against
        // a direct HMAC so the helper stays honest, and the RFC vector below.
        let direct = hmac::sign(&creds.key, b"ak");
        assert_eq!(
            h.ext(SIGNATURE),
            Some(BASE64.encode(direct.as_ref()).as_str())
        );
        let rfc = hmac::sign(&creds.key, b"what do ya want for nothing?");
        assert_eq!(
            BASE64.encode(rfc.as_ref()),
            BASE64.encode([
                0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74, 0x16, 0xd5, 0xf1, 0x84,
                0xdf, 0x9c, 0x25, 0x9a, 0x7c, 0x79
            ])
        );
    }

    #[test]
    fn verify_accepts_the_right_secret_only() {
        let accounts = Accounts::parse("f", "# c\nalice s3cret\n\nbob other\n").unwrap();
        let mut h = header(&[("topic", "T"), ("queueId", "1")]);
        Credentials::new("alice", "s3cret").sign(&mut h, b"body");
        assert_eq!(accounts.verify(&h, b"body").unwrap(), "alice");
        assert!(matches!(
            accounts.verify(&h, b"other body"),
            Err(AclError::BadSignature(_))
        ));
        let mut wrong = header(&[("topic", "T")]);
        Credentials::new("alice", "guess").sign(&mut wrong, b"");
        assert!(matches!(
            accounts.verify(&wrong, b""),
            Err(AclError::BadSignature(_))
        ));
        let mut stranger = header(&[]);
        Credentials::new("carol", "x").sign(&mut stranger, b"");
        assert!(matches!(
            accounts.verify(&stranger, b""),
            Err(AclError::UnknownUser(_))
        ));
        assert!(matches!(
            accounts.verify(&header(&[]), b""),
            Err(AclError::Unsigned)
        ));
    }

    #[test]
    fn resigning_replaces_the_clients_signature() {
        let mut h = header(&[("topic", "T"), (SECURITY_TOKEN, "tok")]);
        Credentials::new("client", "c").sign(&mut h, b"B");
        let raw = encode(&h, b"B", cutover_rocketmq::Encoding::Json).unwrap();
        let out = Credentials::new("cluster", "k").resign_raw(raw).unwrap();
        let frame = Frame::parse(out).unwrap();
        assert_eq!(frame.header.ext(ACCESS_KEY), Some("cluster"));
        assert_eq!(frame.header.ext(SECURITY_TOKEN), None);
        let accounts = Accounts::parse("f", "cluster k").unwrap();
        assert!(accounts.verify(&frame.header, &frame.body).is_ok());
    }

    #[test]
    fn bad_lines_are_named() {
        let err = Accounts::parse("acc", "alice\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "acc line 1: expected ACCESS_KEY SECRET_KEY"
        );
    }
}
