//! redis-benchmark through cutover next to redis-server alone and the usual
//! peer proxies.
//!
//! Run: `cargo bench --bench redis_compare` (cargo builds `cutover` with the
//! bench profile = release optimisations). Needs redis-server,
//! redis-benchmark, nutcracker and haproxy (`tests/peers/install.sh redis proxies`).
//!
//! Targets, all in front of the same redis-server "source":
//! - `direct`: redis-server itself;
//! - `twemproxy`: nutcracker, `redis: true`, one server;
//! - `haproxy`: TCP mode, one server, default threads;
//! - `cutover source`: the keyspace `rest` (`*`) in `source` state;
//! - `cutover dual_write`: the same proxy after `ctl advance cache rest`
//!   twice, so every write is also converged onto a second redis-server
//!   "target" (backfill disabled, so only the benchmark's own writes copy).
//!   Afterwards the bench waits (bounded) for the copy backlog to drain and
//!   checks the target holds every key.
//!
//! Each target runs `redis-benchmark -t set,get -c 50 -r 100000 --csv` with
//! `-P 1` and `-P 32`; N is sized from a short probe so a run takes about
//! [`SECONDS_PER_OP`] per op (~6 s per run). Small shared machines are noisy,
//! so there are [`ROUNDS`] rounds, interleaved across targets, and the table
//! shows each cell's best round with the spread between rounds. ops/s, p50
//! and p99 come from redis-benchmark's CSV. CPU% of each process over a run
//! comes from /proc/<pid>/stat (100% = one core), and "other" is what the
//! rest of the machine used meanwhile (from /proc/stat), to spot interference.
//! Whole bench: about 3 minutes.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Child, Cutover, Migration, Redis, Scratch};

/// Parallel clients of redis-benchmark.
const CLIENTS: u32 = 50;
/// Random key space, so writes in `dual_write` are not all coalesced onto one key.
const KEYSPACE: u32 = 100_000;
/// Wall time aimed at per op (SET, GET) per run.
const SECONDS_PER_OP: f64 = 3.0;
/// Rounds over every target; the best is reported.
const ROUNDS: usize = 2;
/// Bounds on N.
const MIN_REQUESTS: u64 = 20_000;
const MAX_REQUESTS: u64 = 20_000_000;
/// A redis-benchmark run that takes longer than this is killed.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
const PIPELINES: [u32; 2] = [1, 32];
/// How long the copier may take to drain after the dual_write runs.
const DRAIN_DEADLINE: Duration = Duration::from_secs(90);

/// One op's result of one redis-benchmark run.
#[derive(Clone, Debug)]
struct Row {
    op: String,
    rps: f64,
    p50: f64,
    p99: f64,
}

/// One redis-benchmark run against one target.
struct Run {
    target: String,
    pipeline: u32,
    requests: u64,
    wall: f64,
    rows: Vec<Row>,
    /// CPU% of the watched processes, redis-benchmark, and everything else.
    cpu: Vec<(String, f64)>,
}

struct Target<'a> {
    name: &'a str,
    port: u16,
    /// Processes whose CPU use is reported: (label, pid).
    watch: Vec<(&'a str, u32)>,
}

struct Bench<'a> {
    benchmark: &'a Path,
    dir: &'a Path,
    runs: Vec<Run>,
    /// N chosen per (target, pipeline) in the first round.
    sizes: Vec<(String, u32, u64)>,
}

