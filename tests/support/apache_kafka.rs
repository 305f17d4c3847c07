//! Apache Kafka 4.1.1 KRaft clusters (combined broker+controller nodes) on
//! free loopback ports, and the Java side of the Kafka tests: Kafka's own
//! tools (`TopicCommand`, `ConsumerGroupCommand`, ...) and the small Java
//! programs under `tests/peers/kafka-java/`, launched from source with the
//! cluster's jars on the class path (no build step). Installed by
//! `tests/peers/install.sh kafka` (recipes in /work/shared/PEERS.md).
//!
//! A JVM cluster takes seconds to start, so each test binary starts the
//! source (3 nodes, replication factor 3, `min.insync.replicas=2`) and the
//! target (1 node) once, in statics ([`KafkaCluster::source`],
//! [`KafkaCluster::target`]); tests share them and keep to topics and groups
//! of their own. Statics are never dropped, so every node is spawned behind
//! a small shell watchdog that SIGKILLs it (and removes its data) once the
//! test binary is gone, even when that binary was killed.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::child::ChildGuard;
use super::net::free_port;
use super::peers_dir;
use super::wait::wait_until;

/// The pinned version `tests/peers/install.sh kafka` installs.
pub const KAFKA_VERSION: &str = "4.1.1";

/// How long one node may take from spawn to its ready line (about 6 s for
/// one node alone, 16 s for three on 2 busy cores).
const READY_DEADLINE: Duration = Duration::from_secs(90);
/// How long a restarted node may take to rejoin every ISR.
const REPLICATED_DEADLINE: Duration = Duration::from_secs(120);

/// How long a tool (`TopicCommand`, `StorageTool`, ...) may run.
pub const TOOL_DEADLINE: Duration = Duration::from_secs(90);

/// The line a node logs when it serves clients.
const READY_LINE: &str = "Kafka Server started";

/// JVM options of a broker: small heap and C1 only, which starts faster
/// and is plenty for test traffic on a 2-core machine.
const NODE_JVM: &[&str] = &[
    "-Xms64m",
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
];

/// JVM options of a tool or a Java client program.
const TOOL_JVM: &[&str] = &[
    "-Xmx192m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
];

/// Kills the node when the test binary (`OWNER`, $1) is gone, then removes
/// its cluster's dir ($2); `exec` makes the node keep the shell's pid, so the
/// [`ChildGuard`] signals the JVM itself.
const WATCHDOG: &str = r#"owner=$1 dir=$2; shift 2
( while kill -0 "$owner" 2>/dev/null && kill -0 $$ 2>/dev/null; do sleep 1; done
  kill -9 $$ 2>/dev/null; kill -0 "$owner" 2>/dev/null || rm -rf "$dir" ) >/dev/null 2>&1 &
exec "$@""#;

/// Where the install put Apache Kafka.
pub fn kafka_home() -> PathBuf {
    let home = peers_dir().join(format!("kafka-{KAFKA_VERSION}"));
    assert!(
        home.join(".stamp").is_file(),
        "Apache Kafka {KAFKA_VERSION} is not installed in {}: run tests/peers/install.sh kafka",
        home.display()
    );
    home
}

/// `java` with the Kafka jars on the class path and `log4j2` (file name in
/// the install's `config/`) as logging configuration.
fn java(log4j2: &str, jvm: &[&str]) -> Command {
    let home = kafka_home();
    let mut cmd = Command::new("java");
    cmd.args(jvm)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            home.join("config").join(log4j2).display()
        ))
        .arg("-cp")
        .arg(format!("{}/libs/*", home.display()));
    cmd
}

/// A SASL listener beside PLAINTEXT (PEERS.md's recipe): PLAIN users in
/// the listener's JAAS line, SCRAM users created at format time
/// (`StorageTool format -S`), the way an operator provisions a new cluster.
#[derive(Clone, Debug, Default)]
pub struct SaslUsers {
    /// `(mechanism, name, password)`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub users: Vec<(&'static str, &'static str, &'static str)>,
    /// A directory with `server.pem` and `server.key` (`support::tls`):
    /// each node then also has a SASL_SSL listener with that certificate.
    pub tls_dir: Option<PathBuf>,
    /// `connections.max.reauth.ms`: SASL sessions expire after this long
    /// unless the client logs in again on the connection (KIP-368).
    pub reauth_ms: Option<u32>,
}

