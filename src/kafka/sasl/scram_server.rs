//! The server end of a SCRAM exchange (RFC 5802): a client logging in to
//! the proxy. Free of I/O, like `scram`, whose arithmetic it shares; the
//! exchange's tests (both ends, RFC 7677's vector) are in `scram`.

use subtle::ConstantTimeEq as _;

use super::scram::{
    MIN_ITERATIONS, Mechanism, ScramCredential, attribute, attributes, b64, hash, hmac_of, unb64,
    xor,
};

/// A client's client-first-message, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFirst {
    /// The user name (unescaped).
    pub(crate) user: String,
    /// The client's nonce.
    pub(super) nonce: String,
    /// `n=...,r=...[,ext]`, kept for the AuthMessage.
    bare: String,
}

/// Parses a client-first-message.
///
/// # Errors
/// A sentence for channel binding, an authzid other than the user, token
/// authentication, or a malformed message.
pub(super) fn parse_client_first(message: &[u8]) -> Result<ClientFirst, String> {
    let text = std::str::from_utf8(message).map_err(|_| "client-first is not UTF-8")?;
    let mut parts = text.splitn(3, ',');
    let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("client-first lacks the GS2 header".into());
    };
    if cbind != "n" && cbind != "y" {
        return Err("channel binding is not supported".into());
    }
    // Kafka's SCRAM extensions (`name=value` after the nonce, KIP-86).
    let (bare_attrs, extensions): (Vec<&str>, Vec<&str>) = bare
        .split(',')
        .partition(|p| p.as_bytes().get(1) == Some(&b'='));
    if extensions.iter().any(|e| e.starts_with("tokenauth=")) {
        return Err("delegation tokens are not supported by the proxy".into());
    }
    let joined = bare_attrs.join(",");
    let attrs = attributes(&joined)?;
    let user = unescape_name(attribute(&attrs, 'n')?)?;
    if !authzid.is_empty()
        && authzid.strip_prefix("a=").map(unescape_name) != Some(Ok(user.clone()))
    {
        return Err("an authorization id other than the user is not supported".into());
    }
    let nonce = attribute(&attrs, 'r')?.to_owned();
    if nonce.is_empty() {
        return Err("empty client nonce".into());
    }
    Ok(ClientFirst {
        user,
        nonce,
        bare: bare.to_owned(),
    })
}

/// The server side of one SCRAM exchange, after the client-first-message.
pub(crate) struct ScramServer {
    mechanism: Mechanism,
    credential: ScramCredential,
    /// Whether the user exists: an unknown user gets a made-up salt and
    /// fails at the end, so names cannot be probed.
    known: bool,
    nonce: String,
    first_bare: String,
    server_first: String,
}

impl ScramServer {
    /// Answers `first` for `credential` (`None`: unknown user) with the
    /// server nonce part `server_nonce`; returns the server-first-message.
    ///
    /// # Errors
    /// When the random source fails (unknown users only).
    pub(crate) fn start(
        mechanism: Mechanism,
        first: &ClientFirst,
        credential: Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<(ScramServer, Vec<u8>), String> {
        let known = credential.is_some();
        let credential = match credential {
            Some(c) => c,
            None => ScramCredential::generate(mechanism, server_nonce.as_bytes(), MIN_ITERATIONS)?,
        };
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64(&credential.salt),
            credential.iterations
        );
        let message = server_first.clone().into_bytes();
        Ok((
            ScramServer {
                mechanism,
                credential,
                known,
                nonce,
                first_bare: first.bare.clone(),
                server_first,
            },
            message,
        ))
    }

    /// Checks the client-final-message; on success returns the
    /// server-final-message.
    ///
    /// # Errors
    /// A sentence for a wrong proof (wrong password), unknown user, nonce
    /// mismatch or malformed message.
    pub(super) fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(client_final).map_err(|_| "client-final is not UTF-8")?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or("client-final lacks the proof")?;
        let attrs = attributes(without_proof)?;
        if attribute(&attrs, 'r')? != self.nonce {
            return Err("the client-final nonce is not the one agreed".into());
        }
        let binding = attribute(&attrs, 'c')?;
        if binding != "biws" && binding != "eSws" {
            return Err("channel binding is not supported".into());
        }
        let proof = unb64(proof)?;
        let (mac, _, _) = self.mechanism.algorithms().ok_or("PLAIN is not SCRAM")?;
        let auth_message = format!("{},{},{without_proof}", self.first_bare, self.server_first);
        let signature = hmac_of(mac, &self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err("the proof has the wrong length".into());
        }
        let client_key = xor(&proof, &signature);
        let matches =
            bool::from(hash(self.mechanism, &client_key).ct_eq(&self.credential.stored_key));
        if !matches || !self.known {
            return Err("invalid credentials".into());
        }
        let server_signature = hmac_of(mac, &self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", b64(&server_signature)).into_bytes())
    }
}

fn unescape_name(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3);
        out.push(match code {
            Some("=2C") => ',',
            Some("=3D") => '=',
            _ => return Err("user name has a stray '='".into()),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}
