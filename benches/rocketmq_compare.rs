//! RocketMQ send and consume throughput and send latency through cutover in
//! `source`, next to the same RocketMQ cluster reached directly.
//!
//! Run: `cargo bench --bench rocketmq_compare` (cargo builds `cutover` with
//! the bench profile = release optimisations). Needs `rocketmq-namesrv-rust`,
//! `rocketmq-broker-rust` 1.0.0 and `cutover-rocketmq-client` (built on
//! `rocketmq-client-rust` 1.0.0) from `tests/peers/install.sh rocketmq`.
//!
//! Two clusters, each one NameServer and one master broker on free loopback
//! ports with data in the scratch dir: the source every path leads to, and
//! cutover's target cluster (idle in `source`). Paths, each a named entry of
//! [`TARGETS`] whose setup returns the NameServer address clients use:
//! - `direct`: the source NameServer itself;
//! - `cutover source`: one RocketMQ migration matching every topic, in
//!   `source`; clients reach its NameServer facade and its broker endpoints.
//!
//! For every path and round a fresh topic with `ROCKETMQ_BENCH_QUEUES`
//! queues is created on the source broker, then:
//! 1. **send**: `cutover-rocketmq-client bench` sends N messages of S bytes
//!    from C concurrent senders of one producer (synchronous sends, each
//!    waits for the broker's answer); msgs/s from the first to the last
//!    answer, and p50/p99 of one send round trip;
//! 2. **consume**: `cutover-rocketmq-client consume`, a push consumer of a
//!    fresh group starting from the first offset, reads them all back;
//!    msgs/s from the first delivered message to the last (the group's
//!    start-up and rebalance are left out), polled every 20 ms.
//!
//! Rounds are interleaved across paths and the table shows each path's best
//! round per column, with the spread between rounds. Nothing is asserted
//! about the ratios (issue 4's target: cutover `source` ≥ 0.9x direct
//! msgs/s); lost or failed messages are flagged.
//!
//! Environment (defaults finish in about 3 minutes on 2 cores):
//! `ROCKETMQ_BENCH_MESSAGES` (20000), `ROCKETMQ_BENCH_SIZE` (128 bytes),
//! `ROCKETMQ_BENCH_CONCURRENCY` (16), `ROCKETMQ_BENCH_QUEUES` (4),
//! `ROCKETMQ_BENCH_ROUNDS` (3), `ROCKETMQ_BENCH_TARGETS` (comma-separated
//! subset of target names), `CUTOVER_BENCH_KEEP=1` keeps the scratch dir.
//!
//! Adding a path (e.g. `cutover dual_write`): append to [`TARGETS`] a setup
//! that starts what it needs and returns a [`Target`]; its `prepare` hook
//! runs for every fresh topic before any load, which is where
//! `ctl migrate-metadata` and `ctl advance` belong.

mod common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Child, Cutover, Scratch};
use cutover_rocketmq::{Encoding, Frame, Header, encode, next_frame};
use serde_json::Value;

/// How long a NameServer + broker pair may take to come up and register.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Wall-clock budget of one load phase; the client is killed past it.
const PHASE_DEADLINE: Duration = Duration::from_secs(60);
/// Topic-name prefix.
const TOPIC_PREFIX: &str = "bench-";

/// Paths to measure, in table order; `ROCKETMQ_BENCH_TARGETS` picks a subset.
const TARGETS: &[(&str, Setup)] = &[("direct", direct), ("cutover source", cutover_source)];
/// The row ratios are taken against.
const BASELINE: &str = "direct";

type Setup = fn(&Rig) -> Target;

/// Knobs, from the environment.
#[derive(Clone, Debug)]
struct Params {
    messages: u64,
    size: u64,
    concurrency: u64,
    queues: u32,
    rounds: usize,
    only: Option<Vec<String>>,
}

impl Params {
    fn from_env() -> Params {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
                _ => default,
            }
        }
        Params {
            messages: var("ROCKETMQ_BENCH_MESSAGES", 20_000),
            size: var("ROCKETMQ_BENCH_SIZE", 128).max(1),
            concurrency: var("ROCKETMQ_BENCH_CONCURRENCY", 16).max(1),
            queues: var("ROCKETMQ_BENCH_QUEUES", 4).max(1),
            rounds: var("ROCKETMQ_BENCH_ROUNDS", 3).max(1),
            only: std::env::var("ROCKETMQ_BENCH_TARGETS").ok().map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        }
    }
}

