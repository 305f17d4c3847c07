//! A Redis migration under test: two real redis-server peers (source and
//! target) and a cutover process in front of them, with keyspaces
//! `sessions` (`session:*`) and `rest` (`*`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{Config, CutoverProcess, RedisServer, free_port, wait_until};

pub struct RedisRig {
    pub source: RedisServer,
    pub target: RedisServer,
    pub proxy: CutoverProcess,
    pub port: u16,
}

impl RedisRig {
    /// Starts both peers and the proxy; `redis_options` is YAML for the migration's `redis:` key (or empty).
    pub fn start(redis_options: &str) -> RedisRig {
        RedisRig::start_on(
            RedisServer::start(),
            RedisServer::start(),
            ["", ""],
            redis_options,
        )
    }

    /// As [`RedisRig::start`] on peers already running (e.g. with ACL users
    /// set up); `cluster_extra` is appended inside each cluster's `{ }` in
    /// the config (e.g. `", auth: { password: p }"`).
    pub fn start_on(
        source: RedisServer,
        target: RedisServer,
        cluster_extra: [&str; 2],
        redis_options: &str,
    ) -> RedisRig {
        let endpoints = [source.addr(), target.addr()];
        RedisRig::start_at(source, target, endpoints, cluster_extra, redis_options)
    }

    /// [`RedisRig::start_on`] reaching the servers at `endpoints` (e.g.
    /// their TLS ports) rather than at their plain ports.
    pub fn start_at(
        source: RedisServer,
        target: RedisServer,
        endpoints: [String; 2],
        cluster_extra: [&str; 2],
        redis_options: &str,
    ) -> RedisRig {
        let port = free_port();
        let options = if redis_options.is_empty() {
            String::new()
        } else {
            format!("    redis: {redis_options}\n")
        };
        let config = Config::new().append(&format!(
            "clusters:\n  - {{ name: old, protocol: redis, endpoints: [\"{}\"]{} }}\n  - {{ name: new, protocol: redis, endpoints: [\"{}\"]{} }}\n\
             migrations:\n  - name: cache\n    protocol: redis\n    listen: 127.0.0.1:{port}\n    source: old\n    target: new\n\
             \x20   topics: [ {{ name: sessions, match: \"session:*\" }}, {{ name: rest, match: \"*\" }} ]\n{options}",
            endpoints[0],
            cluster_extra[0],
            endpoints[1],
            cluster_extra[1],
        ));
        let proxy = CutoverProcess::start(config);
        RedisRig {
            source,
            target,
            proxy,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// redis-cli against the proxy.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(
            output.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs `ctl` and asserts it succeeded.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let output = self.proxy.ctl(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "ctl {args:?} failed ({:?}):\n{stdout}\n{}\n--- proxy log ---\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr),
            self.proxy.log_tail(30)
        );
        stdout
    }

    /// The keyspace's JSON from `ctl status --json`.
    pub fn keyspace(&self, name: &str) -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&self.ctl_ok(&["status", "--json"])).expect("status is JSON");
        status["migrations"][0]["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no keyspace {name} in {status}"))
    }

    pub fn state(&self, name: &str) -> String {
        self.keyspace(name)["state"]
            .as_str()
            .expect("state")
            .to_owned()
    }

    /// Waits until the keyspace's backfill (started on entering a converging state) completes.
    pub fn wait_backfill(&self, name: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("backfill of {name} completes"),
            || {
                let details = &self.keyspace(name)["details"];
                assert!(
                    details["backfill"]["error"].is_null(),
                    "backfill failed: {details}"
                );
                details["backfill"]["complete"] == true
            },
        );
    }

    /// Waits until nothing is queued, copying or awaiting repair for the keyspace.
    pub fn wait_converged(&self, name: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("copies of {name} land"),
            || {
                let details = &self.keyspace(name)["details"];
                details["copy_backlog"] == 0
                    && details["repair_set"] == 0
                    && details["inflight_writes"] == 0
            },
        );
    }
}

/// A raw RESP connection to the proxy, for byte-exact assertions.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        RawClient { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to proxy");
    }

    /// Closes our sending side (as `printf ... | nc` does), keeping the receiving side open.
    pub fn finish_sending(&mut self) {
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    }

    /// Reads until `expected` bytes have arrived (or EOF/timeout), returning what came.
    pub fn read_exact_len(&mut self, expected: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(expected);
        let mut buf = [0u8; 65536];
        while out.len() < expected {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    /// Reads until the peer closes or times out.
    pub fn read_to_close(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (out, false),
            }
        }
    }

    /// Sends one command and reads one reply line-ish (enough for simple replies).
    pub fn roundtrip(&mut self, bytes: &[u8], expected_prefix: &[u8]) -> Vec<u8> {
        self.send(bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !(out.len() >= expected_prefix.len() && out.ends_with(b"\r\n")) {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }
}
