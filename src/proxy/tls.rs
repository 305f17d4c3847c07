//! rustls configurations built from the PEM files named in config; the
//! certificates the proxy presents (to clients, and to clusters with
//! mutual TLS) are reloaded when their files change.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{ClientTlsConfig, ServerTlsConfig};

/// A TLS file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading a PEM file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Content {
        /// File.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

fn reader(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut reader(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Content {
            path: path.display().to_string(),
            reason: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut reader(path)?)
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::Content {
            path: path.display().to_string(),
            reason: "no PEM private key found".into(),
        })
}

/// Server side (clients connecting to a migration's listener, or to the
/// admin API): the certificate is reloaded when its files change
/// ([`ReloadingCert`]), so renewing it needs no restart.
///
/// # Errors
/// Unreadable or empty PEM files, or a key that does not fit the certificate.
pub fn server_config(tls: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let resolver = ReloadingCert::load(tls)?;
    resolver.watch();
    let builder = rustls::ServerConfig::builder();
    let config = match &tls.client_ca_file {
        Some(ca) => builder
            .with_client_cert_verifier(client_verifier(ca)?)
            .with_cert_resolver(resolver),
        None => builder.with_no_client_auth().with_cert_resolver(resolver),
    };
    Ok(Arc::new(config))
}

/// Mutual TLS: a client must present a certificate signed by a CA of
/// `ca_file` (read once, at start).
fn client_verifier(
    ca_file: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots.add(cert)?;
    }
    rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| TlsError::Content {
            path: ca_file.display().to_string(),
            reason: e.to_string(),
        })
}

/// Whether a failed server handshake was the client's certificate being
/// missing or refused (mutual TLS), as opposed to any other TLS failure.
#[must_use]
pub fn is_client_certificate_refusal(error: &std::io::Error) -> bool {
    matches!(
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_))
    )
}

/// A certificate and key the proxy presents (as a server to clients, or
/// as a client to clusters with mutual TLS), read again when either
/// file's modification time changes. A pair that no longer loads
/// (half-written renewal, key not matching) is logged and the previous
/// pair kept.
#[derive(Debug)]
pub struct ReloadingCert {
    /// `[cert_file, key_file]`.
    files: [PathBuf; 2],
    current: ArcSwap<CertifiedKey>,
}

/// How often the certificate files' modification times are looked at.
const CERT_POLL: Duration = Duration::from_secs(2);

impl ReloadingCert {
    /// Loads the pair once.
    ///
    /// # Errors
    /// As [`server_config`].
    pub fn load(tls: &ServerTlsConfig) -> Result<Arc<ReloadingCert>, TlsError> {
        Self::load_pair(&tls.cert_file, &tls.key_file)
    }

    /// Loads the pair `cert_file`, `key_file` once.
    ///
    /// # Errors
    /// Unreadable or empty PEM files, or a key that does not fit.
    pub fn load_pair(cert_file: &Path, key_file: &Path) -> Result<Arc<ReloadingCert>, TlsError> {
        let files = [cert_file.to_owned(), key_file.to_owned()];
        Ok(Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(certified_key(&files)?),
            files,
        }))
    }

    /// Polls the files from a background task for as long as a TLS
    /// configuration still uses this resolver (outside a runtime: never).
    pub fn watch(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let mut seen = self.modified();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(CERT_POLL).await;
                let Some(this) = weak.upgrade() else { return };
                let now = this.modified();
                if now != seen {
                    seen = now;
                    this.reload();
                }
            }
        });
    }

    fn modified(&self) -> [Option<SystemTime>; 2] {
        self.files
            .each_ref()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
    }

    fn reload(&self) {
        let cert = self.files[0].display();
        match certified_key(&self.files) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                tracing::info!(%cert, "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::warn!(%cert, %error, "TLS certificate not reloaded; the previous one stays in use");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified_key([cert, key]: &[PathBuf; 2]) -> Result<CertifiedKey, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    Ok(CertifiedKey::from_der(
        certificates(cert)?,
        private_key(key)?,
        &provider,
    )?)
}

/// Client side (the proxy connecting to a cluster). The proxy's own
/// certificate (mutual TLS) is reloaded when its files change, like a
/// server certificate; the CAs are read once.
///
/// # Errors
/// Unreadable or empty PEM files.
pub fn client_config(tls: &ClientTlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&tls.ca_file)? {
        roots.add(cert)?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let resolver = ReloadingCert::load_pair(cert, key)?;
            resolver.watch();
            builder.with_client_cert_resolver(resolver)
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh self-signed pair in `dir` (the `openssl` binary the
    /// integration tests use too).
    fn self_signed(dir: &Path, name: &str) {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            ])
            .arg(format!("/CN={name}"))
            .args(["-keyout", "key.pem", "-out", "cert.pem"])
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn presented(cert: &ReloadingCert) -> Vec<u8> {
        let key = ResolvesClientCert::resolve(cert, &[], &[]).expect("a certificate");
        key.cert[0].as_ref().to_vec()
    }

    /// The certificate the proxy presents to a cluster follows its files:
    /// a renewed pair is used from the next handshake, a broken one is
    /// refused and the previous pair kept.
    #[test]
    fn a_renewed_client_certificate_replaces_the_old_one_and_a_broken_one_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        self_signed(dir.path(), "first");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let reloading = ReloadingCert::load_pair(&cert, &key).expect("loads");
        let first = presented(&reloading);
        self_signed(dir.path(), "second");
        reloading.reload();
        let second = presented(&reloading);
        assert_ne!(first, second, "the renewed certificate is presented");
        std::fs::write(&key, "not a key").expect("break the key");
        reloading.reload();
        assert_eq!(presented(&reloading), second, "a broken pair is not used");
    }
}
