//! Loopback ports and tiny raw-TCP probes (no HTTP client dependency).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// How long one probe may take; readiness loops retry, so keep it short.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Every port this test binary has handed out: tests run in parallel threads
/// and a port picked free is bound only moments later, so no two callers may
/// get the same one, whether they asked for one port or a block.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago and that this test binary has
/// not handed out before.
pub fn free_port() -> u16 {
    free_port_block(1)
}

/// `n` consecutive loopback ports starting at the returned one, free a
/// moment ago and none handed out before by this process (a RocketMQ broker
/// takes its port P, the VIP port P − 2 and the HA port P + 1; a proxy
/// reserves a block for its broker endpoints).
pub fn free_port_block(n: u16) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = listener
            .local_addr()
            .expect("local_addr of bound socket")
            .port();
        drop(listener);
        if base > 65535 - n {
            continue;
        }
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed.range(base..base + n).next().is_some() {
            continue;
        }
        let all: Vec<_> = (base..base + n)
            .map(|p| TcpListener::bind(("0.0.0.0", p)))
            .collect();
        if all.iter().all(Result::is_ok) {
            handed.extend(base..base + n);
            return base;
        }
    }
}

/// Whether something accepts a TCP connection on `addr` ("127.0.0.1:P").
pub fn tcp_accepts(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("socket address like 127.0.0.1:1234");
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok()
}

/// One HTTP/1.0 GET over a raw TCP connection: `Some((status, body))`, or
/// `None` when the server is not reachable or answers garbage.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&sock, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}
