//! The history copy (`kafka.history: copy`), black box with Apache Kafka
//! clusters and the Java client (`History.java`): from `dual_read` on, the
//! proxy mirrors each partition's source log onto the target, so the target
//! holds the same records (keys, values, headers, timestamps, compression)
//! at the same offsets, in the same order, and keeps following the source's
//! tail. A rollback to `source` stops the copy where it stands; the next
//! `dual_read` goes on from there without writing anything twice. A target
//! partition that already holds records is refused before the copy starts.

mod support;

use std::time::Duration;

use cutover_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::{Batch, batches};
use serde_json::Value;
use support::{KafkaCluster, KafkaRig, RawKafka, finish_java, spawn_java, wait_until};

const PARTITIONS: u32 = 3;
const JAVA_DEADLINE: Duration = Duration::from_secs(150);
const COPY_DEADLINE: Duration = Duration::from_secs(90);

/// A proxy copying the history of the topics that start with `topic`
/// (with more `kafka:` options in `extra`), `topic` made on both
/// clusters, and the proxy's bootstrap.
fn copying(topic: &str, extra: &str) -> (KafkaRig, String) {
    let rig = KafkaRig::start(&format!("{topic}*"), &format!(", history: copy{extra}"));
    made_on_both(&rig, topic);
    let boot = format!("127.0.0.1:{}", rig.listen);
    (rig, boot)
}

fn made_on_both(rig: &KafkaRig, topic: &str) {
    rig.source.create_topic(topic, PARTITIONS);
    rig.target.create_topic(topic, PARTITIONS);
}

/// Forced steps forward until `topic` is in `state`.
fn walk_to(rig: &KafkaRig, topic: &str, state: &str) {
    while rig.topic_status(topic)["state"] != state {
        step(rig, "advance", topic);
    }
}

fn write(bootstrap: &str, topic: &str, from: u32, count: u32, compression: &str) {
    write_padded(bootstrap, topic, from, count, compression, 0);
}

/// As [`write`], each value followed by `pad` dots.
fn write_padded(bootstrap: &str, topic: &str, from: u32, count: u32, compression: &str, pad: u32) {
    let report = finish_java(
        spawn_java(
            "History",
            &[
                "write",
                bootstrap,
                topic,
                &from.to_string(),
                &count.to_string(),
                compression,
                &pad.to_string(),
            ],
        ),
        JAVA_DEADLINE,
    );
    assert_eq!(report["acked"], count, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
}

fn read(bootstrap: &str, topic: &str) -> Value {
    read_as(bootstrap, topic, "read_committed")
}

/// As [`read`], at `isolation` (`read_committed` or `read_uncommitted`).
fn read_as(bootstrap: &str, topic: &str, isolation: &str) -> Value {
    finish_java(
        spawn_java("History", &["read", bootstrap, topic, isolation]),
        JAVA_DEADLINE,
    )
}

fn history(rig: &KafkaRig, topic: &str) -> Value {
    rig.topic_status(topic)["details"]["history"].clone()
}

/// Waits until the copy of every partition reached `records` records and
/// the source's end.
fn wait_copied(rig: &KafkaRig, topic: &str, records: u64) {
    let mut last = Value::Null;
    let start = std::time::Instant::now();
    while start.elapsed() < COPY_DEADLINE {
        last = history(rig, topic);
        let done = last["records"] == records
            && last["partitions"].as_array().is_some_and(|ps| {
                ps.iter()
                    .all(|p| p["state"] == "mirroring" && p["copied_to"] == p["end"])
            });
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{records} records of {topic} not copied within {COPY_DEADLINE:?}: {last:#}\n{}",
        rig.proxy.log_tail(30)
    );
}

/// Waits for `records` records of `topic` copied, then the target's log
/// equals the source's: same records at the same offsets.
fn copied_whole(rig: &KafkaRig, topic: &str, records: u64) {
    wait_copied(rig, topic, records);
    let source = read(&rig.source.bootstrap(), topic);
    assert_eq!(source["total"], records, "{source:#}");
    let target = read(&rig.target.bootstrap(), topic);
    assert_eq!(
        source, target,
        "{topic}: the target's log differs from the source's"
    );
}

/// The compression codec of every batch stored in `topic`/`partition` on
/// the broker at `port` (attributes & 7), read with a raw Fetch.
fn codecs(port: u16, topic: &str, partition: i32) -> Vec<i16> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_isolation_level(0)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(64 << 20),
                ]),
        ]);
    let response: FetchResponse = RawKafka::connect(port).call(ApiKey::Fetch, 12, &request);
    let part = &response.responses[0].partitions[0];
    assert_eq!(
        part.error_code, 0,
        "Fetch {topic}/{partition} on port {port}"
    );
    let records = part.records.clone().unwrap_or_default();
    batches(&records)
        .map(|b| match b.expect("a readable batch") {
            Batch::Whole(view) => view.attributes() & 7,
            Batch::Partial { .. } => panic!("the fetch limit cut a batch"),
        })
        .collect()
}

