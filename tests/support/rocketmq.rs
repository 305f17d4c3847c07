//! RocketMQ peers: Apache RocketMQ 5.3.3 NameServers and brokers run with
//! `java` straight from the jars that `tests/peers/install.sh rocketmq` puts
//! in `$CUTOVER_PEERS/rocketmq-5.3.3/lib` (no distribution scripts: they pass
//! flags Java 17 rejects), and the Java test clients of
//! tests/peers/rocketmq-java run from source on Apache's own client, 5.3.3 or
//! 4.9.8.
//!
//! A JVM takes seconds to start, so each test binary starts its two clusters
//! once ([`shared_clusters`]) and its tests use their own topics and groups.
//! Every server runs under a small shell that kills it when the test process
//! goes away (its stdin pipe closes), since statics are never dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cutover_rocketmq::{Encoding, Frame, Header, TopicRouteData, encode, next_frame};
use tempfile::TempDir;

use super::child::ChildGuard;

/// The ext fields of UPDATE_AND_CREATE_TOPIC (17) for a readable and
/// writable topic of `queues` read and write queues.
#[must_use]
pub fn create_topic_fields<'a>(topic: &'a str, queues: &'a str) -> [(&'static str, &'a str); 8] {
    [
        ("topic", topic),
        ("defaultTopic", "TBW102"),
        ("readQueueNums", queues),
        ("writeQueueNums", queues),
        ("perm", "6"),
        ("topicFilterType", "SINGLE_TAG"),
        ("topicSysFlag", "0"),
        ("order", "false"),
    ]
}
use super::net::{free_port, free_port_block};
use super::peers_dir;

/// The Apache RocketMQ release the servers and the 5.x client come from.
pub const ROCKETMQ_VERSION: &str = "5.3.3";
/// The legacy Java client (route JSON of 4.x, VIP channel).
pub const ROCKETMQ4_CLIENT_VERSION: &str = "4.9.8";

/// How long a NameServer or broker may take to print its ready line: a JVM
/// start measured at 5–8 s alone, but past 90 s on 2 cores loaded ~12×
/// by parallel builds and tests.
const READY_DEADLINE: Duration = Duration::from_secs(180);
/// One try of a broker start; [`BROKER_ATTEMPTS`] tries in all.
const BROKER_ATTEMPT_DEADLINE: Duration = Duration::from_secs(90);
const BROKER_ATTEMPTS: u32 = 2;

/// `$CUTOVER_PEERS/rocketmq-5.3.3`: `lib/` (jars) and `conf/` (logback).
///
/// # Panics
/// When the jars are not installed, naming the install command.
pub fn rocketmq_home() -> PathBuf {
    let home = peers_dir().join(format!("rocketmq-{ROCKETMQ_VERSION}"));
    assert!(
        home.join(".stamp").is_file(),
        "Apache RocketMQ {ROCKETMQ_VERSION} is not installed in {}: run tests/peers/install.sh rocketmq",
        home.display()
    );
    home
}

/// The class path of one client flavour: `DIR/lib/*`.
fn client_class_path(lib: ClientLib) -> String {
    let dir = match lib {
        ClientLib::V5 => rocketmq_home(),
        ClientLib::V4 => {
            // The client, then its ACL hook (a jar of its own in 4.x).
            let [client, acl] = ["client", "acl"].map(|artifact| {
                let dir =
                    peers_dir().join(format!("rocketmq-{artifact}-{ROCKETMQ4_CLIENT_VERSION}"));
                assert!(
                    dir.join(".stamp").is_file(),
                    "rocketmq-{artifact} {ROCKETMQ4_CLIENT_VERSION} is not installed in {}: run tests/peers/install.sh rocketmq",
                    dir.display()
                );
                dir
            });
            return format!("{}/lib/*:{}/lib/*", client.display(), acl.display());
        }
    };
    format!("{}/lib/*", dir.display())
}

