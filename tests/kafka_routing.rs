//! How the proxy routes Kafka requests, black box against Apache Kafka (a
//! source of 3 brokers and a target of 1, shared by this binary's tests,
//! each on topics of its own): the API versions a client is offered, old
//! or unknown versions refused cleanly, requests passed through whole
//! (not split over upstream brokers) in `source` state, and offsets on a
//! spliced topic (ListOffsets by time, a group's commits, lag and
//! OffsetDelete as Kafka's own `ConsumerGroupCommand` shows them). Needs
//! `tests/peers/install.sh kafka`.

mod support;

use std::time::Duration;

use cutover::kafka::versions::SUPPORTED;
use cutover_kafka::intersect_api_versions;
use cutover_kafka::kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use support::{
    KafkaRig, RawKafka, finish_java, finish_kafka_script, kafka_tool, output_text, spawn_java,
    wait_until,
};

/// How long the proxy may take to close a connection it refuses.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("raw-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"))
}

/// `(api_key, min, max)` rows of an ApiVersions answer at `version`.
fn rows(port: u16, version: i16) -> (i16, Vec<(i16, i16, i16)>) {
    let answer: ApiVersionsResponse =
        RawKafka::connect(port).call(ApiKey::ApiVersions, version, &api_versions_request());
    let rows = answer
        .api_keys
        .iter()
        .map(|a| (a.api_key, a.min_version, a.max_version))
        .collect();
    (answer.error_code, rows)
}

/// A request frame of `key` v`version` with a header and a few body bytes
/// (the proxy refuses it from the header alone).
fn bare_request(key: i16, version: i16) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    let len = i32::try_from(frame.len()).unwrap();
    [len.to_be_bytes().to_vec(), frame].concat()
}

#[test]
fn clients_are_offered_what_the_proxy_and_both_clusters_serve() {
    let rig = KafkaRig::start("versions*", "");
    let (_, source) = rows(rig.source.ports()[0], 3);
    let (_, target) = rows(rig.target.ports()[0], 3);
    let expected = intersect_api_versions(&intersect_api_versions(&source, SUPPORTED), &target);
    assert!(
        expected.contains(&(ApiKey::Produce as i16, 3, 12)),
        "Kafka 4 starts Produce at v3 (KIP-896), the proxy stops at v12: {expected:?}"
    );
    // Every ApiVersions version a client may use gets the same offer.
    for version in 0..=4 {
        let (code, offered) = rows(rig.listen, version);
        assert_eq!(code, 0, "ApiVersions v{version}");
        assert_eq!(offered, expected, "ApiVersions v{version}");
    }
    // Newer than anyone serves: the KIP-511 refusal, not a hang.
    let mut future = RawKafka::connect(rig.listen);
    let refusal = future.exchange(&bare_request(ApiKey::ApiVersions as i16, 9));
    let refusal: ApiVersionsResponse =
        cutover_kafka::decode_response_body(&refusal, ApiKey::ApiVersions as i16, 0).unwrap();
    assert_eq!(refusal.error_code, 35, "UNSUPPORTED_VERSION");

    // Too old (removed by Kafka 4) or too new for the offer: the
    // connection closes at once, as a broker closes it, and the log says why.
    for (key, version) in [
        (ApiKey::Produce, 2),
        (ApiKey::Fetch, 3),
        (ApiKey::Metadata, 10),
        (ApiKey::Produce, 13),
    ] {
        RawKafka::connect(rig.listen)
            .closed_after(&bare_request(key as i16, version), CLOSE_DEADLINE);
    }
    wait_until(CLOSE_DEADLINE, "the refusals in the proxy log", || {
        let log = rig.proxy.log_tail(100);
        [
            "Produce v2 is outside the versions the proxy advertised (3-12)",
            "Fetch v3 is outside",
            "Metadata v10 is outside",
            "Produce v13 is outside",
        ]
        .iter()
        .all(|needle| log.contains(needle))
    });
    // The proxy still serves a client that negotiated within the offer.
    let (code, _) = rows(rig.listen, 3);
    assert_eq!(code, 0);
}