/// The leader's port of `topic`/`partition` on a 1-node cluster is its only port.
fn target_port(rig: &KafkaRig) -> u16 {
    rig.target.ports()[0]
}

/// `ctl check` shows `target_partitions_empty` passed with `reason`.
fn assert_gate_passes(rig: &KafkaRig, topic: &str, reason: &str) {
    assert_passed(rig, topic, "target_partitions_empty", reason);
}

/// `ctl check`'s result named `name` for `topic`'s next advance.
fn check_of(rig: &KafkaRig, topic: &str, name: &str) -> Value {
    let out = rig.proxy.ctl(&["check", "events", topic, "--json"]);
    let checks: Value = serde_json::from_slice(&out.stdout).expect("check JSON");
    checks["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {checks:#}"))
}

/// `ctl check` shows the check `name` passed with `reason`.
fn assert_passed(rig: &KafkaRig, topic: &str, name: &str, reason: &str) {
    let gate = check_of(rig, topic, name);
    assert_eq!(gate["passed"], true, "{gate:#}");
    assert!(
        gate["reason"].as_str().is_some_and(|r| r.contains(reason)),
        "{gate:#}"
    );
}

/// One step forward, past the bypass checks a test this short cannot
/// satisfy (they watch the groups and writes over seconds).
fn advance(rig: &KafkaRig, topic: &str) -> (i32, String) {
    rig.ctl(&["advance", "events", topic, "--force"])
}

#[test]
fn dual_read_mirrors_the_source_onto_the_target_and_a_rollback_resumes_where_it_stopped() {
    let rig = KafkaRig::start("hist-*", ", history: copy");
    let boot = format!("127.0.0.1:{}", rig.listen);
    let (plain, lz4) = ("hist-plain", "hist-lz4");
    for (topic, codec) in [(plain, "none"), (lz4, "lz4")] {
        made_on_both(&rig, topic);
        write(&boot, topic, 0, 12_000, codec);
        assert_gate_passes(&rig, topic, "is empty or holds only this proxy's copy");
        let (code, out) = advance(&rig, topic);
        assert_eq!(code, 0, "advance {topic}: {out}");
    }
    // The tail written in dual_read is mirrored too.
    write(&boot, plain, 12_000, 3_000, "none");
    write(&boot, lz4, 12_000, 3_000, "lz4");
    for topic in [plain, lz4] {
        copied_whole(&rig, topic, 15_000);
    }
    let series = |name: &str| rig.proxy.metric_sum(name, &[&format!("topic=\"{plain}\"")]);
    assert_eq!(series("cutover_kafka_history_records_total"), 15_000.0);
    assert!(series("cutover_kafka_history_bytes_total") > 15_000.0);
    assert_eq!(series("cutover_kafka_history_lag_offsets"), 0.0);
    let stored: Vec<i16> = (0..3)
        .flat_map(|p| codecs(target_port(&rig), lz4, p))
        .collect();
    assert!(
        !stored.is_empty() && stored.iter().all(|c| *c == 3),
        "lz4 batches on the target: {stored:?}"
    );

    // Rolled back: the copy stops; written meanwhile, then dual_read again:
    // the copy goes on from where it stopped, nothing twice.
    let (code, out) = rig.ctl(&["rollback", "events", plain]);
    assert_eq!(code, 0, "rollback: {out}");
    wait_until(Duration::from_secs(10), "the copy to stop", || {
        history(&rig, plain)["state"] == "stopped"
    });
    write(&boot, plain, 15_000, 2_000, "none");
    assert_eq!(
        history(&rig, plain)["records"],
        15_000,
        "the stopped copy wrote"
    );
    assert_gate_passes(&rig, plain, "is empty or holds only this proxy's copy");
    let (code, out) = advance(&rig, plain);
    assert_eq!(code, 0, "advance again: {out}");
    copied_whole(&rig, plain, 17_000);

    // Caught up, the copy lets the partitions' writes switch.
    assert_passed(
        &rig,
        plain,
        "history_caught_up",
        "within 5000 offsets of the source",
    );
}

