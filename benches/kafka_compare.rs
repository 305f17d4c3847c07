//! Kafka produce/consume throughput and produce latency through cutover, next
//! to the same tansu broker directly and through `tansu proxy`.
//!
//! Run: `cargo bench --bench kafka_compare` (cargo builds `cutover` with the
//! bench profile = release optimisations). Needs tansu 0.6.0 and the
//! confluent-kafka venv (librdkafka 2.16) from `tests/peers/install.sh kafka tansu`.
//!
//! One tansu broker (memory storage) is the "source" every path leads to; a
//! second tansu process is cutover's target cluster (idle in `source`).
//! Paths, each a named entry of [`TARGETS`] whose setup returns a bootstrap
//! address:
//! - `direct`: tansu itself;
//! - `tansu proxy`: `tansu proxy --origin-url` tansu (its own proxy);
//! - `cutover source`: one Kafka migration matching `bench-*`, in `source`,
//!   with `virtual_brokers` = `KAFKA_BENCH_VIRTUAL_BROKERS` (default 1: one
//!   broker behind, one door, so the client opens as many connections as
//!   it does directly);
//! - `cutover dual_write`: the same migration in its own cutover process;
//!   every fresh topic is created on the source through it, copied to the
//!   target (`ctl migrate-metadata`), advanced to `dual_write` and half its
//!   partitions shifted to the target (`ctl shift --percent 50`), so produce
//!   and consume span both brokers through the offset splice;
//! - `cutover cutover`: the same, advanced one state further to `cutover`
//!   (every partition writes to the target; fresh topics hold nothing on the
//!   source, so reads go to the target too).
//!
//! The two splice paths report the CPU of both tansu processes.
//!
//! For every path and round a fresh 6-partition topic is created up front
//! (plus one for the latency phase), then the load script
//! (`benches/kafka_load.py`, embedded) runs one phase per process:
//! 1. **produce**: N messages of S random bytes, acks=all, linger.ms=5,
//!    batching defaults; MB/s and msgs/s from first send to flush, and
//!    the delivery-report latency (`msg.latency()`) p50/p99 of those
//!    messages. The producer runs flat out, so these latencies are mostly
//!    time queued in librdkafka: a saturation figure, not service time;
//! 2. **paced latency**: `KAFKA_BENCH_LATENCY_RATE` msgs/s for
//!    `KAFKA_BENCH_LATENCY_SECONDS`, linger.ms=0, acks=all, to the second
//!    topic: p50/p99 of one Produce round trip without client queueing;
//! 3. **consume**: a consumer `assign`s every partition from the beginning
//!    (no group join, whose multi-second timers would swamp the figure) and
//!    reads all N back; MB/s and msgs/s from assign to the last message.
//!
//! MB = 10^6 bytes of message values. Rounds are interleaved across paths
//! and the table shows each path's best round per column, with the spread
//! between rounds. CPU% per phase of the broker, the proxy and the client
//! comes from /proc (100% = one core); "other" is the rest of the machine.
//! Ratios are taken against `direct`, `tansu proxy` and `cutover source`
//! (what the splice costs over plain relaying). Nothing is asserted about
//! them (issue 5 targets: cutover `source` ≥ 0.9x direct MB/s and ≥ 1.0x
//! tansu proxy); lost messages are flagged.
//!
//! Environment (defaults finish in about 2.5 minutes on 2 cores):
//! `KAFKA_BENCH_MESSAGES` (200000), `KAFKA_BENCH_SIZE` (1024 bytes),
//! `KAFKA_BENCH_PARTITIONS` (6), `KAFKA_BENCH_ROUNDS` (3),
//! `KAFKA_BENCH_LINGER_MS` (5), `KAFKA_BENCH_LATENCY_RATE` (1000),
//! `KAFKA_BENCH_LATENCY_SECONDS` (4), `KAFKA_BENCH_VIRTUAL_BROKERS` (1),
//! `KAFKA_BENCH_TARGETS` (comma-separated subset of target names),
//! `CUTOVER_BENCH_KEEP=1` keeps the scratch dir (logs).
//!
//! Adding a path: append to [`TARGETS`] a setup that starts what it needs
//! and returns a [`Target`]; its `prepare` hook runs for every fresh topic
//! after it is created and before any load (the splice paths' `ctl` steps
//! live there).