#[test]
fn source_state_requests_reach_one_upstream_broker_whole() {
    // Three doors for three source brokers; leaders 1, 1, 2, 3: a hash of
    // the partition would put partitions 0 and 3 (brokers 1 and 3) behind
    // one door, and every request to it would be split.
    let rig = KafkaRig::start("split*", ", virtual_brokers: 3");
    let out = rig.source.tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--create",
            "--topic",
            "split",
            "--replica-assignment",
            "1:2:3,1:3:2,2:3:1,3:1:2",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    // A Java producer (a send every 3 ms, linger 5 ms) and a consumer group
    // reading along: hundreds of Produce and Fetch requests.
    let boot = format!("127.0.0.1:{}", rig.listen);
    let java = spawn_java("SpliceLoad", &[&boot, "split", "split-group", "4", "8"]);
    let out = finish_java(java, Duration::from_secs(180));
    assert_eq!(out["failed"], 0, "{out}");
    assert_eq!(out["lost"], 0, "{out}");
    assert!(out["acked"].as_u64().unwrap() > 500, "{out}");
    let proxy = &rig.proxy;
    let requests = proxy.metric_sum("cutover_requests_total", &["topic=\"split\""]);
    let split = proxy.metric_sum("cutover_kafka_split_requests_total", &["topic=\"split\""]);
    println!("split {split} of {requests} requests");
    assert!(requests >= 200.0, "{requests} requests counted");
    // A leader the proxy has not learnt yet may cost a split or two.
    assert!(
        split <= (requests / 100.0).max(2.0),
        "{split} of {requests} requests split in source state\n{}",
        proxy.log_tail(20)
    );
}

/// Writes 10 records to each of the 2 partitions of `offsets`, stamped
/// STAMP ms ago, then (READ) reads all with group `offsets-group`, commits,
/// and looks up offsets by time.
const OFFSETS: &str = r#"
import json, time
from confluent_kafka import Producer, Consumer, TopicPartition
BOOT, STAMP, READ = "127.0.0.1:{LISTEN}", {STAMP}, {READ}
now = int(time.time() * 1000)
p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
failed = []
for part in range(2):
    for i in range(10):
        p.produce("offsets", value=f"{STAMP}-{part}-{i}".encode(), partition=part, timestamp=now - STAMP,
                  on_delivery=lambda e, m: e and failed.append(str(e)))
left = p.flush(30)
out = {"failed": failed, "left": left}
if READ:
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "offsets-group", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["offsets"])
    read, deadline = 0, time.time() + 60
    while read < 40 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error(): read += 1
    c.commit(asynchronous=False)
    def at(ms):
        found = c.offsets_for_times([TopicPartition("offsets", q, ms) for q in range(2)], timeout=20)
        return [t.offset for t in sorted(found, key=lambda t: t.partition)]
    out.update({"read": read, "old": at(now - 1300000), "new": at(now - 700000), "late": at(now + 60000)})
    c.close()
print(json.dumps(out))
"#;

/// `(partition, current offset, lag)` rows of `offsets` in
/// `ConsumerGroupCommand --describe` through the proxy.
fn described(rig: &KafkaRig) -> Vec<(String, String, String)> {
    describe_at(
        &format!("127.0.0.1:{}", rig.listen),
        "offsets-group",
        "offsets",
    )
}

/// `(partition, current offset, lag)` rows of `topic` in
/// `ConsumerGroupCommand --describe --group GROUP` against `bootstrap`.
fn describe_at(bootstrap: &str, group: &str, topic: &str) -> Vec<(String, String, String)> {
    let out = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    let mut rows: Vec<(String, String, String)> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.get(1) == Some(&topic))
        .map(|w| (w[2].to_owned(), w[3].to_owned(), w[5].to_owned()))
        .collect();
    rows.sort();
    rows
}