#[test]
fn a_target_partition_that_already_holds_records_is_refused_before_the_copy() {
    let topic = "hist-full";
    let (rig, boot) = copying(topic, "");
    write(&boot, topic, 0, 300, "none");
    write(&rig.target.bootstrap(), topic, 0, 30, "none");
    let (code, out) = rig.ctl(&["advance", "events", topic]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("target_partitions_empty"), "{out}");
    assert!(
        out.contains(&format!("target {topic}/")) && out.contains("already holds"),
        "{out}"
    );
    assert!(
        out.contains("history: leave"),
        "the refusal says how to go on: {out}"
    );
    assert_eq!(rig.topic_status(topic)["state"], "source");
    assert!(
        history(&rig, topic)["partitions"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "a copy started"
    );
}

#[test]
fn a_copy_killed_mid_way_resumes_after_a_restart_without_writing_anything_twice() {
    let topic = "hist-kill";
    let (mut rig, boot) = copying(topic, ", history_mb_per_second: 1");
    // About 6.5 MB: six seconds and more at 1 MB/s.
    let total = 24_000u64;
    write_padded(&boot, topic, 0, 24_000, "none", 250);
    let (code, out) = advance(&rig, topic);
    assert_eq!(code, 0, "advance: {out}");
    let mut at_kill = 0;
    wait_until(COPY_DEADLINE, "a third of the copy", || {
        at_kill = history(&rig, topic)["records"].as_u64().unwrap_or(0);
        at_kill >= total / 3
    });
    let (code, out) = rig.ctl(&["history-rate", "events", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("limited to 2 MB/s (was 1 MB/s)"), "{out}");
    let (code, out) = rig.ctl(&["history-rate", "events", "0"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("at least 1"), "{out}");
    rig.proxy.kill9();
    assert!(
        at_kill < total,
        "the copy ended before the kill ({at_kill} records)"
    );
    let target_then = read(&rig.target.bootstrap(), topic)["total"]
        .as_u64()
        .unwrap();
    assert!(
        target_then > 0 && target_then < total,
        "the kill did not land mid-copy: the target held {target_then} of {total}"
    );
    rig.proxy.restart();
    // The rate set before the kill holds after the restart; raised, the
    // copy finishes.
    wait_until(Duration::from_secs(20), "the copy to resume", || {
        history(&rig, topic)["mb_per_second"] == 2
    });
    let (code, out) = rig.ctl(&["history-rate", "events", "50"]);
    assert_eq!(code, 0, "{out}");
    wait_copied(&rig, topic, total);
    let (source, target) = (
        read(&rig.source.bootstrap(), topic),
        read(&rig.target.bootstrap(), topic),
    );
    assert_eq!(source["total"], total, "{source:#}");
    assert_eq!(
        source, target,
        "after the restart the target's log differs from the source's"
    );
}

/// Runs `ctl VERB events TOPIC --force` until it succeeds (a switch may
/// refuse while a copy catches up), within `STEP_DEADLINE`.
fn step(rig: &KafkaRig, verb: &str, topic: &str) -> Vec<String> {
    const STEP_DEADLINE: Duration = Duration::from_secs(40);
    let start = std::time::Instant::now();
    let mut refusals = Vec::new();
    loop {
        let (code, out) = rig.ctl(&[verb, "events", topic, "--force"]);
        if code == 0 {
            return refusals;
        }
        assert!(
            start.elapsed() < STEP_DEADLINE,
            "{verb} {topic}: {out}\n{}",
            rig.proxy.log_tail(40)
        );
        refusals.push(out);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_walk_under_load_leaves_the_target_holding_the_log_in_virtual_order() {
    let topic = "hist-walk";
    let rig = KafkaRig::start(
        &format!("{topic}*"),
        ", history: copy, dual_write_percent: 50",
    );
    made_on_both(&rig, topic);
    let boot = format!("127.0.0.1:{}", rig.listen);
    write(&boot, topic, 0, 6_000, "lz4");
    let load = spawn_java(
        "SpliceLoad",
        &[&boot, topic, "hist-walk-app", &PARTITIONS.to_string(), "40"],
    );
    let mut refusals = Vec::new();
    // dual_read (the copy starts), dual_write (half the partitions switch
    // after their copies), cutover, back to dual_write (those partitions
    // write to the source again, the copy follows them), cutover again.
    let walk = [
        ("advance", "dual_read"),
        ("advance", "dual_write"),
        ("advance", "cutover"),
        ("rollback", "dual_write"),
        ("advance", "cutover"),
    ];
    for (verb, to) in walk {
        // Back in dual_write, the copy writes past the target's closed
        // segment; the bypass watch (every 5 s) must not count it.
        let dwell = if verb == "advance" && to == "cutover" {
            6
        } else {
            4
        };
        std::thread::sleep(Duration::from_secs(dwell));
        refusals.extend(step(&rig, verb, topic));
        assert_eq!(rig.topic_status(topic)["state"], to);
    }
    let report = finish_java(load, Duration::from_secs(200));
    println!("{report:#}\nrefused steps: {refusals:#?}");
    for key in [
        "failed",
        "lost",
        "duplicates",
        "reordered",
        "offset_mismatch",
    ] {
        assert_eq!(
            report[key],
            0,
            "{key}: {report:#}\n{}",
            rig.proxy.log_tail(40)
        );
    }
    assert!(report["acked"].as_u64().unwrap() > 1_000, "{report:#}");
    let log = rig.proxy.log_tail(100_000);
    assert!(
        !log.contains("around the proxy after the partition's writes left it"),
        "the copy's writes were counted as bypassing the proxy:\n{log}"
    );
    // Every partition went through the target and back: the second source
    // segment was copied after the target's own records.
    let status = rig.topic_status(topic);
    let spliced = status["details"]["spliced_partitions"].as_array().unwrap();
    assert!(
        spliced
            .iter()
            .any(|p| p["segments"].as_array().unwrap().len() >= 4),
        "no partition went to the target, back and again: {status:#}"
    );
    // What clients read through the proxy (virtual offsets, spanning both
    // clusters) is what the target alone holds, at the same offsets.
    let through_proxy = read(&boot, topic);
    let on_target = read(&rig.target.bootstrap(), topic);
    assert_eq!(
        through_proxy["total"].as_u64().unwrap(),
        6_000 + report["acked"].as_u64().unwrap(),
        "{through_proxy:#}"
    );
    assert_eq!(
        through_proxy, on_target,
        "the target's log is not the virtual log"
    );

    // At target the history is read from the target: a reader from the
    // first offset through the proxy asks the source for nothing.
    assert_passed(
        &rig,
        topic,
        "history_copied",
        "the target holds the history of every partition",
    );
    step(&rig, "advance", topic);
    assert_eq!(rig.topic_status(topic)["state"], "target");
    let spliced = rig.topic_status(topic)["details"]["spliced_partitions"].clone();
    assert!(
        spliced.as_array().unwrap().iter().all(|p| p["segments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["side"] == "target")),
        "source segments left at target: {spliced:#}"
    );
    let source_requests = || {
        rig.proxy.metric_sum(
            "cutover_requests_total",
            &[&format!("topic=\"{topic}\""), "cluster=\"old\""],
        )
    };
    let before = source_requests();
    assert_eq!(
        read(&boot, topic),
        on_target,
        "read through the proxy at target"
    );
    assert_eq!(
        source_requests(),
        before,
        "the history was read from the source"
    );
}

#[test]
fn with_every_topic_at_target_the_source_is_retired_and_new_clients_need_it_not() {
    // A source of this test's own: it is stopped half way.
    let source: &'static KafkaCluster = Box::leak(Box::new(KafkaCluster::start("hist-src", 1)));
    let topic = "hist-retire";
    let mut rig = KafkaRig::between(
        source,
        KafkaCluster::target(),
        &format!("{topic}*"),
        ", history: copy",
    );
    source.create_topic(topic, PARTITIONS);
    rig.target.create_topic(topic, PARTITIONS);
    let boot = format!("127.0.0.1:{}", rig.listen);
    write(&boot, topic, 0, 3_000, "none");
    step(&rig, "advance", topic);
    wait_copied(&rig, topic, 3_000);
    walk_to(&rig, topic, "target");
    assert_eq!(rig.topic_status(topic)["state"], "target");
    wait_until(Duration::from_secs(10), "the source to be retired", || {
        rig.topic_status(topic)["details"]["source_retired"] == true
    });
    assert!(rig.proxy.log_tail(200).contains("source retired"));

    source.kill(1);
    wait_until(Duration::from_secs(10), "the source to be down", || {
        !support::tcp_accepts(&source.addr())
    });
    // A new producer and a new reader bootstrap through the proxy, write
    // and read the whole log; a new group joins, reads and commits.
    write(&boot, topic, 3_000, 2_000, "none");
    let through_proxy = read(&boot, topic);
    assert_eq!(through_proxy["total"], 5_000, "{through_proxy:#}");
    assert_eq!(through_proxy, read(&rig.target.bootstrap(), topic));
    let group = finish_java(
        spawn_java(
            "ProduceConsume",
            &[&boot, topic, "hist-retire-group", "500"],
        ),
        JAVA_DEADLINE,
    );
    assert_eq!(group["acked"], 500, "{group:#}");
    assert_eq!(group["errors"], 0, "{group:#}");
    assert!(group["committed_total"].as_u64().unwrap() > 0, "{group:#}");
    let log = rig.proxy.log_tail(300);
    assert!(
        !log.contains("is unreachable"),
        "a client needed the source:\n{log}"
    );
    // The proxy itself restarts without the source.
    rig.proxy.restart();
    assert_eq!(
        read(&boot, topic)["total"],
        5_500,
        "after a restart without the source"
    );
    let log = rig.proxy.log_tail(300);
    assert!(
        !log.contains("is unreachable"),
        "after the restart a client needed the source:\n{log}"
    );
}

#[test]
fn a_group_repointed_straight_at_the_target_resumes_exactly_where_it_left_the_proxy() {
    let topic = "hist-leave";
    let (rig, boot) = copying(topic, "");
    let group = |bootstrap: &str| {
        finish_java(
            spawn_java("History", &["group", bootstrap, topic, "hist-leave-app"]),
            JAVA_DEADLINE,
        )
    };
    write(&boot, topic, 0, 1_000, "none");
    assert_eq!(
        group(&boot)["count"],
        1_000,
        "the group's first read through the proxy"
    );
    write(&boot, topic, 1_000, 500, "none");
    step(&rig, "advance", topic);
    wait_copied(&rig, topic, 1_500);
    walk_to(&rig, topic, "target");
    assert_eq!(rig.topic_status(topic)["details"]["repoint_ready"], true);
    // Straight at the target, without the proxy: the group reads the 500
    // records it had not read, from where it stopped, and nothing else.
    let resumed = group(&rig.target.bootstrap());
    assert_eq!(resumed["count"], 500, "{resumed:#}");
    let first: u64 = resumed["first"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(
        first >= 1_000 - 3,
        "it re-read from near the start: {resumed:#}"
    );
}

#[test]
fn a_source_log_start_above_zero_keeps_its_offsets_through_the_proxy_at_target() {
    let topic = "hist-start";
    let (rig, boot) = copying(topic, "");
    write(&boot, topic, 0, 1_500, "none");
    // Retention (here DeleteRecords) took partition 0's first 100 records.
    let offsets = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        offsets.path(),
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{topic}","partition":0,"offset":100}}]}}"#
        ),
    )
    .unwrap();
    let out = rig.source.tool(
        "org.apache.kafka.tools.DeleteRecordsCommand",
        &["--offset-json-file", offsets.path().to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", support::output_text(&out));
    let on_source = read(&rig.source.bootstrap(), topic);
    assert_eq!(on_source["partitions"]["0"]["first"], 100, "{on_source:#}");
    assert_eq!(on_source["total"], 1_400, "{on_source:#}");

    step(&rig, "advance", topic);
    wait_copied(&rig, topic, 1_400);
    assert_eq!(history(&rig, topic)["partitions"][0]["log_start"], 100);
    walk_to(&rig, topic, "cutover");
    assert_passed(
        &rig,
        topic,
        "history_copied",
        "the target holds the history of every partition",
    );
    step(&rig, "advance", topic);
    // Through the proxy: the source's offsets, partition 0 from 100; on the
    // target itself the copy starts at 0.
    assert_eq!(
        read(&boot, topic),
        on_source,
        "read through the proxy at target"
    );
    let on_target = read(&rig.target.bootstrap(), topic);
    assert_eq!(on_target["partitions"]["0"]["first"], 0, "{on_target:#}");
    assert_eq!(on_target["total"], 1_400, "{on_target:#}");
}

#[test]
fn aborted_transactions_are_not_copied_and_their_gaps_keep_the_history_on_the_source() {
    let topic = "hist-txn";
    let (rig, boot) = copying(topic, "");
    write(&boot, topic, 0, 300, "none");
    step(&rig, "advance", topic);
    // Transactions of 10 records, every fourth aborted on purpose, while
    // the copy mirrors.
    let load = finish_java(
        spawn_java(
            "SpliceLoad",
            &[
                &boot,
                topic,
                "hist-txn-app",
                &PARTITIONS.to_string(),
                "10",
                "isolation.level=read_committed",
                "producer.transactional.id=hist-txn-producer",
            ],
        ),
        Duration::from_secs(120),
    );
    assert!(load["txn_aborted"].as_u64().unwrap() > 0, "{load:#}");
    let committed = read(&rig.source.bootstrap(), topic);
    let uncommitted = read_as(&rig.source.bootstrap(), topic, "read_uncommitted");
    assert!(
        uncommitted["aborted_values"].as_u64().unwrap() > 0,
        "{uncommitted:#}"
    );
    let total = committed["total"].as_u64().unwrap();
    wait_copied(&rig, topic, total);
    // Nothing aborted reached the target, even for a reader that would see it.
    let on_target = read_as(&rig.target.bootstrap(), topic, "read_uncommitted");
    assert_eq!(on_target["aborted_values"], 0, "{on_target:#}");
    assert_eq!(on_target["total"], total, "{on_target:#}");
    let skipped: u64 = history(&rig, topic)["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["skipped"].as_u64().unwrap())
        .sum();
    assert!(skipped > 0, "no marker or aborted offset was skipped");
    // The markers leave gaps the target cannot hold as one segment: the
    // move to target says so instead of passing.
    walk_to(&rig, topic, "cutover");
    let copied = check_of(&rig, topic, "history_copied");
    assert_eq!(copied["passed"], false, "{copied:#}");
    assert!(
        copied["reason"].as_str().unwrap().contains("gaps"),
        "{copied:#}"
    );
}
