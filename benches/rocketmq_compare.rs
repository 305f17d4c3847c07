//! RocketMQ send and consume throughput and send latency through cutover in
//! `source`, next to the same RocketMQ cluster reached directly.
//!
//! Run: `cargo bench --bench rocketmq_compare` (cargo builds `cutover` with
//! the bench profile = release optimisations). Needs Apache RocketMQ 5.3.3
//! from `tests/peers/install.sh rocketmq`; the clients are
//! tests/peers/rocketmq-java/Client.java on Apache's Java client.
//!
//! Two Apache RocketMQ clusters on free loopback ports with data in the
//! scratch dir: the source every path leads to (one NameServer, masters
//! broker-a and broker-b), and cutover's target cluster (one NameServer, one
//! master; idle in `source`). Paths, each a named entry of
//! [`TARGETS`] whose setup returns the NameServer address clients use:
//! - `direct`: the source NameServer itself;
//! - `cutover source`: one RocketMQ migration matching every topic, in
//!   `source`; clients reach its NameServer facade and its broker endpoints;
//! - `cutover dual_write`: the same in its own cutover process, each fresh
//!   topic created on the target (`ctl migrate-metadata`) and advanced to
//!   `dual_write`, so sends split between both clusters and the consumer
//!   reads both (the target broker's CPU is watched too);
//! - `cutover cutover`: likewise advanced one step further, so sends go to
//!   the target only and the consumer reads both clusters.
//!
//! For every path and round a fresh topic with `ROCKETMQ_BENCH_QUEUES`
//! queues is created on both source brokers, then:
//! 1. **send**: `Client.java bench` sends N messages of S bytes
//!    from C concurrent senders of one producer (synchronous sends, each
//!    waits for the broker's answer); msgs/s from the first to the last
//!    answer, and p50/p99 of one send round trip;
//! 2. **consume**: `Client.java consume`, a push consumer of a
//!    fresh group starting from the first offset, reads them all back;
//!    msgs/s from the first delivered message to the last (the group's
//!    start-up and rebalance are left out), polled every 20 ms.
//!
//! On paths through cutover, cutover's own CPU time (utime + stime from
//! `/proc/PID/stat` before and after each phase) is reported per send and
//! per consumed message, per round and as a table (lowest and mean); µs
//! per send is also CPU seconds per million messages.
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
//! Adding a path: append to [`TARGETS`] a setup
//! that starts what it needs and returns a [`Target`]; its `prepare` hook
//! runs for every fresh topic before any load, which is where
//! `ctl migrate-metadata` and `ctl advance` belong.

mod common;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::compare::{self, CpuWatch, Phase, Target, best_of, env_var as var, fmt_ms, of, ratio};
use common::{Child, Cutover, Migration, Scratch};
use cutover_rocketmq::{Encoding, Frame, Header, encode, next_frame};
use serde_json::Value;

/// How long a NameServer or broker JVM may take to print its ready line.
const READY_DEADLINE: Duration = Duration::from_secs(90);
/// Wall-clock budget of one load phase; the client is killed past it.
const PHASE_DEADLINE: Duration = Duration::from_secs(60);
/// Topic-name prefix.
const TOPIC_PREFIX: &str = "bench-";
/// The Apache RocketMQ release `tests/peers/install.sh rocketmq` installs.
const ROCKETMQ_VERSION: &str = "5.3.3";

/// Paths to measure, in table order; `ROCKETMQ_BENCH_TARGETS` picks a subset.
const TARGETS: &[(&str, Setup)] = &[
    ("direct", direct),
    ("cutover source", cutover_source),
    ("cutover dual_write", cutover_dual_write),
    ("cutover cutover", cutover_cutover),
];
/// The migration every cutover path configures (one per cutover process).
const MIGRATION: &str = "orders";
/// How long moving a fresh topic to its path's state may take.
const STEP_DEADLINE: Duration = Duration::from_secs(60);
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
        Params {
            messages: var("ROCKETMQ_BENCH_MESSAGES", 20_000),
            size: var("ROCKETMQ_BENCH_SIZE", 128).max(1),
            concurrency: var("ROCKETMQ_BENCH_CONCURRENCY", 16).max(1),
            queues: var("ROCKETMQ_BENCH_QUEUES", 4).max(1),
            rounds: var("ROCKETMQ_BENCH_ROUNDS", 3).max(1),
            only: compare::env_list("ROCKETMQ_BENCH_TARGETS"),
        }
    }
}

