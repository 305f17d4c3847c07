//! A consumer group moves from the source to the target with its topic
//! (DESIGN.md §2 Kafka, `target`), black box with Apache Kafka clusters and
//! librdkafka: a group consumer with automatic commits reads through the
//! proxy while a producer writes and the topic walks to `target`; it keeps
//! reading there, then stops, and a consumer of the same group connected
//! *straight to the target cluster* picks up the rest. Together they read
//! every acknowledged record exactly once, in order: the proxy handed the
//! group off gracefully (no re-read of what was consumed) and left
//! physical target offsets in the target group (no translation needed to
//! resume without the proxy).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use support::{KafkaCluster, KafkaRig, finish_java, finish_kafka_script, spawn_java};

const PARTITIONS: usize = 3;

fn rig() -> KafkaRig {
    KafkaRig::start("orders*", "")
}

/// The load script with this rig's addresses, watching `marker`.
fn spawn(rig: &KafkaRig, body: &str, marker: &Path) -> Child {
    let script = PRELUDE
        .replace("{LISTEN}", &rig.listen.to_string())
        .replace("{TARGET}", &rig.target.bootstrap())
        .replace("{SOURCE}", &rig.source.bootstrap())
        .replace("{PARTS}", &PARTITIONS.to_string())
        .replace("{MARKER}", &marker.display().to_string())
        + body;
    rig.spawn_python(&script)
}

const PRELUDE: &str = r#"
import json, os, sys, time, threading
from confluent_kafka import Producer, Consumer
from confluent_kafka.admin import AdminClient, NewTopic
BOOT = "127.0.0.1:{LISTEN}"
TARGET = "{TARGET}"
SOURCE = "{SOURCE}"
PARTS = {PARTS}
MARKER = "{MARKER}"
"#;

const CREATE: &str = r#"
admin = AdminClient({"bootstrap.servers": BOOT})
admin.create_topics([NewTopic("orders", num_partitions=PARTS)])["orders"].result(timeout=20)
# A new topic reaches every broker's metadata a moment after CreateTopics
# answers (3 brokers): ask until it has its partitions, as clients do.
partitions, deadline = 0, time.time() + 20
while partitions < PARTS and time.time() < deadline:
    partitions = len(admin.list_topics(topic="orders", timeout=10).topics["orders"].partitions)
    if partitions < PARTS: time.sleep(0.2)
print(json.dumps({"partitions": partitions}))
"#;

/// A producer runs until the proxied consumer has stopped; the proxied
/// consumer reads until 3 s after the marker says the topic is in
/// `target`; then a consumer straight to the target reads the rest.
const LOAD: &str = r#"
acked, failed, lock = {}, [], threading.Lock()
stop_producing = threading.Event()

def produce():
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5})
    def done(err, msg):
        with lock:
            if err: failed.append(f"{msg.value().decode()}: {err.str()}")
            else: acked[msg.value().decode()] = msg.partition()
    seq = 0
    while not stop_producing.is_set():
        p.produce("orders", value=f"r:{seq}".encode(), partition=seq % PARTS, on_delivery=done)
        seq += 1
        p.poll(0)
        time.sleep(0.005)
    p.flush(30)

producer = threading.Thread(target=produce)
producer.start()

