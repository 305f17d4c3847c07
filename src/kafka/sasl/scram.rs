//! The SASL exchanges' arithmetic, free of I/O: the client end of a
//! SCRAM-SHA-256/512 exchange (the server end is `scram_server`) and
//! SASL/PLAIN's message, on the credentials of [`crate::credentials::scram`].
//! Both the proxy's own logins to brokers and the clients' logins to the
//! proxy are built on it, so one set of tests covers both directions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use subtle::ConstantTimeEq as _;

pub(crate) use crate::credentials::scram::{
    MAX_ITERATIONS, MIN_ITERATIONS, Mechanism, ScramCredential, b64, hash, hmac_of, keys, unb64,
};

/// A fresh nonce: 24 random bytes, base64 (printable, no comma).
///
/// # Errors
/// When the system's random source fails.
pub(super) fn nonce() -> Result<String, String> {
    let mut bytes = [0_u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "the system random source failed".to_owned())?;
    Ok(B64.encode(bytes))
}

/// A SCRAM user name as the wire writes it (`,` → `=2C`, `=` → `=3D`).
#[must_use]
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// `k=v` attributes of a SCRAM message, in order.
pub(crate) fn attributes(message: &str) -> Result<Vec<(char, &str)>, String> {
    message
        .split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(format!("malformed SCRAM attribute {part:?}")),
            }
        })
        .collect()
}

pub(super) fn attribute<'a>(attrs: &[(char, &'a str)], key: char) -> Result<&'a str, String> {
    attrs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("SCRAM message lacks '{key}='"))
}

pub(super) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The proxy logging in to a broker with SCRAM: three messages.
pub(super) struct ScramClient {
    mechanism: Mechanism,
    password: Vec<u8>,
    nonce: String,
    first_bare: String,
    /// Expected server signature once the final message is sent.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts a login of `user`; [`ScramClient::first`] is the first message.
    #[must_use]
    pub(crate) fn new(mechanism: Mechanism, user: &str, password: &str, nonce: String) -> Self {
        let first_bare = format!("n={},r={nonce}", escape_name(user));
        ScramClient {
            mechanism,
            password: password.as_bytes().to_vec(),
            nonce,
            first_bare,
            server_signature: None,
        }
    }

