//! Kafka through cutover, black box: Apache Kafka clusters (a source of 3
//! brokers, a target of 1, shared by this binary's tests: each keeps to its
//! own topics and groups), librdkafka (confluent-kafka) and the Java client. Produce and a
//! consumer group through the proxy's bootstrap address, Metadata naming
//! only the proxy, topic discovery visible in `ctl status`, and bad input
//! closing only its own connection. Needs `tests/peers/install.sh kafka`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    CutoverProcess, KAFKA_SCRIPT_DEADLINE, KafkaRig, finish_java, finish_kafka_script,
    kafka_python, kafka_tool, output_text, spawn_java, wait_until,
};

/// How long the proxy may take to close a connection that sent bad input.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

fn rig() -> KafkaRig {
    KafkaRig::start("orders*", "")
}

/// Runs a python script with the confluent-kafka venv, killing it at the deadline.
fn python(script: &str) -> Value {
    let child = Command::new(kafka_python())
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    finish_kafka_script(child)
}

const PRELUDE: &str = r#"
import json, time
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
BOOT = "127.0.0.1:{LISTEN}"
GROUP_OPTS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
def brokers():
    md = AdminClient({"bootstrap.servers": BOOT}).list_topics(timeout=10)
    return sorted(f"{b.host}:{b.port}" for b in md.brokers.values()), sorted(md.topics)
"#;

const PRODUCE_CONSUME: &str = r#"
admin = AdminClient({"bootstrap.servers": BOOT})
admin.create_topics([NewTopic("orders", num_partitions=3)])["orders"].result(timeout=20)

delivered, failed = [0], []
def on_delivery(err, msg):
    if err: failed.append(str(err))
    else: delivered[0] += 1
p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
for i in range(100):
    p.produce("orders", key=str(i % 7).encode(), value=f"m{i}".encode(), on_delivery=on_delivery)
left = p.flush(30)
# Listed once written to: a topic just created may not be in every
# broker's metadata yet.
seen_brokers, topics = brokers()

def consumer():
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "g1", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, **GROUP_OPTS})
    assigned = []
    c.subscribe(["orders"], on_assign=lambda c, parts: assigned.extend(parts))
    return c, assigned

c, _ = consumer()
values, errors, deadline = set(), [], time.time() + 60
while len(values) < 100 and time.time() < deadline:
    m = c.poll(0.5)
    if m is None: continue
    if m.error(): errors.append(str(m.error())); continue
    values.add(m.value().decode())
committed = c.commit(asynchronous=False)
c.close()

c, assigned = consumer()
again, deadline = [], time.time() + 30
while not assigned and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error(): again.append(m.value().decode())
quiet = time.time() + 3
while time.time() < quiet:
    m = c.poll(0.5)
    if m is not None and not m.error(): again.append(m.value().decode())
# A partition no key hashed to has no commit (OFFSET_INVALID, -1001).
offsets = sum(max(tp.offset, 0) for tp in c.committed([TopicPartition("orders", i) for i in range(3)], timeout=10))
c.close()
print(json.dumps({"brokers": seen_brokers, "topics": topics, "delivered": delivered[0],
                  "failed": failed, "left": left, "consumed": len(values), "errors": errors,
                  "assigned": len(assigned), "redelivered": again, "committed_total": offsets}))
"#;

fn script(rig: &KafkaRig, body: &str) -> String {
    PRELUDE.replace("{LISTEN}", &rig.listen.to_string()) + body
}

fn ctl_json(proxy: &CutoverProcess, args: &[&str]) -> Value {
    let out = proxy.ctl(args);
    assert!(
        out.status.success(),
        "ctl {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ctl JSON")
}

