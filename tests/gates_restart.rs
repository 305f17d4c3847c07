//! Readiness checks across a proxy restart, black box against real peers:
//! Apache Kafka 4.1.1 (librdkafka clients) and Apache RocketMQ 5.3.3 (Java
//! clients). The groups and members the checks rely on are persisted in the
//! state store; after a clean stop (SIGTERM) they are loaded back and the
//! checks decide on them, and after a crash (SIGKILL) the checks refuse for
//! one heartbeat interval, saying what they do not know. Without the
//! persisted state each check below passes (or names the wrong cause),
//! so these tests fail on a proxy that forgets. Needs
//! `tests/peers/install.sh kafka rocketmq`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use cutover_rocketmq::Encoding;
use serde_json::Value;
use support::{CutoverProcess, KafkaRig, RocketmqRig, finish_kafka_script, rpc, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// Stops the proxy with SIGTERM (it drains and writes its last snapshot)
/// and starts it again on the same state directory.
fn sigterm_restart(proxy: &mut CutoverProcess) {
    proxy.sigterm();
    wait_until(DEADLINE, "the proxy to drain and exit", || {
        !proxy.is_running()
    });
    assert!(
        proxy
            .log_tail(40)
            .contains("observations persisted for the next start"),
        "{}",
        proxy.log_tail(40)
    );
    proxy.restart();
}

/// The observation snapshot `name` in the proxy's state store, once it
/// satisfies `holds`.
fn snapshot(proxy: &CutoverProcess, name: &str, holds: impl Fn(&Value) -> bool) -> Value {
    let path: PathBuf = proxy.config().state_dir().join("blobs").join(name);
    let mut found = Value::Null;
    wait_until(DEADLINE, "the observations to be persisted", || {
        found = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        holds(&found)
    });
    found
}

/// `ctl check MIGRATION TOPIC --json [extra]` as `name → (passed, reason)`.
fn checks(
    proxy: &CutoverProcess,
    migration: &str,
    topic: &str,
    extra: &[&str],
) -> Vec<(String, bool, String)> {
    let mut args = vec!["check", migration, topic, "--json"];
    args.extend_from_slice(extra);
    let out = proxy.ctl(&args);
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl {args:?}: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
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

fn check<'a>(checks: &'a [(String, bool, String)], name: &str) -> (bool, &'a str) {
    let c = checks
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"));
    (c.1, &c.2)
}

/// A crash's refusal: names the restart, what is unknown and the wait.
fn assert_unsure(checks: &[(String, bool, String)], name: &str, what: &str) {
    let (passed, reason) = check(checks, name);
    assert!(
        !passed,
        "{name} passed on state lost in the crash: {reason}"
    );
    for part in ["the proxy restarted", what, "wait", "or --force"] {
        assert!(reason.contains(part), "{name}: no \"{part}\" in: {reason}");
    }
}

const KAFKA_PRELUDE: &str = r#"
import json, time
from confluent_kafka import Producer, Consumer
BOOT = "127.0.0.1:{LISTEN}"
TOPIC = "recalled"
p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
for i in range(30):
    p.produce(TOPIC, key=str(i % 5).encode(), value=f"m{i}".encode())
assert p.flush(30) == 0
c = Consumer({"bootstrap.servers": BOOT, "group.id": "seen-group", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe([TOPIC])
got, deadline = 0, time.time() + 60
while got < 30 and time.time() < deadline:
    m = c.poll(0.5)
    if m is None or m.error(): continue
    got += 1
c.commit(asynchronous=False)
c.close()
print(json.dumps({"got": got}))
"#;

#[test]
fn kafka_groups_seen_through_the_proxy_outlive_a_restart() {
    let mut rig = KafkaRig::start("recalled*", "");
    rig.source.create_topic("recalled", 3);
    let out = finish_kafka_script(
        rig.spawn_python(&KAFKA_PRELUDE.replace("{LISTEN}", &rig.listen.to_string())),
    );
    assert_eq!(out["got"], 30, "{out}");
    snapshot(&rig.proxy, "kafka-observed-events", |s| {
        s["data"]["seen-group"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "recalled"))
    });

    // A crash: what was seen after the last snapshot is lost, so the
    // check refuses instead of passing on "no group seen".
    rig.proxy.restart();
    let found = checks(&rig.proxy, "events", "recalled", &[]);
    assert_unsure(&found, "no_bypassing_consumers", "consumer groups");

    // A clean stop: the group is loaded back and the check decides on it.
    sigterm_restart(&mut rig.proxy);
    let found = checks(&rig.proxy, "events", "recalled", &[]);
    let (passed, reason) = check(&found, "no_bypassing_consumers");
    assert!(passed, "{found:?}");
    assert!(
        reason.contains("of the 1 group(s) seen through the proxy, 1 have commits"),
        "decided on the persisted group: {reason}"
    );

    let (code, out) = rig.ctl(&["migrate-metadata", "events", "recalled"]);
    assert_eq!(code, 0, "{out}");
    for _ in 0..3 {
        let (code, out) = rig.ctl(&["advance", "events", "recalled", "--force"]);
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(rig.topic_status("recalled")["state"], "cutover");

    // A group reading the source directly without ever committing is not
    // counted by commits, yet the source names it: the check refuses.
    let scratch = tempfile::tempdir().expect("scratch dir");
    let stop = scratch.path().join("stop");
    let mut reader = rig.spawn_python(&format!(
        r#"
import json, os, time
from confluent_kafka import Consumer
c = Consumer({{"bootstrap.servers": "{source}", "group.id": "silent-reader", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}})
assigned = []
c.subscribe(["recalled"], on_assign=lambda c, parts: assigned.extend(parts))
deadline = time.time() + 60
while not assigned and time.time() < deadline:
    c.poll(0.2)
print("assigned" if assigned else "not assigned", flush=True)
while not os.path.exists("{stop}") and time.time() < deadline + 60:
    c.poll(0.2)
c.close()
print(json.dumps({{"assigned": len(assigned)}}))
"#,
        source = rig.source.bootstrap(),
        stop = stop.display()
    ));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(reader.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "assigned");
    let found = checks(&rig.proxy, "events", "recalled", &[]);
    let (passed, reason) = check(&found, "consumers_past_source_segments");
    assert!(!passed, "{found:?}");
    for part in [
        "silent-reader has 1 member(s) from ",
        "127.0.0.1 reading recalled with no commit on it",
    ] {
        assert!(reason.contains(part), "no \"{part}\" in: {reason}");
    }
    std::fs::write(&stop, b"").expect("stop file");
    let out = finish_kafka_script(reader);
    assert_eq!(out["assigned"], 3, "{out}");

    // Before `target`: the group that read through the proxy moves with
    // the topic, known from the snapshot after a clean restart (a proxy
    // that forgot it would call it a group that never used the proxy).
    sigterm_restart(&mut rig.proxy);
    let found = checks(&rig.proxy, "events", "recalled", &[]);
    let (passed, reason) = check(&found, "groups_move_to_target");
    assert!(passed, "{found:?}");
    assert!(
        reason.contains("move to the target with recalled: seen-group;"),
        "{reason}"
    );
    let (passed, reason) = check(&found, "consumers_past_source_segments");
    assert!(passed, "{found:?}");
    assert!(reason.contains("1 seen through the proxy"), "{reason}");

    // After a crash both refuse for one heartbeat interval.
    rig.proxy.restart();
    let found = checks(&rig.proxy, "events", "recalled", &[]);
    assert_unsure(&found, "groups_move_to_target", "consumer groups");
    assert_unsure(&found, "consumers_past_source_segments", "consumer groups");
    let (code, out) = rig.ctl(&["advance", "events", "recalled"]);
    assert_eq!(code, 1, "refused: {out}");
}

#[test]
fn rocketmq_members_seen_through_the_proxy_outlive_a_restart() {
    let mut rig = RocketmqRig::start(", quiet_window: 1s");
    rig.source.create_topic("recalls", 2);
    let route = rpc(&rig.namesrv, 105, &[("topic", "recalls")], Encoding::Json).unwrap();
    assert_eq!(route.header.code, 0, "{:?}", route.header.remark);
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", "recalls"]);
    assert_eq!(code, 0, "{out}");
    let mut consumer = rig.client("consume", "recaller", "recalls", "recall-group", &[]);
    wait_until(DEADLINE, "the member to be seen through the proxy", || {
        let found = checks(&rig.proxy, "orders", "recalls", &[]);
        let (passed, reason) = check(&found, "all_group_members_proxied");
        passed && !reason.contains("all 0 connection")
    });
    let saved = snapshot(&rig.proxy, "rocketmq-observed-orders", |s| {
        s["data"]["members"]["recall-group"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    });
    let member = saved["data"]["members"]["recall-group"][0]
        .as_str()
        .unwrap()
        .to_owned();
    consumer.stop(DEADLINE);

    // After a clean restart the member is known but has not reconnected:
    // where it would read from is unknown, so the check refuses by name
    // (a proxy that forgot it sees a group with no member and passes).
    sigterm_restart(&mut rig.proxy);
    let found = checks(&rig.proxy, "orders", "recalls", &[]);
    let (passed, reason) = check(&found, "all_group_members_proxied");
    assert!(!passed, "{found:?}");
    for part in [
        "have not reconnected since",
        "group recall-group",
        member.as_str(),
        "wait",
    ] {
        assert!(reason.contains(part), "no \"{part}\" in: {reason}");
    }
    // One heartbeat interval later it is gone, not unknown.
    wait_until(
        Duration::from_secs(45),
        "the check to pass once the member had its heartbeat interval",
        || {
            check(
                &checks(&rig.proxy, "orders", "recalls", &[]),
                "all_group_members_proxied",
            )
            .0
        },
    );
    let (code, out) = rig.ctl(&["advance", "orders", "recalls"]);
    assert_eq!(code, 0, "{out}");

    // A crash in dual_read: the rollback's backlog check cannot know
    // which groups read the target's queues, so it refuses for a while.
    rig.proxy.restart();
    let found = checks(&rig.proxy, "orders", "recalls", &["--rollback"]);
    assert_unsure(&found, "target_backlog_zero", "consumer groups and members");
    let (code, out) = rig.ctl(&["rollback", "orders", "recalls"]);
    assert_eq!(code, 1, "refused: {out}");

    // In cutover, a crash: `source_backlog_zero` refuses for a while. After
    // a clean restart it counts the persisted group, which holds no offsets
    // and has no member online, so the brokers do not list it (a proxy
    // that forgot it finds no group at all).
    for _ in 0..2 {
        let (code, out) = rig.ctl(&["advance", "orders", "recalls"]);
        assert_eq!(code, 0, "{out}");
    }
    rig.proxy.restart();
    let found = checks(&rig.proxy, "orders", "recalls", &[]);
    assert_unsure(&found, "source_backlog_zero", "consumer groups and members");
    sigterm_restart(&mut rig.proxy);
    let found = checks(&rig.proxy, "orders", "recalls", &[]);
    let (passed, reason) = check(&found, "source_backlog_zero");
    assert!(passed, "{found:?}");
    assert!(
        reason.contains("1 group(s) consumed everything of recalls"),
        "decided on the persisted group: {reason}"
    );
}