mod common;

use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::compare::{
    self, CpuWatch, Phase, Target, best_of, env_var as var, fmt_ms, lowest, no_prepare, of, ratio,
};
use common::{Child, Cutover, Migration, Scratch};
use serde_json::Value;

/// The load generator, written into the scratch dir at start.
const LOAD_SCRIPT: &str = include_str!("kafka_load.py");
/// How long a started broker or proxy may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(15);
/// Wall-clock budget of one load phase (the script stops itself at this
/// point; the bench kills it [`KILL_GRACE`] later).
const PHASE_DEADLINE: Duration = Duration::from_secs(90);
const KILL_GRACE: Duration = Duration::from_secs(10);
/// Topic-name prefix the cutover migrations match.
const TOPIC_PREFIX: &str = "bench-";
/// The migration every cutover path configures (one per cutover process).
const MIGRATION: &str = "events";

/// Paths to measure, in table order; `KAFKA_BENCH_TARGETS` picks a subset.
const TARGETS: &[(&str, Setup)] = &[
    ("direct", direct),
    ("tansu proxy", tansu_proxy),
    ("cutover source", cutover_source),
    ("cutover dual_write", cutover_dual_write),
    ("cutover cutover", cutover_cutover),
];
/// The rows ratios are taken against, in column order.
const BASELINES: [&str; 3] = ["direct", "tansu proxy", "cutover source"];

type Setup = fn(&Rig) -> Target;

/// Knobs, from the environment.
#[derive(Clone, Debug)]
struct Params {
    messages: u64,
    size: u64,
    partitions: u32,
    rounds: usize,
    linger_ms: u32,
    latency_rate: u32,
    latency_seconds: u32,
    virtual_brokers: u16,
    only: Option<Vec<String>>,
}

impl Params {
    fn from_env() -> Params {
        Params {
            messages: var("KAFKA_BENCH_MESSAGES", 200_000),
            size: var("KAFKA_BENCH_SIZE", 1024),
            partitions: var("KAFKA_BENCH_PARTITIONS", 6),
            rounds: var("KAFKA_BENCH_ROUNDS", 3).max(1),
            linger_ms: var("KAFKA_BENCH_LINGER_MS", 5),
            latency_rate: var("KAFKA_BENCH_LATENCY_RATE", 1000),
            latency_seconds: var("KAFKA_BENCH_LATENCY_SECONDS", 4),
            virtual_brokers: var("KAFKA_BENCH_VIRTUAL_BROKERS", 1),
            only: compare::env_list("KAFKA_BENCH_TARGETS"),
        }
    }
}

/// What every setup may use: the brokers, the scratch dir, the binaries.
struct Rig {
    dir: PathBuf,
    tansu_bin: PathBuf,
    python: PathBuf,
    script: PathBuf,
    params: Params,
    source: Tansu,
    target: Tansu,
}

/// A tansu broker with memory storage.
struct Tansu {
    port: u16,
    log: PathBuf,
    child: Child,
}

impl Tansu {
    fn start(bin: &Path, dir: &Path, name: &str) -> Tansu {
        let port = common::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(bin);
        command
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &format!("memory://{name}-{port}/")]);
        let mut child = Child::spawn(name, &mut command, &log);
        wait_listening(&mut child, &log, port, name);
        Tansu { port, log, child }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn wait_listening(child: &mut Child, log: &Path, port: u16, what: &str) {
    common::wait_until(&format!("{what} on port {port}"), READY_DEADLINE, || {
        child.assert_alive(log);
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .is_ok()
    });
}

fn direct(rig: &Rig) -> Target {
    Target::direct(rig.source.addr(), ("tansu", rig.source.child.pid()))
}

