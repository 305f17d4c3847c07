//! Kafka metadata migration and the `source → dual_read` checks, black box:
//! Apache Kafka clusters (a source of 3 brokers, a target of 1, shared by
//! this binary's tests: each test keeps to a topic of its own), librdkafka
//! (confluent-kafka) clients through the proxy and, for the bypass cases,
//! straight to the source. Needs `tests/peers/install.sh kafka`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Child;

use serde_json::Value;
use support::{CutoverProcess, KafkaRig, finish_kafka_script};

const PRELUDE: &str = r#"
import json, sys, time
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
BOOT = "127.0.0.1:{LISTEN}"
SOURCE = "{SOURCE}"
TARGET = "{TARGET}"
GROUP_OPTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}

TOPIC = "{TOPIC}"

def produce(boot, n, start):
    p = Producer({"bootstrap.servers": boot, "acks": "all"})
    for i in range(n):
        p.produce(TOPIC, key=str(i % 5).encode(), value=f"m{start + i}".encode())
    assert p.flush(30) == 0

def consume(boot, group, want):
    c = Consumer({"bootstrap.servers": boot, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, **GROUP_OPTS})
    c.subscribe([TOPIC])
    got, deadline = 0, time.time() + 60
    while got < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error(): continue
        got += 1
    c.commit(asynchronous=False)
    c.close()
    return got
"#;

/// A rig migrating `topic` (and what starts with it): a name no other test
/// of this binary uses, as they share the clusters.
fn rig(topic: &str) -> KafkaRig {
    KafkaRig::start(&format!("{topic}*"), "")
}

/// The topic a rig migrates (its pattern without the `*`).
fn topic(rig: &KafkaRig) -> String {
    rig.pattern.trim_end_matches('*').to_owned()
}

impl KafkaRig {
    fn script(&self, body: &str) -> String {
        PRELUDE
            .replace("{LISTEN}", &self.listen.to_string())
            .replace("{SOURCE}", &self.source.bootstrap())
            .replace("{TARGET}", &self.target.bootstrap())
            .replace("{TOPIC}", &topic(self))
            + body
    }

    fn spawn(&self, body: &str) -> Child {
        self.spawn_python(&self.script(body))
    }

    /// Runs a script to its end (bounded) and parses its last line as JSON.
    fn python(&self, body: &str) -> Value {
        finish_kafka_script(self.spawn(body))
    }

