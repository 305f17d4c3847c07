//! RocketMQ peers: one cluster = `rocketmq-namesrv-rust` + one
//! `rocketmq-broker-rust` on free loopback ports with data in a temp dir,
//! and the test client `cutover-rocketmq-client` (built from
//! tests/peers/rocketmq-client by `tests/peers/install.sh rocketmq`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use cutover_rocketmq::{Encoding, Frame, Header, encode, next_frame};
use tempfile::TempDir;

use super::child::ChildGuard;
use super::net::{free_port, tcp_accepts};
use super::require_bin;

/// How long a namesrv + broker pair may take to come up and register.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// `n` consecutive loopback ports starting at the returned one, free a
/// moment ago (the RocketMQ broker needs its port and the VIP port two
/// below; the proxy needs a block for its broker endpoints).
pub fn free_port_block(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base > 65535 - n {
            continue;
        }
        let all: Vec<_> = (base..base + n)
            .map(|p| TcpListener::bind(("0.0.0.0", p)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
}

/// One RocketMQ cluster: a NameServer and one master broker.
pub struct RocketmqCluster {
    pub name: String,
    pub broker_name: String,
    pub namesrv_port: u16,
    pub broker_port: u16,
    _broker: ChildGuard,
    _namesrv: ChildGuard,
    _dir: TempDir,
}

impl RocketmqCluster {
    /// Starts the cluster `name` with broker `broker_name`, and waits until
    /// the broker is registered with the NameServer.
    ///
    /// # Panics
    /// When the binaries are missing or the cluster is not ready in 30 s.
    pub fn start(name: &str, broker_name: &str) -> RocketmqCluster {
        let namesrv_bin = require_bin("rocketmq-namesrv-rust", "rocketmq");
        let broker_bin = require_bin("rocketmq-broker-rust", "rocketmq");
        let dir = tempfile::tempdir().expect("rocketmq temp dir");
        let namesrv_port = free_port();
        // Broker port P, VIP port P − 2 (the broker opens both), HA port.
        let vip = free_port_block(3);
        let broker_port = vip + 2;
        let ha_port = free_port();
        let mut cmd = Command::new(namesrv_bin);
        cmd.args(["--listenPort", &namesrv_port.to_string()])
            .args(["--bindAddress", "127.0.0.1"])
            .arg("--rocketmqHome")
            .arg(dir.path());
        let mut namesrv = ChildGuard::spawn_logged(
            "rocketmq-namesrv",
            &mut cmd,
            &dir.path().join("namesrv.log"),
        );
        let ns_addr = format!("127.0.0.1:{namesrv_port}");
        namesrv.wait_ready(READY_DEADLINE, &format!("namesrv on {ns_addr}"), || {
            tcp_accepts(&ns_addr)
        });
        let store = dir.path().join("store");
        let toml = format!(
            "[broker]\nlistenPort = {broker_port}\nbrokerIp1 = \"127.0.0.1\"\nstorePathRootDir = \"{store}\"\n\
             namesrvAddr = \"{ns_addr}\"\nautoCreateTopicEnable = true\n\n\
             [broker.brokerIdentity]\nbrokerName = \"{broker_name}\"\nbrokerClusterName = \"{name}\"\nbrokerId = 0\n\n\
             [store]\nstorePathRootDir = \"{store}\"\nhaListenAddress = \"127.0.0.1\"\nhaListenPort = {ha_port}\n",
            store = store.display()
        );
        let toml_path = dir.path().join("broker.toml");
        std::fs::write(&toml_path, toml).expect("write broker.toml");
        let mut cmd = Command::new(broker_bin);
        cmd.env("ROCKETMQ_HOME", dir.path())
            .arg("-c")
            .arg(&toml_path);
        let mut broker =
            ChildGuard::spawn_logged("rocketmq-broker", &mut cmd, &dir.path().join("broker.log"));
        broker.wait_ready(
            READY_DEADLINE,
            &format!("broker {broker_name} registered with {ns_addr}"),
            || {
                rpc(&ns_addr, 106, &[], Encoding::Json)
                    .is_some_and(|f| String::from_utf8_lossy(&f.body).contains(broker_name))
            },
        );
        RocketmqCluster {
            name: name.to_owned(),
            broker_name: broker_name.to_owned(),
            namesrv_port,
            broker_port,
            _broker: broker,
            _namesrv: namesrv,
            _dir: dir,
        }
    }

    /// "127.0.0.1:PORT" of the NameServer.
    pub fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// "127.0.0.1:PORT" of the broker.
    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// Sum of the max offsets of `topic`'s queues `0..queues` on the broker.
    pub fn max_offsets(&self, topic: &str, queues: i32) -> i64 {
        (0..queues)
            .map(|q| {
                rpc(
                    &self.broker(),
                    30,
                    &[("topic", topic), ("queueId", &q.to_string())],
                    Encoding::Json,
                )
                .and_then(|f| f.header.ext("offset").and_then(|o| o.parse().ok()))
                .unwrap_or(0)
            })
            .sum()
    }
}

/// One request on a fresh connection; the answer, or `None` on any failure.
pub fn rpc(addr: &str, code: i32, ext: &[(&str, &str)], encoding: Encoding) -> Option<Frame> {
    let mut header = Header::request(code, 1);
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    let frame = encode(&header, &[], encoding).ok()?;
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.write_all(&frame).ok()?;
    read_frame(&mut stream)
}

/// Reads one whole frame (up to 16 MiB) from a blocking stream.
pub fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if let Ok(Some(frame)) = next_frame(&mut buf, 16 << 20) {
            return Some(frame);
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The test client binary.
pub fn rocketmq_client() -> PathBuf {
    require_bin("cutover-rocketmq-client", "rocketmq")
}

/// A running `cutover-rocketmq-client produce|consume`, appending bodies to
/// `out`; stopped by creating its stop file, killed on drop.
pub struct RocketmqClient {
    pub out: PathBuf,
    stop: PathBuf,
    child: ChildGuard,
}

impl RocketmqClient {
    /// Starts `mode` (`produce` or `consume`) with `args` (`--namesrv` ...);
    /// `dir` holds the output, stop and log files, named after `id`.
    pub fn start(dir: &Path, mode: &str, id: &str, args: &[&str]) -> RocketmqClient {
        let out = dir.join(format!("{id}.out"));
        let stop = dir.join(format!("{id}.stop"));
        let mut cmd = Command::new(rocketmq_client());
        cmd.arg(mode)
            .args(args)
            .arg("--out")
            .arg(&out)
            .arg("--stop-file")
            .arg(&stop);
        if mode == "produce" {
            cmd.args(["--id", id]);
        }
        let child = ChildGuard::spawn_logged(id, &mut cmd, &dir.join(format!("{id}.log")));
        RocketmqClient { out, stop, child }
    }

    /// The bodies written so far, one per line.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Asks the client to stop and waits (bounded) for it to exit; returns
    /// its JSON summary (the last line of its log that parses).
    pub fn stop(&mut self, deadline: Duration) -> serde_json::Value {
        std::fs::write(&self.stop, b"").expect("write stop file");
        let mut exited = false;
        super::wait_until(deadline, "rocketmq client to exit", || {
            exited = self.child.exit_status().is_some();
            exited
        });
        self.child
            .log_tail(200)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }
}

/// Creates `topic` with `queues` read/write queues on the broker at
/// `broker` and waits until its NameServer at `namesrv` routes it.
///
/// # Panics
/// When the broker refuses or the route does not appear in 20 s.
pub fn create_topic(broker: &str, namesrv: &str, topic: &str, queues: i32) {
    let q = queues.to_string();
    let answer = rpc(
        broker,
        17,
        &[
            ("topic", topic),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", &q),
            ("writeQueueNums", &q),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
            ("topicSysFlag", "0"),
            ("order", "false"),
        ],
        Encoding::Json,
    )
    .expect("UPDATE_AND_CREATE_TOPIC answered");
    assert_eq!(
        answer.header.code, 0,
        "create {topic}: {:?}",
        answer.header.remark
    );
    super::wait_until(
        Duration::from_secs(20),
        &format!("route of {topic} on {namesrv}"),
        || {
            rpc(namesrv, 105, &[("topic", topic)], Encoding::Json)
                .is_some_and(|f| f.header.code == 0)
        },
    );
}

/// Two clusters (source `old`, target `new`) and cutover between them
/// with migration `orders` for every topic.
pub struct RocketmqRig {
    pub source: RocketmqCluster,
    pub target: RocketmqCluster,
    pub proxy: super::CutoverProcess,
    /// The proxy's NameServer address clients use.
    pub namesrv: String,
    /// Where client output files go.
    pub dir: TempDir,
}

impl RocketmqRig {
    /// Starts both clusters and the proxy; `extra` is appended to the
    /// migration's `rocketmq:` options (e.g. `quiet_window: 1s`).
    pub fn start(extra: &str) -> RocketmqRig {
        // Ports are picked free and bound moments later by other processes;
        // tests of one binary run in parallel, so without this two rigs can
        // pick the same port in that window (seen: a broker exiting with
        // "Transport server could not be started"). One rig starts at a time.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let source = RocketmqCluster::start("ClusterOld", "broker-a");
        let target = RocketmqCluster::start("ClusterNew", "broker-a");
        let listen = free_port();
        let base = free_port_block(8);
        let config = super::Config::new().append(&format!(
            "clusters:\n\
             \x20 - {{ name: old, protocol: rocketmq, endpoints: [\"{}\"] }}\n\
             \x20 - {{ name: new, protocol: rocketmq, endpoints: [\"{}\"] }}\n\
             migrations:\n\
             \x20 - name: orders\n\
             \x20   protocol: rocketmq\n\
             \x20   listen: 127.0.0.1:{listen}\n\
             \x20   source: old\n\
             \x20   target: new\n\
             \x20   topics: [ {{ match: \"*\" }} ]\n\
             \x20   rocketmq: {{ brokers_listen_base: {base}{extra} }}\n",
            source.namesrv(),
            target.namesrv(),
        ));
        let proxy = super::CutoverProcess::start(config);
        RocketmqRig {
            source,
            target,
            proxy,
            namesrv: format!("127.0.0.1:{listen}"),
            dir: tempfile::tempdir().expect("client temp dir"),
        }
    }

    /// Starts a client through the proxy.
    pub fn client(
        &self,
        mode: &str,
        id: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> RocketmqClient {
        let mut args = vec![
            "--namesrv",
            self.namesrv.as_str(),
            "--topic",
            topic,
            "--group",
            group,
        ];
        args.extend_from_slice(extra);
        RocketmqClient::start(self.dir.path(), mode, id, &args)
    }

    /// `cutover ctl ARGS`: (exit code, stdout + stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = self.proxy.ctl(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}