fn main() {
    let benchmark = common::require("redis-benchmark");
    let nutcracker = common::require("nutcracker");
    let haproxy = common::require("haproxy");
    common::require("redis-server");
    let started = Instant::now();
    let scratch = Scratch::new("cutover-bench-compare-");
    let dir = &scratch.path;

    let source = Redis::start(dir, "redis-source", &[]);
    let target = Redis::start(dir, "redis-target", &[]);
    let twem_port = common::free_port();
    let twemproxy = start_twemproxy(&nutcracker, dir, twem_port, source.port);
    let (haproxy_port, haproxy_child) = start_haproxy(&haproxy, dir, source.port);
    let cutover_port = common::free_port();
    let (s, t) = (
        format!("127.0.0.1:{}", source.port),
        format!("127.0.0.1:{}", target.port),
    );
    let cutover = Cutover::start_migration(
        dir,
        cutover_port,
        &Migration {
            name: "cache",
            protocol: "redis",
            clusters: ["cache-old", "cache-new"],
            endpoints: [&s, &t],
            topics: r#"[ { name: rest, match: "*" } ]"#,
            extra: "redis: { backfill_on_enter: false }",
        },
    );

    println!(
        "redis_compare: redis-benchmark -t set,get -c {CLIENTS} -r {KEYSPACE} -P {PIPELINES:?}, {ROUNDS} rounds, {} CPUs",
        common::cpu_count()
    );
    println!("cutover binary: {}", common::CUTOVER);
    let redis_pid = source.child.pid();
    let targets = [
        Target {
            name: "direct",
            port: source.port,
            watch: vec![("redis", redis_pid)],
        },
        Target {
            name: "twemproxy",
            port: twem_port,
            watch: vec![("nutcracker", twemproxy.pid()), ("redis", redis_pid)],
        },
        Target {
            name: "haproxy",
            port: haproxy_port,
            watch: vec![("haproxy", haproxy_child.pid()), ("redis", redis_pid)],
        },
        Target {
            name: "cutover source",
            port: cutover_port,
            watch: vec![("cutover", cutover.child.pid()), ("redis", redis_pid)],
        },
    ];

    let mut bench = Bench {
        benchmark: &benchmark,
        dir,
        runs: Vec::new(),
        sizes: Vec::new(),
    };
    // Fill the key space first, so the first measured SET run does not pay
    // for creating keys (and rehashing) that later runs only overwrite.
    redis_benchmark(
        &benchmark,
        dir,
        source.port,
        32,
        u64::from(KEYSPACE) * 3,
        None,
    );

    for _ in 0..ROUNDS {
        for t in &targets {
            for p in PIPELINES {
                bench.run(t, p);
            }
        }
    }

    // source -> dual_read -> dual_write.
    for step in ["dual_read", "dual_write"] {
        let (ok, out) = cutover.ctl(&["advance", "cache", "rest"]);
        if !ok {
            println!("advance to {step} refused, forcing:\n{}", out.trim());
            let (ok, out) = cutover.ctl(&["advance", "cache", "rest", "--force"]);
            assert!(ok, "advance to {step} failed:\n{out}");
        }
    }
    let (_, status) = cutover.ctl(&["status"]);
    assert!(
        status.contains("dual_write"),
        "cutover did not reach dual_write:\n{status}"
    );
    let target_keys_before = target.dbsize();
    let dual = Target {
        name: "cutover dual_write",
        port: cutover_port,
        watch: vec![
            ("cutover", cutover.child.pid()),
            ("redis", redis_pid),
            ("redis-target", target.child.pid()),
        ],
    };
    for _ in 0..ROUNDS {
        for p in PIPELINES {
            bench.run(&dual, p);
        }
    }
    // The writes must really reach the target: wait (bounded) for the copier
    // to drain what the runs left queued, and time it.
    let target_keys_after_runs = target.dbsize();
    let backlog_after_runs = copy_backlog(&cutover);
    let drain_start = Instant::now();
    let mut backlog_now = backlog_after_runs;
    while backlog_now.is_some_and(|b| b > 0) && drain_start.elapsed() < DRAIN_DEADLINE {
        std::thread::sleep(Duration::from_millis(250));
        backlog_now = copy_backlog(&cutover);
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let target_keys_after = target.dbsize();

    let targets: Vec<&str> = targets.iter().map(|t| t.name).chain([dual.name]).collect();
    print_tables(&bench.runs, &targets);
    println!();
    println!(
        "dual_write convergence: target DBSIZE {target_keys_before} before the dual_write runs, \
         {target_keys_after_runs} when they ended (copy backlog + repair set {}), \
         {target_keys_after} after {drain_secs:.1} s of draining (backlog now {}; \
         ~{:.0} keys/s copied while draining); source DBSIZE {}",
        show(backlog_after_runs),
        show(backlog_now),
        target_keys_after.saturating_sub(target_keys_after_runs) as f64 / drain_secs.max(1e-3),
        source.dbsize()
    );
    summarize(&bench.runs);
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
}

/// Keys queued for copy plus the repair set, over every keyspace, from
/// `/api/v1/status` (`details.copy_backlog`, `details.repair_set`).
fn copy_backlog(cutover: &Cutover) -> Option<u64> {
    let body = common::admin_get(&cutover.socket, "/api/v1/status")?;
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut total = 0;
    for migration in status["migrations"].as_array()? {
        for topic in migration["topics"].as_array()? {
            let details = &topic["details"];
            total += details["copy_backlog"].as_u64()? + details["repair_set"].as_u64()?;
        }
    }
    Some(total)
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

impl Bench<'_> {
    /// One measured run (sized by a probe the first time), with CPU use.
    fn run(&mut self, target: &Target<'_>, pipeline: u32) {
        let known = self
            .sizes
            .iter()
            .find(|(t, p, _)| t == target.name && *p == pipeline)
            .map(|(_, _, n)| *n);
        let requests = known.unwrap_or_else(|| {
            let probe_n = if pipeline == 1 { 10_000 } else { 100_000 };
            let (probe, _) = redis_benchmark(
                self.benchmark,
                self.dir,
                target.port,
                pipeline,
                probe_n,
                None,
            );
            let slowest = probe.iter().map(|r| r.rps).fold(f64::INFINITY, f64::min);
            let n = ((slowest * SECONDS_PER_OP) as u64).clamp(MIN_REQUESTS, MAX_REQUESTS);
            self.sizes.push((target.name.to_owned(), pipeline, n));
            n
        });

        let ticks = common::clock_ticks_per_second();
        let before: Vec<u64> = target
            .watch
            .iter()
            .map(|(_, pid)| common::cpu_ticks(*pid))
            .collect();
        let machine_before = common::machine_ticks();
        let start = Instant::now();
        let (rows, bench_ticks) = redis_benchmark(
            self.benchmark,
            self.dir,
            target.port,
            pipeline,
            requests,
            Some(()),
        );
        let wall = start.elapsed().as_secs_f64();
        let machine_after = common::machine_ticks();
        let pct = |t: u64| 100.0 * t as f64 / ticks / wall;
        let mut cpu: Vec<(String, f64)> = Vec::new();
        let mut accounted = 0;
        for ((label, pid), b) in target.watch.iter().zip(before) {
            let used = common::cpu_ticks(*pid).saturating_sub(b);
            accounted += used;
            cpu.push(((*label).to_owned(), pct(used)));
        }
        accounted += bench_ticks;
        cpu.push(("redis-benchmark".to_owned(), pct(bench_ticks)));
        // Machine ticks count every CPU: busy share of all of them, in cores.
        let (busy, total) = (
            machine_after.0.saturating_sub(machine_before.0),
            machine_after.1.saturating_sub(machine_before.1),
        );
        let busy_cores = if total == 0 {
            0.0
        } else {
            busy as f64 / total as f64 * common::cpu_count() as f64
        };
        let other = (100.0 * busy_cores - pct(accounted)).max(0.0);
        cpu.push(("other".to_owned(), other));

        for r in &rows {
            println!(
                "  {:<20} -P {pipeline:<2} {:<3} n={requests:<9} {:>11.0} ops/s  p50 {:.3} ms  p99 {:.3} ms",
                target.name, r.op, r.rps, r.p50, r.p99
            );
        }
        self.runs.push(Run {
            target: target.name.to_owned(),
            pipeline,
            requests,
            wall,
            rows,
            cpu,
        });
    }
}

/// One `redis-benchmark --csv` run: a row per op, and (when `track_cpu`)
/// redis-benchmark's own CPU ticks, sampled while it runs.
fn redis_benchmark(
    benchmark: &Path,
    dir: &Path,
    port: u16,
    pipeline: u32,
    n: u64,
    track_cpu: Option<()>,
) -> (Vec<Row>, u64) {
    let out_path = dir.join("redis-benchmark.csv");
    let _ = std::fs::remove_file(&out_path);
    let mut command = Command::new(benchmark);
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "set,get", "--csv"])
        .args(["-n", &n.to_string()])
        .args(["-c", &CLIENTS.to_string()])
        .args(["-P", &pipeline.to_string()])
        .args(["-r", &KEYSPACE.to_string()]);
    let mut child = Child::spawn("redis-benchmark", &mut command, &out_path);
    let start = Instant::now();
    let mut ticks = 0;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(
                status.success(),
                "redis-benchmark on port {port} failed ({status}):\n{}",
                common::tail(&out_path, 20)
            );
            break;
        }
        if track_cpu.is_some() {
            // The last reading before exit misses at most one poll interval.
            ticks = ticks.max(common::cpu_ticks(child.pid()));
        }
        assert!(
            start.elapsed() < RUN_DEADLINE,
            "redis-benchmark on port {port} -P {pipeline} -n {n} took over {RUN_DEADLINE:?}; killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(child);
    let csv = std::fs::read_to_string(&out_path).unwrap_or_default();
    let rows = parse_csv(&csv);
    assert!(
        rows.len() == 2,
        "unexpected redis-benchmark output on port {port}:\n{csv}"
    );
    (rows, ticks)
}