    /// client-first-message.
    #[must_use]
    pub(crate) fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// client-final-message for the server-first-message `server_first`.
    ///
    /// # Errors
    /// A sentence when the server's message is malformed, does not extend
    /// our nonce, or asks for fewer iterations than Kafka allows.
    pub(crate) fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
        let attrs = attributes(text)?;
        let nonce = attribute(&attrs, 'r')?;
        let salt = unb64(attribute(&attrs, 's')?)?;
        let iterations: u32 = attribute(&attrs, 'i')?
            .parse()
            .map_err(|_| "SCRAM iteration count is not a number")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's nonce does not extend ours".into());
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "the server asks for {iterations} iterations, outside {MIN_ITERATIONS}-{MAX_ITERATIONS}"
            ));
        }
        let (mac, _, _) = self.mechanism.algorithms().ok_or("PLAIN is not SCRAM")?;
        let (client_key, server_key) = keys(self.mechanism, &self.password, &salt, iterations);
        let stored_key = hash(self.mechanism, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = hmac_of(mac, &stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &signature);
        self.server_signature = Some(hmac_of(mac, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Checks the server-final-message (the server proves it knows the key).
    ///
    /// # Errors
    /// The server's own error (`e=`), or a signature that does not match.
    pub(super) fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8")?;
        let attrs = attributes(text)?;
        if let Ok(error) = attribute(&attrs, 'e') {
            return Err(format!("the server said {error}"));
        }
        let got = unb64(attribute(&attrs, 'v')?)?;
        let expected = self
            .server_signature
            .as_deref()
            .ok_or("no final message sent yet")?;
        if bool::from(got.ct_eq(expected)) {
            Ok(())
        } else {
            Err("the server's signature does not match: it does not hold this user's key".into())
        }
    }
}

/// The SASL/PLAIN message `authzid NUL user NUL password`.
#[must_use]
pub(super) fn plain_message(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// Splits a SASL/PLAIN message into (user, password).
///
/// # Errors
/// A malformed message, or an authorization id other than the user.
pub(super) fn parse_plain(message: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(message).map_err(|_| "PLAIN message is not UTF-8")?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("PLAIN message is not authzid NUL user NUL password".into());
    };
    if user.is_empty() {
        return Err("PLAIN message has an empty user name".into());
    }
    if !authzid.is_empty() && authzid != user {
        return Err("an authorization id other than the user is not supported".into());
    }
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::scram_server::{ScramServer, parse_client_first};
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil".
    #[test]
    fn rfc7677_exchange_from_both_ends() {
        let mut client = ScramClient::new(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(client.first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = client.answer(server_first).unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(client.verify(b"v=AAAA").is_err());

        let salt = unb64("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = ScramCredential::derive(Mechanism::ScramSha256, b"pencil", salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let (server, message) = ScramServer::start(
            Mechanism::ScramSha256,
            &first,
            Some(credential.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(message, server_first);
        let done = server
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(done, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert!(credential.matches_password(Mechanism::ScramSha256, b"pencil"));
        assert!(!credential.matches_password(Mechanism::ScramSha256, b"pencil2"));
    }

    #[test]
    fn sha512_round_trip_and_wrong_password_or_unknown_user_fail() {
        for (password, known, ok) in [
            ("right", true, true),
            ("wrong", true, false),
            ("right", false, false),
        ] {
            let credential =
                ScramCredential::generate(Mechanism::ScramSha512, b"right", 4096).unwrap();
            let mut client =
                ScramClient::new(Mechanism::ScramSha512, "a,b=c", password, nonce().unwrap());
            let first = parse_client_first(&client.first()).unwrap();
            assert_eq!(first.user, "a,b=c");
            let (server, server_first) = ScramServer::start(
                Mechanism::ScramSha512,
                &first,
                known.then_some(credential),
                "xyz",
            )
            .unwrap();
            let last = client.answer(&server_first).unwrap();
            match server.finish(&last) {
                Ok(v) => {
                    assert!(ok);
                    client.verify(&v).unwrap();
                }
                Err(e) => {
                    assert!(!ok);
                    assert_eq!(e, "invalid credentials");
                }
            }
        }
    }

    #[test]
    fn malformed_messages_are_refused_with_reasons() {
        assert!(
            parse_client_first(b"p=tls-unique,,n=u,r=x")
                .unwrap_err()
                .contains("channel binding")
        );
        assert!(
            parse_client_first(b"n,a=other,n=u,r=x")
                .unwrap_err()
                .contains("authorization id")
        );
        assert!(
            parse_client_first(b"n,,n=u,r=x,tokenauth=true")
                .unwrap_err()
                .contains("tokens")
        );
        assert!(parse_client_first(b"n,,n=u").unwrap_err().contains("'r='"));
        let mut client = ScramClient::new(Mechanism::ScramSha256, "u", "p", "abc".into());
        assert!(
            client
                .answer(b"r=zzz,s=AAAA,i=4096")
                .unwrap_err()
                .contains("nonce")
        );
        assert!(
            client
                .answer(b"r=abcd,s=AAAA,i=10")
                .unwrap_err()
                .contains("iterations")
        );
        assert_eq!(parse_plain(b"\0u\0p").unwrap(), ("u".into(), "p".into()));
        assert!(parse_plain(b"x\0u\0p").is_err());
        assert!(parse_plain(b"u\0p").is_err());
        assert_eq!(
            Mechanism::parse("SCRAM-SHA-512"),
            Some(Mechanism::ScramSha512)
        );
        assert_eq!(Mechanism::parse("scram-sha-512"), None);
    }
}