fn topic_state(proxy: &CutoverProcess, topic: &str) -> Option<String> {
    let status = ctl_json(proxy, &["status", "--json"]);
    status["migrations"][0]["topics"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == topic)
        .map(|t| t["state"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn librdkafka_produces_and_consumes_a_group_through_the_proxy() {
    let rig = rig();
    let out = python(&script(&rig, PRODUCE_CONSUME));
    let proxy_broker = format!("127.0.0.1:{}", rig.broker_port);
    assert_eq!(out["brokers"], serde_json::json!([proxy_broker]), "{out:#}");
    assert!(
        out["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "orders"),
        "{out:#}"
    );
    assert_eq!(out["delivered"], 100, "{out:#}");
    assert_eq!(out["left"], 0, "{out:#}");
    assert_eq!(out["consumed"], 100, "{out:#}");
    assert_eq!(out["errors"], serde_json::json!([]), "{out:#}");
    assert_eq!(out["assigned"], 3, "{out:#}");
    assert_eq!(out["redelivered"], serde_json::json!([]), "{out:#}");
    assert_eq!(out["committed_total"], 100, "{out:#}");

    // Discovered from Metadata, persisted, and movable by ctl.
    assert_eq!(topic_state(&rig.proxy, "orders").as_deref(), Some("source"));
    let migrated = ctl_json(
        &rig.proxy,
        &["migrate-metadata", "events", "orders", "--json"],
    );
    assert_eq!(migrated["topics"][0]["outcome"], "created", "{migrated:#}");
    let moved = ctl_json(&rig.proxy, &["advance", "events", "orders", "--json"]);
    assert_eq!(moved["outcomes"][0]["outcome"], "moved", "{moved:#}");
    assert_eq!(
        topic_state(&rig.proxy, "orders").as_deref(),
        Some("dual_read")
    );
    // Records written straight to the target, around the proxy: the check
    // before dual_write counts the offsets they take (the target's own count)
    // and says what `switch_start` does with them.
    let direct = python(&format!(
        "from confluent_kafka import Producer\nimport json\n\
         p = Producer({{\"bootstrap.servers\": \"{}\"}})\n\
         for i in range(3): p.produce(\"orders\", value=b\"direct\", partition=0)\n\
         print(json.dumps({{\"left\": p.flush(20)}}))\n",
        rig.target.bootstrap()
    ));
    assert_eq!(direct["left"], 0, "{direct}");
    // `ctl check` shows the information as `info`, not as a pass or fail.
    let check = rig.proxy.ctl(&["check", "events", "orders"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("info")
            && l.split_whitespace().nth(1) == Some("target_records_before_switch")),
        "{text}"
    );
    // dual_write with the default dual_write_percent (0) switches no
    // partition yet; `ctl shift` moves one, and its report says where the
    // target segment starts.
    // `ctl check` shows the information as `info`, not as a pass or fail.
    let check = rig.proxy.ctl(&["check", "events", "orders"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("info")
            && l.split_whitespace().nth(1) == Some("target_records_before_switch")),
        "{text}"
    );
    let moved = ctl_json(&rig.proxy, &["advance", "events", "orders", "--json"]);
    assert_eq!(moved["outcomes"][0]["outcome"], "moved", "{moved:#}");
    let checks = moved["outcomes"][0]["transition"]["checks"]
        .as_array()
        .unwrap();
    let records = checks
        .iter()
        .find(|c| c["name"] == "target_records_before_switch")
        .unwrap_or_else(|| panic!("{moved:#}"));
    // An information, shown with the gates but never one of them.
    assert_eq!(records["kind"], "info", "{moved:#}");
    assert!(
        records["reason"]
            .as_str()
            .unwrap()
            .contains("record(s) in 1 partition(s) of orders"),
        "{moved:#}"
    );
    let shifted = ctl_json(
        &rig.proxy,
        &["shift", "events", "orders", "--partitions", "1", "--json"],
    );
    assert_eq!(shifted["on_target"], serde_json::json!([1]), "{shifted:#}");
    assert_eq!(shifted["switched"][0]["to"], "target", "{shifted:#}");
    let bad = rig
        .proxy
        .ctl(&["shift", "events", "orders", "--partitions", "9"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("partition 9 is not one of orders's 0..3"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    for _ in 0..2 {
        let back = ctl_json(&rig.proxy, &["rollback", "events", "orders", "--json"]);
        assert_eq!(back["outcomes"][0]["outcome"], "moved", "{back:#}");
    }
    assert_eq!(topic_state(&rig.proxy, "orders").as_deref(), Some("source"));
}

/// How long the Java client may take to write and read back its records.
const JAVA_DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn the_java_client_produces_and_consumes_a_group_through_the_proxy() {
    let rig = KafkaRig::start("invoices*", "");
    rig.source.create_topic("invoices", 3);
    let boot = format!("127.0.0.1:{}", rig.listen);
    let java = spawn_java("ProduceConsume", &[&boot, "invoices", "billing", "500"]);
    let out = finish_java(java, JAVA_DEADLINE);
    assert_eq!(out["errors"], 0, "{out:#}\n{}", rig.proxy.log_tail(40));
    assert_eq!(out["acked"], 500, "{out:#}");
    assert_eq!(out["consumed"], 500, "{out:#}");
    assert_eq!(out["duplicates"], 0, "{out:#}");
    assert_eq!(out["committed_total"], 500, "{out:#}");
    // Kafka's own tool, through the proxy, sees the group's commits with
    // no lag left.
    let described = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            &boot,
            "--describe",
            "--group",
            "billing",
        ],
    );
    let text = output_text(&described);
    assert!(described.status.success(), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("invoices"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    let committed: u64 = rows
        .iter()
        .filter_map(|r| r.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    assert_eq!(committed, 500, "{text}");
    for row in rows {
        assert_eq!(row.split_whitespace().nth(5), Some("0"), "lag: {text}");
    }
}

/// Sends `bytes` on a fresh connection to the bootstrap port and waits until
/// the proxy closes it.
fn closed_after(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the proxy");
    s.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the proxy to close the connection, got {other:?}"),
    }
}

#[test]
fn bad_input_closes_only_its_own_connection() {
    let rig = rig();
    // A healthy client connected before and used after the bad ones.
    let body = r#"
a = AdminClient({"bootstrap.servers": BOOT})
before = sorted(f"{b.host}:{b.port}" for b in a.list_topics(timeout=10).brokers.values())
import sys
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
after = sorted(f"{b.host}:{b.port}" for b in a.list_topics(timeout=10).brokers.values())
print(json.dumps({"before": before, "after": after}))
"#;
    let mut child = Command::new(kafka_python())
        .args(["-c", &script(&rig, body)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    // 2 GiB declared length: refused from the prefix alone.
    closed_after(rig.listen, &i32::MAX.to_be_bytes());
    // Negative length, then plain garbage that parses as a huge frame.
    closed_after(rig.listen, &(-5i32).to_be_bytes());
    closed_after(rig.listen, b"GET / HTTP/1.1\r\n\r\n");
    // An API key nobody knows.
    closed_after(
        rig.listen,
        &[0, 0, 0, 10, 0x7f, 0x00, 0, 1, 0, 0, 0, 9, 0xff, 0xff],
    );
    // A known key the proxy does not serve (DescribeTopicPartitions v0).
    closed_after(
        rig.listen,
        &[0, 0, 0, 11, 0, 75, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0],
    );

    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < KAFKA_SCRIPT_DEADLINE,
            "healthy client hung"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "healthy client failed: {rest}");
    let out: Value = serde_json::from_str(rest.trim()).unwrap();
    let proxy_broker = format!("127.0.0.1:{}", rig.broker_port);
    assert_eq!(out["before"], serde_json::json!([proxy_broker]));
    assert_eq!(out["after"], out["before"]);

    let log = || rig.proxy.log_tail(200);
    wait_until(CLOSE_DEADLINE, "the close reasons in the proxy log", || {
        let log = log();
        [
            "above the limit",
            "negative length",
            "unknown API key 32512",
            "DescribeTopicPartitions",
        ]
        .iter()
        .all(|needle| log.contains(needle))
    });
}

/// Sends one request frame and reads one answer frame.
fn exchange(stream: &mut TcpStream, frame: &[u8]) -> Vec<u8> {
    stream.write_all(frame).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(len)).unwrap()];
    stream.read_exact(&mut body).unwrap();
    [len.to_vec(), body].concat()
}

#[test]
fn a_client_newer_than_the_proxy_negotiates_down() {
    use cutover_kafka::kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader,
    };
    use cutover_kafka::kafka_protocol::protocol::StrBytes;
    use cutover_kafka::{decode_response_body, encode_request, response_correlation_id};

    let rig = rig();
    let mut s = TcpStream::connect(("127.0.0.1", rig.listen)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = |version: i16, id: i32| {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("from-the-future")));
        let body = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("future"))
            .with_client_software_version(StrBytes::from_static_str("99"));
        encode_request(&header, &body).unwrap()
    };
    // A version no broker knows yet (KIP-511): the broker's v0-form
    // refusal comes back under the client's own correlation id, naming
    // the ApiVersions versions it does know.
    let mut future = request(4, 77).to_vec();
    future[6..8].copy_from_slice(&99i16.to_be_bytes());
    let refusal = exchange(&mut s, &future);
    assert_eq!(response_correlation_id(&refusal), Some(77));
    let refusal: ApiVersionsResponse =
        decode_response_body(&refusal.into(), ApiKey::ApiVersions as i16, 0).unwrap();
    assert_eq!(refusal.error_code, 35, "UNSUPPORTED_VERSION");
    // Asking again at a known version gives the proxy's intersection.
    let answer = exchange(&mut s, &request(3, 78));
    assert_eq!(response_correlation_id(&answer), Some(78));
    let answer: ApiVersionsResponse =
        decode_response_body(&answer.into(), ApiKey::ApiVersions as i16, 3).unwrap();
    let max = |key: ApiKey| {
        answer
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| k.max_version)
    };
    // The broker's own maxima, capped at the proxy's.
    let capped = |key: ApiKey, cap: i16| max(key).is_some_and(|m| (0..=cap).contains(&m));
    assert!(
        capped(ApiKey::Produce, 12),
        "no topic ids, no node endpoints"
    );
    assert!(capped(ApiKey::Fetch, 12));
    assert!(capped(ApiKey::Metadata, 9));
    assert!(capped(ApiKey::OffsetFetch, 7), "one group per request");
    assert_eq!(
        max(ApiKey::OffsetForLeaderEpoch),
        None,
        "clients are shown no epochs"
    );
    assert_eq!(max(ApiKey::DescribeTopicPartitions), None);
}

const CREATE_DRAIN_TOPIC: &str = r#"
admin = AdminClient({"bootstrap.servers": BOOT})
admin.create_topics([NewTopic("orders-drain", num_partitions=1, replication_factor=1)])["orders-drain"].result(timeout=20)
# Metadata through the proxy, as every client asks before it fetches.
deadline = time.time() + 20
while time.time() < deadline:
    t = admin.list_topics(topic="orders-drain", timeout=10).topics.get("orders-drain")
    if t is not None and t.error is None and t.partitions and t.partitions[0].leader >= 0: break
    time.sleep(0.2)
print(json.dumps({"created": True}))
"#;

#[test]
fn sigterm_lets_a_long_polled_fetch_finish_then_closes() {
    use cutover_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use cutover_kafka::kafka_protocol::messages::{
        ApiKey, FetchRequest, FetchResponse, RequestHeader, TopicName,
    };
    use cutover_kafka::kafka_protocol::protocol::StrBytes;
    use cutover_kafka::{decode_response_body, encode_request, response_correlation_id};

    let mut rig = rig();
    let created =
        python(&(PRELUDE.replace("{LISTEN}", &rig.listen.to_string()) + CREATE_DRAIN_TOPIC));
    assert_eq!(created["created"], true, "{created}");
    // A fetch of the empty partition that waits up to `max_wait_ms` for a
    // megabyte it will never have.
    let fetch = |correlation_id: i32, max_wait_ms: i32| {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(12)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("drain-test")));
        let partition = FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20);
        let body = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1 << 20)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("orders-drain")))
                    .with_partitions(vec![partition]),
            ]);
        encode_request(&header, &body).unwrap()
    };
    let partition_error = |answer: Vec<u8>| {
        let answer: FetchResponse =
            decode_response_body(&answer.into(), ApiKey::Fetch as i16, 12).unwrap();
        assert_eq!(answer.error_code, 0);
        answer.responses[0].partitions[0].error_code
    };
    let mut s = TcpStream::connect(("127.0.0.1", rig.broker_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // A new topic's leader is known to every broker a moment after it is
    // created; until then a fetch answers UNKNOWN_TOPIC_OR_PARTITION.
    wait_until(
        Duration::from_secs(20),
        "the new partition has a leader",
        || partition_error(exchange(&mut s, &fetch(1, 0))) == 0,
    );
    let fetch = fetch(9, 4000);
    let before = rig.proxy.bytes_upstream();
    s.write_all(&fetch).unwrap();
    wait_until(
        Duration::from_secs(5),
        "the fetch is relayed to the source",
        || rig.proxy.bytes_upstream() >= before + fetch.len() as f64,
    );
    let signalled = Instant::now();
    rig.proxy.sigterm();
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .expect("the in-flight fetch is answered, not cut off");
    let held = signalled.elapsed();
    let mut rest = vec![0u8; usize::try_from(i32::from_be_bytes(len)).unwrap()];
    s.read_exact(&mut rest).unwrap();
    let answer = [len.to_vec(), rest].concat();
    assert_eq!(response_correlation_id(&answer), Some(9));
    assert_eq!(partition_error(answer), 0);
    assert!(
        held >= Duration::from_secs(1),
        "the answer came {held:?} after SIGTERM: the broker was still holding the fetch when it landed"
    );
    rig.proxy
        .assert_drained(&mut s, &format!("127.0.0.1:{}", rig.listen));
}

/// Records produced per partition by [`LAG_PRODUCE`] in its first run.
const LAG_PER_PARTITION: i64 = 30;

/// Produces `{N}` records to each of `{PARTS}` of orders-lag (created on
/// the first run), then, when `{COMMIT}`, commits group g-lag at 10, 20
/// and 5 in two separate OffsetCommits (as two members of a group do).
const LAG_PRODUCE: &str = r#"
admin = AdminClient({"bootstrap.servers": BOOT})
if {COMMIT}:
    admin.create_topics([NewTopic("orders-lag", num_partitions=3)])["orders-lag"].result(timeout=20)
delivered, failed = [0], []
def on_delivery(err, msg):
    if err: failed.append(str(err))
    else: delivered[0] += 1
p = Producer({"bootstrap.servers": BOOT, "acks": "all", "enable.idempotence": True})
for part in {PARTS}:
    for i in range({N}):
        p.produce("orders-lag", value=f"v{part}-{i}".encode(), partition=part, on_delivery=on_delivery)
left = p.flush(30)
if {COMMIT}:
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "g-lag", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("orders-lag", 0, 10), TopicPartition("orders-lag", 1, 20)], asynchronous=False)
    c.commit(offsets=[TopicPartition("orders-lag", 2, 5)], asynchronous=False)
    c.close()