def consume(boot, until, label):
    c = Consumer({"bootstrap.servers": boot, "group.id": "app", "auto.offset.reset": "earliest",
                  "enable.auto.commit": True, "auto.commit.interval.ms": 200,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    got, errors, assigned = [], [], []
    c.subscribe(["orders"], on_assign=lambda c, parts: assigned.append(time.time()))
    while not until(got, assigned):
        m = c.poll(0.2)
        if m is None: continue
        if m.error(): errors.append(str(m.error()))
        else: got.append((m.partition(), m.offset(), m.value().decode(), label))
    c.close()
    return got, errors, len(assigned)

# The proxied consumer: until it has read for 2 s on its assignment after
# the move (the target coordinates it then), at most 120 s.
moved_at = []
def proxied_until(got, assigned):
    if not moved_at and os.path.exists(MARKER): moved_at.append(time.time())
    rejoined = [t for t in assigned[1:] if moved_at and t >= moved_at[0] - 15]
    return (rejoined and time.time() > rejoined[-1] + 2) or time.time() > start + 120
start = time.time()
a, a_errors, a_assigned = consume(BOOT, proxied_until, "proxy")
time.sleep(1)
stop_producing.set()
producer.join()

# Straight to the target: until every acknowledged record was read, at most 60 s.
with lock: want = set(acked)
have = {v for _, _, v, _ in a}
deadline = time.time() + 60
b, b_errors, b_assigned = consume(TARGET, lambda got, _: want <= have | {v for _, _, v, _ in got} or time.time() > deadline, "target")

seen = a + b
values = [v for _, _, v, _ in seen]
dups = sorted({v for v in values if values.count(v) > 1})
lost = sorted(want - set(values))
reordered = 0
last = {}
for part, off, v, label in seen:
    seq = int(v.split(":")[1])
    if part in last and seq <= last[part]: reordered += 1
    last[part] = seq
first_b = {}
for part, off, v, _ in b: first_b.setdefault(part, (off, v))
print(json.dumps({"acked": len(acked), "failed": failed[:5], "proxied": len(a), "direct": len(b),
                  "moved": bool(moved_at), "duplicates": len(dups), "duplicate_sample": dups[:5],
                  "lost": len(lost), "lost_sample": lost[:5], "reordered": reordered,
                  "proxied_errors": a_errors[:5], "direct_errors": b_errors[:5],
                  "proxied_assignments": a_assigned, "first_direct": first_b}))
"#;

#[test]
fn a_group_moves_to_the_target_and_resumes_exactly_even_without_the_proxy() {
    let rig = rig();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let marker = scratch.path().join("moved");
    let created = finish_kafka_script(spawn(&rig, CREATE, &marker));
    assert_eq!(created["partitions"], PARTITIONS, "{created}");
    let (code, out) = rig.ctl(&["migrate-metadata", "events", "orders"]);
    assert_eq!(code, 0, "migrate-metadata: {out}");

    let load = spawn(&rig, LOAD, &marker);
    // The group has joined and committed once the proxy has seen it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rig.proxy.scrape().contains("group=\"app\"") {
        assert!(
            Instant::now() < deadline,
            "the group never committed through the proxy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..3 {
        let (code, out) = rig.ctl(&["advance", "events", "orders", "--force"]);
        assert_eq!(code, 0, "advance: {out}");
    }
    assert_eq!(rig.topic_status("orders")["state"], "cutover");
    // `target` once the group has read past the source segments (the
    // check says so), without --force.
    let deadline = Instant::now() + Duration::from_secs(30);
    let checked = loop {
        let (code, out) = rig.ctl(&["check", "events", "orders"]);
        if code == 0 {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "never allowed into target: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        checked.contains("groups_move_to_target")
            && checked.contains("move to the target with orders: app"),
        "{checked}"
    );
    let (code, moved) = rig.ctl(&["advance", "events", "orders"]);
    assert_eq!(code, 0, "{moved}");
    std::fs::write(&marker, b"target").expect("marker");
    let status = rig.topic_status("orders");
    assert_eq!(status["state"], "target", "{moved}\n{status:#}");
    assert_eq!(
        status["details"]["groups_on_target"],
        serde_json::json!(["app"]),
        "{status:#}"
    );

    let report = finish_kafka_script(load);
    println!("{report:#}");
    let log = rig.proxy.log_tail(400);
    assert!(
        log.contains("kafka consumer group moved"),
        "no group move logged:\n{log}"
    );
    assert_eq!(report["failed"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["moved"], true, "{report:#}");
    assert!(
        report["proxied_assignments"].as_u64().unwrap() >= 2,
        "the proxied consumer was never assigned again after the move: {report:#}\n{log}"
    );
    assert!(report["acked"].as_u64().unwrap() > 500, "{report:#}");
    assert!(
        report["direct"].as_u64().unwrap() > 0,
        "the direct consumer had nothing left to read: {report:#}\n{log}"
    );
    for key in ["duplicates", "lost", "reordered"] {
        assert_eq!(report[key], 0, "{key}: {report:#}\n{log}");
    }

    // A group created after `target` is coordinated by the target from
    // its first join: its commits are there, the source never sees it.
    let fresh = finish_kafka_script(spawn(&rig, FRESH_GROUP, &marker));
    println!("{fresh:#}");
    assert_eq!(fresh["read"], 20, "{fresh:#}");
    assert!(
        fresh["committed_on_target"].as_i64().unwrap() > 0,
        "{fresh:#}\n{}",
        rig.proxy.log_tail(40)
    );
    assert_eq!(fresh["committed_on_source"], 0, "{fresh:#}");
    let groups = &rig.topic_status("orders")["details"]["groups_on_target"];
    assert_eq!(groups, &serde_json::json!(["app", "fresh"]), "{groups}");
}

/// A new group joins through the proxy at the log end, reads 20 records
/// written after it joined and commits; then its committed offsets are
/// asked of each cluster directly.
const FRESH_GROUP: &str = r#"
from confluent_kafka import TopicPartition
assigned = []
c = Consumer({"bootstrap.servers": BOOT, "group.id": "fresh", "auto.offset.reset": "latest",
              "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
c.subscribe(["orders"], on_assign=lambda c, parts: assigned.append(parts))
deadline = time.time() + 30
while not assigned and time.time() < deadline:
    c.poll(0.2)
# Positions resolved (latest) before anything new is written.
for tp in assigned[0]:
    while c.position([tp])[0].offset < 0 and time.time() < deadline:
        c.poll(0.1)
p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
for i in range(20):
    p.produce("orders", value=f"fresh:{i}".encode(), partition=i % PARTS)
p.flush(30)
read, deadline = 0, time.time() + 60
while read < 20 and time.time() < deadline:
    m = c.poll(0.5)
    if m is None or m.error(): continue
    read += 1
c.commit(asynchronous=False)
c.close()
def committed(boot):
    d = Consumer({"bootstrap.servers": boot, "group.id": "fresh", "enable.auto.commit": False})
    parts = d.committed([TopicPartition("orders", p) for p in range(PARTS)], timeout=10)
    d.close()
    return sum(max(tp.offset, 0) for tp in parts)
print(json.dumps({"read": read, "committed_on_target": committed(TARGET),
                  "committed_on_source": committed(SOURCE)}))
"#;

/// How long the Java load runs: its producing window, up to 60 s to read
/// the rest, and the JVM's start.
const FRESH_LOAD_SECONDS: u64 = 25;
const FRESH_JAVA_DEADLINE: Duration = Duration::from_secs(FRESH_LOAD_SECONDS + 100);

/// A target cluster formatted moments before the walk has no offsets or
/// transaction topic yet: its first FindCoordinator answers
/// COORDINATOR_NOT_AVAILABLE while it creates one, and InitProducerId
/// COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE. Clients retry
/// those, and so must the proxy's own requests: the walk to `target`, with
/// the Java client's idempotent producer and a consumer group moving with
/// the topic, goes through, and nothing acknowledged is lost or reordered.
#[test]
fn a_walk_to_a_freshly_formatted_target_waits_out_its_settling_errors() {
    let fresh: &'static KafkaCluster = Box::leak(Box::new(KafkaCluster::start("fresh", 1)));
    let rig = KafkaRig::between(KafkaCluster::source(), fresh, "fresh-orders*", "");
    rig.source.create_topic("fresh-orders", 3);
    let boot = format!("127.0.0.1:{}", rig.listen);
    let java = spawn_java(
        "SpliceLoad",
        &[
            &boot,
            "fresh-orders",
            "fresh-app",
            &PARTITIONS.to_string(),
            &FRESH_LOAD_SECONDS.to_string(),
        ],
    );
    // The group has joined and committed once the proxy has seen it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rig.proxy.scrape().contains("group=\"fresh-app\"") {
        assert!(
            Instant::now() < deadline,
            "the group never committed through the proxy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = rig.ctl(&["migrate-metadata", "events", "fresh-orders"]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    for to in ["dual_read", "dual_write", "cutover", "target"] {
        let (code, out) = rig.ctl(&["advance", "events", "fresh-orders", "--force"]);
        assert_eq!(
            code,
            0,
            "advance to {to}: {out}\n{}",
            rig.proxy.log_tail(30)
        );
        assert_eq!(rig.topic_status("fresh-orders")["state"], to, "{out}");
    }
    let status = rig.topic_status("fresh-orders");
    assert_eq!(
        status["details"]["groups_on_target"],
        serde_json::json!(["fresh-app"]),
        "{status:#}"
    );
    let report = finish_java(java, FRESH_JAVA_DEADLINE);
    println!("{report:#}");
    assert!(report["acked"].as_u64().unwrap() > 500, "{report:#}");
    for key in [
        "failed",
        "lost",
        "reordered",
        "offset_mismatch",
        "duplicates",
    ] {
        assert_eq!(
            report[key],
            0,
            "{key}: {report:#}\n{}",
            rig.proxy.log_tail(40)
        );
    }
}

/// A member that stopped polling misses a hand-off and is left in the
/// group on the cluster the group leaves; it is stale there (the proxy
/// heard of it, its session lives on). Moving the group back there must
/// take it out rather than be refused (UNKNOWN_MEMBER_ID) until the
/// cluster's session timeout: `target → cutover` and `target` again both
/// go through within seconds.
#[test]
fn a_group_moves_back_and_forth_past_a_stale_member() {
    let rig = KafkaRig::start("stale-orders*", "");
    rig.source.create_topic("stale-orders", PARTITIONS as u32);
    let boot = format!("127.0.0.1:{}", rig.listen);
    let seed = finish_java(
        spawn_java(
            "ProduceConsume",
            &[&boot, "stale-orders", "stale-seed", "30"],
        ),
        FRESH_JAVA_DEADLINE,
    );
    assert_eq!(seed["acked"], 30, "{seed}");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let stall = scratch.path().join("stall");
    let mut member = spawn_java(
        "StallingConsumer",
        &[
            &boot,
            "stale-orders",
            "stale-app",
            "30",
            &stall.display().to_string(),
        ],
    );
    let mut line = String::new();
    BufReader::new(member.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "joined");
    std::fs::write(&stall, b"").expect("stall file");
    let (code, out) = rig.ctl(&["migrate-metadata", "events", "stale-orders"]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    let walk = [
        ("advance", "dual_read"),
        ("advance", "dual_write"),
        ("advance", "cutover"),
        ("advance", "target"),
        ("rollback", "cutover"),
        ("advance", "target"),
    ];
    for (verb, to) in walk {
        let started = Instant::now();
        let (code, out) = rig.ctl(&[verb, "events", "stale-orders", "--force"]);
        assert_eq!(code, 0, "{verb} to {to}: {out}\n{}", rig.proxy.log_tail(30));
        assert_eq!(rig.topic_status("stale-orders")["state"], to, "{out}");
        // A hand-off waits 10 s for members to rejoin; nothing waits for
        // the 60 s session timeout.
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{verb} to {to} took {:?}",
            started.elapsed()
        );
    }
    let status = rig.topic_status("stale-orders");
    let on_target = &status["details"]["groups_on_target"];
    assert!(
        on_target
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "stale-app")),
        "{status:#}"
    );
    assert!(
        rig.proxy.log_tail(400).contains("members did not rejoin"),
        "the member never went stale: {}",
        rig.proxy.log_tail(40)
    );
    std::fs::remove_file(&stall).expect("remove the stall file");
    let _ = finish_java(member, FRESH_JAVA_DEADLINE);
}

/// How long the hand-off loads produce: long enough that the advance to
/// `target` falls well inside the window on a busy machine.
const HANDOFF_LOAD_SECONDS: u64 = 40;
const HANDOFF_JAVA_DEADLINE: Duration = Duration::from_secs(HANDOFF_LOAD_SECONDS + 100);
/// The longest a consumer may read nothing while records keep arriving,
/// the hand-off included ("within seconds").
const HANDOFF_MAX_GAP_MS: u64 = 8_000;

/// The Java consumer (`SpliceLoad`, automatic commits, `props` as consumer
/// properties) reads `topic` through the proxy while its producer writes
/// and the topic walks to `target`, back to `cutover` and to `target`
/// again; its group moves with it each time, every member rejoining. It
/// keeps reading within seconds of each move, and reads every
/// acknowledged record exactly once, in order.
fn hand_off_with(topic: &str, props: &[&str]) {
    let rig = KafkaRig::start(&format!("{topic}*"), "");
    rig.source.create_topic(topic, PARTITIONS as u32);
    let boot = format!("127.0.0.1:{}", rig.listen);
    let group = format!("{topic}-app");
    let seconds = HANDOFF_LOAD_SECONDS.to_string();
    let parts = PARTITIONS.to_string();
    let mut args = vec![boot.as_str(), topic, &group, &parts, &seconds];
    args.extend_from_slice(props);
    let java = spawn_java("SpliceLoad", &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rig.proxy.scrape().contains(&format!("group=\"{group}\"")) {
        assert!(
            Instant::now() < deadline,
            "the group never committed through the proxy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = rig.ctl(&["migrate-metadata", "events", topic]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    let mut advanced_at = 0;
    let walk = [
        ("advance", "dual_read"),
        ("advance", "dual_write"),
        ("advance", "cutover"),
        ("advance", "target"),
        ("rollback", "cutover"),
        ("advance", "target"),
    ];
    for (verb, to) in walk {
        let (code, out) = rig.ctl(&[verb, "events", topic, "--force"]);
        assert_eq!(code, 0, "{verb} to {to}: {out}\n{}", rig.proxy.log_tail(30));
        assert_eq!(rig.topic_status(topic)["state"], to, "{out}");
        advanced_at = epoch_ms();
    }
    let status = rig.topic_status(topic);
    assert_eq!(
        status["details"]["groups_on_target"],
        serde_json::json!([group]),
        "{status:#}"
    );
    let report = finish_java(java, HANDOFF_JAVA_DEADLINE);
    println!("{topic} {props:?}: advanced to target at {advanced_at}: {report:#}");
    let log = rig.proxy.log_tail(60);
    // Three hand-offs (to the target, back, to the target again), each
    // with the member waiting to rejoin, none waiting for it in vain.
    let full = rig.proxy.log_tail(2000);
    assert_eq!(
        full.matches("every member of the group waits to rejoin")
            .count(),
        3,
        "{full}"
    );
    assert!(!full.contains("members did not rejoin"), "{full}");
    assert_eq!(report["consumer_error"], "", "{report:#}\n{log}");
    assert!(report["acked"].as_u64().unwrap() > 1000, "{report:#}");
    for key in [
        "failed",
        "lost",
        "reordered",
        "offset_mismatch",
        "duplicates",
    ] {
        assert_eq!(report[key], 0, "{key}: {report:#}\n{log}");
    }
    assert!(
        report["assignments"].as_u64().unwrap() >= 2,
        "never assigned again after the hand-off: {report:#}\n{log}"
    );
    assert!(
        report["last_read_at"].as_u64().unwrap() > advanced_at + 5_000,
        "stopped reading after the advance: {report:#}\n{log}"
    );
    assert!(
        report["max_gap_ms"].as_u64().unwrap() < HANDOFF_MAX_GAP_MS,
        "the consumer stalled: {report:#}\n{log}"
    );
}

fn epoch_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("epoch ms fit u64")
}

/// The eager protocol (RangeAssignor alone): the member revokes
/// everything and commits before it rejoins.
#[test]
fn a_java_group_with_the_range_assignor_keeps_reading_across_the_hand_off() {
    hand_off_with(
        "range-orders",
        &["partition.assignment.strategy=org.apache.kafka.clients.consumer.RangeAssignor"],
    );
}

/// The cooperative protocol: the member keeps its partitions (and keeps
/// fetching them) through the rejoin.
#[test]
fn a_java_group_with_the_cooperative_sticky_assignor_keeps_reading_across_the_hand_off() {
    hand_off_with(
        "coop-orders",
        &[
            "partition.assignment.strategy=org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
        ],
    );
}

/// Static membership: the member rejoins under its `group.instance.id`,
/// which the target has never seen.
#[test]
fn a_static_java_member_keeps_reading_across_the_hand_off() {
    hand_off_with(
        "static-orders",
        &[
            "group.instance.id=static-orders-1",
            "session.timeout.ms=30000",
        ],
    );
}

/// A consumer asking for the new group protocol (KIP-848,
/// `group.protocol=consumer`) is refused at its first heartbeat with an
/// error that says cutover does not support it yet and how to go on; the
/// producer beside it is unaffected.
#[test]
fn a_consumer_of_the_new_group_protocol_is_refused_saying_why() {
    let rig = KafkaRig::start("kip848-orders*", "");
    rig.source.create_topic("kip848-orders", 1);
    let boot = format!("127.0.0.1:{}", rig.listen);
    let java = spawn_java(
        "SpliceLoad",
        &[
            &boot,
            "kip848-orders",
            "kip848-app",
            "1",
            "3",
            "group.protocol=consumer",
        ],
    );
    let report = finish_java(java, Duration::from_secs(120));
    println!("{report:#}");
    let error = report["consumer_error"].as_str().unwrap();
    assert!(
        error.contains("InvalidRequestException")
            && error.contains("cutover does not support the consumer group protocol")
            && error.contains("group.protocol=classic"),
        "{report:#}\n{}",
        rig.proxy.log_tail(30)
    );
    assert_eq!(report["consumed"], 0, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert!(report["acked"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        rig.proxy
            .log_tail(100)
            .contains("asked for the consumer group protocol (KIP-848); refused"),
        "{}",
        rig.proxy.log_tail(30)
    );
}
