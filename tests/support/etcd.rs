//! A single-member etcd on free loopback ports.

use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::child::ChildGuard;
use super::net::{free_port, http_get};
use super::require_bin;

/// How long etcd may take to elect itself and report healthy.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// The member name; one member per cluster.
const MEMBER: &str = "cutover-test";

/// etcd with its data dir in a temp dir, killed on drop.
pub struct Etcd {
    client_port: u16,
    peer_port: u16,
    dir: TempDir,
    child: Option<ChildGuard>,
}

impl Etcd {
    /// Starts etcd and waits until `GET /health` on the client port says
    /// healthy.
    ///
    /// # Panics
    /// When etcd is not installed, exits, or is not healthy in 20 s.
    pub fn start() -> Etcd {
        let mut etcd = Etcd {
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir().expect("create etcd temp dir"),
            child: None,
        };
        etcd.spawn();
        etcd
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// "127.0.0.1:PORT" of the client API.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// "http://127.0.0.1:PORT", as written in `state.etcd.endpoints`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// SIGKILLs etcd; its data dir stays for [`Etcd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Stops etcd if running and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let bin = require_bin("etcd", "etcd");
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(bin);
        cmd.args(["--name", MEMBER])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{MEMBER}={peer}")])
            .args(["--initial-cluster-state", "new"]);
        let log = self.dir.path().join("etcd.log");
        let mut child = ChildGuard::spawn_logged("etcd", &mut cmd, &log);
        let addr = self.addr();
        child.wait_ready(
            READY_DEADLINE,
            &format!("etcd healthy on {addr}"),
            || matches!(http_get(&addr, "/health"), Some((200, body)) if body.contains("true")),
        );
        self.child = Some(child);
    }
}