/// redis-benchmark 7 CSV: `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...`.
fn parse_csv(csv: &str) -> Vec<Row> {
    let split = |line: &str| -> Vec<String> {
        line.split(',')
            .map(|f| f.trim().trim_matches('"').to_owned())
            .collect()
    };
    let mut lines = csv.lines().filter(|l| l.starts_with('"'));
    let Some(header) = lines.next().map(split) else {
        return Vec::new();
    };
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(test), Some(rps), Some(p50), Some(p99)) = (
        column("test"),
        column("rps"),
        column("p50_latency_ms"),
        column("p99_latency_ms"),
    ) else {
        return Vec::new();
    };
    lines
        .map(split)
        .filter_map(|f| {
            Some(Row {
                op: f.get(test)?.clone(),
                rps: f.get(rps)?.parse().ok()?,
                p50: f.get(p50)?.parse().ok()?,
                p99: f.get(p99)?.parse().ok()?,
            })
        })
        .collect()
}

fn start_twemproxy(bin: &Path, dir: &Path, port: u16, redis: u16) -> Child {
    let config = dir.join("nutcracker.yml");
    std::fs::write(
        &config,
        format!(
            "bench:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: fnv1a_64\n  distribution: ketama\n  auto_eject_hosts: false\n  timeout: 30000\n  servers:\n    - 127.0.0.1:{redis}:1\n"
        ),
    )
    .expect("write nutcracker.yml");
    let log = dir.join("nutcracker.log");
    let stats = common::free_port();
    let mut command = Command::new(bin);
    command
        .arg("-c")
        .arg(&config)
        .args(["-s", &stats.to_string(), "-a", "127.0.0.1", "-v", "4"])
        .arg("-o")
        .arg(&log);
    let mut child = Child::spawn("nutcracker", &mut command, &dir.join("nutcracker.out"));
    common::wait_until("nutcracker to answer PING", Duration::from_secs(10), || {
        child.assert_alive(&log);
        common::pings(port)
    });
    child
}