/// What every setup may use: the clusters, the scratch dir, the client.
struct Rig {
    dir: PathBuf,
    client: PathBuf,
    params: Params,
    source: Cluster,
    target: Cluster,
}

/// One path to the source cluster, with the processes it owns.
struct Target {
    name: &'static str,
    /// `--namesrv` for the clients.
    namesrv: String,
    /// Processes whose CPU use is reported per phase: (label, pid).
    watch: Vec<(&'static str, u32)>,
    cutover: Option<Cutover>,
    /// Runs for every fresh topic after creation, before any load.
    prepare: fn(&Target, &str),
}

fn no_prepare(_: &Target, _: &str) {}

/// One RocketMQ cluster: a NameServer and one master broker.
struct Cluster {
    namesrv_port: u16,
    broker_port: u16,
    broker_log: PathBuf,
    broker: Child,
    _namesrv: Child,
}

impl Cluster {
    fn start(peers: &Path, dir: &Path, cluster: &str, broker_name: &str) -> Cluster {
        let dir = dir.join(cluster);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let namesrv_port = common::free_port();
        // Broker port P, VIP port P - 2 (the broker opens both), HA port.
        let vip = free_port_run(3);
        let broker_port = vip + 2;
        let ha_port = common::free_port();
        let mut cmd = Command::new(peers.join("rocketmq-namesrv-rust"));
        cmd.args(["--listenPort", &namesrv_port.to_string()])
            .args(["--bindAddress", "127.0.0.1"])
            .arg("--rocketmqHome")
            .arg(&dir);
        let namesrv_log = dir.join("namesrv.log");
        let mut namesrv = Child::spawn("rocketmq-namesrv", &mut cmd, &namesrv_log);
        let ns_addr = format!("127.0.0.1:{namesrv_port}");
        common::wait_until(&format!("namesrv on {ns_addr}"), READY_DEADLINE, || {
            namesrv.assert_alive(&namesrv_log);
            TcpStream::connect(&ns_addr).is_ok()
        });
        let store = dir.join("store");
        let toml = format!(
            "[broker]\nlistenPort = {broker_port}\nbrokerIp1 = \"127.0.0.1\"\nstorePathRootDir = \"{store}\"\n\
             namesrvAddr = \"{ns_addr}\"\nautoCreateTopicEnable = true\n\n\
             [broker.brokerIdentity]\nbrokerName = \"{broker_name}\"\nbrokerClusterName = \"{cluster}\"\nbrokerId = 0\n\n\
             [store]\nstorePathRootDir = \"{store}\"\nhaListenAddress = \"127.0.0.1\"\nhaListenPort = {ha_port}\n",
            store = store.display()
        );
        let toml_path = dir.join("broker.toml");
        std::fs::write(&toml_path, toml).expect("write broker.toml");
        let mut cmd = Command::new(peers.join("rocketmq-broker-rust"));
        cmd.env("ROCKETMQ_HOME", &dir).arg("-c").arg(&toml_path);
        let broker_log = dir.join("broker.log");
        let mut broker = Child::spawn("rocketmq-broker", &mut cmd, &broker_log);
        common::wait_until(
            &format!("broker {broker_name} registered with {ns_addr}"),
            READY_DEADLINE,
            || {
                broker.assert_alive(&broker_log);
                rpc(&ns_addr, 106, &[])
                    .is_some_and(|f| String::from_utf8_lossy(&f.body).contains(broker_name))
            },
        );
        Cluster {
            namesrv_port,
            broker_port,
            broker_log,
            broker,
            _namesrv: namesrv,
        }
    }

    fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    /// Creates `topic` with `queues` read/write queues and waits until the
    /// NameServer routes it.
    fn create_topic(&self, topic: &str, queues: u32) {
        let q = queues.to_string();
        let answer = rpc(
            &self.broker(),
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
        )
        .expect("UPDATE_AND_CREATE_TOPIC answered");
        assert_eq!(
            answer.header.code, 0,
            "create {topic}: {:?}",
            answer.header.remark
        );
        let namesrv = self.namesrv();
        common::wait_until(
            &format!("route of {topic} on {namesrv}"),
            Duration::from_secs(20),
            || rpc(&namesrv, 105, &[("topic", topic)]).is_some_and(|f| f.header.code == 0),
        );
    }
}

/// One JSON-encoded request on a fresh connection; the answer, or `None`.
fn rpc(addr: &str, code: i32, ext: &[(&str, &str)]) -> Option<Frame> {
    let mut header = Header::request(code, 1);
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    let frame = encode(&header, &[], Encoding::Json).ok()?;
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.write_all(&frame).ok()?;
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

/// The first of `count` consecutive loopback ports that were all free a
/// moment ago.
fn free_port_run(count: u16) -> u16 {
    for _ in 0..200 {
        let first = common::free_port();
        if u32::from(first) + u32::from(count) > 65_535 {
            continue;
        }
        let all_free = (first..first + count).all(|port| {
            TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).is_ok()
                && TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_ok()
        });
        if all_free {
            return first;
        }
    }
    panic!("found no run of {count} free consecutive ports");
}

fn direct(rig: &Rig) -> Target {
    Target {
        name: "direct",
        namesrv: rig.source.namesrv(),
        watch: vec![("broker", rig.source.broker.pid())],
        cutover: None,
        prepare: no_prepare,
    }
}

fn cutover_source(rig: &Rig) -> Target {
    let listen = common::free_port();
    // Broker endpoints (and their VIP ports two below) for both clusters.
    let base = free_port_run(8) + 2;
    let dir = rig.dir.join("cutover-source");
    std::fs::create_dir_all(&dir).expect("cutover dir");
    let cutover = Cutover::start(
        &dir,
        listen,
        &format!(
            r#"clusters:
  - {{ name: rmq-old, protocol: rocketmq, endpoints: ["{source}"] }}
  - {{ name: rmq-new, protocol: rocketmq, endpoints: ["{target}"] }}
migrations:
  - name: orders
    protocol: rocketmq
    listen: 127.0.0.1:{listen}
    source: rmq-old
    target: rmq-new
    topics: [ {{ match: "*" }} ]
    rocketmq: {{ brokers_listen_base: {base} }}
"#,
            source = rig.source.namesrv(),
            target = rig.target.namesrv(),
        ),
    );
    Target {
        name: "cutover source",
        namesrv: format!("127.0.0.1:{listen}"),
        watch: vec![
            ("cutover", cutover.child.pid()),
            ("broker", rig.source.broker.pid()),
        ],
        cutover: Some(cutover),
        prepare: no_prepare,
    }
}

/// Peers' install dir, as in tests/support: `$CUTOVER_PEERS` or `~/.cache/cutover-peers`.
fn peers_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CUTOVER_PEERS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("cutover-peers")
}

/// The peers' bin dir, or a clean skip telling how to install them.
fn require_peers(bin: PathBuf) -> PathBuf {
    for name in [
        "rocketmq-namesrv-rust",
        "rocketmq-broker-rust",
        "cutover-rocketmq-client",
    ] {
        if !bin.join(name).is_file() {
            eprintln!(
                "SKIPPED: {} is not installed; run `tests/peers/install.sh rocketmq` first.",
                bin.join(name).display()
            );
            std::process::exit(0);
        }
    }
    bin
}

/// One phase's measurement.
#[derive(Clone, Debug, Default)]
struct Phase {
    messages: u64,
    seconds: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Messages that went missing or failed.
    problems: Option<String>,
    cpu: Vec<(String, f64)>,
}

impl Phase {
    fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
}

/// One round of one target.
struct Run {
    target: &'static str,
    send: Phase,
    consume: Phase,
}

