//! rustls configurations built from the PEM files named in config; server
//! certificates are reloaded when their files change.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
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

/// The certificate and key a server offers, read again when either file's
/// modification time changes. A pair that no longer loads (half-written
/// renewal, key not matching) is logged and the previous pair kept.
#[derive(Debug)]
pub struct ReloadingCert {
    files: ServerTlsConfig,
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
        Ok(Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(certified_key(tls)?),
            files: tls.clone(),
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
        [&self.files.cert_file, &self.files.key_file]
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
    }

    fn reload(&self) {
        let cert = self.files.cert_file.display();
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

fn certified_key(tls: &ServerTlsConfig) -> Result<CertifiedKey, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    Ok(CertifiedKey::from_der(
        certificates(&tls.cert_file)?,
        private_key(&tls.key_file)?,
        &provider,
    )?)
}

/// Client side (the proxy connecting to a cluster).
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
            builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
