//! Kafka produce/consume throughput and produce latency through cutover on
//! Apache Kafka 4.1.1, next to the same cluster reached directly, and
//! cutover's own CPU per gigabyte moved in each migration state.
//!
//! Run: `cargo bench --bench kafka_compare` (cargo builds `cutover` with the
//! bench profile = release optimisations). Needs Apache Kafka 4.1.1 and the
//! peers' venv from `tests/peers/install.sh kafka`. Two loads, each run in
//! every round on every path, each with its own tables; no client of ours
//! is measured:
//! - `java`: Kafka's own perf tools (`org.apache.kafka.tools.ProducerPerformance`
//!   and `ConsumerPerformance`, on the brokers' class path);
//! - `rdkafka`: librdkafka through confluent-kafka in the peers' venv,
//!   driven by `benches/kafka_rdkafka_load.py`. Python's per-record cost
//!   caps its rate, but the cap is the same on every path: read its ratios
//!   to direct, not its MB/s.
//!
//! The clusters come from the test rig (`tests/support`, included below as
//! `support`): the source has 3 combined KRaft nodes (replication factor 3,
//! `min.insync.replicas=2`), the target 1 node, with the rig's JVM flags
//! (C1 only, serial GC, 384 MiB heap). Paths, each a named entry of
//! [`TARGETS`] whose setup returns a bootstrap address:
//! - `direct`: the source cluster's own bootstrap;
//! - `cutover source`: one Kafka migration matching `bench-*` in `source`,
//!   `virtual_brokers` = `KAFKA_BENCH_VIRTUAL_BROKERS` (default 3, the
//!   config default; leaders are hashed onto them independently of the
//!   real leaders, which is why requests may be split in `source` too);
//! - `cutover dual_write`: the same migration in its own cutover process;
//!   every fresh topic is created through it on the source, copied to the
//!   target (`ctl migrate-metadata`), advanced to `dual_write` and half its
//!   partitions shifted to the target (`ctl shift --percent 50`), so produce
//!   and consume span both clusters through the offset splice;
//! - `cutover cutover`: the same, advanced one state further (every
//!   partition writes to the target; a fresh topic holds nothing on the
//!   source, so reads go to the target too).
//!
//! For every path, round and load a fresh topic of `KAFKA_BENCH_PARTITIONS`
//! partitions is created through the path (`TopicCommand`; the librdkafka
//! load's topics are named `bench-<path>-rdkafka-<round>`), then:
//! 1. **produce**: `ProducerPerformance` sends N records of S bytes flat
//!    out (`--throughput -1`, acks=all, the Java client's defaults
//!    otherwise: idempotent, linger.ms=5, batch.size=16384). MB/s from its
//!    records/s; p50/p99 are its send-to-acknowledgement latencies, which
//!    at full speed are mostly time queued in the client (a saturation
//!    figure, not one round trip). The librdkafka producer does the same
//!    with acks=all, `enable.idempotence`, linger.ms=5 and librdkafka's
//!    defaults otherwise (batch.size=1000000): one pre-built value,
//!    `produce()` with a `poll(0)` every 5000 records, timed from the first
//!    `produce()` to the end of `flush()`; its p50/p99 are
//!    `Message.latency()` (produce() to acknowledgement) from the delivery
//!    callbacks;
//! 2. **consume**: `ConsumerPerformance` (a fresh group, from the earliest
//!    offset) reads the N records back; MB/s over its fetch time, which
//!    leaves out the group join (reported as `join ms` per round). The
//!    librdkafka consumer does the same in batches of `consume()`: the join
//!    is `subscribe()` to the first assignment, the fetch time runs from
//!    there to the Nth record.
//!
//! MB = 10^6 bytes of record values. Rounds alternate the paths so drift
//! over time hits them alike; the table shows each path's best round per
//! column and the spread between rounds, plus the median over rounds of
//! each round's ratio to the baselines (the figure least moved by load
//! that comes and goes on a shared machine). Per phase the bench reads
//! cutover's utime+stime from /proc/PID/stat before and after and reports
//! CPU seconds per GB of record values (summed over rounds; 1 s/GB = 1 ms
//! per MB), and the share of the phase's requests that cutover split over
//! several upstream brokers or clusters: `cutover_kafka_split_requests_total`
//! against `cutover_requests_total`, the topic's series only (the latter
//! counts a split request once per upstream broker it reached). CPU% of every
//! process per phase comes from /proc too (100% = one core). Nothing is
//! asserted about the ratios (issue 19's targets: `source` ≥ 0.95× direct,
//! splice states ≥ 0.85×); lost or failed records are flagged.
//!
//! Environment (with the Java load alone the defaults finish in about 6
//! minutes on 2 busy cores; the librdkafka load adds its own topic and two
//! phases per path and round):
//! `KAFKA_BENCH_RECORDS` (500000), `KAFKA_BENCH_RECORD_SIZE` (100 bytes),
//! `KAFKA_BENCH_PARTITIONS` (6), `KAFKA_BENCH_ROUNDS` (3),
//! `KAFKA_BENCH_VIRTUAL_BROKERS` (3), `KAFKA_BENCH_TARGETS`
//! (comma-separated subset of target names), `KAFKA_BENCH_CLIENTS`
//! (`java,rdkafka`, the default, or either alone), `CUTOVER_BENCH_KEEP=1`
//! keeps the scratch dir (logs).
//!
//! Adding a path: append to [`TARGETS`] a setup that starts what it needs
//! and returns a [`Target`]; its `prepare` hook runs for every fresh topic
//! after it is created and before any load (the splice paths' `ctl` steps
//! live there). A peer proxy belongs here once it installs pinned and
//! cached from a registry the project uses (Kroxylicious does not yet: see
//! the README's Performance section).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::compare::{self, CpuWatch, Phase, Target, best_of, env_var as var, of, ratio};
use common::{Cutover, Scratch};
use support::KafkaCluster;

