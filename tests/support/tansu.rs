//! tansu, the Kafka-compatible broker, with in-memory storage.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::child::ChildGuard;
use super::net::{free_port, tcp_accepts};
use super::{peers_dir, require_bin};

/// How long tansu may take to listen after spawn (it is ready in ms).
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A single tansu broker on a free port; its data lives in memory and dies
/// with the process.
pub struct Tansu {
    port: u16,
    child: ChildGuard,
}

impl Tansu {
    /// Starts `tansu broker` with `memory://tansu-PORT/` storage and waits
    /// until its listener accepts TCP.
    ///
    /// # Panics
    /// When tansu is not installed, exits, or is not ready in 10 s.
    pub fn start() -> Tansu {
        let port = free_port();
        Tansu {
            port,
            child: Self::spawn(port),
        }
    }

    /// Kills the broker and starts a fresh one on the same port (memory
    /// storage: it comes back empty).
    pub fn restart(&mut self) {
        self.child.kill();
        self.child = Self::spawn(self.port);
    }

    fn spawn(port: u16) -> ChildGuard {
        let bin = require_bin("tansu", "kafka");
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &format!("memory://tansu-{port}/")]);
        let mut child = ChildGuard::spawn("tansu", &mut cmd);
        let addr = format!("127.0.0.1:{port}");
        child.wait_ready(
            READY_DEADLINE,
            &format!("tansu listening on {addr}"),
            || tcp_accepts(&addr),
        );
        child
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT", the `bootstrap.servers` value.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// SIGKILLs the broker; its topics and records are gone.
    pub fn stop(&mut self) {
        self.child.kill();
    }
}

/// The venv python with `confluent_kafka` (librdkafka 2.x), for client
/// scripts. Debian's python3-confluent-kafka (librdkafka 2.0.2) fails the
/// ApiVersions exchange with tansu, so never fall back to it.
///
/// # Panics
/// When the venv is missing.
pub fn kafka_python() -> PathBuf {
    let python = peers_dir().join("venv").join("bin").join("python");
    assert!(
        python.is_file(),
        "{} is not installed: run tests/peers/install.sh kafka",
        python.display()
    );
    python
}

/// How long a Kafka client script may run before the test fails.
pub const KAFKA_SCRIPT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits (bounded by [`KAFKA_SCRIPT_DEADLINE`]) for a client script started
/// with piped output, asserts it succeeded, and parses its last stdout line
/// as JSON.
///
/// # Panics
/// When the script fails, runs past the deadline, or prints no JSON.
pub fn finish_kafka_script(mut child: std::process::Child) -> serde_json::Value {
    use std::io::Read;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait python") {
            break status;
        }
        if start.elapsed() > KAFKA_SCRIPT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let tail: String = err
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!("python client script ran past {KAFKA_SCRIPT_DEADLINE:?}; stderr ends:\n{tail}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(
        status.success(),
        "python failed: {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}\nstderr:\n{err}"))
}

/// The config of one Kafka migration `events` (topics matching `pattern`)
/// from `source` to `target`, clients bootstrapping at `listen` and one
/// virtual broker at `broker_port`; `kafka_extra` is appended to its
/// `kafka:` options (e.g. `", dual_write_percent: 50"`).
pub fn kafka_migration(
    source: &Tansu,
    target: &Tansu,
    listen: u16,
    broker_port: u16,
    pattern: &str,
    kafka_extra: &str,
) -> super::Config {
    super::Config::new().append(&format!(
        "clusters:\n\
         \x20 - {{ name: old, protocol: kafka, endpoints: [\"{}\"] }}\n\
         \x20 - {{ name: new, protocol: kafka, endpoints: [\"{}\"] }}\n\
         migrations:\n\
         \x20 - name: events\n\
         \x20   protocol: kafka\n\
         \x20   listen: 127.0.0.1:{listen}\n\
         \x20   source: old\n\
         \x20   target: new\n\
         \x20   topics: [ {{ match: \"{pattern}\" }} ]\n\
         \x20   kafka: {{ brokers_listen_base: {broker_port}, virtual_brokers: 1{kafka_extra} }}\n",
        source.addr(),
        target.addr()
    ))
}