/// One combined KRaft node.
struct Node {
    id: usize,
    port: u16,
    /// The SASL_PLAINTEXT listener's port, when the cluster has one.
    sasl_port: Option<u16>,
    /// The SASL_SSL listener's port, when the cluster has one.
    sasl_ssl_port: Option<u16>,
    dir: PathBuf,
    child: ChildGuard,
}

/// A KRaft cluster of combined nodes; every node is a voter.
pub struct KafkaCluster {
    name: String,
    nodes: Vec<Mutex<Node>>,
    /// Holds the node dirs of a cluster that is dropped (not the statics').
    _dir: tempfile::TempDir,
}

impl KafkaCluster {
    /// This test binary's source cluster: 3 nodes, replication factor 3
    /// and `min.insync.replicas=2` by default.
    pub fn source() -> &'static KafkaCluster {
        static SOURCE: OnceLock<KafkaCluster> = OnceLock::new();
        SOURCE.get_or_init(|| KafkaCluster::start("source", 3))
    }

    /// This test binary's target cluster: 1 node.
    pub fn target() -> &'static KafkaCluster {
        static TARGET: OnceLock<KafkaCluster> = OnceLock::new();
        TARGET.get_or_init(|| KafkaCluster::start("target", 1))
    }

    /// Formats and starts `nodes` combined nodes (all at once) and waits
    /// until each has logged its ready line. A node that exits first (a
    /// free port taken by another process in between, on a shared machine)
    /// makes the whole cluster start again on new ports, up to
    /// [`START_ATTEMPTS`] times.
    ///
    /// # Panics
    /// When Kafka is not installed, or no attempt got every node ready.
    pub fn start(name: &str, nodes: usize) -> KafkaCluster {
        KafkaCluster::start_with(name, nodes, None)
    }

    /// As [`KafkaCluster::start`], each node also listening for SASL
    /// clients (PLAIN and SCRAM-SHA-256/512) with `sasl`'s users.
    pub fn start_with(name: &str, nodes: usize, sasl: Option<&SaslUsers>) -> KafkaCluster {
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match KafkaCluster::try_start(name, nodes, sasl) {
                Ok(cluster) => return cluster,
                Err(e) => {
                    eprintln!("kafka {name}: start attempt {attempt} failed: {e}");
                    last = e;
                }
            }
        }
        panic!("kafka {name} did not start in {START_ATTEMPTS} attempts; the last: {last}");
    }

    fn try_start(
        name: &str,
        nodes: usize,
        sasl: Option<&SaslUsers>,
    ) -> Result<KafkaCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kafka-{name}-"))
            .tempdir()
            .expect("temp dir for a Kafka cluster");
        let ports: Vec<(u16, u16)> = (0..nodes).map(|_| (free_port(), free_port())).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = cluster_id();
        let mut started = Vec::new();
        for (i, &(port, controller)) in ports.iter().enumerate() {
            let node_dir = dir.path().join(format!("node{}", i + 1));
            fs::create_dir_all(&node_dir).expect("node dir");
            let sasl_port = sasl.map(|_| free_port());
            let sasl_ssl_port = sasl.and_then(|s| s.tls_dir.as_ref()).map(|_| free_port());
            let mut config = node_config(i + 1, nodes, port, controller, &voters, &node_dir);
            if let (Some(users), Some(sasl_port)) = (sasl, sasl_port) {
                config = with_sasl(&config, port, sasl_port, users);
            }
            if let (Some(dir), Some(ssl_port)) =
                (sasl.and_then(|s| s.tls_dir.as_ref()), sasl_ssl_port)
            {
                config = with_sasl_ssl(&config, ssl_port, dir, &node_dir);
            }
            fs::write(node_dir.join("server.properties"), config).expect("write server.properties");
            format_node(&node_dir, &cluster_id, sasl);
            started.push(Node {
                id: i + 1,
                port,
                sasl_port,
                sasl_ssl_port,
                child: spawn_node(name, i + 1, &node_dir),
                dir: node_dir,
            });
        }
        for node in &mut started {
            wait_node_ready(node)?;
        }
        Ok(KafkaCluster {
            name: name.to_owned(),
            nodes: started.into_iter().map(Mutex::new).collect(),
            _dir: dir,
        })
    }

    /// "127.0.0.1:P1,127.0.0.1:P2,...", the `bootstrap.servers` value.
    pub fn bootstrap(&self) -> String {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The SASL listeners' endpoints as a YAML flow list.
    ///
    /// # Panics
    /// When the cluster was started without SASL.
    pub fn sasl_endpoints_yaml(&self) -> String {
        let quoted: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "\"127.0.0.1:{}\"",
                    lock(n).sasl_port.expect("a SASL listener")
                )
            })
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// The SASL_SSL listeners' endpoints as a YAML flow list.
    ///
    /// # Panics
    /// When the cluster was started without them.
    pub fn sasl_ssl_endpoints_yaml(&self) -> String {
        let quoted: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "\"127.0.0.1:{}\"",
                    lock(n).sasl_ssl_port.expect("a SASL_SSL listener")
                )
            })
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// The SASL listeners' `bootstrap.servers`.
    pub fn sasl_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", lock(n).sasl_port.expect("a SASL listener")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first node's "127.0.0.1:P".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports()[0])
    }

    /// Every node's client port, by node id.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| lock(n).port).collect()
    }

    /// The cluster's endpoints as a YAML flow list for a cutover config.
    pub fn endpoints_yaml(&self) -> String {
        let quoted: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// The pid of node `id` (1-based).
    pub fn pid(&self, id: usize) -> u32 {
        lock(&self.nodes[id - 1]).child.pid()
    }

    /// SIGKILLs node `id` (1-based); its data stays for [`Self::restart`].
    pub fn kill(&self, id: usize) {
        lock(&self.nodes[id - 1]).child.kill();
    }

    /// Starts node `id` again on its ports and data, waits until ready and
    /// then until the cluster is whole again ([`Self::wait_replicated`]),
    /// so the next disruption meets every partition fully replicated.
    pub fn restart(&self, id: usize) {
        {
            let mut node = lock(&self.nodes[id - 1]);
            node.child.kill();
            node.child = spawn_node(&self.name, node.id, &node.dir.clone());
            if let Err(e) = wait_node_ready(&mut node) {
                panic!("{e}");
            }
        }
        self.wait_replicated(REPLICATED_DEADLINE);
    }

    /// Waits until no partition (internal topics included) is
    /// under-replicated: a node that was down is back in every ISR.
    /// "Kafka Server started" comes before that; killing the next node
    /// earlier leaves partitions (`__consumer_offsets` too) under
    /// `min.insync.replicas=2`, so producers and groups stall until it
    /// catches up, for longer than a client's deadlines on a loaded host.
    ///
    /// # Panics
    /// When partitions are still under-replicated at `deadline`.
    pub fn wait_replicated(&self, deadline: Duration) {
        let start = Instant::now();
        let (mut first, mut looks) = (None, 0);
        wait_until(deadline, "every partition fully replicated", || {
            looks += 1;
            let out = self.tool(
                "org.apache.kafka.tools.TopicCommand",
                &["--describe", "--under-replicated-partitions"],
            );
            let listed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let whole = out.status.success() && listed.is_empty();
            first.get_or_insert(if out.status.success() {
                listed
            } else {
                output_text(&out)
            });
            whole
        });
        println!(
            "kafka {}: every partition fully replicated after {:.1?} ({looks} look(s)); first look:\n{}",
            self.name,
            start.elapsed(),
            first.unwrap_or_default()
        );
    }

    /// Runs a Kafka tool (`main` is its class) against this cluster's
    /// bootstrap: `--bootstrap-server B` is put first.
    pub fn tool(&self, main: &str, args: &[&str]) -> Output {
        let bootstrap = self.bootstrap();
        let mut full = vec!["--bootstrap-server", &bootstrap];
        full.extend_from_slice(args);
        kafka_tool(main, &full)
    }

    /// Creates `topic` with `partitions` partitions (the cluster's default
    /// replication factor), straight on the cluster.
    ///
    /// # Panics
    /// When `TopicCommand` fails.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = self.tool(
            "org.apache.kafka.tools.TopicCommand",
            &[
                "--create",
                "--topic",
                topic,
                "--partitions",
                &partitions.to_string(),
            ],
        );
        assert!(
            out.status.success(),
            "TopicCommand --create {topic}: {}",
            output_text(&out)
        );
    }
}

