//! Allocations per request in `source` state, per protocol (issue 19's
//! "≤ 5 for Kafka Produce and RocketMQ send").
//!
//! The proxy runs in this process on its own runtime, under a global
//! allocator that counts allocations (and reallocations) per thread; the
//! runtime's threads fold theirs into one total each time they park. The
//! load is a raw client on the bench's main thread (not counted) sending
//! one request at a time against real peers, so the count is the proxy's:
//! allocations during N requests, minus what the proxy's background tasks
//! allocated at rest over as long, divided by N.
//!
//! One module per protocol (`redis`, `kafka`, `rocketmq`), each returning
//! its [`Row`]s; `ALLOC_BENCH_PROTOCOLS` (comma list) picks some,
//! `ALLOC_BENCH_REQUESTS` sets N (default 20 000).

#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

mod kafka;
mod redis;
mod rocketmq;

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::compare::{env_list, env_var};

#[global_allocator]
static ALLOCATOR: densa_alloc::CountingAllocator = densa_alloc::CountingAllocator::system();

/// Allocations (and reallocations) of the proxy's runtime threads, folded
/// in from each thread's own counters whenever it parks or stops: a
/// sequential client leaves every worker parked between requests, so the
/// total is exact at the points the bench reads it.
static PROXY_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's count already folded into [`PROXY_ALLOCATIONS`].
    static FOLDED: Cell<u64> = const { Cell::new(0) };
}

fn fold_this_thread() {
    let stats = densa_alloc::thread_stats();
    let now = stats.allocs + stats.reallocs;
    let before = FOLDED.with(|f| f.replace(now));
    PROXY_ALLOCATIONS.fetch_add(now - before, Ordering::Relaxed);
}

fn start_counting_this_thread() {
    let stats = densa_alloc::thread_stats();
    FOLDED.with(|f| f.set(stats.allocs + stats.reallocs));
}

/// Allocations the proxy's threads made so far.
fn allocations() -> u64 {
    PROXY_ALLOCATIONS.load(Ordering::Relaxed)
}

/// How long the proxy's listener may take to accept.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Starts cutover on the config at `path`, on its own counted runtime in a
/// background thread (the process exits at the end of the bench, which
/// ends it), and waits until `listen` accepts.
fn start_proxy(path: &Path, listen: u16) {
    let config = cutover::config::load(path).unwrap_or_else(|errors| {
        panic!("bench config refused: {errors:?}");
    });
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(start_counting_this_thread)
            .on_thread_park(fold_this_thread)
            .on_thread_stop(fold_this_thread)
            .build()
            .expect("proxy runtime");
        runtime
            .block_on(cutover::app::run(config))
            .expect("cutover runs");
    });
    common::wait_until("the proxy listens", READY_DEADLINE, || {
        std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok()
    });
}

/// One measured request kind.
pub struct Row {
    protocol: &'static str,
    request: &'static str,
    requests: u64,
    per_request: f64,
    background: f64,
    micros: f64,
}

/// Runs `one` (one whole request and its answer) `warm` times, then `n`
/// times counting the proxy's allocations; subtracts the background rate
/// measured at rest for as long as the counted run took.
fn measure(protocol: &'static str, request: &'static str, n: u64, mut one: impl FnMut(u64)) -> Row {
    let warm = (n / 10).max(100);
    for i in 0..warm {
        one(i);
    }
    let before = allocations();
    let started = Instant::now();
    for i in 0..n {
        one(warm + i);
    }
    let elapsed = started.elapsed();
    let during = allocations() - before;
    let rest = allocations();
    std::thread::sleep(elapsed.min(Duration::from_secs(5)));
    let idle = allocations() - rest;
    #[allow(clippy::cast_precision_loss)]
    let background =
        idle as f64 * elapsed.as_secs_f64() / elapsed.min(Duration::from_secs(5)).as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let per_request = ((during as f64 - background) / n as f64).max(0.0);
    #[allow(clippy::cast_precision_loss)]
    let micros = elapsed.as_secs_f64() * 1e6 / n as f64;
    Row {
        protocol,
        request,
        requests: n,
        per_request,
        background,
        micros,
    }
}

/// The protocols this bench measures, in order.
const PROTOCOLS: &[&str] = &["redis", "kafka", "rocketmq"];

/// Set on the child process that measures one protocol.
const ONE: &str = "ALLOC_BENCH_ONE";

fn main() {
    assert!(
        densa_alloc::is_active(),
        "the counting allocator is not the global allocator"
    );
    let n: u64 = env_var("ALLOC_BENCH_REQUESTS", 20_000);
    if let Ok(protocol) = std::env::var(ONE) {
        // One proxy per process: the metrics recorder installs once.
        cutover::telemetry::init(cutover::telemetry::LogFormat::Text);
        let rows = match protocol.as_str() {
            "redis" => redis::run(n),
            "kafka" => kafka::run(n),
            "rocketmq" => rocketmq::run(n),
            other => panic!("{ONE}={other}: unknown protocol"),
        };
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.1} | {:.0} | {:.0} |",
                r.protocol, r.request, r.requests, r.per_request, r.background, r.micros
            );
        }
        // The proxy's runtime thread never returns; leave without joining it.
        std::process::exit(0);
    }
    let picked = env_list("ALLOC_BENCH_PROTOCOLS");
    println!(
        "alloc_per_request: {n} sequential requests per kind, cutover in process on 2 counted runtime threads, {} CPUs",
        common::cpu_count()
    );
    let mut table = String::new();
    for protocol in PROTOCOLS {
        if picked
            .as_ref()
            .is_some_and(|l| !l.iter().any(|x| x == protocol))
        {
            continue;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .env(ONE, protocol)
            // Warnings only, as the other benches run cutover.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run one protocol");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            if line.starts_with("| ") {
                table.push_str(line);
                table.push('\n');
            } else {
                println!("{protocol}: {line}");
            }
        }
        assert!(out.status.success(), "{protocol} measurement failed");
    }
    println!();
    println!(
        "| protocol | request (`source` state) | requests | allocations per request | background allocations subtracted | µs per round trip |"
    );
    println!("|---|---|---|---|---|---|");
    print!("{table}");
}