fn main() {
    let params = Params::from_env();
    let bin = require_peers(peers_dir().join("bin"));
    let started = Instant::now();
    let scratch = Scratch::new("cutover-bench-rocketmq-");
    let dir = scratch.path.clone();
    let source = Cluster::start(&bin, &dir, "ClusterOld", "broker-a");
    let target = Cluster::start(&bin, &dir, "ClusterNew", "broker-a");
    let rig = Rig {
        dir: dir.clone(),
        client: bin.join("cutover-rocketmq-client"),
        params: params.clone(),
        source,
        target,
    };
    let selected: Vec<(&str, Setup)> = TARGETS
        .iter()
        .copied()
        .filter(|(name, _)| {
            params
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == name))
        })
        .collect();
    assert!(
        !selected.is_empty(),
        "ROCKETMQ_BENCH_TARGETS names none of {:?}",
        TARGETS.iter().map(|(n, _)| *n).collect::<Vec<_>>()
    );
    let targets: Vec<Target> = selected
        .iter()
        .map(|(name, setup)| {
            let target = setup(&rig);
            assert_eq!(target.name, *name, "setup of {name} returned another name");
            target
        })
        .collect();

    println!(
        "rocketmq_compare: {} msgs x {} B, {} concurrent sync senders, {} queues, {} rounds, {} CPUs",
        params.messages,
        params.size,
        params.concurrency,
        params.queues,
        params.rounds,
        common::cpu_count(),
    );
    println!("cutover binary: {}", common::CUTOVER);

    let mut runs = Vec::new();
    for round in 0..params.rounds {
        for target in &targets {
            runs.push(run(&rig, target, round));
        }
    }

    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    print_tables(&runs, &names, &params);
    for target in &targets {
        if let Some(cutover) = &target.cutover {
            // Proof the load went through the proxy, and whether it failed anywhere.
            let metric = |name| cutover.metric(name).unwrap_or(f64::NAN);
            println!(
                "{}: cutover_bytes_total {:.1} MB, cutover_requests_total {:.0}, \
                 cutover_request_errors_total {:.0}, cutover_upstream_connect_errors_total {:.0}",
                target.name,
                metric("cutover_bytes_total") / 1e6 + 0.0,
                metric("cutover_requests_total") + 0.0,
                metric("cutover_request_errors_total") + 0.0,
                metric("cutover_upstream_connect_errors_total") + 0.0,
            );
            report_log(target.name, &cutover.log);
        }
    }
    report_log("source broker", &rig.source.broker_log);
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
}

/// Creates the round's topic, runs both phases, prints a line.
fn run(rig: &Rig, target: &Target, round: usize) -> Run {
    let slug: String = target
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let topic = format!("{TOPIC_PREFIX}{slug}-{round}");
    let p = &rig.params;
    rig.source.create_topic(&topic, p.queues);
    (target.prepare)(target, &topic);

    let (send, expected) = send_phase(rig, target, &topic, &format!("{slug}-{round}"));
    let consume = consume_phase(rig, target, &topic, &format!("{slug}-{round}"), expected);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    println!(
        "  round {round} {:<16} send {:>7.0} msg/s (p50 {} p99 {} ms) | consume {:>7.0} msg/s{}",
        target.name,
        send.msgs_per_s(),
        ms(send.p50_ms),
        ms(send.p99_ms),
        consume.msgs_per_s(),
        [&send, &consume]
            .iter()
            .filter_map(|ph| ph.problems.as_deref())
            .map(|p| format!("  !! {p}"))
            .collect::<String>(),
    );
    Run {
        target: target.name,
        send,
        consume,
    }
}

/// CPU ticks of the watched processes, to diff after a phase.
struct CpuWatch {
    before: Vec<u64>,
    machine: (u64, u64),
    start: Instant,
}

impl CpuWatch {
    fn start(target: &Target) -> CpuWatch {
        CpuWatch {
            before: target
                .watch
                .iter()
                .map(|(_, pid)| common::cpu_ticks(*pid))
                .collect(),
            machine: common::machine_ticks(),
            start: Instant::now(),
        }
    }

    /// CPU% per watched process, the client (`client_ticks`), and the rest
    /// of the machine.
    fn finish(self, target: &Target, client_ticks: u64) -> Vec<(String, f64)> {
        let wall = self.start.elapsed().as_secs_f64();
        let ticks = common::clock_ticks_per_second();
        let pct = |t: u64| 100.0 * t as f64 / ticks / wall.max(1e-9);
        let mut cpu = Vec::new();
        let mut accounted = client_ticks;
        for ((label, pid), b) in target.watch.iter().zip(self.before) {
            let used = common::cpu_ticks(*pid).saturating_sub(b);
            accounted += used;
            cpu.push(((*label).to_owned(), pct(used)));
        }
        cpu.push(("client".to_owned(), pct(client_ticks)));
        let after = common::machine_ticks();
        let (busy, total) = (
            after.0.saturating_sub(self.machine.0),
            after.1.saturating_sub(self.machine.1),
        );
        let busy_cores = if total == 0 {
            0.0
        } else {
            busy as f64 / total as f64 * common::cpu_count() as f64
        };
        cpu.push((
            "other".to_owned(),
            (100.0 * busy_cores - pct(accounted)).max(0.0),
        ));
        cpu
    }
}

