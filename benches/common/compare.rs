//! Shared plumbing of the protocol comparison benches (`kafka_compare`,
//! `rocketmq_compare`): environment knobs, target selection, interleaved
//! rounds, CPU accounting per phase from /proc, bounded child waits, and the
//! pieces of the best-of-rounds tables.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::{Child, Cutover, clock_ticks_per_second, cpu_count, cpu_ticks, machine_ticks};

/// `name` from the environment parsed as `T`; `default` when unset or blank.
pub fn env_var<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
        _ => default,
    }
}

/// A comma-separated list from the environment (e.g. `*_BENCH_TARGETS`).
pub fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name).ok().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// The entries of `all` named in `only` (all of them when `None`); panics,
/// naming `var`, when that leaves none.
pub fn select<S: Copy>(
    all: &[(&'static str, S)],
    only: Option<&[String]>,
    var: &str,
) -> Vec<(&'static str, S)> {
    let selected: Vec<(&'static str, S)> = all
        .iter()
        .copied()
        .filter(|(name, _)| only.is_none_or(|only| only.iter().any(|o| o == name)))
        .collect();
    assert!(
        !selected.is_empty(),
        "{var} names none of {:?}",
        all.iter().map(|(n, _)| *n).collect::<Vec<_>>()
    );
    selected
}

/// Runs `run(target, round)` for every round, interleaving the targets
/// within each round so drift over time hits them all alike.
pub fn interleave<T, R>(
    rounds: usize,
    targets: &[T],
    mut run: impl FnMut(&T, usize) -> R,
) -> Vec<R> {
    let mut runs = Vec::new();
    for round in 0..rounds {
        for target in targets {
            runs.push(run(target, round));
        }
    }
    runs
}

/// A target name as a topic/group-name fragment.
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// One path to the source cluster, with the processes it owns (killed on drop).
pub struct Target {
    pub name: &'static str,
    /// Where the clients connect: Kafka `bootstrap.servers`, RocketMQ `--namesrv`.
    pub addr: String,
    /// Processes whose CPU use is reported per phase: (label, pid).
    pub watch: Vec<(&'static str, u32)>,
    pub processes: Vec<Child>,
    pub cutover: Option<Cutover>,
    /// Runs for every fresh topic after creation, before any load.
    pub prepare: fn(&Target, &str),
}

impl Target {
    /// `direct`: the source's own `addr`, watching the source process.
    pub fn direct(addr: String, source: (&'static str, u32)) -> Target {
        Target {
            name: "direct",
            addr,
            watch: vec![source],
            processes: Vec::new(),
            cutover: None,
            prepare: no_prepare,
        }
    }

    /// `name` through `cutover` listening on `listen`, watching cutover and
    /// the source process.
    pub fn through_cutover(
        name: &'static str,
        listen: u16,
        cutover: Cutover,
        source: (&'static str, u32),
    ) -> Target {
        Target {
            name,
            addr: format!("127.0.0.1:{listen}"),
            watch: vec![("cutover", cutover.child.pid()), source],
            processes: Vec::new(),
            cutover: Some(cutover),
            prepare: no_prepare,
        }
    }
}

/// A [`Target::prepare`] that does nothing.
pub fn no_prepare(_: &Target, _: &str) {}

/// Sets up the entries of `all` named in `only` (all of them when `None`),
/// in order; panics, naming `var`, when that leaves none.
pub fn set_up<S: Copy>(
    all: &[(&'static str, S)],
    only: Option<&[String]>,
    var: &str,
    setup: impl Fn(S) -> Target,
) -> Vec<Target> {
    select(all, only, var)
        .into_iter()
        .map(|(name, s)| {
            let target = setup(s);
            assert_eq!(target.name, name, "setup of {name} returned another name");
            target
        })
        .collect()
}

/// [`report_cutover`] for every target that runs a cutover.
pub fn report_cutovers(targets: &[Target]) {
    for target in targets {
        if let Some(cutover) = &target.cutover {
            report_cutover(target.name, cutover);
        }
    }
}

/// Peers' install dir, as in tests/support: `$CUTOVER_PEERS` or `~/.cache/cutover-peers`.
pub fn peers_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CUTOVER_PEERS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("cutover-peers")
}

/// The first of `count` consecutive ports that were all free (on 0.0.0.0
/// and on 127.0.0.1) a moment ago.
pub fn free_port_run(count: u16) -> u16 {
    for _ in 0..200 {
        let first = super::free_port();
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

/// CPU ticks of the watched processes and of the machine, to diff after a phase.
pub struct CpuWatch {
    before: Vec<u64>,
    machine: (u64, u64),
    start: Instant,
}

impl CpuWatch {
    /// Starts watching `watch`: (label, pid) pairs.
    pub fn start(watch: &[(&'static str, u32)]) -> CpuWatch {
        CpuWatch {
            before: watch.iter().map(|(_, pid)| cpu_ticks(*pid)).collect(),
            machine: machine_ticks(),
            start: Instant::now(),
        }
    }

    /// CPU% per watched process (the same `watch` as at start), the client
    /// (`client_ticks`), and the rest of the machine (`other`).
    pub fn finish(self, watch: &[(&'static str, u32)], client_ticks: u64) -> Vec<(String, f64)> {
        let wall = self.start.elapsed().as_secs_f64();
        let ticks = clock_ticks_per_second();
        let pct = |t: u64| 100.0 * t as f64 / ticks / wall.max(1e-9);
        let mut cpu = Vec::new();
        let mut accounted = client_ticks;
        for ((label, pid), b) in watch.iter().zip(self.before) {
            let used = cpu_ticks(*pid).saturating_sub(b);
            accounted += used;
            cpu.push(((*label).to_owned(), pct(used)));
        }
        cpu.push(("client".to_owned(), pct(client_ticks)));
        let after = machine_ticks();
        let (busy, total) = (
            after.0.saturating_sub(self.machine.0),
            after.1.saturating_sub(self.machine.1),
        );
        let busy_cores = if total == 0 {
            0.0
        } else {
            busy as f64 / total as f64 * cpu_count() as f64
        };
        cpu.push((
            "other".to_owned(),
            (100.0 * busy_cores - pct(accounted)).max(0.0),
        ));
        cpu
    }
}

/// Polls a client process every 20 ms until `exited` reports its status,
/// tracking its CPU ticks (the last reading before exit misses at most one
/// poll). `Err(ticks)` once `deadline` passed with it still running.
pub fn wait_client(
    pid: u32,
    deadline: Duration,
    mut exited: impl FnMut() -> Option<ExitStatus>,
) -> Result<(ExitStatus, u64), u64> {
    let start = Instant::now();
    let mut client_ticks = 0;
    loop {
        if let Some(status) = exited() {
            return Ok((status, client_ticks));
        }
        client_ticks = client_ticks.max(cpu_ticks(pid));
        if start.elapsed() > deadline {
            return Err(client_ticks);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One phase's measurement.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// Messages sent (delivered) or consumed.
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Messages that went missing or failed.
    pub problems: Option<String>,
    pub cpu: Vec<(String, f64)>,
}

impl Phase {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }

    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
}

/// The `  !! problem` suffix of a round's line.
pub fn flag_problems(phases: &[&Phase]) -> String {
    phases
        .iter()
        .filter_map(|ph| ph.problems.as_deref())
        .map(|p| format!("  !! {p}"))
        .collect()
}

/// Best (highest) value over rounds and the spread (best - worst) / best.
pub fn best_of(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let values: Vec<f64> = values.into_iter().collect();
    let top = values.iter().copied().fold(f64::NAN, f64::max);
    let low = values.iter().copied().fold(f64::NAN, f64::min);
    (!top.is_nan()).then(|| (top, if top > 0.0 { (top - low) / top } else { 0.0 }))
}

/// Lowest value over rounds.
pub fn lowest(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.flatten().reduce(f64::min)
}

/// Milliseconds with two decimals, `-` when unknown.
pub fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// `value` against a best-of `base` as `1.23x`, `-` without a base.
pub fn ratio(value: f64, base: Option<(f64, f64)>) -> String {
    match base {
        Some((b, _)) if b > 0.0 => format!("{:.2}x", value / b),
        _ => "-".to_owned(),
    }
}

/// One round of one target: its phases, by name.
pub trait Round {
    fn target(&self) -> &str;
    fn phases(&self) -> Vec<(&'static str, &Phase)>;

    /// The phase called `name`.
    fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases()
            .into_iter()
            .find_map(|(n, ph)| (n == name).then_some(ph))
    }
}

/// The rounds of one target.
pub fn of<'a, R: Round>(runs: &'a [R], target: &str) -> Vec<&'a R> {
    runs.iter().filter(|r| r.target() == target).collect()
}

/// `label N%, ...`: the mean CPU% per process over a target's rounds of one phase.
pub fn mean_cpu(phases: &[&Phase]) -> String {
    let Some(first) = phases.first() else {
        return "-".to_owned();
    };
    let count = phases.len() as f64;
    first
        .cpu
        .iter()
        .enumerate()
        .map(|(i, (label, _))| {
            let m = phases.iter().map(|ph| ph.cpu[i].1).sum::<f64>() / count;
            format!("{label} {m:.0}%")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CPU table: a row per target, a column per phase in `phases`.
pub fn cpu_table<R: Round>(out: &mut String, runs: &[R], targets: &[&str], phases: &[&str]) {
    let _ = writeln!(
        out,
        "\nCPU per phase, mean of rounds (100% = one core of {}), from /proc:\n",
        cpu_count()
    );
    let _ = writeln!(out, "| target | {} |", phases.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(phases.len()));
    for target in targets {
        let group = of(runs, target);
        let cells: Vec<String> = phases
            .iter()
            .map(|name| {
                mean_cpu(
                    &group
                        .iter()
                        .filter_map(|r| r.phase(name))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let _ = writeln!(out, "| {target} | {} |", cells.join(" | "));
    }
}

/// `all_ok` when no phase of any round had problems, else an INCOMPLETE
/// RUNS list.
pub fn list_problems<R: Round>(out: &mut String, runs: &[R], all_ok: &str) {
    let problems: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.phases().into_iter().filter_map(move |(phase, ph)| {
                ph.problems
                    .as_ref()
                    .map(|p| format!("{} {phase}: {p}", r.target()))
            })
        })
        .collect();
    if problems.is_empty() {
        let _ = writeln!(out, "\n{all_ok}");
    } else {
        let _ = writeln!(out, "\nINCOMPLETE RUNS:");
        for p in problems {
            let _ = writeln!(out, "  {p}");
        }
    }
}

/// Proof the load went through the proxy (its metrics), and its log's warnings.
pub fn report_cutover(name: &str, cutover: &Cutover) {
    let metric = |name| cutover.metric(name).unwrap_or(f64::NAN);
    println!(
        "{name}: cutover_bytes_total {:.1} MB, cutover_requests_total {:.0}, \
         cutover_request_errors_total {:.0}, cutover_upstream_connect_errors_total {:.0}",
        metric("cutover_bytes_total") / 1e6 + 0.0,
        metric("cutover_requests_total") + 0.0,
        metric("cutover_request_errors_total") + 0.0,
        metric("cutover_upstream_connect_errors_total") + 0.0,
    );
    report_log(name, &cutover.log);
}

/// Prints how many WARN/ERROR lines a process logged, and the first few.
pub fn report_log(name: &str, log: &Path) {
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