fn start_haproxy(bin: &Path, dir: &Path, redis: u16) -> (u16, Child) {
    let port = common::free_port();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\nbackend be\n  server redis 127.0.0.1:{redis} maxconn 4096\n"
        ),
    )
    .expect("write haproxy.cfg");
    let log = dir.join("haproxy.log");
    let mut command = Command::new(bin);
    command.arg("-db").arg("-f").arg(&config);
    let mut child = Child::spawn("haproxy", &mut command, &log);
    common::wait_until("haproxy to answer PING", Duration::from_secs(10), || {
        child.assert_alive(&log);
        common::pings(port)
    });
    (port, child)
}

/// Each cell's best round: (row, spread between rounds as a fraction of the best).
fn best(runs: &[Run], target: &str, pipeline: u32, op: &str) -> Option<(Row, f64)> {
    let rows: Vec<&Row> = runs
        .iter()
        .filter(|r| r.target == target && r.pipeline == pipeline)
        .flat_map(|r| r.rows.iter().filter(|row| row.op == op))
        .collect();
    let top = rows.iter().max_by(|a, b| a.rps.total_cmp(&b.rps))?;
    let low = rows.iter().map(|r| r.rps).fold(f64::INFINITY, f64::min);
    Some(((*top).clone(), (top.rps - low) / top.rps))
}

