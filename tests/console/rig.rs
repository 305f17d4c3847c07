//! A Redis migration with the TCP admin listener and its token, for the
//! console tests: two real redis-servers, cutover in front, keyspaces
//! `sessions` (`session:*`) and `rest` (`*`), plus a tiny HTTP client that
//! can send the bearer header (the shared `http_get` cannot).

#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::support::{Config, CutoverProcess, RedisServer, free_port};

/// Every HTTP exchange gives up after this long.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Distinctive, so a test can assert a refused page leaks no migration data.
pub const MIGRATION: &str = "shop-cache";

pub const TOKEN: &str = "console-test-token-7f3a";

pub struct ConsoleRig {
    pub source: RedisServer,
    pub target: RedisServer,
    pub proxy: CutoverProcess,
    /// Client listener of the migration.
    pub port: u16,
    /// TCP admin address.
    pub admin: String,
}

impl ConsoleRig {
    /// `redis_options` is YAML for the migration's `redis:` key.
    pub fn start(redis_options: &str) -> ConsoleRig {
        let source = RedisServer::start();
        let target = RedisServer::start();
        let port = free_port();
        let admin = format!("127.0.0.1:{}", free_port());
        let config = Config::new();
        let token_file = config.dir().join("admin.token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token file");
        let config = config
            .admin(&format!("listen: {admin}"))
            .admin(&format!("token_file: \"{}\"", token_file.display()))
            .append(&format!(
                "clusters:\n  - {{ name: old, protocol: redis, endpoints: [\"{}\"] }}\n  - {{ name: new, protocol: redis, endpoints: [\"{}\"] }}\n\
                 migrations:\n  - name: {MIGRATION}\n    protocol: redis\n    listen: 127.0.0.1:{port}\n    source: old\n    target: new\n\
                 \x20   topics: [ {{ name: sessions, match: \"session:*\" }}, {{ name: rest, match: \"*\" }} ]\n    redis: {redis_options}\n",
                source.addr(),
                target.addr()
            ));
        let proxy = CutoverProcess::start(config);
        ConsoleRig {
            source,
            target,
            proxy,
            port,
            admin,
        }
    }

    /// `ctl ARGS` over the Unix socket; panics with the proxy log on failure.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let output = self.proxy.ctl(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "ctl {args:?} failed:\n{stdout}\n{}\n--- proxy log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.proxy.log_tail(30)
        );
        stdout
    }

    /// HTTP on the TCP admin listener, with the token when `token` is set.
    pub fn http(&self, method: &str, path: &str, token: Option<&str>) -> Response {
        let addr: SocketAddr = self.admin.parse().expect("admin address");
        let stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).expect("connect admin TCP");
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        exchange(stream, method, path, &auth)
    }

    /// HTTP on the admin Unix socket (no token there).
    pub fn http_unix(&self, path: &str) -> Response {
        let stream = UnixStream::connect(self.proxy.socket()).expect("connect admin socket");
        exchange(stream, "GET", path, "")
    }

    /// `GET /api/v1/dashboard` with the token, parsed.
    pub fn dashboard(&self) -> serde_json::Value {
        let response = self.http("GET", "/api/v1/dashboard", Some(TOKEN));
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str(&response.body).expect("dashboard is JSON")
    }
}

pub struct Response {
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

trait Stream: Read + Write {
    fn set_timeouts(&self, timeout: Duration);
}

impl Stream for TcpStream {
    fn set_timeouts(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).expect("read timeout");
        self.set_write_timeout(Some(timeout))
            .expect("write timeout");
    }
}

impl Stream for UnixStream {
    fn set_timeouts(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).expect("read timeout");
        self.set_write_timeout(Some(timeout))
            .expect("write timeout");
    }
}

fn exchange(mut stream: impl Stream, method: &str, path: &str, extra: &str) -> Response {
    stream.set_timeouts(HTTP_TIMEOUT);
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Keeps one client connection writing `session:*` keys and reading `rest`
/// keys through the proxy until dropped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Traffic {
    pub fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to proxy");
            stream
                .set_read_timeout(Some(HTTP_TIMEOUT))
                .expect("read timeout");
            let mut sent = 0u64;
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let key = format!("session:{}", sent % 50);
                let cmd = format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$6\r\nrest:1\r\n",
                    key.len()
                );
                if stream.write_all(cmd.as_bytes()).is_err() {
                    break;
                }
                // Two one-line replies: "+OK" and "$-1" (rest:1 is never set).
                let mut lines = 0;
                while lines < 2 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return sent,
                        Ok(n) => lines += buf[..n].iter().filter(|b| **b == b'\n').count(),
                    }
                }
                sent += 2;
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The repository's `target/` directory (screenshots are kept there).
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}