/// Wall-clock budget of one perf-tool run; it is killed past it.
const PHASE_DEADLINE: Duration = Duration::from_secs(180);
/// How long a fresh topic may take to become known to `ctl migrate-metadata`.
const TOPIC_DEADLINE: Duration = Duration::from_secs(30);
/// `ConsumerPerformance --timeout`: the longest gap between records before
/// it gives up (then the phase is flagged as incomplete).
const CONSUME_IDLE_TIMEOUT_MS: u64 = 20_000;
/// JVM options of the perf tools: Kafka's own scripts' heap, full JIT, so
/// the client is as an operator runs it (`kafka-producer-perf-test.sh`).
const PERF_JVM: &[&str] = &["-Xmx512m", "-XX:+UseG1GC"];
/// Topic-name prefix the cutover migrations match.
const TOPIC_PREFIX: &str = "bench-";
/// The migration every cutover path configures (one per cutover process).
const MIGRATION: &str = "events";
/// Labels of the source nodes' pids in the CPU table, by node id - 1.
const SOURCE_NODES: [&str; 3] = ["source node 1", "source node 2", "source node 3"];
/// The librdkafka load, run with the peers' venv python.
const RDKAFKA_LOAD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/kafka_rdkafka_load.py");

/// Loads to run on every path, in the order each round runs them;
/// `KAFKA_BENCH_CLIENTS` picks a subset.
const CLIENTS: &[(&str, Client)] = &[("java", Client::Java), ("rdkafka", Client::Rdkafka)];

/// Paths to measure, in table order; `KAFKA_BENCH_TARGETS` picks a subset.
const TARGETS: &[(&str, Setup)] = &[
    ("direct", direct),
    ("cutover source", cutover_source),
    ("cutover dual_write", cutover_dual_write),
    ("cutover cutover", cutover_cutover),
];
/// The rows ratios are taken against, in column order.
const BASELINES: [&str; 2] = ["direct", "cutover source"];

type Setup = fn(&Rig) -> Target;

/// Who generates the load: each has its own topic per path and round, its
/// own rows and its own tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// Kafka's `ProducerPerformance` and `ConsumerPerformance`.
    Java,
    /// [`RDKAFKA_LOAD`] on confluent-kafka.
    Rdkafka,
}

impl Client {
    /// The name `KAFKA_BENCH_CLIENTS` uses.
    fn name(self) -> &'static str {
        CLIENTS
            .iter()
            .find_map(|&(name, client)| (client == self).then_some(name))
            .expect("every client is in CLIENTS")
    }

    /// Phase names in the CPU table and the problem list.
    fn phases(self) -> [&'static str; 2] {
        match self {
            Client::Java => ["produce", "consume"],
            Client::Rdkafka => ["rdkafka produce", "rdkafka consume"],
        }
    }

    /// Topic-name fragment before the round (the Java load keeps the
    /// names it had before there was a second load).
    fn topic_infix(self) -> &'static str {
        match self {
            Client::Java => "",
            Client::Rdkafka => "rdkafka-",
        }
    }
}

/// Knobs, from the environment.
#[derive(Clone, Debug)]
struct Params {
    records: u64,
    record_size: u64,
    partitions: u32,
    rounds: usize,
    virtual_brokers: u16,
    only: Option<Vec<String>>,
    clients: Vec<Client>,
}

