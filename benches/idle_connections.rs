//! 10,000 idle client connections: how fast the proxy takes them and what
//! each one costs in resident memory, next to redis-server itself.
//!
//! Run: `cargo bench --bench idle_connections` (cargo builds the `cutover`
//! binary with the bench profile, i.e. release optimisations, and hands its
//! path to this bench as `CARGO_BIN_EXE_cutover`). Needs redis-server
//! (`tests/peers/install.sh redis`) and 10k+ open files for this process
//! and the proxy: the soft RLIMIT_NOFILE is raised to the hard limit via
//! `bash -c 'ulimit -n ...; exec ...'` (the project forbids unsafe, so no
//! setrlimit); with a hard limit below ~11k the bench explains and skips.
//!
//! For each server (cutover in `source` state in front of a redis-server,
//! then that redis-server directly):
//! 1. read VmRSS of the server process;
//! 2. open 10,000 TCP connections back to back (one thread) and time until
//!    all are established *and* the server reports them accepted (cutover:
//!    the `cutover_client_connections` gauge from `/metrics` over the admin
//!    Unix socket; redis: `connected_clients` from INFO). A connect that
//!    takes > 0.5 s waited for a SYN retransmission after the accept queue
//!    overflowed (also shown: the kernel's `ListenOverflows` delta), so the
//!    rate is printed both as measured and without those waits, next to the
//!    server's CPU time per accepted connection;
//! 3. let it settle, read VmRSS again: (after - before) / 10,000 is the cost
//!    of one idle connection (target for cutover: <= 20 KiB);
//! 4. check a sample of the connections still answers PING, then close all.
//!
//! Everything is bounded by deadlines and every process is killed on exit,
//! panics included. `CUTOVER_BENCH_KEEP=1` keeps the scratch dir (logs).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Cutover, Redis, Scratch};

/// Idle connections opened per server.
const CLIENTS: usize = 10_000;
/// Threads opening them. One: on a 2-core machine a second connecting
/// thread only takes the core the server needs to accept, so more SYNs are
/// dropped and the run measures the kernel's 1 s retransmit timer instead.
const CONNECT_THREADS: usize = 1;
/// Per-connect deadline (a SYN dropped by a full backlog is retried after 1 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Until the server has accepted every connection.
const ACCEPT_DEADLINE: Duration = Duration::from_secs(60);
/// Pause before the second RSS reading, so allocator and kernel settle.
const SETTLE: Duration = Duration::from_millis(1500);
/// Connections checked with PING afterwards.
const PING_SAMPLE: usize = 20;
/// A connect slower than this waited for a SYN retransmission (1 s on Linux).
const STALL: Duration = Duration::from_millis(500);
/// cutover's goal per idle connection.
const TARGET_KIB_PER_CONN: f64 = 20.0;

struct Outcome {
    server: &'static str,
    connected: usize,
    accept_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    cpu_secs: f64,
    pings_ok: usize,
    /// connect() calls that took over [`STALL`]: a dropped SYN retried by the kernel.
    stalls: usize,
    /// Time connect() calls spent in those stalls, summed over threads.
    stalled_secs: f64,
    slowest_connect_ms: f64,
    /// `TcpExt ListenOverflows` delta: SYNs dropped on a full accept queue.
    listen_overflows: u64,
}

impl Outcome {
    fn kib_per_conn(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.connected as f64
    }

    fn accept_rate(&self) -> f64 {
        self.connected as f64 / self.accept_secs
    }

    /// The rate without the time threads sat in SYN retransmission waits.
    fn rate_without_stalls(&self) -> f64 {
        let stalled = self.stalled_secs / CONNECT_THREADS as f64;
        self.connected as f64 / (self.accept_secs - stalled).max(1e-6)
    }

    /// Server CPU per accepted connection, in microseconds.
    fn cpu_us_per_conn(&self) -> f64 {
        self.cpu_secs * 1e6 / self.connected as f64
    }
}