/// A server JVM tied to the test process: a shell starts it in the
/// background and kills it once its stdin reaches end of file, which
/// happens when this value is dropped or the test process exits.
struct TiedJvm {
    name: String,
    shell: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl TiedJvm {
    /// Runs `java ARGS` with its output in `log`.
    fn spawn(name: &str, args: &[String], log: &Path) -> TiedJvm {
        let out =
            std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#"java "$@" </dev/null & j=$!; cat >/dev/null; kill -9 $j; wait $j"#)
            .arg("sh")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = shell.stdin.take();
        TiedJvm {
            name: name.to_owned(),
            shell,
            stdin,
            log: log.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits for `line` in the log while the JVM stays up.
    ///
    /// # Panics
    /// When the process exits or the deadline passes; with its log's tail.
    fn wait_line(&mut self, line: &str) {
        if let Err(why) = self.try_wait_line(line, READY_DEADLINE) {
            panic!("{why}");
        }
    }

    /// Waits up to `deadline` for `line` in the log while the JVM stays up;
    /// the reason with the log's tail when it does not come.
    fn try_wait_line(&mut self, line: &str, deadline: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let text = self.log_text();
            if text.contains(line) {
                return Ok(());
            }
            let exited = self.shell.try_wait().ok().flatten().is_some();
            if exited || started.elapsed() > deadline {
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                return Err(format!(
                    "{} did not print {line:?} ({}); last lines of {}:\n{}",
                    self.name,
                    if exited {
                        "it exited"
                    } else {
                        "deadline passed"
                    },
                    self.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TiedJvm {
    fn drop(&mut self) {
        // End of file on the shell's stdin makes it kill the JVM.
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}

/// JVM flags shared by every server: Apache's home, a private user.home
/// (the servers log and keep state under it) and the logback file.
fn server_args(home: &Path, dir: &Path, role: &str, heap: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = heap.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        // Few GC and compiler threads: a test machine may have 2 cores.
        "-XX:+UseSerialGC".to_owned(),
        "-XX:TieredStopAtLevel=1".to_owned(),
        "-XX:-UsePerfData".to_owned(),
        format!("-Drocketmq.home.dir={}", home.display()),
        format!("-Duser.home={}", dir.display()),
        format!(
            "-Drmq.logback.configurationFile={}/conf/rmq.{role}.logback.xml",
            home.display()
        ),
        "-cp".to_owned(),
        format!("{}/lib/*", home.display()),
    ]);
    args
}

/// One master broker of a cluster.
pub struct RocketmqBroker {
    pub name: String,
    pub port: u16,
    _jvm: TiedJvm,
}

impl RocketmqBroker {
    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// One RocketMQ cluster: a NameServer and one or more master brokers.
pub struct RocketmqCluster {
    pub name: String,
    pub namesrv_port: u16,
    pub brokers: Vec<RocketmqBroker>,
    _namesrv: TiedJvm,
    dir: TempDir,
}

/// A NameServer whose JVM is starting.
struct StartingNamesrv {
    port: u16,
    jvm: TiedJvm,
    dir: TempDir,
}

fn spawn_namesrv(name: &str, jvm: &[String]) -> StartingNamesrv {
    let home = rocketmq_home();
    let dir = tempfile::tempdir().expect("rocketmq temp dir");
    let port = free_port_block(1);
    let conf = dir.path().join("namesrv.conf");
    let ns_dir = dir.path().join("namesrv");
    std::fs::create_dir_all(&ns_dir).expect("namesrv dir");
    std::fs::write(
        &conf,
        format!(
            "listenPort={port}\nbindAddress=127.0.0.1\nkvConfigPath={}/kvConfig.json\n",
            ns_dir.display()
        ),
    )
    .expect("write namesrv.conf");
    let mut args = server_args(&home, &ns_dir, "namesrv", &["-Xms128m", "-Xmx256m"]);
    args.extend(jvm.iter().cloned());
    args.extend([
        "org.apache.rocketmq.namesrv.NamesrvStartup".to_owned(),
        "-c".to_owned(),
        conf.display().to_string(),
    ]);
    let jvm = TiedJvm::spawn(
        &format!("{name} namesrv"),
        &args,
        &dir.path().join("namesrv.log"),
    );
    StartingNamesrv { port, jvm, dir }
}

/// Starts a broker; `extra` is appended to its broker.conf (a key given
/// again overrides the default above it).
fn spawn_broker(
    cluster: &str,
    broker: &str,
    namesrv_port: u16,
    dir: &Path,
    extra: &str,
    jvm: &[String],
) -> (u16, TiedJvm) {
    let home = rocketmq_home();
    let bdir = dir.join(broker);
    std::fs::create_dir_all(&bdir).expect("broker dir");
    // Port P, VIP port P − 2 and HA port P + 1.
    let port = free_port_block(4) + 2;
    let store = bdir.join("store");
    let conf = bdir.join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "brokerClusterName={cluster}\nbrokerName={broker}\nbrokerId=0\nbrokerRole=ASYNC_MASTER\n\
             flushDiskType=ASYNC_FLUSH\nnamesrvAddr=127.0.0.1:{namesrv_port}\nbrokerIP1=127.0.0.1\n\
             bindAddress=127.0.0.1\nlistenPort={port}\nstorePathRootDir={store}\n\
             storePathCommitLog={store}/commitlog\nautoCreateTopicEnable=true\n\
             autoCreateSubscriptionGroup=true\ndefaultTopicQueueNums=4\n\
             mappedFileSizeCommitLog=67108864\nmaxHashSlotNum=4000\nmaxIndexNum=1000\n\
             fileReservedTime=1\ntimerWheelEnable=false\n\
             transactionTimeOut=1000\ntransactionCheckInterval=2000\n{extra}",
            store = store.display()
        ),
    )
    .expect("write broker.conf");
    let mut args = server_args(
        &home,
        &bdir,
        "broker",
        &["-Xms256m", "-Xmx256m", "-XX:MaxDirectMemorySize=256m"],
    );
    args.extend(jvm.iter().cloned());
    args.extend([
        "org.apache.rocketmq.broker.BrokerStartup".to_owned(),
        "-c".to_owned(),
        conf.display().to_string(),
    ]);
    let jvm = TiedJvm::spawn(
        &format!("{cluster} {broker}"),
        &args,
        &dir.join(format!("{broker}.log")),
    );
    (port, jvm)
}

impl RocketmqCluster {
    /// Starts clusters `(name, [broker names])` side by side and waits until
    /// every broker is registered with its NameServer.
    ///
    /// # Panics
    /// When the jars are missing or a server is not ready in time.
    pub fn start_all(specs: &[(&str, &[&str])]) -> Vec<RocketmqCluster> {
        RocketmqCluster::start_all_with(specs, "")
    }

    /// [`RocketmqCluster::start_all`] with `extra` lines in every broker's
    /// config (e.g. `timerWheelEnable=true\n`).
    pub fn start_all_with(specs: &[(&str, &[&str])], extra: &str) -> Vec<RocketmqCluster> {
        RocketmqCluster::start_all_jvm(specs, extra, [&[], &[]])
    }

    /// [`RocketmqCluster::start_all_with`] with system properties
    /// (`-Dtls.server.mode=...`) for every NameServer (`jvm[0]`) and every
    /// broker (`jvm[1]`).
    pub fn start_all_jvm(
        specs: &[(&str, &[&str])],
        extra: &str,
        [namesrv_jvm, jvm]: [&[String]; 2],
    ) -> Vec<RocketmqCluster> {
        let mut namesrvs: Vec<StartingNamesrv> = specs
            .iter()
            .map(|(name, _)| spawn_namesrv(name, namesrv_jvm))
            .collect();
        for ns in &mut namesrvs {
            ns.jvm.wait_line("The Name Server boot success");
        }
        let mut starting: Vec<Vec<(String, u16, TiedJvm)>> = specs
            .iter()
            .zip(&namesrvs)
            .map(|((cluster, brokers), ns)| {
                brokers
                    .iter()
                    .map(|b| {
                        let (port, process) =
                            spawn_broker(cluster, b, ns.port, ns.dir.path(), extra, jvm);
                        ((*b).to_owned(), port, process)
                    })
                    .collect()
            })
            .collect();
        for (((cluster, _), ns), brokers) in specs.iter().zip(&namesrvs).zip(&mut starting) {
            for (name, port, process) in brokers.iter_mut() {
                // Seen twice under heavy load: a broker that never printed
                // its ready line nor exited. A fresh JVM on fresh ports
                // then started in seconds.
                let mut attempt = 1;
                while let Err(why) = process.try_wait_line("boot success", BROKER_ATTEMPT_DEADLINE)
                {
                    assert!(attempt < BROKER_ATTEMPTS, "{why}");
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "rocketmq: starting {cluster} {name} again: {why}"
                    );
                    let (new_port, new_jvm) =
                        spawn_broker(cluster, name, ns.port, ns.dir.path(), extra, jvm);
                    // Dropping the old one kills it.
                    *process = new_jvm;
                    *port = new_port;
                    attempt += 1;
                }
            }
        }
        let clusters: Vec<RocketmqCluster> = specs
            .iter()
            .zip(namesrvs)
            .zip(starting)
            .map(|(((name, _), ns), brokers)| RocketmqCluster {
                name: (*name).to_owned(),
                namesrv_port: ns.port,
                brokers: brokers
                    .into_iter()
                    .map(|(name, port, jvm)| RocketmqBroker {
                        name,
                        port,
                        _jvm: jvm,
                    })
                    .collect(),
                _namesrv: ns.jvm,
                dir: ns.dir,
            })
            .collect();
        for c in &clusters {
            c.wait_registered();
        }
        clusters
    }

    /// Waits until the NameServer's cluster info lists every broker.
    fn wait_registered(&self) {
        let ns = self.namesrv();
        super::wait_until(
            READY_DEADLINE,
            &format!("brokers of {} registered with {ns}", self.name),
            || {
                rpc(&ns, 106, &[], Encoding::Json).is_some_and(|f| {
                    let body = String::from_utf8_lossy(&f.body);
                    self.brokers.iter().all(|b| body.contains(&b.addr()))
                })
            },
        );
    }

    /// "127.0.0.1:PORT" of the NameServer.
    pub fn namesrv(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// Where the servers' logs and stores are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sum of the max offsets of `topic`'s queues `0..queues` on every broker.
    pub fn max_offsets(&self, topic: &str, queues: i32) -> i64 {
        self.brokers
            .iter()
            .map(|b| RocketmqCluster::broker_max_offsets(b, topic, queues))
            .sum()
    }

    /// Sum of the max offsets of `topic`'s queues `0..queues` on `broker`.
    pub fn broker_max_offsets(broker: &RocketmqBroker, topic: &str, queues: i32) -> i64 {
        (0..queues)
            .map(|q| {
                rpc(
                    &broker.addr(),
                    30,
                    &[("topic", topic), ("queueId", &q.to_string())],
                    Encoding::Json,
                )
                .and_then(|f| f.header.ext("offset").and_then(|o| o.parse().ok()))
                .unwrap_or(0)
            })
            .sum()
    }

    /// Creates `topic` with `queues` read/write queues on every broker and
    /// waits until the NameServer routes it to all of them.
    ///
    /// # Panics
    /// When a broker refuses or the route is not complete in 30 s.
    pub fn create_topic(&self, topic: &str, queues: i32) {
        let q = queues.to_string();
        for b in &self.brokers {
            let answer = rpc(
                &b.addr(),
                17,
                &create_topic_fields(topic, &q),
                Encoding::Json,
            )
            .expect("UPDATE_AND_CREATE_TOPIC answered");
            assert_eq!(
                answer.header.code, 0,
                "create {topic} on {}: {:?}",
                b.name, answer.header.remark
            );
        }
        let ns = self.namesrv();
        super::wait_until(
            Duration::from_secs(30),
            &format!("route of {topic} on {ns} naming every broker"),
            || {
                rpc(&ns, 105, &[("topic", topic)], Encoding::Json)
                    .filter(|f| f.header.code == 0)
                    .and_then(|f| TopicRouteData::decode(&f.body).ok())
                    .is_some_and(|r| r.queue_datas.len() == self.brokers.len())
            },
        );
    }
}

/// The source (`ClusterOld`: NameServer + masters `broker-a`, `broker-b`)
/// and target (`ClusterNew`: NameServer + master `broker-a`) of this test
/// binary, started on first use and shared by its tests.
pub fn shared_clusters() -> &'static (RocketmqCluster, RocketmqCluster) {
    static CLUSTERS: OnceLock<(RocketmqCluster, RocketmqCluster)> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        let started = Instant::now();
        let mut all = RocketmqCluster::start_all(&[
            ("ClusterOld", &["broker-a", "broker-b"]),
            ("ClusterNew", &["broker-a"]),
        ]);
        let target = all.pop().expect("target cluster");
        let source = all.pop().expect("source cluster");
        let _ = writeln!(
            std::io::stderr().lock(),
            "rocketmq: source and target clusters ready in {:.1?}",
            started.elapsed()
        );
        (source, target)
    })
}

/// One request on a fresh connection; the answer, or `None` on any failure.
pub fn rpc(addr: &str, code: i32, ext: &[(&str, &str)], encoding: Encoding) -> Option<Frame> {
    let mut header = Header::request(code, 1);
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    let frame = encode(&header, &[], encoding).ok()?;
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream.write_all(&frame).ok()?;
    read_frame(&mut stream)
}

/// Reads one whole frame (up to 16 MiB) from a blocking stream.
pub fn read_frame(stream: &mut impl Read) -> Option<Frame> {
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if let Ok(Some(frame)) = next_frame(&mut buf, 16 << 20) {
            return Some(frame);
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Which Apache Java client a test client runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientLib {
    /// rocketmq-client 5.3.3 (the remoting client of 5.x).
    V5,
    /// rocketmq-client 4.9.8.
    V4,
}

/// tests/peers/rocketmq-java/Client.java.
pub fn rocketmq_client_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/rocketmq-java/Client.java")
}

/// A running `Client.java produce|consume|transact`, appending bodies to `out`;
/// stopped by creating its stop file, killed on drop.
pub struct RocketmqClient {
    pub out: PathBuf,
    stop: PathBuf,
    child: ChildGuard,
}

impl RocketmqClient {
    /// Starts `mode` (`produce` or `consume`) on the 5.x client with `args`
    /// (`--namesrv` ...); `dir` holds the output, stop and log files, named
    /// after `id`.
    pub fn start(dir: &Path, mode: &str, id: &str, args: &[&str]) -> RocketmqClient {
        RocketmqClient::start_on(ClientLib::V5, dir, mode, id, args)
    }

    /// [`RocketmqClient::start`] on the given client library.
    pub fn start_on(
        lib: ClientLib,
        dir: &Path,
        mode: &str,
        id: &str,
        args: &[&str],
    ) -> RocketmqClient {
        let out = dir.join(format!("{id}.out"));
        let stop = dir.join(format!("{id}.stop"));
        let home = dir.join(format!("{id}.home"));
        let mut cmd = Command::new("java");
        cmd.args(["-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg(format!("-Duser.home={}", home.display()))
            .arg("-cp")
            .arg(client_class_path(lib))
            .arg(rocketmq_client_source())
            .arg(mode)
            .args(args)
            .arg("--out")
            .arg(&out)
            .arg("--stop-file")
            .arg(&stop);
        if matches!(mode, "produce" | "transact") {
            cmd.args(["--id", id]);
        }
        let child = ChildGuard::spawn_logged(id, &mut cmd, &dir.join(format!("{id}.log")));
        RocketmqClient { out, stop, child }
    }

    /// The bodies written so far, one per line.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Asks the client to stop and waits (bounded) for it to exit; returns
    /// its JSON summary (the last line of its log that parses).
    pub fn stop(&mut self, deadline: Duration) -> serde_json::Value {
        std::fs::write(&self.stop, b"").expect("write stop file");
        let mut exited = false;
        super::wait_until(deadline, "rocketmq client to exit", || {
            exited = self.child.exit_status().is_some();
            exited
        });
        self.child
            .log_tail(200)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }

    /// Whether the client has exited on its own.
    pub fn exited(&mut self) -> bool {
        self.child.exit_status().is_some()
    }
}

/// The shared source and target clusters, and cutover between them with
/// migration `orders` for every topic.
pub struct RocketmqRig {
    pub source: &'static RocketmqCluster,
    pub target: &'static RocketmqCluster,
    pub proxy: super::CutoverProcess,
    /// The proxy's NameServer address clients use.
    pub namesrv: String,
    /// Where client output files go.
    pub dir: TempDir,
}

/// The config of one RocketMQ migration `orders` (every topic) from
/// `source` to `target` on free ports, `extra` appended to its `rocketmq:`
/// options; returns the NameServer port clients use with it.
pub fn rocketmq_migration(
    source: &RocketmqCluster,
    target: &RocketmqCluster,
    extra: &str,
) -> (u16, super::Config) {
    let listen = free_port_block(1);
    // max_brokers 4 reserves exactly these 8 ports (4 endpoints and their
    // VIP ports); the default 16 would reach past the block.
    let base = free_port_block(8);
    let config = super::Config::new().append(&format!(
        "clusters:\n\
         \x20 - {{ name: old, protocol: rocketmq, endpoints: [\"{}\"] }}\n\
         \x20 - {{ name: new, protocol: rocketmq, endpoints: [\"{}\"] }}\n\
         migrations:\n\
         \x20 - name: orders\n\
         \x20   protocol: rocketmq\n\
         \x20   listen: 127.0.0.1:{listen}\n\
         \x20   source: old\n\
         \x20   target: new\n\
         \x20   topics: [ {{ match: \"*\" }} ]\n\
         \x20   rocketmq: {{ brokers_listen_base: {base}, max_brokers: 4{extra} }}\n",
        source.namesrv(),
        target.namesrv(),
    ));
    (listen, config)
}

impl RocketmqRig {
    /// Starts the proxy (and the clusters, on first use); `extra` is
    /// appended to the migration's `rocketmq:` options (e.g.
    /// `quiet_window: 1s`).
    pub fn start(extra: &str) -> RocketmqRig {
        RocketmqRig::start_on(shared_clusters(), extra)
    }

    /// [`RocketmqRig::start`] between the given clusters.
    pub fn start_on(
        clusters: &'static (RocketmqCluster, RocketmqCluster),
        extra: &str,
    ) -> RocketmqRig {
        let (source, target) = clusters;
        // Ports are picked free and bound moments later; tests of one binary
        // run in parallel, so one proxy starts at a time.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let (listen, config) = rocketmq_migration(source, target, extra);
        let proxy = super::CutoverProcess::start(config);
        RocketmqRig {
            source,
            target,
            proxy,
            namesrv: format!("127.0.0.1:{listen}"),
            dir: tempfile::tempdir().expect("client temp dir"),
        }
    }

    /// Starts a 5.x client through the proxy.
    pub fn client(
        &self,
        mode: &str,
        id: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> RocketmqClient {
        self.client_on(ClientLib::V5, mode, id, topic, group, extra)
    }

    /// Starts a client on `lib` through the proxy.
    pub fn client_on(
        &self,
        lib: ClientLib,
        mode: &str,
        id: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> RocketmqClient {
        let mut args = vec![
            "--namesrv",
            self.namesrv.as_str(),
            "--topic",
            topic,
            "--group",
            group,
        ];
        args.extend_from_slice(extra);
        RocketmqClient::start_on(lib, self.dir.path(), mode, id, &args)
    }

    /// `cutover ctl ARGS`: (exit code, stdout + stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = self.proxy.ctl(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}