/// `cutover-rocketmq-client bench`: N sends from C tasks. Returns the phase
/// and how many messages the topic now holds (the client's warm-up send
/// included).
fn send_phase(rig: &Rig, target: &Target, topic: &str, id: &str) -> (Phase, u64) {
    let p = &rig.params;
    let log = rig.dir.join(format!("send-{id}.log"));
    let mut cmd = Command::new(&rig.client);
    cmd.arg("bench")
        .args(["--namesrv", &target.namesrv])
        .args(["--topic", topic])
        .args(["--group", &format!("bench-pg-{id}")])
        .args(["--count", &p.messages.to_string()])
        .args(["--concurrency", &p.concurrency.to_string()])
        .args(["--size", &p.size.to_string()]);
    let watch = CpuWatch::start(target);
    let mut child = Child::spawn("rocketmq bench client", &mut cmd, &log);
    let pid = child.pid();
    let start = Instant::now();
    let mut client_ticks = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        client_ticks = client_ticks.max(common::cpu_ticks(pid));
        assert!(
            start.elapsed() < PHASE_DEADLINE,
            "send against {} ran past {PHASE_DEADLINE:?}; log:\n{}",
            target.name,
            common::tail(&log, 20)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let cpu = watch.finish(target, client_ticks);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let out: Value = text
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["mode"] == "bench")
        })
        .unwrap_or_else(|| {
            panic!(
                "send against {} ({status}) printed no result:\n{}",
                target.name,
                common::tail(&log, 20)
            )
        });
    let sent = out["sent"].as_u64().unwrap_or(0);
    let failed = out["failed"].as_u64().unwrap_or(0);
    let msgs_per_s = out["msgs_per_s"].as_f64().unwrap_or(0.0);
    let phase = Phase {
        messages: sent,
        seconds: if msgs_per_s > 0.0 {
            sent as f64 / msgs_per_s
        } else {
            0.0
        },
        p50_ms: out["p50_ms"].as_f64(),
        p99_ms: out["p99_ms"].as_f64(),
        problems: (sent != p.messages || failed > 0)
            .then(|| format!("sent {sent} of {}, {failed} failed", p.messages)),
        cpu,
    };
    (phase, sent + 1)
}