impl Params {
    fn from_env() -> Params {
        Params {
            records: var("KAFKA_BENCH_RECORDS", 500_000).max(1),
            record_size: var("KAFKA_BENCH_RECORD_SIZE", 100).max(1),
            partitions: var("KAFKA_BENCH_PARTITIONS", 6).max(1),
            rounds: var("KAFKA_BENCH_ROUNDS", 3).max(1),
            virtual_brokers: var("KAFKA_BENCH_VIRTUAL_BROKERS", 3).max(1),
            only: compare::env_list("KAFKA_BENCH_TARGETS"),
            clients: compare::select(
                CLIENTS,
                compare::env_list("KAFKA_BENCH_CLIENTS").as_deref(),
                "KAFKA_BENCH_CLIENTS",
            )
            .into_iter()
            .map(|(_, client)| client)
            .collect(),
        }
    }
}

/// What every setup may use: the clusters and the scratch dir.
struct Rig {
    dir: PathBuf,
    params: Params,
    source: &'static KafkaCluster,
    target: &'static KafkaCluster,
}

impl Rig {
    /// (label, pid) of every source node.
    fn source_pids(&self) -> Vec<(&'static str, u32)> {
        SOURCE_NODES
            .iter()
            .enumerate()
            .map(|(i, label)| (*label, self.source.pid(i + 1)))
            .collect()
    }
}

fn direct(rig: &Rig) -> Target {
    let mut target = Target::direct(rig.source.bootstrap(), rig.source_pids()[0]);
    target.watch = rig.source_pids();
    target
}

fn cutover_source(rig: &Rig) -> Target {
    through_cutover(rig, "cutover source", false)
}

fn cutover_dual_write(rig: &Rig) -> Target {
    let mut target = through_cutover(rig, "cutover dual_write", true);
    target.prepare = prepare_dual_write;
    target
}

fn cutover_cutover(rig: &Rig) -> Target {
    let mut target = through_cutover(rig, "cutover cutover", true);
    target.prepare = prepare_cutover;
    target
}

/// `name` through a cutover process of its own (config and state under
/// `rig.dir/<slug>`) with the [`MIGRATION`] from the source cluster to the
/// target, in `source`; watches cutover, the source nodes and, for paths
/// whose records land on the target (`splice`), the target node.
fn through_cutover(rig: &Rig, name: &'static str, splice: bool) -> Target {
    let brokers = rig.params.virtual_brokers;
    // `listen` and the virtual brokers' ports right after it.
    let listen = compare::free_port_run(1 + brokers);
    let dir = rig.dir.join(compare::slug(name));
    std::fs::create_dir_all(&dir).expect("cutover dir");
    let body = format!(
        r#"clusters:
  - {{ name: kafka-old, protocol: kafka, endpoints: {source} }}
  - {{ name: kafka-new, protocol: kafka, endpoints: {target} }}
migrations:
  - name: {MIGRATION}
    protocol: kafka
    listen: 127.0.0.1:{listen}
    source: kafka-old
    target: kafka-new
    topics: [ {{ match: "{TOPIC_PREFIX}*" }} ]
    kafka: {{ brokers_listen_base: {base}, virtual_brokers: {brokers} }}
"#,
        source = rig.source.endpoints_yaml(),
        target = rig.target.endpoints_yaml(),
        base = listen + 1,
    );
    let cutover = Cutover::start(&dir, listen, &body);
    let mut target = Target::through_cutover(name, listen, cutover, rig.source_pids()[0]);
    target.watch.extend(rig.source_pids().into_iter().skip(1));
    if splice {
        target.watch.push(("target node", rig.target.pid(1)));
    }
    target
}

/// `dual_write` with the lower half of the partitions writing to the target.
fn prepare_dual_write(target: &Target, topic: &str) {
    let cutover = splice_cutover(target);
    to_dual_write(target, cutover, topic);
    ctl_ok(cutover, &["shift", MIGRATION, topic, "--percent", "50"]);
}

/// `cutover`: every partition writes to the target.
fn prepare_cutover(target: &Target, topic: &str) {
    let cutover = splice_cutover(target);
    to_dual_write(target, cutover, topic);
    ctl_ok(cutover, &["advance", MIGRATION, topic]);
}