fn print_tables(runs: &[Run], targets: &[&str]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| target | -P | op | ops/s (best of {ROUNDS}) | spread | p50 ms | p99 ms | vs direct | vs twemproxy |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for target in targets {
        for p in PIPELINES {
            for op in ["SET", "GET"] {
                let Some((row, spread)) = best(runs, target, p, op) else {
                    continue;
                };
                let ratio = |base: &str| {
                    best(runs, base, p, op).map_or_else(
                        || "-".to_owned(),
                        |(b, _)| format!("{:.2}", row.rps / b.rps),
                    )
                };
                let _ = writeln!(
                    out,
                    "| {target} | {p} | {op} | {:.0} | {:.0}% | {:.3} | {:.3} | {} | {} |",
                    row.rps,
                    100.0 * spread,
                    row.p50,
                    row.p99,
                    ratio("direct"),
                    ratio("twemproxy"),
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nCPU per run, mean of rounds (100% = one core of {}), from /proc:\n",
        common::cpu_count()
    );
    let _ = writeln!(out, "| target | -P | n per op | wall s | CPU |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for target in targets {
        for p in PIPELINES {
            let group: Vec<&Run> = runs
                .iter()
                .filter(|r| r.target == *target && r.pipeline == p)
                .collect();
            let Some(first) = group.first() else {
                continue;
            };
            let count = group.len() as f64;
            let cpu: Vec<String> = first
                .cpu
                .iter()
                .enumerate()
                .map(|(i, (label, _))| {
                    let mean = group.iter().map(|r| r.cpu[i].1).sum::<f64>() / count;
                    format!("{label} {mean:.0}%")
                })
                .collect();
            let wall = group.iter().map(|r| r.wall).sum::<f64>() / count;
            let _ = writeln!(
                out,
                "| {target} | {p} | {} | {wall:.1} | {} |",
                first.requests,
                cpu.join(", ")
            );
        }
    }
    print!("{out}");
}

/// Plain-words comparison of cutover against twemproxy.
fn summarize(runs: &[Run]) {
    println!();
    for p in PIPELINES {
        for op in ["SET", "GET"] {
            let get = |t: &str| best(runs, t, p, op).map(|(r, _)| r.rps);
            if let (Some(twem), Some(src), Some(dual)) = (
                get("twemproxy"),
                get("cutover source"),
                get("cutover dual_write"),
            ) {
                println!(
                    "-P {p:<2} {op}: cutover source {:.0}% of twemproxy's ops/s, dual_write {:.0}%",
                    100.0 * src / twem,
                    100.0 * dual / twem
                );
            }
        }
    }
}
