//! The client side of the Kafka tests: librdkafka (confluent-kafka) scripts
//! in the peers' venv, waiting for a client process with a deadline, and the
//! cutover config of one Kafka migration between two clusters.

use std::path::PathBuf;
use std::time::Duration;

use super::apache_kafka::KafkaCluster;
use super::peers_dir;

/// The venv python with `confluent_kafka` (librdkafka 2.x), for client
/// scripts. Never Debian's python3-confluent-kafka: its librdkafka 2.0.2 is
/// older than the clients users run.
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
pub const KAFKA_SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

/// Waits (bounded by [`KAFKA_SCRIPT_DEADLINE`]) for a client script started
/// with piped output, asserts it succeeded, and parses its last stdout line
/// as JSON.
///
/// # Panics
/// When the script fails, runs past the deadline, or prints no JSON.
pub fn finish_kafka_script(child: std::process::Child) -> serde_json::Value {
    finish_client(child, KAFKA_SCRIPT_DEADLINE, "python")
}

/// Waits (bounded by `deadline`) for a client process (`what`: "python",
/// "java") started with piped output, asserts it succeeded, and parses its
/// last stdout line as JSON.
///
/// # Panics
/// When the client fails, runs past the deadline, or prints no JSON.
pub fn finish_client(
    mut child: std::process::Child,
    deadline: Duration,
    what: &str,
) -> serde_json::Value {
    use std::io::Read;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait client") {
            break status;
        }
        if start.elapsed() > deadline {
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
            panic!("{what} client ran past {deadline:?}; stderr ends:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(50));
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
        "{what} failed: {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}\nstderr:\n{err}"))
}

/// The config of one Kafka migration `events` (topics matching `pattern`)
/// from `source` to `target`, clients bootstrapping at `listen` and one
/// virtual broker at `broker_port` (unless `kafka_extra` names
/// `virtual_brokers` itself); `kafka_extra` is appended to its `kafka:`
/// options (e.g. `", dual_write_percent: 50"`).
pub fn kafka_migration(
    source: &KafkaCluster,
    target: &KafkaCluster,
    listen: u16,
    broker_port: u16,
    pattern: &str,
    kafka_extra: &str,
) -> super::Config {
    let brokers = if kafka_extra.contains("virtual_brokers") {
        ""
    } else {
        ", virtual_brokers: 1"
    };
    super::Config::new().append(&format!(
        "clusters:\n\
         \x20 - {{ name: old, protocol: kafka, endpoints: {} }}\n\
         \x20 - {{ name: new, protocol: kafka, endpoints: {} }}\n\
         migrations:\n\
         \x20 - name: events\n\
         \x20   protocol: kafka\n\
         \x20   listen: 127.0.0.1:{listen}\n\
         \x20   source: old\n\
         \x20   target: new\n\
         \x20   topics: [ {{ match: \"{pattern}\" }} ]\n\
         \x20   kafka: {{ brokers_listen_base: {broker_port}{brokers}{kafka_extra} }}\n",
        source.endpoints_yaml(),
        target.endpoints_yaml()
    ))
}
