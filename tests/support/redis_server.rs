//! A throwaway redis-server on a free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::child::ChildGuard;
use super::net::free_port;
use super::require_bin;

/// How long redis-server may take to answer PING after spawn.
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// One PING round trip; the readiness loop retries.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// redis-server with no persistence, killed on drop.
pub struct RedisServer {
    port: u16,
    extra_args: Vec<String>,
    dir: TempDir,
    child: Option<ChildGuard>,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    ///
    /// # Panics
    /// When redis-server is not installed, exits, or is not ready in 10 s.
    pub fn start() -> RedisServer {
        RedisServer::start_with_args(&[])
    }

    /// Like [`RedisServer::start`], with extra command-line options, e.g.
    /// `["--requirepass", "secret"]` (PING readiness then sees `-NOAUTH`,
    /// which still proves the server is up).
    pub fn start_with_args(extra_args: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            dir: tempfile::tempdir().expect("create redis temp dir"),
            child: None,
        };
        server.spawn();
        server
    }

    /// A server also listening with TLS on `tls_port`, with the test
    /// certificates in `certs` (`support::tls::certificates`); `auth_clients`
    /// is redis's `--tls-auth-clients` (`yes`: a client certificate is
    /// required there). The plain port stays open.
    pub fn start_tls(certs: &std::path::Path, tls_port: u16, auth_clients: &str) -> RedisServer {
        let file = |name: &str| certs.join(name).display().to_string();
        RedisServer::start_with_args(&[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            auth_clients,
        ])
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "redis://127.0.0.1:PORT/" for the `redis` client crate.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// SIGKILLs the server (the port is then refused until [`restart`]).
    ///
    /// [`restart`]: RedisServer::restart
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Stops the server if running and starts it again on the same port
    /// (empty, since nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs `redis-cli -p PORT ARGS...` and returns its trimmed stdout.
    ///
    /// # Panics
    /// When redis-cli is missing or exits non-zero (message has its stderr).
    /// Note redis-cli exits 0 on a Redis error reply such as `(error) ...`.
    pub fn cli(&self, args: &[&str]) -> String {
        let cli = require_bin("redis-cli", "redis");
        let out = Command::new(&cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", cli.display()));
        assert!(
            out.status.success(),
            "redis-cli -p {} {args:?} failed ({}): {}",
            self.port,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn spawn(&mut self) {
        let bin = require_bin("redis-server", "redis");
        let port = self.port.to_string();
        let mut cmd = Command::new(bin);
        cmd.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args);
        let mut child = ChildGuard::spawn_logged("redis-server", &mut cmd, &self.log_path());
        let addr = self.addr();
        child.wait_ready(
            READY_DEADLINE,
            &format!("redis-server on {addr} to answer PING"),
            || answers_ping(&addr),
        );
        self.child = Some(child);
    }
}

/// Whether a RESP PING over a fresh TCP connection gets `+PONG` (or
/// `-NOAUTH`, which a password-protected server answers when up).
fn answers_ping(addr: &str) -> bool {
    let Ok(sock) = addr.parse() else { return false };
    let Ok(mut stream) = TcpStream::connect_timeout(&sock, PING_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(PING_TIMEOUT));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).unwrap_or(0);
    reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH")
}
