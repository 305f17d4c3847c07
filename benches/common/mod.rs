//! Shared plumbing of the process-level benchmarks (`idle_connections`,
//! `redis_compare`, `kafka_compare`, `rocketmq_compare`): real peers on free
//! loopback ports, the cutover binary cargo built for this bench run, and
//! /proc readings; [`compare`] holds what the protocol comparisons share.
//!
//! Every process is owned by a [`Child`] that SIGKILLs and reaps it on drop,
//! so a panicking benchmark still leaves nothing running. Every wait has a
//! deadline. Peers come from `tests/peers/install.sh redis proxies`.
#![allow(dead_code)]

pub mod compare;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The cutover binary of this package, built by `cargo bench` with the bench
/// profile (which inherits `release`).
pub const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

/// How long a started peer may take to answer.
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// A child process, SIGKILLed and reaped on drop.
pub struct Child {
    name: String,
    child: std::process::Child,
}

impl Child {
    /// Spawns `command` with stdout/stderr to `log` (appended).
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Child {
            name: name.to_owned(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Panics (with `log`'s tail) if the process has exited.
    pub fn assert_alive(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); log tail:\n{}",
                self.name,
                tail(log, 30)
            );
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Last `lines` lines of a file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `name` on PATH (or in the usual sbin dirs, where Debian puts nutcracker
/// and haproxy), or a clean exit telling how to install it. Benchmarks skip
/// rather than fail when a peer is missing.
pub fn require(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/sbin", "/usr/local/sbin"]
            .iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    eprintln!(
        "SKIPPED: `{name}` is not installed; run `tests/peers/install.sh redis proxies` first."
    );
    std::process::exit(0);
}

/// Polls `ready` every 20 ms until it holds or `deadline` passes.
pub fn wait_until(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one command (words split on spaces, sent as a RESP array: twemproxy
/// refuses inline commands) over a fresh connection; the first reply line.
pub fn redis_command(port: u16, command: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(&resp_command(command)).ok()?;
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines().next().map(str::to_owned)
}

/// `command`'s words as a RESP array of bulk strings.
pub fn resp_command(command: &str) -> Vec<u8> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut out = format!("*{}\r\n", words.len());
    for word in words {
        let _ = write!(out, "${}\r\n{word}\r\n", word.len());
    }
    out.into_bytes()
}

/// Whether `port` answers PING with +PONG.
pub fn pings(port: u16) -> bool {
    redis_command(port, "PING").as_deref() == Some("+PONG")
}

/// A redis-server with no persistence on a free port.
pub struct Redis {
    pub port: u16,
    pub log: PathBuf,
    pub child: Child,
}

impl Redis {
    /// Starts redis-server in `dir` with extra arguments and waits for PING.
    pub fn start(dir: &Path, name: &str, extra: &[&str]) -> Redis {
        let bin = require("redis-server");
        let port = free_port();
        let data = dir.join(name);
        std::fs::create_dir_all(&data).expect("redis dir");
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(bin);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&data)
            .args(extra);
        let mut child = Child::spawn(name, &mut command, &log);
        let start = Instant::now();
        while !pings(port) {
            child.assert_alive(&log);
            assert!(
                start.elapsed() < READY_DEADLINE,
                "{name} not ready; log:\n{}",
                tail(&log, 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, log, child }
    }

    /// `DBSIZE` as a number (0 when unreadable).
    pub fn dbsize(&self) -> u64 {
        redis_command(self.port, "DBSIZE")
            .and_then(|l| l.trim_start_matches(':').parse().ok())
            .unwrap_or(0)
    }
}

/// `cutover run` on a generated config whose admin socket and state
/// directory live in the bench's temp dir.
pub struct Cutover {
    pub listen_port: u16,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub child: Child,
}

impl Cutover {
    /// Writes `cutover.yaml` (admin/state/proxy sections + `body`) and starts
    /// the proxy with its soft RLIMIT_NOFILE raised to the hard limit
    /// (`ulimit -n` in a bash that then execs cutover, so the pid is cutover's).
    pub fn start(dir: &Path, listen_port: u16, body: &str) -> Cutover {
        let socket = dir.join("cutover.sock");
        let state = dir.join("cutover-state");
        let config_path = dir.join("cutover.yaml");
        let mut yaml = String::new();
        let _ = writeln!(yaml, "admin:\n  socket: \"{}\"", socket.display());
        let _ = writeln!(yaml, "state:\n  file: \"{}\"", state.display());
        yaml.push_str("proxy:\n  max_connections: 20000\n");
        yaml.push_str(body);
        std::fs::write(&config_path, yaml).expect("write cutover.yaml");

        let log = dir.join("cutover.log");
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@""#)
            .arg("bash")
            .arg(CUTOVER)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            // Warnings only: logging per connection would be part of the measurement.
            .env("RUST_LOG", "warn");
        let mut child = Child::spawn("cutover", &mut command, &log);
        let start = Instant::now();
        loop {
            child.assert_alive(&log);
            let listening = TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], listen_port)),
                Duration::from_millis(200),
            )
            .is_ok();
            if listening && admin_get(&socket, "/metrics").is_some() {
                break;
            }
            assert!(
                start.elapsed() < READY_DEADLINE,
                "cutover not ready; log:\n{}",
                tail(&log, 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Cutover {
            listen_port,
            socket,
            log,
            child,
        }
    }

    /// [`Cutover::start`] with one migration between two clusters.
    pub fn start_migration(dir: &Path, listen: u16, migration: &Migration<'_>) -> Cutover {
        Cutover::start(dir, listen, &migration.yaml(listen))
    }

    /// `cutover ctl --socket S ARGS...`: (success, stdout + stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(CUTOVER)
            .arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run cutover ctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Sum of a Prometheus gauge/counter over its label sets.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = admin_get(&self.socket, "/metrics")?;
        Some(prometheus_sum(&body, name))
    }
}

/// One migration between two single-endpoint-list clusters, as config.
pub struct Migration<'a> {
    pub name: &'a str,
    pub protocol: &'a str,
    /// Cluster names, source first.
    pub clusters: [&'a str; 2],
    /// Each cluster's endpoints (`host:port`), source first.
    pub endpoints: [&'a str; 2],
    /// The `topics:` list, in YAML flow style.
    pub topics: &'a str,
    /// The migration's protocol section, e.g. `redis: { ... }`.
    pub extra: &'a str,
}

impl Migration<'_> {
    /// The `clusters:` and `migrations:` sections, listening on `listen`.
    pub fn yaml(&self, listen: u16) -> String {
        let Migration {
            name,
            protocol,
            clusters: [old, new],
            endpoints: [source, target],
            topics,
            extra,
        } = self;
        format!(
            r#"clusters:
  - {{ name: {old}, protocol: {protocol}, endpoints: ["{source}"] }}
  - {{ name: {new}, protocol: {protocol}, endpoints: ["{target}"] }}
migrations:
  - name: {name}
    protocol: {protocol}
    listen: 127.0.0.1:{listen}
    source: {old}
    target: {new}
    topics: {topics}
    {extra}
"#
        )
    }
}

/// Sum of every sample of metric `name` (exact name, any labels).
pub fn prometheus_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None; // a longer name such as `name_total`
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Sum of the samples of metric `name` (exact name) whose label set
/// contains `label` (e.g. `topic="orders"`).
pub fn prometheus_sum_where(body: &str, name: &str, label: &str) -> f64 {
    body.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once('}')?;
            labels
                .split(',')
                .any(|l| l == label)
                .then(|| value.split_whitespace().next()?.parse::<f64>().ok())?
        })
        .sum()
}

/// One raw HTTP/1.1 GET over the admin Unix socket; the body of a 200 answer.
pub fn admin_get(socket: &Path, path: &str) -> Option<String> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: cutover\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    if status != 200 {
        return None;
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Some(if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    })
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

/// A `kB` field of /proc/<pid>/status (e.g. `VmRSS`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS").unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: split after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    utime + stime
}

/// A `TcpExt` counter of /proc/net/netstat (e.g. `ListenOverflows`, the
/// SYNs dropped because an accept queue was full). Namespace-wide.
pub fn tcp_ext_counter(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Machine-wide CPU time from the `cpu` line of /proc/stat, in ticks:
/// (busy, total), busy = total minus idle and iowait.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Online CPUs (`cpuN` lines of /proc/stat).
pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
        .max(1)
}

/// Kernel clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The soft open-files limit of this process, from /proc/self/limits.
pub fn nofile_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Makes sure this process may open `needed` files: if the soft limit is
/// lower, re-executes itself once through `bash -c 'ulimit -n ...; exec'`
/// (no unsafe setrlimit); if that cannot help, explains and exits cleanly.
pub fn ensure_nofile(needed: u64) {
    const MARK: &str = "CUTOVER_BENCH_NOFILE_RAISED";
    let soft = nofile_soft_limit().unwrap_or(0);
    if soft >= needed {
        return;
    }
    if std::env::var_os(MARK).is_none() {
        let exe = std::env::current_exe().expect("current_exe");
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                r#"ulimit -n {needed} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@""#
            ))
            .arg("bash")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(MARK, "1")
            .status()
            .expect("re-exec through bash");
        std::process::exit(status.code().unwrap_or(1));
    }
    eprintln!(
        "SKIPPED: this benchmark needs {needed} open files but RLIMIT_NOFILE is {soft} \
         (hard limit too low). Raise it (e.g. `ulimit -Hn 65536` as root, or \
         LimitNOFILE= in the service) and run again."
    );
    std::process::exit(0);
}

/// A scratch directory, deleted at the end unless `CUTOVER_BENCH_KEEP` is
/// set (then its path is printed, logs included, for post-mortems).
pub struct Scratch {
    pub path: PathBuf,
    _guard: Option<TempDir>,
}

impl Scratch {
    pub fn new(prefix: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create temp dir");
        if std::env::var_os("CUTOVER_BENCH_KEEP").is_some() {
            let path = dir.keep();
            eprintln!("scratch dir kept: {}", path.display());
            return Scratch { path, _guard: None };
        }
        Scratch {
            path: dir.path().to_owned(),
            _guard: Some(dir),
        }
    }
}
