//! SCRAM-SHA-256/512 credentials (RFC 5802, RFC 7677): the mechanisms'
//! names, what a server keeps of a password (salt, iterations, StoredKey,
//! ServerKey) and how it is derived, and base64 as Kafka writes it. The
//! Kafka users file, `cutover user add`, config validation and the SASL
//! exchanges all build on it.
//!
//! Hashing is ring's (already linked for TLS); base64 is the standard
//! alphabet with padding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq as _;

/// The SASL mechanisms the proxy speaks, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// SASL/PLAIN: the password travels (use TLS).
    Plain,
    /// SCRAM with SHA-256.
    ScramSha256,
    /// SCRAM with SHA-512.
    ScramSha512,
}

/// Kafka's floor for SCRAM iterations; clients refuse fewer.
pub(crate) const MIN_ITERATIONS: u32 = 4096;
/// A ceiling, so a hostile or broken server cannot make the proxy spin.
pub(crate) const MAX_ITERATIONS: u32 = 1_000_000;
/// Salt bytes for new credentials (Kafka uses a 32-byte salt as well).
const SALT_LEN: usize = 32;

impl Mechanism {
    /// Every mechanism, in the order the proxy offers them.
    pub(crate) const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    /// The SASL name.
    #[must_use]
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// From the SASL name (case-sensitive, as Kafka).
    #[must_use]
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.as_str() == name)
    }

    pub(crate) fn algorithms(
        self,
    ) -> Option<(
        hmac::Algorithm,
        pbkdf2::Algorithm,
        &'static digest::Algorithm,
    )> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some((
                hmac::HMAC_SHA256,
                pbkdf2::PBKDF2_HMAC_SHA256,
                &digest::SHA256,
            )),
            Mechanism::ScramSha512 => Some((
                hmac::HMAC_SHA512,
                pbkdf2::PBKDF2_HMAC_SHA512,
                &digest::SHA512,
            )),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a SCRAM server keeps of a password: never the password itself.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ScramCredential {
    /// Salt of the PBKDF2 derivation.
    pub(crate) salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub(crate) iterations: u32,
    /// H(ClientKey).
    pub(crate) stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub(crate) server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

pub(crate) fn hmac_of(alg: hmac::Algorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(alg, key), data)
        .as_ref()
        .to_vec()
}

fn salted_password(mechanism: Mechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let Some((_, pbkdf, digest_alg)) = mechanism.algorithms() else {
        return Vec::new();
    };
    let mut out = vec![0; digest_alg.output_len()];
    let rounds = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(pbkdf, rounds, salt, password, &mut out);
    out
}

/// ClientKey and ServerKey of a password.
pub(crate) fn keys(
    mechanism: Mechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> (Vec<u8>, Vec<u8>) {
    let Some((mac, _, _)) = mechanism.algorithms() else {
        return (Vec::new(), Vec::new());
    };
    let salted = salted_password(mechanism, password, salt, iterations);
    (
        hmac_of(mac, &salted, b"Client Key"),
        hmac_of(mac, &salted, b"Server Key"),
    )
}

pub(crate) fn hash(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
    mechanism
        .algorithms()
        .map(|(_, _, d)| digest::digest(d, data).as_ref().to_vec())
        .unwrap_or_default()
}

impl ScramCredential {
    /// The credential of `password` with `salt` and `iterations`.
    #[must_use]
    pub(crate) fn derive(
        mechanism: Mechanism,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Self {
        let (client_key, server_key) = keys(mechanism, password, &salt, iterations);
        ScramCredential {
            stored_key: hash(mechanism, &client_key),
            server_key,
            salt,
            iterations,
        }
    }

    /// The credential of `password` with a fresh random salt.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub(crate) fn generate(
        mechanism: Mechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<Self, String> {
        let mut salt = vec![0; SALT_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| "the system random source failed".to_owned())?;
        Ok(ScramCredential::derive(
            mechanism, password, salt, iterations,
        ))
    }

    /// Whether `password` is the one this credential was made of (SASL/PLAIN
    /// checked against SCRAM entries), in constant time.
    #[must_use]
    pub(crate) fn matches_password(&self, mechanism: Mechanism, password: &[u8]) -> bool {
        let other =
            ScramCredential::derive(mechanism, password, self.salt.clone(), self.iterations);
        bool::from(other.stored_key.ct_eq(&self.stored_key))
    }
}

/// Base64 as Kafka writes SCRAM values.
#[must_use]
pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Base64 read back.
///
/// # Errors
/// When `text` is not base64.
pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, String> {
    B64.decode(text).map_err(|e| format!("not base64 ({e})"))
}