#[test]
fn offsets_of_a_spliced_topic_read_right_through_the_proxy() {
    let rig = KafkaRig::start("offsets*", ", dual_write_percent: 50");
    rig.source.create_topic("offsets", 2);
    let run = |stamp: u64, read: bool| {
        let script = OFFSETS
            .replace("{LISTEN}", &rig.listen.to_string())
            .replace("{STAMP}", &stamp.to_string())
            .replace("{READ}", if read { "True" } else { "False" });
        let out = finish_kafka_script(rig.spawn_python(&script));
        assert_eq!(out["failed"], serde_json::json!([]), "{out}");
        assert_eq!(out["left"], 0, "{out}");
        out
    };
    // Ten records per partition on the source, stamped 20 min ago; then
    // partition 0 writes to the target (dual_write, 50%): ten more per
    // partition, stamped now, land at virtual 10..20 on both.
    run(1_200_000, false);
    for args in [
        &["migrate-metadata", "events", "offsets"][..],
        &["advance", "events", "offsets", "--force"],
        &["advance", "events", "offsets", "--force"],
    ] {
        let (code, text) = rig.ctl(args);
        assert_eq!(code, 0, "{args:?}: {text}");
    }
    assert_eq!(rig.topic_status("offsets")["state"], "dual_write");
    let out = run(0, true);
    assert_eq!(out["read"], 40, "{out}");
    // By time, across segments: 21.7 min ago finds the source segment's
    // first record on both partitions (0), 11.7 min ago the first record
    // written after the switch (10), the future no record (-1).
    assert_eq!(out["old"], serde_json::json!([0, 0]), "{out}");
    assert_eq!(out["new"], serde_json::json!([10, 10]), "{out}");
    assert_eq!(out["late"], serde_json::json!([-1, -1]), "{out}");

    // Kafka's own tool through the proxy: commits and lag in the one
    // virtual offset space, whichever cluster holds the records.
    let row = |p: &str, at: &str, lag: &str| (p.to_owned(), at.to_owned(), lag.to_owned());
    assert_eq!(described(&rig), [row("0", "20", "0"), row("1", "20", "0")]);
    // A position inside partition 0's source segment.
    let reset = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            &format!("127.0.0.1:{}", rig.listen),
            "--reset-offsets",
            "--group",
            "offsets-group",
            "--topic",
            "offsets:0",
            "--to-offset",
            "5",
            "--execute",
        ],
    );
    assert!(reset.status.success(), "{}", output_text(&reset));
    assert_eq!(described(&rig), [row("0", "5", "15"), row("1", "20", "0")]);
    // OffsetDelete through the proxy: partition 0's commit is gone (a group
    // without members lists only the partitions it has commits for).
    let deleted = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            &format!("127.0.0.1:{}", rig.listen),
            "--delete-offsets",
            "--group",
            "offsets-group",
            "--topic",
            "offsets:0",
        ],
    );
    assert!(deleted.status.success(), "{}", output_text(&deleted));
    assert_eq!(described(&rig), [row("1", "20", "0")]);

    // DeleteRecords through the proxy, before virtual 15 of partition 0:
    // the source segment whole and the target's first 5 records.
    let plan = rig.proxy.config().dir().join("delete.json");
    std::fs::write(
        &plan,
        r#"{"version":1,"partitions":[{"topic":"offsets","partition":0,"offset":15}]}"#,
    )
    .unwrap();
    let deleted = kafka_tool(
        "org.apache.kafka.tools.DeleteRecordsCommand",
        &[
            "--bootstrap-server",
            &format!("127.0.0.1:{}", rig.listen),
            "--offset-json-file",
            &plan.display().to_string(),
        ],
    );
    let text = output_text(&deleted);
    assert!(deleted.status.success(), "{text}");
    assert!(text.contains("low_watermark: 15"), "{text}");
    let after = finish_kafka_script(
        rig.spawn_python(&AFTER_DELETE.replace("{LISTEN}", &rig.listen.to_string())),
    );
    assert_eq!(after["low"], serde_json::json!([15, 0]), "{after}");
    assert_eq!(after["high"], serde_json::json!([20, 20]), "{after}");
    assert_eq!(after["read_from"], 15, "{after}");
    assert_eq!(after["read"], 5, "{after}");
}

