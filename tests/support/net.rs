//! Loopback ports and tiny raw-TCP probes (no HTTP client dependency).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long one probe may take; readiness loops retry, so keep it short.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// A loopback port that was free a moment ago and that this test binary has
/// not handed out before (tests run in parallel threads; two peers asking at
/// once must not get the same port once the first has released its probe).
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("local_addr of bound socket")
            .port();
        drop(listener);
        if handed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return port;
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