/// What every setup may use: the clusters, the scratch dir, the client.
struct Rig {
    dir: PathBuf,
    /// `$CUTOVER_PEERS/rocketmq-5.3.3`: its `lib/*` is every JVM's class path.
    home: PathBuf,
    params: Params,
    source: Cluster,
    target: Cluster,
}

/// One RocketMQ cluster: a NameServer and its master brokers.
struct Cluster {
    namesrv_port: u16,
    /// (port, log, process) per broker, broker-a first.
    brokers: Vec<(u16, PathBuf, Child)>,
    _namesrv: Child,
}

/// `java` with a server's flags: Apache's home, its own user.home (logs and
/// state go under it), its logback file and the jars.
fn server_java(home: &Path, dir: &Path, role: &str, heap: &[&str]) -> Command {
    let mut cmd = Command::new("java");
    cmd.args(heap)
        .arg("-XX:+UseG1GC")
        .arg(format!("-Drocketmq.home.dir={}", home.display()))
        .arg(format!("-Duser.home={}", dir.display()))
        .arg(format!(
            "-Drmq.logback.configurationFile={}/conf/rmq.{role}.logback.xml",
            home.display()
        ))
        .arg("-cp")
        .arg(format!("{}/lib/*", home.display()));
    cmd
}

/// Waits for `line` in `log` while `child` lives.
fn wait_line(child: &mut Child, log: &Path, line: &str) {
    common::wait_until(
        &format!("{line:?} in {}", log.display()),
        READY_DEADLINE,
        || {
            child.assert_alive(log);
            std::fs::read_to_string(log).is_ok_and(|t| t.contains(line))
        },
    );
}

impl Cluster {
    fn start(home: &Path, dir: &Path, cluster: &str, broker_names: &[&str]) -> Cluster {
        let dir = dir.join(cluster);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let namesrv_port = common::free_port();
        let conf = dir.join("namesrv.conf");
        std::fs::write(
            &conf,
            format!(
                "listenPort={namesrv_port}\nbindAddress=127.0.0.1\nkvConfigPath={}/kvConfig.json\n",
                dir.display()
            ),
        )
        .expect("write namesrv.conf");
        let mut cmd = server_java(home, &dir, "namesrv", &["-Xms128m", "-Xmx256m"]);
        cmd.arg("org.apache.rocketmq.namesrv.NamesrvStartup")
            .arg("-c")
            .arg(&conf);
        let namesrv_log = dir.join("namesrv.log");
        let mut namesrv = Child::spawn("rocketmq namesrv", &mut cmd, &namesrv_log);
        wait_line(&mut namesrv, &namesrv_log, "The Name Server boot success");
        let mut brokers = Vec::new();
        for name in broker_names {
            let bdir = dir.join(name);
            std::fs::create_dir_all(&bdir).expect("broker dir");
            // Port P, VIP port P - 2 and HA port P + 1.
            let port = compare::free_port_run(4) + 2;
            let store = bdir.join("store");
            let conf = bdir.join("broker.conf");
            std::fs::write(
                &conf,
                format!(
                    "brokerClusterName={cluster}\nbrokerName={name}\nbrokerId=0\nbrokerRole=ASYNC_MASTER\n\
                     flushDiskType=ASYNC_FLUSH\nnamesrvAddr=127.0.0.1:{namesrv_port}\nbrokerIP1=127.0.0.1\n\
                     bindAddress=127.0.0.1\nlistenPort={port}\nstorePathRootDir={store}\n\
                     storePathCommitLog={store}/commitlog\nautoCreateTopicEnable=true\n\
                     autoCreateSubscriptionGroup=true\ndefaultTopicQueueNums=4\n\
                     mappedFileSizeCommitLog=104857600\nmaxHashSlotNum=4000\nmaxIndexNum=1000\n\
                     fileReservedTime=1\ntimerWheelEnable=false\n",
                    store = store.display()
                ),
            )
            .expect("write broker.conf");
            let mut cmd = server_java(
                home,
                &bdir,
                "broker",
                &["-Xms512m", "-Xmx512m", "-XX:MaxDirectMemorySize=512m"],
            );
            cmd.arg("org.apache.rocketmq.broker.BrokerStartup")
                .arg("-c")
                .arg(&conf);
            let log = dir.join(format!("{name}.log"));
            let mut child = Child::spawn(&format!("rocketmq {name}"), &mut cmd, &log);
            wait_line(&mut child, &log, "boot success");
            brokers.push((port, log, child));
        }
        let cluster = Cluster {
            namesrv_port,
            brokers,
            _namesrv: namesrv,
        };
        let ns = cluster.namesrv();
        common::wait_until(
            &format!(
                "brokers of {cluster:?} registered with {ns}",
                cluster = broker_names
            ),
            READY_DEADLINE,
            || {
                rpc(&ns, 106, &[]).is_some_and(|f| {
                    let body = String::from_utf8_lossy(&f.body);
                    cluster.addrs().iter().all(|a| body.contains(a.as_str()))
                })
            },
        );
        cluster
    }

    fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    fn addrs(&self) -> Vec<String> {
        self.brokers
            .iter()
            .map(|(port, _, _)| format!("127.0.0.1:{port}"))
            .collect()
    }

    /// The first broker's pid, whose CPU the table reports.
    fn broker_pid(&self) -> u32 {
        self.brokers[0].2.pid()
    }

    /// Creates `topic` with `queues` read/write queues on every broker and
    /// waits until the NameServer routes it to all of them.
    fn create_topic(&self, topic: &str, queues: u32) {
        let q = queues.to_string();
        for addr in self.addrs() {
            let answer = rpc(
                &addr,
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
                "create {topic} on {addr}: {:?}",
                answer.header.remark
            );
        }
        let namesrv = self.namesrv();
        let brokers = self.brokers.len();
        common::wait_until(
            &format!("route of {topic} on {namesrv}"),
            Duration::from_secs(20),
            || {
                rpc(&namesrv, 105, &[("topic", topic)])
                    .filter(|f| f.header.code == 0)
                    .and_then(|f| cutover_rocketmq::TopicRouteData::decode(&f.body).ok())
                    .is_some_and(|r| r.queue_datas.len() == brokers)
            },
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

fn direct(rig: &Rig) -> Target {
    Target::direct(rig.source.namesrv(), ("broker", rig.source.broker_pid()))
}

fn cutover_source(rig: &Rig) -> Target {
    through_cutover(rig, "cutover source")
}

/// `dual_write`: the route offers the source's queues and the target's,
/// both writable, so sends split between the clusters (the target's by
/// their advertised write queue counts) and the consumer reads both.
fn cutover_dual_write(rig: &Rig) -> Target {
    let mut target = through_cutover(rig, "cutover dual_write");
    target.prepare = prepare_dual_write;
    target
        .watch
        .push(("target broker", rig.target.broker_pid()));
    target
}

/// `cutover`: sends go to the target only; consumers read both clusters
/// (the source's queues until they are drained).
fn cutover_cutover(rig: &Rig) -> Target {
    let mut target = through_cutover(rig, "cutover cutover");
    target.prepare = prepare_cutover;
    target
        .watch
        .push(("target broker", rig.target.broker_pid()));
    target
}

/// `name` through a cutover process of its own (config and state under
/// `rig.dir/<slug>`), with one RocketMQ migration of every topic, in
/// `source`.
fn through_cutover(rig: &Rig, name: &'static str) -> Target {
    let listen = common::free_port();
    // max_brokers 4 reserves exactly 8 ports from base: the broker
    // endpoints of both clusters and their VIP ports two below.
    let base = compare::free_port_run(8);
    let dir = rig.dir.join(compare::slug(name));
    std::fs::create_dir_all(&dir).expect("cutover dir");
    let (source, target) = (rig.source.namesrv(), rig.target.namesrv());
    let cutover = Cutover::start_migration(
        &dir,
        listen,
        &Migration {
            name: MIGRATION,
            protocol: "rocketmq",
            clusters: ["rmq-old", "rmq-new"],
            endpoints: [&source, &target],
            topics: r#"[ { match: "*" } ]"#,
            extra: &format!("rocketmq: {{ brokers_listen_base: {base}, max_brokers: 4 }}"),
        },
    );
    Target::through_cutover(name, listen, cutover, ("broker", rig.source.broker_pid()))
}

fn prepare_dual_write(target: &Target, topic: &str) {
    prepare_state(target, topic, "dual_write");
}

fn prepare_cutover(target: &Target, topic: &str) {
    prepare_state(target, topic, "cutover");
}

/// Registers the fresh `topic` with the proxy (a route request does),
/// creates it on the target (`ctl migrate-metadata`) and advances it from
/// `source` to `state` without `--force`: on a fresh topic every readiness
/// check holds, so a refusal past [`STEP_DEADLINE`] is a finding. Each
/// step is retried until then (the target's NameServer learns a created
/// topic moments later).
fn prepare_state(target: &Target, topic: &str, state: &str) {
    let cutover = target.cutover.as_ref().expect("a path through cutover");
    let started = Instant::now();
    let advances = ["dual_read", "dual_write", "cutover"]
        .iter()
        .position(|s| *s == state)
        .expect("a state reached by advancing")
        + 1;
    let mut steps = vec![["migrate-metadata", MIGRATION, topic]];
    steps.extend(std::iter::repeat_n(["advance", MIGRATION, topic], advances));
    for step in steps {
        loop {
            let _ = rpc(&target.addr, 105, &[("topic", topic)]);
            let (ok, out) = cutover.ctl(&step);
            if ok {
                break;
            }
            assert!(
                started.elapsed() < STEP_DEADLINE,
                "ctl {} for {topic}: {out}",
                step.join(" ")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let (_, status) = cutover.ctl(&["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.contains(topic) && l.contains(state)),
        "{topic} not in {state}:\n{status}"
    );
}

/// Apache RocketMQ's install dir, or a clean skip telling how to install it.
fn require_peers() -> PathBuf {
    let home = compare::peers_dir().join(format!("rocketmq-{ROCKETMQ_VERSION}"));
    if !home.join(".stamp").is_file() {
        eprintln!(
            "SKIPPED: Apache RocketMQ {ROCKETMQ_VERSION} is not installed in {}; run `tests/peers/install.sh rocketmq` first.",
            home.display()
        );
        std::process::exit(0);
    }
    home
}

/// `java ... Client.java MODE`: the project's Java test client on the
/// 5.x client jars.
fn client(rig: &Rig, mode: &str) -> Command {
    let mut cmd = Command::new("java");
    cmd.args(["-Xmx256m", "-XX:+UseG1GC"])
        .arg(format!(
            "-Duser.home={}",
            rig.dir.join("client-home").display()
        ))
        .arg("-cp")
        .arg(format!("{}/lib/*", rig.home.display()))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/rocketmq-java/Client.java"))
        .arg(mode);
    cmd
}

/// One round of one target.
struct Run {
    target: &'static str,
    send: Phase,
    consume: Phase,
    /// cutover's CPU microseconds per send and per consumed message
    /// (utime + stime from /proc/PID/stat around each phase), on paths
    /// through cutover.
    cost: Option<(f64, f64)>,
}

impl compare::Round for Run {
    fn target(&self) -> &str {
        self.target
    }

    fn phases(&self) -> Vec<(&'static str, &Phase)> {
        vec![("send", &self.send), ("consume", &self.consume)]
    }
}

fn main() {
    let params = Params::from_env();
    let home = require_peers();
    let started = Instant::now();
    let scratch = Scratch::new("cutover-bench-rocketmq-");
    let dir = scratch.path.clone();
    let source = Cluster::start(&home, &dir, "ClusterOld", &["broker-a", "broker-b"]);
    let target = Cluster::start(&home, &dir, "ClusterNew", &["broker-a"]);
    let rig = Rig {
        dir: dir.clone(),
        home,
        params: params.clone(),
        source,
        target,
    };
    let targets = compare::set_up(
        TARGETS,
        params.only.as_deref(),
        "ROCKETMQ_BENCH_TARGETS",
        |setup: Setup| setup(&rig),
    );

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

    let runs = compare::interleave(params.rounds, &targets, |target, round| {
        run(&rig, target, round)
    });

    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    print_tables(&runs, &names, &params);
    compare::report_cutovers(&targets);
    compare::report_log("source broker-a", &rig.source.brokers[0].1);
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
}

/// Creates the round's topic, runs both phases, prints a line.
fn run(rig: &Rig, target: &Target, round: usize) -> Run {
    let slug = compare::slug(target.name);
    let topic = format!("{TOPIC_PREFIX}{slug}-{round}");
    let p = &rig.params;
    rig.source.create_topic(&topic, p.queues);
    (target.prepare)(target, &topic);

    let ticks = || {
        target
            .cutover
            .as_ref()
            .map(|c| common::cpu_ticks(c.child.pid()))
    };
    let at_start = ticks();
    let (send, expected) = send_phase(rig, target, &topic, &format!("{slug}-{round}"));
    let after_send = ticks();
    let consume = consume_phase(rig, target, &topic, &format!("{slug}-{round}"), expected);
    let after_consume = ticks();
    let micros = |from: Option<u64>, to: Option<u64>, n: u64| {
        let used = to?.saturating_sub(from?) as f64 / common::clock_ticks_per_second();
        Some(1e6 * used / n.max(1) as f64)
    };
    let cost = micros(at_start, after_send, send.messages).zip(micros(
        after_send,
        after_consume,
        consume.messages,
    ));
    println!(
        "  round {round} {:<16} send {:>7.0} msg/s (p50 {} p99 {} ms) | consume {:>7.0} msg/s{}{}",
        target.name,
        send.msgs_per_s(),
        fmt_ms(send.p50_ms),
        fmt_ms(send.p99_ms),
        consume.msgs_per_s(),
        cost.map_or_else(String::new, |(s, c)| format!(
            " [cutover {s:.1} us CPU/send, {c:.1} us/msg consumed]"
        )),
        compare::flag_problems(&[&send, &consume]),
    );
    Run {
        target: target.name,
        send,
        consume,
        cost,
    }
}

/// `Client.java bench`: N sends from C threads. Returns the phase
/// and how many messages the topic now holds (the client's warm-up send
/// included).
fn send_phase(rig: &Rig, target: &Target, topic: &str, id: &str) -> (Phase, u64) {
    let p = &rig.params;
    let log = rig.dir.join(format!("send-{id}.log"));
    let mut cmd = client(rig, "bench");
    cmd.args(["--namesrv", &target.addr])
        .args(["--topic", topic])
        .args(["--group", &format!("bench-pg-{id}")])
        .args(["--count", &p.messages.to_string()])
        .args(["--concurrency", &p.concurrency.to_string()])
        .args(["--size", &p.size.to_string()]);
    let watch = CpuWatch::start(&target.watch);
    let mut child = Child::spawn("rocketmq bench client", &mut cmd, &log);
    let pid = child.pid();
    let waited = compare::wait_client(pid, PHASE_DEADLINE, || {
        child.try_wait().expect("wait for the client")
    });
    let Ok((status, client_ticks)) = waited else {
        panic!(
            "send against {} ran past {PHASE_DEADLINE:?}; log:\n{}",
            target.name,
            common::tail(&log, 20)
        );
    };
    let cpu = watch.finish(&target.watch, client_ticks);
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
        ..Phase::default()
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
    let mut cmd = client(rig, "consume");
    cmd.args(["--namesrv", &target.addr])
        .args(["--topic", topic])
        .args(["--group", &format!("bench-cg-{id}")])
        .arg("--out")
        .arg(&out)
        .arg("--stop-file")
        .arg(&stop);
    let watch = CpuWatch::start(&target.watch);
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
    let cpu = watch.finish(&target.watch, client_ticks);
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

/// cutover's CPU per send and per consumed message, per path: the lowest
/// round and the mean of all rounds (the machine is shared, so the lowest
/// is the least disturbed).
fn cost_table(out: &mut String, runs: &[Run], targets: &[&str]) {
    let _ = writeln!(
        out,
        "\n| target | cutover CPU us/send (lowest, mean) | cutover CPU us/msg consumed (lowest, mean) |"
    );
    let _ = writeln!(out, "|---|---|---|");
    for target in targets {
        let costs: Vec<(f64, f64)> = of(runs, target).iter().filter_map(|r| r.cost).collect();
        if costs.is_empty() {
            continue;
        }
        let n = costs.len() as f64;
        let low = |f: fn(&(f64, f64)) -> f64| costs.iter().map(f).fold(f64::INFINITY, f64::min);
        let mean = |f: fn(&(f64, f64)) -> f64| costs.iter().map(f).sum::<f64>() / n;
        let _ = writeln!(
            out,
            "| {target} | {:.1}, {:.1} | {:.1}, {:.1} |",
            low(|c| c.0),
            mean(|c| c.0),
            low(|c| c.1),
            mean(|c| c.1),
        );
    }
}

fn print_tables(runs: &[Run], targets: &[&str], params: &Params) {
    let send = |t: &str| best_of(of(runs, t).iter().map(|r| r.send.msgs_per_s()));
    let consume = |t: &str| best_of(of(runs, t).iter().map(|r| r.consume.msgs_per_s()));
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
    compare::cpu_table(&mut out, runs, targets, &["send", "consume"]);
    cost_table(&mut out, runs, targets);
    compare::list_problems(
        &mut out,
        runs,
        "Every message was acknowledged and read back on every path.",
    );
    // Issue 4's target for `source`, in plain words (measured, not asserted).
    for target in targets.iter().filter(|t| t.starts_with("cutover")) {
        let pick = |f: &dyn Fn(&str) -> Option<(f64, f64)>| {
            f(target).map_or_else(|| "-".to_owned(), |(m, _)| ratio(m, f(BASELINE)))
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