fn tansu_proxy(rig: &Rig) -> Target {
    let port = common::free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let log = rig.dir.join("tansu-proxy.log");
    let mut command = Command::new(&rig.tansu_bin);
    command
        .arg("proxy")
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--origin-url", &format!("tcp://{}", rig.source.addr())]);
    let mut child = Child::spawn("tansu proxy", &mut command, &log);
    wait_listening(&mut child, &log, port, "tansu proxy");
    Target {
        name: "tansu proxy",
        addr: format!("127.0.0.1:{port}"),
        watch: vec![
            ("tansu proxy", child.pid()),
            ("tansu", rig.source.child.pid()),
        ],
        processes: vec![child],
        cutover: None,
        prepare: no_prepare,
    }
}

fn cutover_source(rig: &Rig) -> Target {
    let (listen, cutover) = start_cutover(rig, "cutover-source");
    Target::through_cutover(
        "cutover source",
        listen,
        cutover,
        ("tansu", rig.source.child.pid()),
    )
}

fn cutover_dual_write(rig: &Rig) -> Target {
    splice_target(rig, "cutover dual_write", prepare_dual_write)
}

fn cutover_cutover(rig: &Rig) -> Target {
    splice_target(rig, "cutover cutover", prepare_cutover)
}

/// A cutover process of its own (config and state under `rig.dir/name`)
/// with the [`MIGRATION`] from the source tansu to the target tansu, in
/// `source`; returns its listen port and the process.
fn start_cutover(rig: &Rig, name: &str) -> (u16, Cutover) {
    let brokers = rig.params.virtual_brokers;
    // `listen` and the virtual brokers' ports right after it.
    let listen = compare::free_port_run(1 + brokers);
    let dir = rig.dir.join(name);
    std::fs::create_dir_all(&dir).expect("cutover dir");
    let (source, target) = (rig.source.addr(), rig.target.addr());
    let cutover = Cutover::start_migration(
        &dir,
        listen,
        &Migration {
            name: MIGRATION,
            protocol: "kafka",
            clusters: ["kafka-old", "kafka-new"],
            endpoints: [&source, &target],
            topics: &format!(r#"[ {{ match: "{TOPIC_PREFIX}*" }} ]"#),
            extra: &format!(
                "kafka: {{ brokers_listen_base: {}, virtual_brokers: {brokers} }}",
                listen + 1
            ),
        },
    );
    (listen, cutover)
}

/// A path whose topics `prepare` moves past `source`: records land on both
/// tansu processes, so both are watched.
fn splice_target(rig: &Rig, name: &'static str, prepare: fn(&Target, &str)) -> Target {
    let (listen, cutover) = start_cutover(rig, &compare::slug(name));
    let mut target = Target::through_cutover(
        name,
        listen,
        cutover,
        ("tansu source", rig.source.child.pid()),
    );
    target.watch.push(("tansu target", rig.target.child.pid()));
    target.prepare = prepare;
    target
}

/// `dual_write` with the lower half of the partitions writing to the target.
fn prepare_dual_write(target: &Target, topic: &str) {
    let cutover = splice_cutover(target);
    to_dual_write(cutover, topic);
    ctl_ok(cutover, &["shift", MIGRATION, topic, "--percent", "50"]);
}

/// `cutover`: every partition writes to the target.
fn prepare_cutover(target: &Target, topic: &str) {
    let cutover = splice_cutover(target);
    to_dual_write(cutover, topic);
    ctl_ok(cutover, &["advance", MIGRATION, topic]);
}

/// Creates `topic` on the target and advances it `source → dual_read →
/// dual_write` (no partition shifted yet: `dual_write_percent` is 0).
/// Without `--force`: on a fresh topic every readiness check holds (no
/// group has used it, nothing was written around the proxy, the target
/// copy is empty), so a refusal here is a finding, not noise.
fn to_dual_write(cutover: &Cutover, topic: &str) {
    ctl_ok(cutover, &["migrate-metadata", MIGRATION, topic]);
    ctl_ok(cutover, &["advance", MIGRATION, topic]);
    ctl_ok(cutover, &["advance", MIGRATION, topic]);
}

fn splice_cutover(target: &Target) -> &Cutover {
    target
        .cutover
        .as_ref()
        .unwrap_or_else(|| panic!("{} runs no cutover", target.name))
}

/// `cutover ctl ARGS`, which must succeed.
fn ctl_ok(cutover: &Cutover, args: &[&str]) {
    let (ok, out) = cutover.ctl(args);
    assert!(ok, "ctl {}:\n{out}", args.join(" "));
}

/// A peer from the install dir, or a clean skip telling how to install it.
fn require_peer(path: PathBuf) -> PathBuf {
    if path.is_file() {
        return path;
    }
    eprintln!(
        "SKIPPED: {} is not installed; run `tests/peers/install.sh kafka tansu` first.",
        path.display()
    );
    std::process::exit(0);
}

/// One round of one target.
struct Run {
    target: &'static str,
    produce: Phase,
    latency: Phase,
    consume: Phase,
}

impl compare::Round for Run {
    fn target(&self) -> &str {
        self.target
    }

    fn phases(&self) -> Vec<(&'static str, &Phase)> {
        vec![
            ("produce", &self.produce),
            ("latency", &self.latency),
            ("consume", &self.consume),
        ]
    }
}

fn main() {
    let params = Params::from_env();
    let peers = compare::peers_dir();
    let tansu_bin = require_peer(peers.join("bin").join("tansu"));
    let python = require_peer(peers.join("venv").join("bin").join("python"));
    let started = Instant::now();
    let scratch = Scratch::new("cutover-bench-kafka-");
    let dir = scratch.path.clone();
    let script = dir.join("kafka_load.py");
    std::fs::write(&script, LOAD_SCRIPT).expect("write kafka_load.py");

    let source = Tansu::start(&tansu_bin, &dir, "tansu-source");
    let target = Tansu::start(&tansu_bin, &dir, "tansu-target");
    let rig = Rig {
        dir: dir.clone(),
        tansu_bin,
        python,
        script,
        params: params.clone(),
        source,
        target,
    };
    let targets = compare::set_up(
        TARGETS,
        params.only.as_deref(),
        "KAFKA_BENCH_TARGETS",
        |setup: Setup| setup(&rig),
    );

    println!(
        "kafka_compare: {} msgs x {} B, {} partitions, acks=all, linger.ms={}, paced latency {} msg/s x {} s, \
         {} rounds, {} CPUs, cutover virtual_brokers={}",
        params.messages,
        params.size,
        params.partitions,
        params.linger_ms,
        params.latency_rate,
        params.latency_seconds,
        params.rounds,
        common::cpu_count(),
        params.virtual_brokers,
    );
    println!("cutover binary: {}", common::CUTOVER);
    println!("tansu: {}", version(&rig.tansu_bin));

    let runs = compare::interleave(params.rounds, &targets, |target, round| {
        run(&rig, target, round)
    });

    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    print_tables(&runs, &names, &params);
    compare::report_cutovers(&targets);
    compare::report_log("tansu source", &rig.source.log);
    compare::report_log("tansu target", &rig.target.log);
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
}

fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Creates the round's topics, runs the three phases, prints a line each.
fn run(rig: &Rig, target: &Target, round: usize) -> Run {
    let topic = format!("{TOPIC_PREFIX}{}-{round}", compare::slug(target.name));
    let latency_topic = format!("{topic}-latency");
    let p = &rig.params;
    for t in [&topic, &latency_topic] {
        load(
            rig,
            target,
            "create",
            serde_json::json!({"topic": t, "partitions": p.partitions}),
        );
        (target.prepare)(target, t);
    }

    let (out, cpu) = load(
        rig,
        target,
        "produce",
        serde_json::json!({"topic": topic, "messages": p.messages, "size": p.size, "linger_ms": p.linger_ms}),
    );
    let produce = Phase {
        messages: num(&out["delivered"]) as u64,
        bytes: num(&out["bytes"]) as u64,
        seconds: num(&out["seconds"]),
        p50_ms: out["p50_ms"].as_f64(),
        p99_ms: out["p99_ms"].as_f64(),
        problems: problems(&out, "delivered", p.messages),
        cpu,
    };
    let expected = u64::from(p.latency_rate) * u64::from(p.latency_seconds);
    let (out, cpu) = load(
        rig,
        target,
        "latency",
        serde_json::json!({"topic": latency_topic, "rate": p.latency_rate, "seconds": p.latency_seconds, "size": p.size}),
    );
    let latency = Phase {
        messages: num(&out["delivered"]) as u64,
        p50_ms: out["p50_ms"].as_f64(),
        p99_ms: out["p99_ms"].as_f64(),
        problems: problems(&out, "delivered", expected),
        cpu,
        ..Phase::default()
    };
    let (out, cpu) = load(
        rig,
        target,
        "consume",
        serde_json::json!({"topic": topic, "messages": produce.messages}),
    );
    let consume = Phase {
        messages: num(&out["consumed"]) as u64,
        bytes: num(&out["bytes"]) as u64,
        seconds: num(&out["seconds"]),
        problems: problems(&out, "consumed", p.messages),
        cpu,
        ..Phase::default()
    };

    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    println!(
        "  round {round} {:<16} produce {:>6.1} MB/s {:>7.0} msg/s (p50 {} p99 {} ms) | paced p50 {} p99 {} ms | consume {:>6.1} MB/s {:>7.0} msg/s{}",
        target.name,
        produce.mb_per_s(),
        produce.msgs_per_s(),
        ms(produce.p50_ms),
        ms(produce.p99_ms),
        ms(latency.p50_ms),
        ms(latency.p99_ms),
        consume.mb_per_s(),
        consume.msgs_per_s(),
        compare::flag_problems(&[&produce, &latency, &consume]),
    );
    Run {
        target: target.name,
        produce,
        latency,
        consume,
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// A description of lost or failed messages, if any.
fn problems(out: &Value, field: &str, expected: u64) -> Option<String> {
    let got = num(&out[field]) as u64;
    let errors = num(&out["errors"]) as u64;
    (got != expected || errors > 0).then(|| {
        format!(
            "{field} {got} of {expected}, {errors} errors {}",
            out["first_errors"]
        )
    })
}

/// Runs one phase of the load script against `target` (bounded), sampling
/// the CPU of the watched processes and of the script itself. Returns the
/// script's JSON result and CPU% per process.
fn load(rig: &Rig, target: &Target, phase: &str, mut args: Value) -> (Value, Vec<(String, f64)>) {
    args["phase"] = phase.into();
    args["bootstrap"] = target.addr.clone().into();
    args["deadline_s"] = PHASE_DEADLINE.as_secs().into();
    let out_path = rig.dir.join("load.out");
    let err_path = rig.dir.join(format!("load-{phase}.err"));
    let mut child = std::process::Command::new(&rig.python)
        .arg(&rig.script)
        .arg(args.to_string())
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create load.out"))
        .stderr(File::create(&err_path).expect("create load.err"))
        .spawn()
        .expect("spawn the load script");
    let pid = child.id();
    let watch = CpuWatch::start(&target.watch);
    let waited = compare::wait_client(pid, PHASE_DEADLINE + KILL_GRACE, || {
        child.try_wait().expect("wait for the load script")
    });
    let Ok((status, client_ticks)) = waited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{phase} against {} ran past {:?}; killed. stderr:\n{}",
            target.name,
            PHASE_DEADLINE + KILL_GRACE,
            common::tail(&err_path, 20)
        );
    };
    let cpu = watch.finish(&target.watch, client_ticks);
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.success(),
        "{phase} against {} failed ({status}):\n{stdout}\nstderr:\n{}",
        target.name,
        common::tail(&err_path, 20)
    );
    let result: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{phase} against {} printed no JSON:\n{stdout}", target.name));

    (result, cpu)
}