/// Watermarks of `offsets` and partition 0 read from its earliest record.
const AFTER_DELETE: &str = r#"
import json, time
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
c = Consumer({"bootstrap.servers": "127.0.0.1:{LISTEN}", "group.id": "offsets-after", "enable.auto.commit": False})
marks = [c.get_watermark_offsets(TopicPartition("offsets", q), timeout=20) for q in range(2)]
c.assign([TopicPartition("offsets", 0, OFFSET_BEGINNING)])
offsets, deadline = [], time.time() + 20
while len(offsets) < 5 and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error(): offsets.append(m.offset())
time.sleep(1)
m = c.poll(1)
if m is not None and not m.error(): offsets.append(m.offset())
c.close()
print(json.dumps({"low": [m[0] for m in marks], "high": [m[1] for m in marks],
                  "read_from": offsets[0] if offsets else None, "read": len(offsets)}))
"#;

/// Writes COUNT records to `offsets-t`; with READ, reads all TOTAL with
/// group `offsets-t-group` and commits.
const TARGET_OFFSETS: &str = r#"
import json, time
from confluent_kafka import Producer, Consumer
BOOT, COUNT, READ, TOTAL = "127.0.0.1:{LISTEN}", {COUNT}, {READ}, {TOTAL}
p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
failed = []
for i in range(COUNT):
    p.produce("offsets-t", value=f"{i}".encode(), partition=0, on_delivery=lambda e, m: e and failed.append(str(e)))
out = {"failed": failed, "left": p.flush(30)}
if READ:
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "offsets-t-group", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["offsets-t"])
    read, deadline = 0, time.time() + 60
    while read < TOTAL and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error(): read += 1
    c.commit(asynchronous=False)
    c.close()
    out["read"] = read
print(json.dumps(out))
"#;

/// In `target` the target coordinates the group and holds physical
/// offsets; a position inside the source segment has no place there, so
/// the target holds the first target offset after it and the exact virtual
/// position rides in the commit metadata: Kafka's own tool sees the
/// position it set through the proxy, and the target's own first record
/// straight on the target.
#[test]
fn a_position_inside_a_source_segment_survives_the_move_to_the_target() {
    let rig = KafkaRig::start("offsets*", "");
    rig.source.create_topic("offsets-t", 1);
    let run = |count: u32, read: bool| {
        let script = TARGET_OFFSETS
            .replace("{LISTEN}", &rig.listen.to_string())
            .replace("{COUNT}", &count.to_string())
            .replace("{READ}", if read { "True" } else { "False" })
            .replace("{TOTAL}", "20");
        let out = finish_kafka_script(rig.spawn_python(&script));
        assert_eq!(out["failed"], serde_json::json!([]), "{out}");
        assert_eq!(out["left"], 0, "{out}");
        out
    };
    let ctl = |args: &[&str]| {
        let (code, text) = rig.ctl(args);
        assert_eq!(code, 0, "{args:?}: {text}");
    };
    // Virtual 0..10 on the source, 10..20 on the target (physical 0..10).
    run(10, false);
    ctl(&["migrate-metadata", "events", "offsets-t"]);
    for _ in 0..3 {
        ctl(&["advance", "events", "offsets-t", "--force"]);
    }
    assert_eq!(rig.topic_status("offsets-t")["state"], "cutover");
    assert_eq!(run(10, true)["read"], 20);
    ctl(&["advance", "events", "offsets-t", "--force"]);
    assert_eq!(rig.topic_status("offsets-t")["state"], "target");

    let proxy = format!("127.0.0.1:{}", rig.listen);
    let target = rig.target.bootstrap();
    let row = |at: &str, lag: &str| vec![("0".to_owned(), at.to_owned(), lag.to_owned())];
    let through = || describe_at(&proxy, "offsets-t-group", "offsets-t");
    let direct = || describe_at(&target, "offsets-t-group", "offsets-t");
    assert_eq!(through(), row("20", "0"), "virtual, through the proxy");
    assert_eq!(direct(), row("10", "0"), "physical, on the target");
    let reset = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            &proxy,
            "--reset-offsets",
            "--group",
            "offsets-t-group",
            "--topic",
            "offsets-t",
            "--to-offset",
            "5",
            "--execute",
        ],
    );
    assert!(reset.status.success(), "{}", output_text(&reset));
    assert_eq!(
        through(),
        row("5", "15"),
        "the exact position, through the proxy"
    );
    assert_eq!(
        direct(),
        row("0", "10"),
        "the target's first record, on the target"
    );
}