fn main() {
    // This process holds every client socket: 10k plus a margin for the
    // process itself, the probes and the ctl/admin connections.
    common::ensure_nofile(CLIENTS as u64 + 500);
    common::require("redis-server");
    let scratch = Scratch::new("cutover-bench-idle-");
    let dir = &scratch.path;

    let redis = Redis::start(
        dir,
        "redis",
        &["--maxclients", &(CLIENTS + 1000).to_string()],
    );
    let listen = common::free_port();
    let cutover = Cutover::start(
        dir,
        listen,
        &format!(
            r#"clusters:
  - {{ name: old, protocol: redis, endpoints: ["127.0.0.1:{r}"] }}
  - {{ name: new, protocol: redis, endpoints: ["127.0.0.1:{r}"] }}
migrations:
  - name: idle
    protocol: redis
    listen: 127.0.0.1:{listen}
    source: old
    target: new
    topics: [ {{ name: rest, match: "*" }} ]
    redis: {{ backfill_on_enter: false }}
"#,
            r = redis.port
        ),
    );
    println!(
        "idle_connections: {CLIENTS} idle TCP clients per server, {CONNECT_THREADS} connect threads"
    );
    println!("cutover binary: {}", common::CUTOVER);

    let proxied = measure("cutover", cutover.child.pid(), listen, || {
        cutover
            .metric("cutover_client_connections")
            .map(|v| v as usize)
    });
    // The proxy is done: free its CPU and sockets before measuring redis.
    drop(cutover);

    let direct = measure("redis-server", redis.child.pid(), redis.port, || {
        // INFO counts the probe's own connection.
        info_field(redis.port, "clients", "connected_clients").map(|n| n.saturating_sub(1))
    });

    println!();
    println!(
        "| server | conns | all accepted s | accept rate conn/s | rate excl. SYN retransmit waits | connects > 0.5 s | listen overflows | server CPU µs/conn | RSS before MiB | RSS after MiB | KiB / idle conn | PING ok |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in [&proxied, &direct] {
        println!(
            "| {} | {} | {:.3} | {:.0} | {:.0} | {} (max {:.0} ms) | {} | {:.1} | {:.1} | {:.1} | {:.2} | {}/{} |",
            o.server,
            o.connected,
            o.accept_secs,
            o.accept_rate(),
            o.rate_without_stalls(),
            o.stalls,
            o.slowest_connect_ms,
            o.listen_overflows,
            o.cpu_us_per_conn(),
            o.rss_before_kib as f64 / 1024.0,
            o.rss_after_kib as f64 / 1024.0,
            o.kib_per_conn(),
            o.pings_ok,
            PING_SAMPLE,
        );
    }
    println!();
    println!(
        "connects > 0.5 s waited for the kernel to retransmit a SYN dropped on a full accept queue \
         (listen overflows: namespace-wide TcpExt counter); when present they dominate the wall time."
    );
    let verdict = if proxied.kib_per_conn() <= TARGET_KIB_PER_CONN {
        "meets"
    } else {
        "MISSES"
    };
    println!(
        "cutover: {:.2} KiB per idle connection ({verdict} the <= {TARGET_KIB_PER_CONN} KiB target; redis-server direct: {:.2} KiB), accept rate {:.0} conn/s vs redis-server {:.0} conn/s",
        proxied.kib_per_conn(),
        direct.kib_per_conn(),
        proxied.accept_rate(),
        direct.accept_rate()
    );
}

/// Opens [`CLIENTS`] connections to `port`, waits until `accepted()` reports
/// them all, reads the server's RSS around it, then closes them.
fn measure(
    server: &'static str,
    pid: u32,
    port: u16,
    accepted: impl Fn() -> Option<usize>,
) -> Outcome {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ticks = common::clock_ticks_per_second();
    // Settle the server's start-up allocations before the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let baseline = accepted().unwrap_or(0);
    let rss_before_kib = common::rss_kib(pid);
    let cpu_before = common::cpu_ticks(pid);
    let overflows_before = common::tcp_ext_counter("ListenOverflows");

    let start = Instant::now();
    let connected: Vec<(TcpStream, Duration)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CONNECT_THREADS)
            .map(|i| {
                let count = (i + 1) * CLIENTS / CONNECT_THREADS - i * CLIENTS / CONNECT_THREADS;
                scope.spawn(move || {
                    (0..count)
                        .map(|n| {
                            let began = Instant::now();
                            let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                                .unwrap_or_else(|e| {
                                    panic!("{server}: connection {n} of thread {i} failed: {e}")
                                });
                            (stream, began.elapsed())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("connect thread panicked"))
            .collect()
    });
    let connect_secs = start.elapsed().as_secs_f64();
    let stalls = connected.iter().filter(|(_, took)| *took > STALL).count();
    let stalled_secs = connected
        .iter()
        .filter(|(_, took)| *took > STALL)
        .map(|(_, took)| took.as_secs_f64())
        .sum();
    let slowest_connect_ms = connected
        .iter()
        .map(|(_, took)| took.as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let streams: Vec<TcpStream> = connected.into_iter().map(|(s, _)| s).collect();

    let mut seen = 0;
    common::wait_until(
        &format!("{server} to accept {CLIENTS} connections"),
        ACCEPT_DEADLINE,
        || {
            seen = accepted().unwrap_or(0).saturating_sub(baseline);
            seen >= CLIENTS
        },
    );
    let accept_secs = start.elapsed().as_secs_f64();
    let listen_overflows =
        common::tcp_ext_counter("ListenOverflows").saturating_sub(overflows_before);

    std::thread::sleep(SETTLE);
    let rss_after_kib = common::rss_kib(pid);
    let cpu_secs = common::cpu_ticks(pid).saturating_sub(cpu_before) as f64 / ticks;

    // The connections must be usable, not just counted.
    let step = CLIENTS / PING_SAMPLE;
    let pings_ok = (0..PING_SAMPLE)
        .filter(|i| ping(&streams[i * step]))
        .count();
    drop(streams);

    println!(
        "{server}: {CLIENTS} connected in {connect_secs:.3} s, all accepted after {accept_secs:.3} s; RSS {rss_before_kib} -> {rss_after_kib} KiB"
    );
    Outcome {
        server,
        connected: seen,
        accept_secs,
        rss_before_kib,
        rss_after_kib,
        cpu_secs,
        pings_ok,
        stalls,
        stalled_secs,
        slowest_connect_ms,
        listen_overflows,
    }
}

/// PING on an established connection, answered within 2 s.
fn ping(stream: &TcpStream) -> bool {
    let mut stream = stream;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    while got < 7 {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    &buf[..7] == b"+PONG\r\n"
}

/// A numeric field of `INFO section`, over a fresh connection.
fn info_field(port: u16, section: &str, field: &str) -> Option<usize> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(&common::resp_command(&format!("INFO {section}")))
        .ok()?;
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    let prefix = format!("{field}:");
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(value) = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .filter(|_| text.ends_with("\r\n"))
        {
            return value.trim().parse().ok();
        }
    }
    None
}
