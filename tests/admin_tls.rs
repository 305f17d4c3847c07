//! The TCP admin API over TLS (`admin.tls`): the bearer token only ever
//! travels encrypted, a plaintext client gets no HTTP answer, and a renewed
//! certificate is served without a restart.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use support::{Config, CutoverProcess, free_port, http_get, wait_until};

const TOKEN: &str = "tls-admin-token";

/// One HTTPS GET trusting only `ca`; the status code, or why it failed.
fn https_get(addr: &str, ca: &Path, path: &str) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A close without close_notify still leaves the whole answer read.
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    Ok((status, text))
}

#[test]
fn admin_tcp_over_tls_answers_only_encrypted_and_reloads_its_certificate() {
    let first = tempfile::tempdir().expect("temp dir");
    support::tls::certificates(first.path());
    let served = tempfile::tempdir().expect("temp dir");
    for file in ["server.pem", "server.key"] {
        std::fs::copy(first.path().join(file), served.path().join(file)).expect("copy");
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let config = Config::new();
    let token_file = config.dir().join("admin.token");
    std::fs::write(&token_file, TOKEN).expect("write token");
    let config = config
        .admin(&format!("listen: {addr}"))
        .admin(&format!("token_file: \"{}\"", token_file.display()))
        .admin(&format!(
            "tls: {{ cert_file: \"{}\", key_file: \"{}\" }}",
            served.path().join("server.pem").display(),
            served.path().join("server.key").display()
        ))
        .append("clusters: []\nmigrations: []\n");
    let proxy = CutoverProcess::start(config);

    let (status, text) =
        https_get(&addr, &first.path().join("ca.pem"), "/api/v1/status").expect("HTTPS status");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"migrations\""), "{text}");
    assert_eq!(
        http_get(&addr, "/api/v1/status"),
        None,
        "plain HTTP gets no answer from a TLS listener"
    );

    // Renewal: a certificate from another CA replaces the files in place.
    let renewed = tempfile::tempdir().expect("temp dir");
    support::tls::certificates(renewed.path());
    for file in ["server.pem", "server.key"] {
        std::fs::copy(renewed.path().join(file), served.path().join(file)).expect("copy");
    }
    wait_until(
        Duration::from_secs(15),
        "the renewed certificate is served",
        || https_get(&addr, &renewed.path().join("ca.pem"), "/api/v1/status").is_ok(),
    );
    assert!(
        https_get(&addr, &first.path().join("ca.pem"), "/api/v1/status").is_err(),
        "the old certificate is no longer offered"
    );
    assert!(
        proxy.log_tail(50).contains("TLS certificate reloaded"),
        "{}",
        proxy.log_tail(50)
    );
}
