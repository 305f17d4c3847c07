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
//!
//! Each target runs `redis-benchmark -t set,get -c 50 -r 100000 --csv` with
//! `-P 1` and `-P 32`. N is chosen per run from a short probe so each
//! redis-benchmark run takes about [`SECONDS_PER_OP`] per op (~5-10 s per run);
//! the whole bench stays within about 3-4 minutes. ops/s, p50 and p99 come
//! from redis-benchmark's CSV. CPU% of each server process over the run is
//! read from /proc/<pid>/stat (100% = one core; the machine may have few).

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Child, Cutover, Redis, Scratch};

/// Parallel clients of redis-benchmark.
const CLIENTS: u32 = 50;
/// Random key space, so writes in `dual_write` are not all coalesced onto one key.
const KEYSPACE: u32 = 100_000;
/// Wall time aimed at per op (SET, GET) per run.
const SECONDS_PER_OP: f64 = 4.0;
/// Bounds on N.
const MIN_REQUESTS: u64 = 20_000;
const MAX_REQUESTS: u64 = 20_000_000;
/// A redis-benchmark run that takes longer than this is killed.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
const PIPELINES: [u32; 2] = [1, 32];

#[derive(Clone, Debug)]
struct Row {
    target: String,
    pipeline: u32,
    op: String,
    rps: f64,
    p50: f64,
    p99: f64,
}

struct CpuNote {
    target: String,
    pipeline: u32,
    requests: u64,
    wall: f64,
    cpu: Vec<(String, f64)>,
}