fn print_tables(runs: &[Run], targets: &[&str], params: &Params) {
    let produce_mb = |t: &str| best_of(of(runs, t).iter().map(|r| r.produce.mb_per_s()));
    let consume_mb = |t: &str| best_of(of(runs, t).iter().map(|r| r.consume.mb_per_s()));
    // `value` against every baseline row, as table cells.
    let vs = |value: f64, base: &dyn Fn(&str) -> Option<(f64, f64)>| {
        BASELINES
            .iter()
            .map(|b| ratio(value, base(b)))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let vs_header = BASELINES.map(|b| format!("vs {b}")).join(" | ");
    let vs_rule = "---|".repeat(BASELINES.len());
    let rounds = params.rounds;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nProduce: {} x {} B, acks=all, linger.ms={}; best of {rounds} rounds (spread between rounds)\n",
        params.messages, params.size, params.linger_ms
    );
    let _ = writeln!(
        out,
        "| target | MB/s | msgs/s | spread | p50 ms | p99 ms | {vs_header} |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|{vs_rule}");
    for target in targets {
        let Some((mb, spread)) = produce_mb(target) else {
            continue;
        };
        let group = of(runs, target);
        let best = group
            .iter()
            .max_by(|a, b| a.produce.mb_per_s().total_cmp(&b.produce.mb_per_s()))
            .expect("a run");
        let _ = writeln!(
            out,
            "| {target} | {mb:.1} | {:.0} | {:.0}% | {} | {} | {} |",
            best.produce.msgs_per_s(),
            100.0 * spread,
            fmt_ms(best.produce.p50_ms),
            fmt_ms(best.produce.p99_ms),
            vs(mb, &produce_mb),
        );
    }
    let _ = writeln!(
        out,
        "\nConsume (assign, all partitions from the beginning); best of {rounds}\n"
    );
    let _ = writeln!(out, "| target | MB/s | msgs/s | spread | {vs_header} |");
    let _ = writeln!(out, "|---|---|---|---|{vs_rule}");
    for target in targets {
        let Some((mb, spread)) = consume_mb(target) else {
            continue;
        };
        let group = of(runs, target);
        let best = group
            .iter()
            .max_by(|a, b| a.consume.mb_per_s().total_cmp(&b.consume.mb_per_s()))
            .expect("a run");
        let _ = writeln!(
            out,
            "| {target} | {mb:.1} | {:.0} | {:.0}% | {} |",
            best.consume.msgs_per_s(),
            100.0 * spread,
            vs(mb, &consume_mb),
        );
    }
    let _ = writeln!(
        out,
        "\nPaced produce latency: {} msg/s for {} s, linger.ms=0, acks=all; lowest of {rounds}\n",
        params.latency_rate, params.latency_seconds
    );
    let _ = writeln!(out, "| target | p50 ms | p99 ms | p99 vs direct |");
    let _ = writeln!(out, "|---|---|---|---|");
    let p99 = |t: &str| lowest(of(runs, t).iter().map(|r| r.latency.p99_ms));
    for target in targets {
        let group = of(runs, target);
        let p50 = lowest(group.iter().map(|r| r.latency.p50_ms));
        let mine = p99(target);
        let vs = mine.map_or_else(
            || "-".to_owned(),
            |m| ratio(m, p99(BASELINES[0]).map(|d| (d, 0.0))),
        );
        let _ = writeln!(
            out,
            "| {target} | {} | {} | {vs} |",
            fmt_ms(p50),
            fmt_ms(mine)
        );
    }
    compare::cpu_table(&mut out, runs, targets, &["produce", "consume"]);
    compare::list_problems(
        &mut out,
        runs,
        "Every message was delivered and read back on every path.",
    );
    // Issue 5's targets for `source`, as plain words (measured, not asserted).
    if targets.contains(&"cutover source") {
        let pick = |f: &dyn Fn(&str) -> Option<(f64, f64)>, base: &str| {
            f("cutover source").map_or_else(|| "-".to_owned(), |(m, _)| ratio(m, f(base)))
        };
        let _ = writeln!(
            out,
            "cutover source: produce {} of direct (target >= 0.9x), {} of tansu proxy (target >= 1.0x); \
             consume {} of direct, {} of tansu proxy",
            pick(&produce_mb, "direct"),
            pick(&produce_mb, "tansu proxy"),
            pick(&consume_mb, "direct"),
            pick(&consume_mb, "tansu proxy"),
        );
    }
    print!("{out}");
}