print(json.dumps({"delivered": delivered[0], "failed": failed, "left": left}))
"#;

fn lag_produce(rig: &KafkaRig, n: i64, parts: &str, commit: bool) {
    let body = LAG_PRODUCE
        .replace("{N}", &n.to_string())
        .replace("{PARTS}", parts)
        .replace("{COMMIT}", if commit { "True" } else { "False" });
    let out = python(&script(rig, &body));
    assert_eq!(out["failed"], serde_json::json!([]), "{out}");
    assert_eq!(out["left"], 0, "{out}");
}

/// The group lag gauge equals what was produced minus what was committed,
/// summed over every committed partition (not only the last commit's), and
/// grows as records arrive with no consumer fetching. The traffic series
/// (requests, record bytes, latency count) grow by at least what was sent.
#[test]
fn group_lag_and_traffic_series_follow_what_was_produced_and_committed() {
    let rig = rig();
    let lag = || {
        rig.proxy.metric_sum(
            "cutover_kafka_group_lag",
            &["group=\"g-lag\"", "topic=\"orders-lag\""],
        )
    };
    let topic = ["topic=\"orders-lag\"", "direction=\"produced\""];
    let traffic = || {
        (
            rig.proxy.metric_sum("cutover_requests_total", &topic[..1]),
            rig.proxy
                .metric_sum("cutover_kafka_record_bytes_total", &topic),
            rig.proxy.metric_sum("cutover_kafka_records_total", &topic),
            rig.proxy
                .metric_sum("cutover_request_duration_seconds_count", &[]),
            rig.proxy
                .metric_sum("cutover_bytes_total", &["direction=\"to_upstream\""]),
        )
    };
    let before = traffic();
    lag_produce(&rig, LAG_PER_PARTITION, "range(3)", true);
    // (30-10) + (30-20) + (30-5): produced minus committed, every partition.
    let expected = 3 * LAG_PER_PARTITION - (10 + 20 + 5);
    wait_until(
        Duration::from_secs(10),
        "group lag equals the true lag",
        || lag() == expected as f64,
    );
    let after = traffic();
    assert!(
        after.0 >= before.0 + 1.0,
        "requests: {before:?} -> {after:?}"
    );
    // 90 values of at least 4 bytes each, inside batches of 61+ bytes.
    assert!(
        after.1 >= before.1 + 90.0 * 4.0,
        "bytes: {before:?} -> {after:?}"
    );
    // At least: a produce refused while the new topic's leaders settle is
    // counted as sent, then retried.
    assert!(
        after.2 - before.2 >= 90.0,
        "records: {before:?} -> {after:?}"
    );
    assert!(
        after.3 >= before.3 + 1.0,
        "latency count: {before:?} -> {after:?}"
    );

    lag_produce(&rig, 12, "[0]", false);
    wait_until(
        Duration::from_secs(10),
        "group lag grows with produce",
        || lag() == (expected + 12) as f64,
    );

    // A live member that fetched ahead and committed part of what it read:
    // the gauge equals Kafka's own figure, asked through the proxy.
    let out = python(&script(&rig, LAG_LIVE));
    let truth = out["lag"].as_f64().expect("lag");
    assert!(truth > 0.0, "{out}");
    wait_until(
        Duration::from_secs(10),
        "live group lag equals Kafka's",
        || {
            rig.proxy.metric_sum(
                "cutover_kafka_group_lag",
                &["group=\"g-lag-live\"", "topic=\"orders-lag\""],
            ) == truth
        },
    );
}

/// Group g-lag-live reads 40 records of orders-lag, commits, and reports
/// its lag as Kafka computes it: high watermark minus committed offset,
/// over the partitions it committed.
const LAG_LIVE: &str = r#"
c = Consumer({"bootstrap.servers": BOOT, "group.id": "g-lag-live", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, **GROUP_OPTS})
c.subscribe(["orders-lag"])
read, deadline = 0, time.time() + 60
while read < 40 and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error(): read += 1
c.commit(asynchronous=False)
lag = 0
for tp in c.committed([TopicPartition("orders-lag", i) for i in range(3)], timeout=10):
    if tp.offset >= 0:
        lag += c.get_watermark_offsets(TopicPartition("orders-lag", tp.partition), timeout=10)[1] - tp.offset
c.close()
print(json.dumps({"read": read, "lag": lag}))
"#;