fn lock(node: &Mutex<Node>) -> std::sync::MutexGuard<'_, Node> {
    node.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random-enough cluster id: 16 bytes from the clock and pid, in the
/// URL-safe base64 Kafka prints for `random-uuid` (never the reserved
/// all-zero id).
fn cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos());
    let seed = nanos ^ (u128::from(std::process::id()) << 64) | 1;
    let bytes = seed.to_be_bytes();
    let mut bits: u32 = 0;
    let mut held = 0;
    let mut out = String::new();
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(ALPHABET[((bits >> held) & 63) as usize] as char);
        }
    }
    if held > 0 {
        out.push(ALPHABET[((bits << (6 - held)) & 63) as usize] as char);
    }
    out
}

/// `server.properties` of node `id` of `nodes`: PEERS.md's small-box
/// settings, and for a multi-node cluster replication factor 3 and
/// `min.insync.replicas=2` everywhere (internal topics included).
fn node_config(
    id: usize,
    nodes: usize,
    port: u16,
    controller: u16,
    voters: &str,
    dir: &Path,
) -> String {
    let rf = nodes.min(3);
    let isr = if nodes > 1 { 2 } else { 1 };
    let mut config = String::new();
    let _ = write!(
        config,
        "process.roles=broker,controller\n\
         node.id={id}\n\
         controller.quorum.voters={voters}\n\
         listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
         inter.broker.listener.name=PLAINTEXT\n\
         controller.listener.names=CONTROLLER\n\
         listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
         log.dirs={data}\n\
         default.replication.factor={rf}\n\
         min.insync.replicas={isr}\n\
         offsets.topic.replication.factor={rf}\n\
         offsets.topic.num.partitions=5\n\
         transaction.state.log.replication.factor={rf}\n\
         transaction.state.log.min.isr={isr}\n\
         transaction.state.log.num.partitions=1\n\
         share.coordinator.state.topic.replication.factor={rf}\n\
         share.coordinator.state.topic.min.isr={isr}\n\
         group.initial.rebalance.delay.ms=0\n\
         log.cleaner.dedupe.buffer.size=2097152\n\
         num.network.threads=2\n\
         num.io.threads=2\n\
         background.threads=2\n\
         num.replica.fetchers=1\n\
         log.segment.bytes=16777216\n",
        data = dir.join("data").display()
    );
    config
}