    fn ctl_json(&self, args: &[&str]) -> Value {
        let out = self.proxy.ctl(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ctl {args:?} ({}): {e}\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// `ctl check events TOPIC --json`, as `name → (passed, reason)`.
    fn checks(&self) -> Vec<(String, bool, String)> {
        let body = self.ctl_json(&["check", "events", &topic(self), "--json"]);
        body["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks: {body:#}"))
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["passed"].as_bool().unwrap(),
                    c["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn check<'a>(checks: &'a [(String, bool, String)], name: &str) -> (bool, &'a str) {
    let c = checks
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"));
    (c.1, &c.2)
}

#[test]
fn migrate_metadata_and_dual_read_checks_name_what_bypasses_the_proxy() {
    let rig = rig("orders");
    // The topic exists on the source only; Metadata through the proxy
    // registers it.
    let out = rig.python(
        r#"
src = AdminClient({"bootstrap.servers": SOURCE})
src.create_topics([NewTopic(TOPIC, num_partitions=3)])[TOPIC].result(timeout=20)
# A new topic reaches every broker's metadata a moment after CreateTopics
# answers: ask until it has its partitions, as clients do.
partitions, deadline = 0, time.time() + 20
while partitions < 3 and time.time() < deadline:
    md = AdminClient({"bootstrap.servers": BOOT}).list_topics(timeout=10)
    partitions = len(md.topics[TOPIC].partitions) if TOPIC in md.topics else 0
    if partitions < 3: time.sleep(0.2)
print(json.dumps({"partitions": partitions}))
"#,
    );
    assert_eq!(out["partitions"], 3, "{out:#}");

    let checks = rig.checks();
    let (passed, reason) = check(&checks, "target_topic_exists");
    assert!(!passed, "{checks:?}");
    assert!(reason.contains("has no topic orders"), "{reason}");
    assert!(check(&checks, "target_reachable").0, "{checks:?}");

    // migrate-metadata creates it on the target, then finds it there.
    let report = rig.ctl_json(&["migrate-metadata", "events", "orders", "--json"]);
    assert_eq!(report["topics"][0]["outcome"], "created", "{report:#}");
    assert_eq!(report["topics"][0]["target_partitions"], 3, "{report:#}");
    let out = rig.python(
        r#"
md = AdminClient({"bootstrap.servers": TARGET}).list_topics(timeout=10)
print(json.dumps({"partitions": len(md.topics[TOPIC].partitions) if TOPIC in md.topics else 0}))
"#,
    );
    assert_eq!(out["partitions"], 3, "{out:#}");
    let again = rig.ctl_json(&["migrate-metadata", "events", "orders", "--json"]);
    assert_eq!(again["topics"][0]["outcome"], "present", "{again:#}");
    let human = rig.proxy.ctl(&["migrate-metadata", "events", "orders"]);
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("already present (ok)"));

    // Two groups, both through the proxy: every check passes.
    let out = rig.python(
        r#"
produce(BOOT, 30, 0)
a = consume(BOOT, "g-direct", 30)
b = consume(BOOT, "g-proxied", 30)
print(json.dumps({"a": a, "b": b}))
"#,
    );
    assert_eq!((out["a"].as_i64(), out["b"].as_i64()), (Some(30), Some(30)));
    let checks = rig.checks();
    for name in [
        "target_reachable",
        "target_topic_exists",
        "no_bypassing_consumers",
        "no_bypassing_producers",
    ] {
        assert!(check(&checks, name).0, "{name}: {checks:?}");
    }

    // g-direct now consumes and commits straight at the source.
    let out = rig.python(
        r#"
produce(BOOT, 15, 30)
a = consume(SOURCE, "g-direct", 15)
print(json.dumps({"a": a}))
"#,
    );
    assert_eq!(out["a"], 15, "{out:#}");
    let checks = rig.checks();
    let (passed, reason) = check(&checks, "no_bypassing_consumers");
    assert!(!passed, "{checks:?}");
    assert!(reason.contains("group g-direct"), "{reason}");
    assert!(!reason.contains("g-proxied"), "{reason}");
    assert!(check(&checks, "no_bypassing_producers").0, "{checks:?}");
    let refused = rig.ctl_json(&["advance", "events", "orders", "--json"]);
    assert_eq!(refused["outcomes"][0]["outcome"], "refused", "{refused:#}");

    // A producer writing straight to the source during the check.
    let mut producer = rig.spawn(
        r#"
p = Producer({"bootstrap.servers": SOURCE, "acks": "all", "linger.ms": 5})
p.produce(TOPIC, value=b"first"); p.flush(10)
print("started", flush=True)
end = time.time() + 12
while time.time() < end:
    p.produce(TOPIC, value=b"x", partition=1); p.poll(0); time.sleep(0.02)
p.flush(10)
print(json.dumps({"done": True}))
"#,
    );
    let mut line = String::new();
    BufReader::new(producer.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "started");
    let checks = rig.checks();
    let (passed, reason) = check(&checks, "no_bypassing_producers");
    assert!(!passed, "{checks:?}");
    assert!(reason.contains("orders/1 grew by"), "{reason}");
    let _ = producer.kill();
    let _ = producer.wait();
}

/// The sum of `cutover_kafka_bypassed_records` for the source cluster ("old").
fn bypassed_on_source(proxy: &CutoverProcess) -> f64 {
    proxy
        .scrape()
        .lines()
        .filter(|l| {
            l.starts_with("cutover_kafka_bypassed_records{") && l.contains("cluster=\"old\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of the "N record offset(s) past the switch" a check names.
fn offsets_past_the_switch(reason: &str) -> u64 {
    reason
        .split(" record offset(s) past the switch")
        .filter_map(|before| before.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn writes_to_the_source_after_cutover_are_alarmed_refused_and_served_after_a_rollback() {
    let rig = rig("payments");
    let t = topic(&rig);
    let created = rig.python(
        r#"
admin = AdminClient({"bootstrap.servers": BOOT})
admin.create_topics([NewTopic(TOPIC, num_partitions=2)])[TOPIC].result(timeout=20)
admin.list_topics(topic=TOPIC, timeout=10)
produce(BOOT, 20, 0)
print(json.dumps({"ok": True}))
"#,
    );
    assert_eq!(created["ok"], true);
    let out = rig.proxy.ctl(&["migrate-metadata", "events", &t]);
    assert!(out.status.success(), "{out:?}");
    for _ in 0..3 {
        let out = rig.proxy.ctl(&["advance", "events", &t, "--force"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // In cutover every partition writes to the target; a producer that
    // still talks to the source directly writes past the switch: six plain
    // records, and one committed transaction of two records to partition
    // 0, whose COMMIT marker takes an offset there too.
    let wrote = rig.python(
        r#"
produce(BOOT, 10, 100)
# One record per batch, so the six records are six produce requests.
p = Producer({"bootstrap.servers": SOURCE, "acks": "all", "linger.ms": 0})
for i in range(6):
    p.produce(TOPIC, key=str(i % 5).encode(), value=f"m{200 + i}".encode())
    assert p.flush(30) == 0
t = Producer({"bootstrap.servers": SOURCE, "transactional.id": TOPIC + "-around"})
t.init_transactions(30)
t.begin_transaction()
for i in range(2):
    t.produce(TOPIC, value=f"m{300 + i}".encode(), partition=0)
t.commit_transaction(30)
print(json.dumps({"ok": True}))
"#,
    );
    assert_eq!(wrote["ok"], true);
    // Eight data records bypassed the proxy; the marker is not one of them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while bypassed_on_source(&rig.proxy) < 8.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the bypass gauge never reached 8: {}",
            bypassed_on_source(&rig.proxy)
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let checks = rig.checks();
    let (passed, reason) = check(&checks, "no_writes_bypassing_to_source");
    assert!(!passed && reason.contains(&format!("{t}/")), "{reason}");
    assert!(reason.contains("roll back"), "says what to do: {reason}");
    assert_eq!(
        offsets_past_the_switch(reason),
        8,
        "data records only, not the COMMIT marker: {reason}"
    );
    assert_eq!(bypassed_on_source(&rig.proxy), 8.0, "the gauge too");
    // Roll back to dual_write with nothing shifted: every partition's new
    // source segment starts at the first bypassing record, so a reader
    // through the proxy gets all 38 records (and skips the marker).
    let out = rig.proxy.ctl(&["rollback", "events", &t]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rig.proxy.ctl(&["shift", "events", &t, "--percent", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = rig.python(
        r#"
c = Consumer({"bootstrap.servers": BOOT, "group.id": "reader", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, **GROUP_OPTS})
c.subscribe([TOPIC])
got, deadline = set(), time.time() + 60
while len(got) < 38 and time.time() < deadline:
    m = c.poll(0.5)
    if m is None or m.error(): continue
    got.add(m.value().decode())
c.close()
print(json.dumps({"read": sorted(got)}))
"#,
    );
    let read: Vec<&str> = read["read"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(read.len(), 38, "{read:?}");
    assert!(
        (200..206)
            .chain(300..302)
            .all(|i| read.contains(&format!("m{i}").as_str())),
        "the bypassing records are served: {read:?}"
    );
}

/// A consumer group reading the topic straight from the source, never
/// through the proxy, blocks `dual_read` by name with its members' hosts
/// (found with ListGroups and DescribeGroups on the source); once it
/// stops, the check passes. Before `target` its commits block
/// `groups_move_to_target` by name and position; a forced advance leaves
/// it on the source instead of moving it silently.
#[test]
fn a_group_reading_the_source_directly_blocks_dual_read_by_name() {
    let rig = rig("refunds");
    rig.source.create_topic("refunds", 3);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let stop = scratch.path().join("stop");
    let mut direct = rig.spawn(&format!(
        r#"
import os
produce(SOURCE, 10, 0)
c = Consumer({{"bootstrap.servers": SOURCE, "group.id": "bypass-group", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, **GROUP_OPTS}})
assigned = []
c.subscribe([TOPIC], on_assign=lambda c, parts: assigned.extend(parts))
read, deadline = 0, time.time() + 60
while read < 10 and time.time() < deadline:
    m = c.poll(0.2)
    if m is not None and not m.error(): read += 1
c.commit(asynchronous=False)
print("assigned" if assigned and read == 10 else f"assigned {{len(assigned)}}, read {{read}}", flush=True)
while not os.path.exists("{stop}") and time.time() < deadline + 60:
    c.poll(0.2)
c.close()
print(json.dumps({{"assigned": len(assigned)}}))
"#,
        stop = stop.display()
    ));
    let mut line = String::new();
    BufReader::new(direct.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "assigned");
    // The topic reaches the proxy's registry through Metadata.
    let seen = rig.python(
        r#"
md = AdminClient({"bootstrap.servers": BOOT}).list_topics(topic=TOPIC, timeout=10)
print(json.dumps({"partitions": len(md.topics[TOPIC].partitions)}))
"#,
    );
    assert_eq!(seen["partitions"], 3, "{seen}");
    let checks = rig.checks();
    let (passed, reason) = check(&checks, "no_bypassing_consumers");
    assert!(!passed, "{checks:?}");
    assert!(reason.contains("group bypass-group"), "{reason}");
    assert!(reason.contains("127.0.0.1"), "names the hosts: {reason}");
    let refused = rig.ctl_json(&["advance", "events", "refunds", "--json"]);
    assert_eq!(refused["outcomes"][0]["outcome"], "refused", "{refused:#}");

    std::fs::write(&stop, b"").expect("stop file");
    let out = finish_kafka_script(direct);
    assert_eq!(out["assigned"], 3, "{out}");
    let checks = rig.checks();
    let (passed, reason) = check(&checks, "no_bypassing_consumers");
    assert!(passed, "{checks:?}");
    assert!(
        reason.contains("no group the source lists reads refunds"),
        "{reason}"
    );

    // Five more records reach the source directly after the group's last
    // commit, so it is behind on the source's segments.
    rig.python("produce(SOURCE, 5, 10)\nprint(json.dumps({'produced': 5}))");

    let report = rig.ctl_json(&["migrate-metadata", "events", "refunds", "--json"]);
    assert_eq!(report["topics"][0]["outcome"], "created", "{report:#}");
    for _ in 0..3 {
        let out = rig.proxy.ctl(&["advance", "events", "refunds", "--force"]);
        assert!(out.status.success(), "{out:?}");
    }
    let checks = rig.checks();
    // Never seen through the proxy, yet the source lists it with commits.
    let (passed, reason) = check(&checks, "consumers_past_source_segments");
    assert!(!passed, "{checks:?}");
    assert!(reason.contains("bypass-group at refunds/"), "{reason}");
    let (passed, reason) = check(&checks, "groups_move_to_target");
    assert!(!passed, "{checks:?}");
    assert!(
        reason
            .contains("bypass-group committed on refunds without ever using it through the proxy"),
        "{reason}"
    );
    assert!(reason.contains("refunds/"), "names the position: {reason}");
    let out = rig.proxy.ctl(&["advance", "events", "refunds", "--force"]);
    assert!(out.status.success(), "{out:?}");
    let status = rig.topic_status("refunds");
    assert_eq!(status["state"], "target", "{status:#}");
    assert!(
        !status["details"]["groups_on_target"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "bypass-group")),
        "moved silently: {status:#}"
    );
    assert!(
        rig.proxy
            .log_tail(100)
            .contains("a group never seen through the proxy stays on the source"),
        "{}",
        rig.proxy.log_tail(30)
    );
}
