//! The rig every Kafka black-box test starts from: the test binary's two
//! Apache Kafka clusters (the source of 3 brokers, the target of 1, shared
//! by its tests) and a cutover process of its own migrating the topics that
//! match a pattern from one to the other, plus the client-side helpers the
//! tests share (python scripts, `ctl`, a topic's status).

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::apache_kafka::KafkaCluster;
use super::cutover_process::CutoverProcess;
use super::kafka_client::{kafka_migration, kafka_python};
use super::net::free_port;

/// Source, target and the proxy between them (migration `events`). Tests
/// share the clusters, so each keeps to topics and groups of its own.
pub struct KafkaRig {
    pub source: &'static KafkaCluster,
    pub target: &'static KafkaCluster,
    pub proxy: CutoverProcess,
    /// The migration's bootstrap port.
    pub listen: u16,
    /// The first virtual broker's port.
    pub broker_port: u16,
    /// The migration's topic pattern.
    pub pattern: String,
}

impl KafkaRig {
    /// Starts the clusters (once per test binary) and a proxy;
    /// `kafka_extra` is appended to the migration's `kafka:` options.
    pub fn start(pattern: &str, kafka_extra: &str) -> KafkaRig {
        KafkaRig::between(
            KafkaCluster::source(),
            KafkaCluster::target(),
            pattern,
            kafka_extra,
        )
    }

    /// A proxy migrating from `source` to `target` (e.g. a target of the
    /// test's own, just formatted).
    pub fn between(
        source: &'static KafkaCluster,
        target: &'static KafkaCluster,
        pattern: &str,
        kafka_extra: &str,
    ) -> KafkaRig {
        let (listen, broker_port) = (free_port(), free_port());
        let config = kafka_migration(source, target, listen, broker_port, pattern, kafka_extra);
        KafkaRig {
            proxy: CutoverProcess::start(config),
            source,
            target,
            listen,
            broker_port,
            pattern: pattern.to_owned(),
        }
    }

    /// Spawns `script` with the confluent-kafka venv, output piped (finish
    /// it with `finish_kafka_script`).
    pub fn spawn_python(&self, script: &str) -> Child {
        Command::new(kafka_python())
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python")
    }

    /// Runs `ctl`, returning (exit code, stdout + stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = self.proxy.ctl(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// `topic`'s entry of `ctl status --json` (`Null` when not registered).
    pub fn topic_status(&self, topic: &str) -> Value {
        let out = self.proxy.ctl(&["status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        status["migrations"][0]["topics"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == topic))
            .cloned()
            .unwrap_or(Value::Null)
    }
}