/// `config` with a SASL_PLAINTEXT listener on `sasl_port` beside the
/// PLAINTEXT one on `port` (which brokers keep using between them, as the
/// super user ANONYMOUS), and ACLs enforced: everything is allowed to
/// every user until a test denies something.
fn with_sasl(config: &str, port: u16, sasl_port: u16, sasl: &SaslUsers) -> String {
    let plain_users: String = sasl
        .users
        .iter()
        .filter(|(m, _, _)| *m == "PLAIN")
        .map(|(_, name, pw)| format!(" user_{name}=\"{pw}\""))
        .collect();
    let reauth = sasl.reauth_ms.unwrap_or(0);
    let mut out = String::new();
    for line in config.lines() {
        let line = match line.split_once('=') {
            Some(("listeners", v)) => {
                format!("listeners={v},SASL_PLAINTEXT://127.0.0.1:{sasl_port}")
            }
            Some(("advertised.listeners", _)) => format!(
                "advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
            ),
            Some(("listener.security.protocol.map", v)) => {
                format!("listener.security.protocol.map={v},SASL_PLAINTEXT:SASL_PLAINTEXT")
            }
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let _ = write!(
        out,
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n\
         authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
         allow.everyone.if.no.acl.found=true\n\
         super.users=User:ANONYMOUS\n\
         connections.max.reauth.ms={reauth}\n\
         listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};\n\
         listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
    );
    out
}

/// `config` (already with SASL) with a SASL_SSL listener on `port` too,
/// its certificate and key from `tls_dir` in a PEM keystore.
fn with_sasl_ssl(config: &str, port: u16, tls_dir: &Path, node_dir: &Path) -> String {
    let read = |name: &str| fs::read_to_string(tls_dir.join(name)).expect("test certificate");
    let keystore = node_dir.join("keystore.pem");
    fs::write(&keystore, read("server.key") + &read("server.pem")).expect("write keystore");
    let mut out = String::new();
    for line in config.lines() {
        let line = match line.split_once('=') {
            Some(("listeners" | "advertised.listeners", v)) => {
                let key = line.split_once('=').map_or("", |(k, _)| k);
                format!("{key}={v},SASL_SSL://127.0.0.1:{port}")
            }
            Some(("listener.security.protocol.map", v)) => {
                format!("listener.security.protocol.map={v},SASL_SSL:SASL_SSL")
            }
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let _ = write!(
        out,
        "listener.name.sasl_ssl.ssl.keystore.type=PEM\n\
         listener.name.sasl_ssl.ssl.keystore.location={}\n\
         listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required;\n\
         listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n",
        keystore.display()
    );
    out
}

/// `StorageTool format` of one node with the cluster's id, creating the
/// SCRAM users of `sasl` (`-S`).
fn format_node(dir: &Path, cluster_id: &str, sasl: Option<&SaslUsers>) {
    let config = dir.join("server.properties");
    let scram: Vec<String> = sasl
        .map(|s| s.users.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|(m, _, _)| m.starts_with("SCRAM"))
        .flat_map(|(m, name, pw)| ["-S".to_owned(), format!("{m}=[name={name},password={pw}]")])
        .collect();
    let out = run_bounded(
        java("tools-log4j2.properties", TOOL_JVM)
            .arg("kafka.tools.StorageTool")
            .args(["format", "-t", cluster_id, "-c"])
            .arg(&config)
            .args(&scram)
            .arg("-g"),
        TOOL_DEADLINE,
        "StorageTool format",
    );
    assert!(
        out.status.success(),
        "StorageTool format {}: {}",
        dir.display(),
        output_text(&out)
    );
}

fn spawn_node(cluster: &str, id: usize, dir: &Path) -> ChildGuard {
    let mut node = java("log4j2.properties", NODE_JVM);
    node.arg("kafka.Kafka").arg(dir.join("server.properties"));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WATCHDOG)
        .arg("kafka-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir.parent().unwrap_or(dir))
        .arg(node.get_program())
        .args(node.get_args());
    let log = dir.join("node.log");
    ChildGuard::spawn_logged(&format!("kafka {cluster} node {id}"), &mut cmd, &log)
}

/// Waits for the ready line logged since the node's last spawn.
///
/// # Errors
/// When the node exits first (with the errors it logged) or the deadline
/// passes.
fn wait_node_ready(node: &mut Node) -> Result<(), String> {
    let log = node.child.log_path().to_owned();
    let last_run = || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.rsplit("=== spawn ")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let start = Instant::now();
    loop {
        if last_run().contains(READY_LINE) {
            return Ok(());
        }
        if let Some(status) = node.child.exit_status() {
            let errors: Vec<String> = last_run()
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("Exception"))
                .take(5)
                .map(str::to_owned)
                .collect();
            return Err(format!(
                "{} exited ({status}) before {READY_LINE:?}: {}",
                node.child.name(),
                errors.join(" | ")
            ));
        }
        if start.elapsed() > READY_DEADLINE {
            return Err(format!(
                "{} did not log {READY_LINE:?} within {READY_DEADLINE:?}",
                node.child.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many times a cluster start is tried.
const START_ATTEMPTS: usize = 3;

/// Runs a Kafka tool class with the tools' logging (warnings only).
pub fn kafka_tool(main: &str, args: &[&str]) -> Output {
    run_bounded(
        java("tools-log4j2.properties", TOOL_JVM)
            .arg(main)
            .args(args),
        TOOL_DEADLINE,
        main,
    )
}

/// Spawns `tests/peers/kafka-java/<program>.java ARGS` (single-file source
/// launch with the Kafka jars), output piped: finish it with
/// [`finish_java`].
pub fn spawn_java(program: &str, args: &[&str]) -> Child {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers/kafka-java")
        .join(format!("{program}.java"));
    assert!(source.is_file(), "{} is missing", source.display());
    java("tools-log4j2.properties", TOOL_JVM)
        .arg(source)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn java")
}

/// Waits for a Java program (bounded by `deadline`), asserts it succeeded
/// and parses its last stdout line as JSON.
pub fn finish_java(child: Child, deadline: Duration) -> serde_json::Value {
    super::kafka_client::finish_client(child, deadline, "java")
}

/// Runs `cmd` to completion, killing it at `deadline`.
fn run_bounded(cmd: &mut Command, deadline: Duration, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let start = Instant::now();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() {
        if start.elapsed() > deadline {
            // The waiter owns the child; signal it by pid.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let out = waiter.join().expect("join waiter").expect("wait tool");
            panic!("{what} ran past {deadline:?}: {}", output_text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().expect("join waiter").expect("wait tool")
}

/// A tool's stdout and stderr as one text.
pub fn output_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