struct Target<'a> {
    name: &'a str,
    port: u16,
    /// Processes whose CPU use is reported: (label, pid).
    watch: Vec<(&'a str, u32)>,
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
    let _twemproxy = start_twemproxy(&nutcracker, dir, twem_port, source.port);
    let (haproxy_port, haproxy_child) = start_haproxy(&haproxy, dir, source.port);
    let cutover_port = common::free_port();
    let cutover = Cutover::start(
        dir,
        cutover_port,
        &format!(
            r#"clusters:
  - {{ name: cache-old, protocol: redis, endpoints: ["127.0.0.1:{s}"] }}
  - {{ name: cache-new, protocol: redis, endpoints: ["127.0.0.1:{t}"] }}
migrations:
  - name: cache
    protocol: redis
    listen: 127.0.0.1:{cutover_port}
    source: cache-old
    target: cache-new
    topics: [ {{ name: rest, match: "*" }} ]
    redis: {{ backfill_on_enter: false }}
"#,
            s = source.port,
            t = target.port
        ),
    );

    println!(
        "redis_compare: redis-benchmark -t set,get -c {CLIENTS} -r {KEYSPACE} -P {PIPELINES:?}"
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
            watch: vec![("nutcracker", _twemproxy.pid()), ("redis", redis_pid)],
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

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for t in &targets {
        for p in PIPELINES {
            run_target(&benchmark, dir, t, p, &mut rows, &mut notes);
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
    for p in PIPELINES {
        run_target(&benchmark, dir, &dual, p, &mut rows, &mut notes);
    }
    // Give the copier a moment, then show the writes really reached the target.
    std::thread::sleep(Duration::from_secs(1));
    let target_keys_after = target.dbsize();

    print_tables(&rows, &notes);
    println!();
    println!(
        "dual_write sanity: target redis DBSIZE {target_keys_before} before the dual_write runs, {target_keys_after} after (source: {})",
        source.dbsize()
    );
    summarize(&rows);
    println!("total bench time {:.0} s", started.elapsed().as_secs_f64());
}

/// Probes, sizes N, runs redis-benchmark once, records rows and CPU use.
fn run_target(
    benchmark: &Path,
    dir: &Path,
    target: &Target<'_>,
    pipeline: u32,
    rows: &mut Vec<Row>,
    notes: &mut Vec<CpuNote>,
) {
    let probe_n = if pipeline == 1 { 10_000 } else { 100_000 };
    let probe = redis_benchmark(benchmark, dir, target.port, pipeline, probe_n);
    let slowest = probe.iter().map(|r| r.rps).fold(f64::INFINITY, f64::min);
    let requests = ((slowest * SECONDS_PER_OP) as u64).clamp(MIN_REQUESTS, MAX_REQUESTS);

    let ticks = common::clock_ticks_per_second();
    let before: Vec<u64> = target
        .watch
        .iter()
        .map(|(_, pid)| common::cpu_ticks(*pid))
        .collect();
    let start = Instant::now();
    let measured = redis_benchmark(benchmark, dir, target.port, pipeline, requests);
    let wall = start.elapsed().as_secs_f64();
    let cpu = target
        .watch
        .iter()
        .zip(before)
        .map(|((label, pid), b)| {
            let used = common::cpu_ticks(*pid).saturating_sub(b) as f64 / ticks;
            ((*label).to_owned(), 100.0 * used / wall)
        })
        .collect();
    for (op, rps, p50, p99) in measured.iter().map(|r| (&r.op, r.rps, r.p50, r.p99)) {
        println!(
            "  {:<20} -P {pipeline:<2} {op:<3} n={requests:<9} {rps:>11.0} ops/s  p50 {p50:.3} ms  p99 {p99:.3} ms",
            target.name
        );
    }
    rows.extend(measured.into_iter().map(|r| Row {
        target: target.name.to_owned(),
        pipeline,
        ..r
    }));
    notes.push(CpuNote {
        target: target.name.to_owned(),
        pipeline,
        requests,
        wall,
        cpu,
    });
}

/// One `redis-benchmark --csv` run: a row per op (target/pipeline left blank).
fn redis_benchmark(benchmark: &Path, dir: &Path, port: u16, pipeline: u32, n: u64) -> Vec<Row> {
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
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(
                status.success(),
                "redis-benchmark on port {port} failed ({status}):\n{}",
                common::tail(&out_path, 20)
            );
            break;
        }
        assert!(
            start.elapsed() < RUN_DEADLINE,
            "redis-benchmark on port {port} -P {pipeline} -n {n} took over {RUN_DEADLINE:?}; killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child);
    let csv = std::fs::read_to_string(&out_path).unwrap_or_default();
    let rows = parse_csv(&csv);
    assert!(
        rows.len() == 2,
        "unexpected redis-benchmark output on port {port}:\n{csv}"
    );
    rows
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
                target: String::new(),
                pipeline: 0,
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
            "global\n  maxconn 20000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\nbackend be\n  server redis 127.0.0.1:{redis} maxconn 20000\n"
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

fn print_tables(rows: &[Row], notes: &[CpuNote]) {
    let find = |target: &str, p: u32, op: &str| {
        rows.iter()
            .find(|r| r.target == target && r.pipeline == p && r.op == op)
            .map(|r| r.rps)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| target | -P | op | ops/s | p50 ms | p99 ms | vs direct | vs twemproxy |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let ratio = |base: Option<f64>| {
            base.map_or_else(|| "-".to_owned(), |b| format!("{:.2}", r.rps / b))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} |",
            r.target,
            r.pipeline,
            r.op,
            r.rps,
            r.p50,
            r.p99,
            ratio(find("direct", r.pipeline, &r.op)),
            ratio(find("twemproxy", r.pipeline, &r.op)),
        );
    }
    let _ = writeln!(
        out,
        "\nCPU during each run (100% = one core), from /proc/<pid>/stat:\n"
    );
    let _ = writeln!(out, "| target | -P | n per op | wall s | CPU |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for n in notes {
        let cpu: Vec<String> = n
            .cpu
            .iter()
            .map(|(label, pct)| format!("{label} {pct:.0}%"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} |",
            n.target,
            n.pipeline,
            n.requests,
            n.wall,
            cpu.join(", ")
        );
    }
    print!("{out}");
}

/// Plain-words comparison of cutover against twemproxy.
fn summarize(rows: &[Row]) {
    println!();
    for p in PIPELINES {
        for op in ["SET", "GET"] {
            let get = |t: &str| {
                rows.iter()
                    .find(|r| r.target == t && r.pipeline == p && r.op == op)
                    .map(|r| r.rps)
            };
            if let (Some(twem), Some(src), Some(dual)) = (
                get("twemproxy"),
                get("cutover source"),
                get("cutover dual_write"),
            ) {
                println!(
                    "-P {p:<2} {op}: cutover source {:.0}% of twemproxy, dual_write {:.0}% of twemproxy",
                    100.0 * src / twem,
                    100.0 * dual / twem
                );
            }
        }
    }
}