/// Creates `topic` on the target and advances it `source → dual_read →
/// dual_write` (no partition shifted yet: `dual_write_percent` is 0).
/// Without `--force`: on a fresh topic every readiness check holds (no
/// group has used it, nothing was written around the proxy, the target
/// copy is empty), so a refusal here is a finding, not noise.
///
/// The proxy learns topics from the Metadata answers it relays (creating
/// one through it does not register it), so each attempt first describes
/// the topic through the proxy (`TopicCommand --describe`; the proxy does
/// not offer DescribeTopicPartitions, so the tool asks Metadata). Retried
/// until [`TOPIC_DEADLINE`]: the source's metadata may not list a topic
/// that was just created.
fn to_dual_write(target: &Target, cutover: &Cutover, topic: &str) {
    let args = ["migrate-metadata", MIGRATION, topic];
    common::wait_until(
        &format!("ctl migrate-metadata {topic} (its refusals are above)"),
        TOPIC_DEADLINE,
        || {
            let described = support::kafka_tool(
                "org.apache.kafka.tools.TopicCommand",
                &[
                    "--bootstrap-server",
                    &target.addr,
                    "--describe",
                    "--topic",
                    topic,
                ],
            );
            if !described.status.success() {
                eprintln!(
                    "TopicCommand --describe {topic}: {}",
                    support::output_text(&described)
                );
                return false;
            }
            let (ok, out) = cutover.ctl(&args);
            if !ok {
                eprintln!("ctl {}: {}", args.join(" "), out.trim());
            }
            ok
        },
    );
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

/// What the bench reads of cutover around one phase.
#[derive(Clone, Copy, Debug, Default)]
struct CutoverCost {
    /// utime + stime spent during the phase, in seconds.
    cpu_seconds: f64,
    /// Requests split over several upstream brokers or clusters.
    split: f64,
    /// Requests forwarded upstream (one per upstream broker, as counted by
    /// `cutover_requests_total`).
    requests: f64,
}

/// What one perf-tool run left: its stdout, how many exceptions it printed
/// on stderr, CPU% per watched process, and cutover's cost (for paths
/// through cutover).
struct ToolRun {
    stdout: String,
    exceptions: usize,
    cpu: Vec<(String, f64)>,
    cost: Option<CutoverCost>,
}

/// One phase of one round: the tool's figures and cutover's cost.
struct Measured {
    phase: Phase,
    cost: Option<CutoverCost>,
    /// The consumer's group join and first assignment, in ms.
    join_ms: Option<f64>,
}

/// One round of one target under one client.
struct Run {
    target: &'static str,
    client: Client,
    round: usize,
    produce: Measured,
    consume: Measured,
}

impl compare::Round for Run {
    fn target(&self) -> &str {
        self.target
    }

    fn phases(&self) -> Vec<(&'static str, &Phase)> {
        let [produce, consume] = self.client.phases();
        vec![
            (produce, &self.produce.phase),
            (consume, &self.consume.phase),
        ]
    }
}

fn main() {
    let params = Params::from_env();
    let started = Instant::now();
    let scratch = Scratch::new("cutover-bench-kafka-");
    let dir = scratch.path.clone();
    let home = support::kafka_home();
    // Before the clusters start: a missing venv fails at once.
    let librdkafka = params
        .clients
        .contains(&Client::Rdkafka)
        .then(librdkafka_version);

    let source = KafkaCluster::source();
    let target = KafkaCluster::target();
    println!(
        "clusters ready in {:.0} s: source {} (3 nodes), target {}",
        started.elapsed().as_secs_f64(),
        source.bootstrap(),
        target.bootstrap()
    );
    let rig = Rig {
        dir: dir.clone(),
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
        "kafka_compare: {} records x {} B, {} partitions, acks=all, {} rounds, {} CPUs, \
         cutover virtual_brokers={}, clients {}",
        params.records,
        params.record_size,
        params.partitions,
        params.rounds,
        common::cpu_count(),
        params.virtual_brokers,
        params
            .clients
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(","),
    );
    println!("cutover binary: {}", common::CUTOVER);
    println!(
        "Apache Kafka {} from {}",
        support::KAFKA_VERSION,
        home.display()
    );
    if let Some(version) = &librdkafka {
        println!("{version}");
    }

    let mut runs: Vec<Run> = compare::interleave(params.rounds, &targets, |target, round| {
        params
            .clients
            .iter()
            .map(|&client| run(&rig, &home, target, round, client))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();

    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    for &client in &params.clients {
        let (mine, rest): (Vec<Run>, Vec<Run>) = runs.into_iter().partition(|r| r.client == client);
        print_tables(&mine, &names, &params, client);
        runs = rest;
    }
    compare::report_cutovers(&targets);
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
}

/// Which confluent-kafka and librdkafka the venv holds, as a line.
fn librdkafka_version() -> String {
    let out = Command::new(support::kafka_python())
        .args([
            "-c",
            "import confluent_kafka as c; print(c.__version__, c.libversion()[0])",
        ])
        .output()
        .expect("run the venv python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "confluent_kafka does not import: {}",
        support::output_text(&out)
    );
    let mut words = text.split_whitespace();
    let (package, library) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
    format!(
        "librdkafka {library} (confluent-kafka {package}) from {}",
        support::kafka_python().display()
    )
}

/// Creates the round's topic for `client` through `target`, runs both
/// phases, prints a line.
fn run(rig: &Rig, home: &Path, target: &Target, round: usize, client: Client) -> Run {
    let topic = format!(
        "{TOPIC_PREFIX}{}-{}{round}",
        compare::slug(target.name),
        client.topic_infix()
    );
    let p = &rig.params;
    let out = support::kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &target.addr,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            &p.partitions.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "TopicCommand --create {topic} through {}: {}",
        target.name,
        support::output_text(&out)
    );
    (target.prepare)(target, &topic);

    let (produce, consume) = match client {
        Client::Java => java_load(rig, home, target, &topic),
        Client::Rdkafka => rdkafka_load(rig, target, &topic),
    };

    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    let cost = |m: &Measured| {
        m.cost.map_or_else(String::new, |c| {
            format!(
                " [cutover {:.2} s CPU, split {:.0}/{:.0}]",
                c.cpu_seconds, c.split, c.requests
            )
        })
    };
    let tag = match client {
        Client::Java => "",
        Client::Rdkafka => "rdkafka ",
    };
    println!(
        "  round {round} {:<18} {tag}produce {:>6.2} MB/s {:>7.0} rec/s (p50 {} p99 {} ms){} | consume {:>6.2} MB/s {:>7.0} rec/s (join {} ms){}{}",
        target.name,
        produce.phase.mb_per_s(),
        produce.phase.msgs_per_s(),
        ms(produce.phase.p50_ms),
        ms(produce.phase.p99_ms),
        cost(&produce),
        consume.phase.mb_per_s(),
        consume.phase.msgs_per_s(),
        ms(consume.join_ms),
        cost(&consume),
        compare::flag_problems(&[&produce.phase, &consume.phase]),
    );
    Run {
        target: target.name,
        client,
        round,
        produce,
        consume,
    }
}

/// `ProducerPerformance` then `ConsumerPerformance` on `topic`.
fn java_load(rig: &Rig, home: &Path, target: &Target, topic: &str) -> (Measured, Measured) {
    let p = &rig.params;
    let records = p.records.to_string();
    let size = p.record_size.to_string();
    let producer_props = format!("bootstrap.servers={}", target.addr);
    let tool = perf_tool(
        rig,
        target,
        topic,
        "produce",
        java_tool(
            home,
            "org.apache.kafka.tools.ProducerPerformance",
            &[
                "--topic",
                topic,
                "--num-records",
                &records,
                "--record-size",
                &size,
                "--throughput",
                "-1",
                "--producer-props",
                "acks=all",
                &producer_props,
            ],
        ),
    );
    let produce = Measured {
        phase: producer_phase(&tool.stdout, tool.exceptions, p, tool.cpu),
        cost: tool.cost,
        join_ms: None,
    };

    let group = format!("{topic}-group");
    let timeout = CONSUME_IDLE_TIMEOUT_MS.to_string();
    let tool = perf_tool(
        rig,
        target,
        topic,
        "consume",
        java_tool(
            home,
            "org.apache.kafka.tools.ConsumerPerformance",
            &[
                "--bootstrap-server",
                &target.addr,
                "--topic",
                topic,
                "--messages",
                &records,
                "--group",
                &group,
                "--timeout",
                &timeout,
            ],
        ),
    );
    let (phase, join_ms) = consumer_phase(&tool.stdout, tool.exceptions, p, tool.cpu);
    let consume = Measured {
        phase,
        cost: tool.cost,
        join_ms,
    };
    (produce, consume)
}

/// [`RDKAFKA_LOAD`]'s produce then consume on `topic`.
fn rdkafka_load(rig: &Rig, target: &Target, topic: &str) -> (Measured, Measured) {
    let p = &rig.params;
    let records = p.records.to_string();
    let size = p.record_size.to_string();
    let tool = perf_tool(
        rig,
        target,
        topic,
        "rdkafka-produce",
        python_load(&["produce", &target.addr, topic, &records, &size]),
    );
    let produce = Measured {
        phase: rdkafka_phase(&tool, "delivered", p),
        cost: tool.cost,
        join_ms: None,
    };

    let group = format!("{topic}-group");
    let timeout = CONSUME_IDLE_TIMEOUT_MS.to_string();
    let tool = perf_tool(
        rig,
        target,
        topic,
        "rdkafka-consume",
        python_load(&["consume", &target.addr, topic, &records, &group, &timeout]),
    );
    let consume = Measured {
        phase: rdkafka_phase(&tool, "consumed", p),
        cost: tool.cost,
        join_ms: load_result(&tool.stdout)["join_ms"].as_f64(),
    };
    (produce, consume)
}

/// A Kafka perf tool (`main`) on the brokers' class path, with [`PERF_JVM`].
fn java_tool(home: &Path, main: &str, args: &[&str]) -> Command {
    let mut command = Command::new("java");
    command
        .args(PERF_JVM)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            home.join("config/tools-log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(format!("{}/libs/*", home.display()))
        .arg(main)
        .args(args);
    command
}

/// [`RDKAFKA_LOAD`] with `args`, on the peers' venv python.
fn python_load(args: &[&str]) -> Command {
    let mut command = Command::new(support::kafka_python());
    command.arg(RDKAFKA_LOAD).args(args);
    command
}

/// Runs one load `command` against `target` (bounded by
/// [`PHASE_DEADLINE`]), sampling the CPU of the watched processes and of the
/// client, and cutover's CPU time and split counters for `topic`.
fn perf_tool(
    rig: &Rig,
    target: &Target,
    topic: &str,
    phase: &str,
    mut command: Command,
) -> ToolRun {
    let slug = compare::slug(target.name);
    let out_path = rig.dir.join(format!("{slug}-{phase}.out"));
    let err_path = rig.dir.join(format!("{slug}-{phase}.err"));
    command
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create tool stdout"))
        .stderr(File::create(&err_path).expect("create tool stderr"));
    let before = target.cutover.as_ref().map(|c| cutover_reading(c, topic));
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the {phase} client: {e}"));
    let pid = child.id();
    let watch = CpuWatch::start(&target.watch);
    let waited = compare::wait_client(pid, PHASE_DEADLINE, || {
        child.try_wait().expect("wait for the perf tool")
    });
    let Ok((status, client_ticks)) = waited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{phase} against {} ran past {PHASE_DEADLINE:?}; killed. stderr:\n{}",
            target.name,
            common::tail(&err_path, 20)
        );
    };
    let cpu = watch.finish(&target.watch, client_ticks);
    let cost = target
        .cutover
        .as_ref()
        .zip(before)
        .map(|(c, before)| cutover_reading(c, topic).since(before));
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "{phase} against {} failed ({status}):\n{stdout}\nstderr:\n{}",
        target.name,
        common::tail(&err_path, 20)
    );
    ToolRun {
        exceptions: stderr.lines().filter(|l| l.contains("Exception")).count(),
        stdout,
        cpu,
        cost,
    }
}

/// Cutover's CPU seconds so far and its request counters for `topic`.
fn cutover_reading(cutover: &Cutover, topic: &str) -> CutoverCost {
    let ticks = common::cpu_ticks(cutover.child.pid());
    let label = format!("topic=\"{topic}\"");
    let body = common::admin_get(&cutover.socket, "/metrics").unwrap_or_default();
    CutoverCost {
        cpu_seconds: ticks as f64 / common::clock_ticks_per_second(),
        split: common::prometheus_sum_where(&body, "cutover_kafka_split_requests_total", &label),
        requests: common::prometheus_sum_where(&body, "cutover_requests_total", &label),
    }
}

impl CutoverCost {
    fn since(self, before: CutoverCost) -> CutoverCost {
        CutoverCost {
            cpu_seconds: self.cpu_seconds - before.cpu_seconds,
            split: self.split - before.split,
            requests: self.requests - before.requests,
        }
    }
}

/// `ProducerPerformance`'s summary, the last line of the form
/// `N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max
/// latency, P ms 50th, Q ms 95th, S ms 99th, T ms 99.9th.`
fn producer_phase(text: &str, errors: usize, p: &Params, cpu: Vec<(String, f64)>) -> Phase {
    let line = text
        .lines()
        .rfind(|l| l.contains(" records sent, ") && l.contains("99th"))
        .unwrap_or_else(|| panic!("ProducerPerformance printed no summary:\n{text}"));
    let field = |suffix: &str| {
        line.split(", ").find_map(|part| {
            let part = part.trim_end_matches('.');
            part.strip_suffix(suffix)?.trim().parse::<f64>().ok()
        })
    };
    let sent = field(" records sent").unwrap_or(0.0) as u64;
    let per_s = line
        .split(", ")
        .find_map(|part| {
            part.split_once(" records/sec")?
                .0
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    Phase {
        messages: sent,
        bytes: sent * p.record_size,
        seconds: if per_s > 0.0 {
            sent as f64 / per_s
        } else {
            0.0
        },
        p50_ms: field(" ms 50th"),
        p99_ms: field(" ms 99th"),
        problems: problems("sent", sent, p.records, errors),
        cpu,
    }
}

/// `ConsumerPerformance`'s result, the last CSV line: start.time,
/// end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
/// rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec. Returns
/// the phase (over the fetch time) and the join (rebalance) time.
fn consumer_phase(
    text: &str,
    errors: usize,
    p: &Params,
    cpu: Vec<(String, f64)>,
) -> (Phase, Option<f64>) {
    let fields: Vec<&str> = text
        .lines()
        .rfind(|l| l.split(", ").count() >= 10 && !l.starts_with("start.time"))
        .unwrap_or_else(|| panic!("ConsumerPerformance printed no result:\n{text}"))
        .split(", ")
        .map(str::trim)
        .collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let consumed = num(4).unwrap_or(0.0) as u64;
    let phase = Phase {
        messages: consumed,
        bytes: consumed * p.record_size,
        seconds: num(7).unwrap_or(0.0) / 1000.0,
        problems: problems("consumed", consumed, p.records, errors),
        cpu,
        ..Phase::default()
    };
    (phase, num(6))
}

/// The JSON line [`RDKAFKA_LOAD`] ends its stdout with.
fn load_result(stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{} printed no result ({e}):\n{stdout}", RDKAFKA_LOAD))
}

/// One [`RDKAFKA_LOAD`] phase: `count` is the result's field of records
/// acknowledged (`delivered`) or read (`consumed`); latencies come with the
/// producer's result only.
fn rdkafka_phase(tool: &ToolRun, count: &str, p: &Params) -> Phase {
    let result = load_result(&tool.stdout);
    let got = result[count].as_u64().unwrap_or(0);
    let failed = result["failed"].as_u64().unwrap_or(0);
    let problems = (got != p.records || failed > 0 || tool.exceptions > 0).then(|| {
        let first = result["first_error"]
            .as_str()
            .map_or_else(String::new, |e| format!(" (first: {e})"));
        format!(
            "{count} {got} of {}, {failed} failed{first}, {} exceptions on stderr",
            p.records, tool.exceptions
        )
    });
    Phase {
        messages: got,
        bytes: got * p.record_size,
        seconds: result["seconds"].as_f64().unwrap_or(0.0),
        p50_ms: result["p50_ms"].as_f64(),
        p99_ms: result["p99_ms"].as_f64(),
        problems,
        cpu: tool.cpu.clone(),
    }
}

/// A description of lost or failed records, if any.
fn problems(what: &str, got: u64, expected: u64, errors: usize) -> Option<String> {
    (got != expected || errors > 0)
        .then(|| format!("{what} {got} of {expected}, {errors} exceptions on stderr"))
}

/// Cutover's CPU seconds per GB of record values over every round of
/// `target`'s `phase`, and the share of its requests that were split.
fn cutover_totals(runs: &[Run], target: &str, phase: &str) -> Option<(f64, f64)> {
    let measured: Vec<&Measured> = of(runs, target)
        .into_iter()
        .map(|r| match phase {
            "produce" => &r.produce,
            _ => &r.consume,
        })
        .collect();
    let costs: Vec<CutoverCost> = measured.iter().filter_map(|m| m.cost).collect();
    if costs.is_empty() {
        return None;
    }
    let gb: f64 = measured.iter().map(|m| m.phase.bytes as f64 / 1e9).sum();
    let cpu: f64 = costs.iter().map(|c| c.cpu_seconds).sum();
    let split: f64 = costs.iter().map(|c| c.split).sum();
    let requests: f64 = costs.iter().map(|c| c.requests).sum();
    Some((
        cpu / gb.max(1e-12),
        if requests > 0.0 {
            split / requests
        } else {
            0.0
        },
    ))
}

/// The median over rounds of `target`'s figure divided by `base`'s figure
/// of the same round: rounds alternate the paths, so this ratio is the one
/// least moved by load that comes and goes on a shared machine.
fn median_round_ratio(runs: &[Run], target: &str, base: &str, figure: fn(&Run) -> f64) -> String {
    let mut ratios: Vec<f64> = of(runs, target)
        .into_iter()
        .filter_map(|r| {
            let b = of(runs, base).into_iter().find(|b| b.round == r.round)?;
            (figure(b) > 0.0).then(|| figure(r) / figure(b))
        })
        .collect();
    if ratios.is_empty() {
        return "-".to_owned();
    }
    ratios.sort_by(f64::total_cmp);
    let mid = ratios.len() / 2;
    let median = if ratios.len() % 2 == 1 {
        ratios[mid]
    } else {
        f64::midpoint(ratios[mid - 1], ratios[mid])
    };
    format!("{median:.2}x")
}

/// Milliseconds as `ProducerPerformance` prints its percentiles (whole ms).
fn whole_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The tables of one client's `runs`.
fn print_tables(runs: &[Run], targets: &[&str], params: &Params, client: Client) {
    // The Java load's headings are the ones the bench printed before the
    // librdkafka load existed.
    let (producer, consumer, cost_of, all_ok) = match client {
        Client::Java => (
            "ProducerPerformance",
            "ConsumerPerformance",
            "",
            "Every record was acknowledged and read back on every path.",
        ),
        Client::Rdkafka => (
            "librdkafka, idempotent, linger.ms=5",
            "librdkafka",
            " under the librdkafka load",
            "librdkafka: every record was acknowledged and read back on every path.",
        ),
    };
    let produce_mb = |t: &str| best_of(of(runs, t).iter().map(|r| r.produce.phase.mb_per_s()));
    let consume_mb = |t: &str| best_of(of(runs, t).iter().map(|r| r.consume.phase.mb_per_s()));
    // `value` against every baseline row, as table cells.
    let vs = |value: f64, base: &dyn Fn(&str) -> Option<(f64, f64)>| {
        BASELINES
            .iter()
            .map(|b| ratio(value, base(b)))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    // Median per-round ratios against every baseline row, as table cells.
    let per_round = |target: &str, figure: fn(&Run) -> f64| {
        BASELINES
            .iter()
            .map(|b| median_round_ratio(runs, target, b, figure))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let vs_header = BASELINES
        .map(|b| format!("vs {b}"))
        .into_iter()
        .chain(BASELINES.map(|b| format!("median round vs {b}")))
        .collect::<Vec<_>>()
        .join(" | ");
    let vs_rule = "---|".repeat(2 * BASELINES.len());
    let rounds = params.rounds;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nProduce ({producer}): {} x {} B, acks=all; best of {rounds} rounds (spread between rounds)\n",
        params.records, params.record_size
    );
    let _ = writeln!(
        out,
        "| target | MB/s | records/s | spread | p50 ms | p99 ms | {vs_header} |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|{vs_rule}");
    for target in targets {
        let Some((mb, spread)) = produce_mb(target) else {
            continue;
        };
        let best = of(runs, target)
            .into_iter()
            .max_by(|a, b| {
                a.produce
                    .phase
                    .mb_per_s()
                    .total_cmp(&b.produce.phase.mb_per_s())
            })
            .expect("a run");
        let _ = writeln!(
            out,
            "| {target} | {mb:.2} | {:.0} | {:.0}% | {} | {} | {} | {} |",
            best.produce.phase.msgs_per_s(),
            100.0 * spread,
            whole_ms(best.produce.phase.p50_ms),
            whole_ms(best.produce.phase.p99_ms),
            vs(mb, &produce_mb),
            per_round(target, |r| r.produce.phase.mb_per_s()),
        );
    }
    let _ = writeln!(
        out,
        "\nConsume ({consumer}, fresh group, fetch time only); best of {rounds}\n"
    );
    let _ = writeln!(
        out,
        "| target | MB/s | records/s | spread | join ms | {vs_header} |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|{vs_rule}");
    for target in targets {
        let Some((mb, spread)) = consume_mb(target) else {
            continue;
        };
        let best = of(runs, target)
            .into_iter()
            .max_by(|a, b| {
                a.consume
                    .phase
                    .mb_per_s()
                    .total_cmp(&b.consume.phase.mb_per_s())
            })
            .expect("a run");
        let _ = writeln!(
            out,
            "| {target} | {mb:.2} | {:.0} | {:.0}% | {} | {} | {} |",
            best.consume.phase.msgs_per_s(),
            100.0 * spread,
            best.consume
                .join_ms
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
            vs(mb, &consume_mb),
            per_round(target, |r| r.consume.phase.mb_per_s()),
        );
    }
    let _ = writeln!(
        out,
        "\nCutover's own cost{cost_of}, summed over {rounds} rounds: CPU seconds per GB of record values \
         (utime+stime from /proc), and split requests / requests forwarded\n"
    );
    let _ = writeln!(
        out,
        "| target | produce CPU s/GB | consume CPU s/GB | produce split | consume split |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for target in targets {
        let (Some(produce), Some(consume)) = (
            cutover_totals(runs, target, "produce"),
            cutover_totals(runs, target, "consume"),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {target} | {:.2} | {:.2} | {:.1}% | {:.1}% |",
            produce.0,
            consume.0,
            100.0 * produce.1,
            100.0 * consume.1
        );
    }
    compare::cpu_table(&mut out, runs, targets, &client.phases());
    compare::list_problems(&mut out, runs, all_ok);
    print!("{out}");
}