/// A push consumer of a fresh group reads the topic from the first offset
/// until `expected` messages arrived (each written to its output file as one
/// line, so the file's length tells the count without reading it).
fn consume_phase(rig: &Rig, target: &Target, topic: &str, id: &str, expected: u64) -> Phase {
    let p = &rig.params;
    let out = rig.dir.join(format!("consume-{id}.out"));
    let stop = rig.dir.join(format!("consume-{id}.stop"));
    let log = rig.dir.join(format!("consume-{id}.log"));
    // Bodies are S bytes of 'x' plus the client's 4-byte warm-up body.
    let expected_bytes = (expected - 1) * (p.size + 1) + "warm\n".len() as u64;
    let mut cmd = Command::new(&rig.client);
    cmd.arg("consume")
        .args(["--namesrv", &target.namesrv])
        .args(["--topic", topic])
        .args(["--group", &format!("bench-cg-{id}")])
        .arg("--out")
        .arg(&out)
        .arg("--stop-file")
        .arg(&stop);
    let watch = CpuWatch::start(target);
    let mut child = Child::spawn("rocketmq consumer", &mut cmd, &log);
    let pid = child.pid();
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut seen = 0;
    let mut client_ticks = 0;
    while start.elapsed() < PHASE_DEADLINE {
        child.assert_alive(&log);
        let len = std::fs::metadata(&out).map_or(0, |m| m.len());
        if len > seen {
            seen = len;
            last = Instant::now();
            first.get_or_insert(last);
        }
        client_ticks = client_ticks.max(common::cpu_ticks(pid));
        if seen >= expected_bytes {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = watch.finish(target, client_ticks);
    std::fs::write(&stop, b"").expect("write stop file");
    let stopping = Instant::now();
    while stopping.elapsed() < Duration::from_secs(10) {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(child);
    let received = seen.saturating_sub(5) / (p.size + 1) + u64::from(seen >= 5);
    Phase {
        messages: received,
        seconds: first.map_or(0.0, |f| last.duration_since(f).as_secs_f64()),
        problems: (seen != expected_bytes).then(|| {
            format!(
                "consumed {seen} of {expected_bytes} bytes (~{received} of {expected} messages)"
            )
        }),
        cpu,
        ..Phase::default()
    }
}

/// The runs of one target.
fn of<'a>(runs: &'a [Run], target: &str) -> Vec<&'a Run> {
    runs.iter().filter(|r| r.target == target).collect()
}

/// The best (highest) value over rounds and the spread (best - worst) / best.
fn best_of(values: &[f64]) -> Option<(f64, f64)> {
    let top = values.iter().copied().fold(f64::NAN, f64::max);
    let low = values.iter().copied().fold(f64::NAN, f64::min);
    (!top.is_nan()).then(|| (top, if top > 0.0 { (top - low) / top } else { 0.0 }))
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn print_tables(runs: &[Run], targets: &[&str], params: &Params) {
    let send = |t: &str| {
        best_of(
            &of(runs, t)
                .iter()
                .map(|r| r.send.msgs_per_s())
                .collect::<Vec<_>>(),
        )
    };
    let consume = |t: &str| {
        best_of(
            &of(runs, t)
                .iter()
                .map(|r| r.consume.msgs_per_s())
                .collect::<Vec<_>>(),
        )
    };
    let ratio = |value: f64, base: Option<(f64, f64)>| {
        base.map_or_else(|| "-".to_owned(), |(b, _)| format!("{:.2}x", value / b))
    };
    let rounds = params.rounds;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} msgs x {} B, {} concurrent sync senders, {} queues; best of {rounds} rounds \
         (spread between rounds); p50/p99 of the best send round\n",
        params.messages, params.size, params.concurrency, params.queues
    );
    let _ = writeln!(
        out,
        "| target | send msgs/s | spread | send p50 ms | send p99 ms | consume msgs/s | spread | send vs direct | consume vs direct |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for target in targets {
        let (Some((s, s_spread)), Some((c, c_spread))) = (send(target), consume(target)) else {
            continue;
        };
        let group = of(runs, target);
        let best = group
            .iter()
            .max_by(|a, b| a.send.msgs_per_s().total_cmp(&b.send.msgs_per_s()))
            .expect("a run");
        let _ = writeln!(
            out,
            "| {target} | {s:.0} | {:.0}% | {} | {} | {c:.0} | {:.0}% | {} | {} |",
            100.0 * s_spread,
            fmt_ms(best.send.p50_ms),
            fmt_ms(best.send.p99_ms),
            100.0 * c_spread,
            ratio(s, send(BASELINE)),
            ratio(c, consume(BASELINE)),
        );
    }
    let _ = writeln!(
        out,
        "\nCPU per phase, mean of rounds (100% = one core of {}), from /proc:\n",
        common::cpu_count()
    );
    let _ = writeln!(out, "| target | send | consume |");
    let _ = writeln!(out, "|---|---|---|");
    for target in targets {
        let group = of(runs, target);
        let mean = |pick: fn(&Run) -> &Phase| -> String {
            let Some(first) = group.first() else {
                return "-".to_owned();
            };
            let count = group.len() as f64;
            pick(first)
                .cpu
                .iter()
                .enumerate()
                .map(|(i, (label, _))| {
                    let m = group.iter().map(|r| pick(r).cpu[i].1).sum::<f64>() / count;
                    format!("{label} {m:.0}%")
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {target} | {} | {} |",
            mean(|r| &r.send),
            mean(|r| &r.consume)
        );
    }
    let problems: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            [("send", &r.send), ("consume", &r.consume)]
                .into_iter()
                .filter_map(move |(phase, ph)| {
                    ph.problems
                        .as_ref()
                        .map(|p| format!("{} {phase}: {p}", r.target))
                })
        })
        .collect();
    if problems.is_empty() {
        let _ = writeln!(
            out,
            "\nEvery message was acknowledged and read back on every path."
        );
    } else {
        let _ = writeln!(out, "\nINCOMPLETE RUNS:");
        for p in problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    // Issue 4's target for `source`, in plain words (measured, not asserted).
    for target in targets.iter().filter(|t| t.starts_with("cutover")) {
        let pick = |f: &dyn Fn(&str) -> Option<(f64, f64)>| match (f(target), f(BASELINE)) {
            (Some((m, _)), Some((b, _))) if b > 0.0 => format!("{:.2}x", m / b),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{target}: send {} of direct (target >= 0.9x), consume {} of direct",
            pick(&send),
            pick(&consume),
        );
    }
    print!("{out}");
}

/// Prints how many WARN/ERROR lines a process logged, and the first few.
fn report_log(name: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    if bad.is_empty() {
        println!("{name} log: no WARN/ERROR lines");
        return;
    }
    println!("{name} log: {} WARN/ERROR lines, first ones:", bad.len());
    for line in bad.iter().take(5) {
        println!("  {line}");
    }
}
