//! cutover's own binary, run as a black box with a generated config.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use super::child::ChildGuard;

/// How long `cutover run` may take to open its admin socket.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// The cutover binary cargo built for this test run.
pub fn cutover_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cutover")
}

/// A YAML config (DESIGN.md §3) in its own temp dir: `admin.socket` and
/// `state.file` point into that dir; everything else is text the test
/// appends. A thin string builder on purpose: tests state the YAML they mean.
///
/// ```ignore
/// let config = Config::new().append(&format!(
///     "clusters:\n  - {{ name: old, protocol: redis, endpoints: [\"{}\"] }}\n",
///     redis.addr()
/// ));
/// ```
pub struct Config {
    dir: TempDir,
    admin_extra: Vec<String>,
    state_extra: Vec<String>,
    body: String,
}

impl Config {
    pub fn new() -> Config {
        Config {
            dir: tempfile::tempdir().expect("create cutover temp dir"),
            admin_extra: Vec::new(),
            state_extra: Vec::new(),
            body: String::new(),
        }
    }

    /// Adds a `key: value` line under `admin:` (e.g. `listen: 127.0.0.1:P`).
    pub fn admin(mut self, line: &str) -> Config {
        self.admin_extra.push(line.to_owned());
        self
    }

    /// Adds a `key: value` line under `state:`.
    pub fn state(mut self, line: &str) -> Config {
        self.state_extra.push(line.to_owned());
        self
    }

    /// Appends top-level YAML (`clusters:`, `migrations:` ...) verbatim.
    pub fn append(mut self, yaml: &str) -> Config {
        self.body.push_str(yaml);
        if !yaml.ends_with('\n') {
            self.body.push('\n');
        }
        self
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin Unix socket path written as `admin.socket`.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cutover.sock")
    }

    /// The state directory written as `state.file`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("cutover.yaml")
    }

    /// The YAML text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "admin:\n  socket: \"{}\"", self.socket().display());
        for line in &self.admin_extra {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "state:\n  file: \"{}\"", self.state_dir().display());
        for line in &self.state_extra {
            let _ = writeln!(out, "  {line}");
        }
        out.push_str(&self.body);
        out
    }

    /// Writes the YAML to [`Config::path`] and returns that path.
    pub fn write(&self) -> PathBuf {
        let path = self.path();
        fs::write(&path, self.render()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

/// `cutover run --config FILE`, killed on drop.
pub struct CutoverProcess {
    config: Config,
    child: Option<ChildGuard>,
}

impl CutoverProcess {
    /// Writes `config`, starts `cutover run`, and waits until the admin
    /// socket accepts a connection while the process is alive.
    ///
    /// # Panics
    /// When the process exits first (with its log tail) or is not ready in 10 s.
    pub fn start(config: Config) -> CutoverProcess {
        config.write();
        let mut process = CutoverProcess {
            config,
            child: None,
        };
        process.spawn();
        process
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn socket(&self) -> PathBuf {
        self.config.socket()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// `GET /metrics` over the admin socket (the Prometheus text, headers included).
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut stream =
            std::os::unix::net::UnixStream::connect(self.socket()).expect("admin socket");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send scrape");
        let mut body = String::new();
        stream.read_to_string(&mut body).expect("read scrape");
        body
    }

    /// Sum of the samples of `name` (exact series name) whose labels
    /// contain every one of `labels`, from /metrics.
    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.scrape()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Bytes relayed to either cluster so far, from /metrics.
    pub fn bytes_upstream(&self) -> f64 {
        self.metric_sum("cutover_bytes_total", &["direction=\"to_upstream\""])
    }

    /// After SIGTERM and the last answer owed on `client`: the connection
    /// closes, the process exits, and `listen` no longer accepts.
    pub fn assert_drained(&mut self, client: &mut std::net::TcpStream, listen: &str) {
        use std::io::Read;
        let mut tail = [0u8; 1];
        assert_eq!(
            client.read(&mut tail).unwrap_or(0),
            0,
            "closed once nothing is owed"
        );
        super::wait_until(
            std::time::Duration::from_secs(10),
            "the proxy exits after draining",
            || !self.is_running(),
        );
        assert!(
            std::net::TcpStream::connect(listen).is_err(),
            "no longer accepting"
        );
    }

    /// Sends SIGTERM to the proxy.
    pub fn sigterm(&self) {
        let pid = self.pid().expect("proxy pid").to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("run kill")
                .success()
        );
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child
            .as_ref()
            .map(|c| c.log_tail(lines))
            .unwrap_or_default()
    }

    /// SIGKILLs the proxy: no drain, no cleanup, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Kills the proxy if running and starts it again with the same config
    /// file and state dir, waiting for the admin socket as in [`start`].
    ///
    /// [`start`]: CutoverProcess::start
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Runs `cutover ctl --socket SOCK ARGS...` and returns its output.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(cutover_bin())
            .arg("ctl")
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run cutover ctl {args:?}: {e}"))
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(cutover_bin());
        cmd.arg("run").arg("--config").arg(self.config.path());
        cmd.current_dir(self.config.dir());
        let log = self.config.dir().join("cutover.log");
        let mut child = ChildGuard::spawn_logged("cutover", &mut cmd, &log);
        let socket = self.socket();
        // A socket file left by a killed run refuses connections, so connect
        // rather than test for existence.
        child.wait_ready(
            READY_DEADLINE,
            &format!("cutover admin socket {}", socket.display()),
            || UnixStream::connect(&socket).is_ok(),
        );
        self.child = Some(child);
    }
}
