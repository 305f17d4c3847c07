//! A source broker restart under traffic, black box: a librdkafka producer
//! (acks=all) keeps producing through the proxy while one of the three
//! Apache Kafka brokers of the source is SIGKILLed and started again on the
//! same ports and data. The proxy drops the affected client connections,
//! librdkafka reconnects through the same virtual broker and retries
//! (leadership moves to the surviving replicas), and nothing the producer
//! was promised is lost: a group consumer then reads every acknowledged
//! record, before and after the restart.
//!
//! Then two brokers restarted one after the other while a group consumes
//! along: every acknowledged record reaches the group within seconds of
//! the last restart. Like any rolling restart, the next broker goes only
//! once the cluster is whole again (`KafkaCluster::restart` waits until no
//! partition is under-replicated): killing it while the first is still
//! out of some ISR leaves partitions under `min.insync.replicas`, and the
//! cluster itself, not the proxy, stalls producers and the group.
//!
//! Also a partition leader moved by reassignment and preferred election
//! (KIP-951): the answer a raw client gets from the old leader through the
//! proxy names no real broker, and the proxy routes the next produce to the
//! new leader. Tests here move leaders or stop brokers of the shared
//! source, so they take turns ([`disruptive`]).

mod support;

use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cutover_kafka::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use cutover_kafka::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use support::{
    KafkaRig, RawKafka, finish_client, finish_kafka_script, kafka_python, output_text,
    record_batch, wait_until,
};

/// One test at a time moves leaders or stops brokers of the shared source.
fn disruptive() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

const SCRIPT: &str = r#"
import json, os, time
from confluent_kafka import Producer, Consumer
from confluent_kafka.admin import AdminClient, NewTopic
BOOT, FLAG, POST = "127.0.0.1:{LISTEN}", "{FLAG}", 300
admin = AdminClient({"bootstrap.servers": BOOT})
def create():
    # The admin client's own connection may be the one the restart cut:
    # like any client, it retries.
    for attempt in range(20):
        f = admin.create_topics([NewTopic("{TOPIC}", num_partitions=3)])["{TOPIC}"]
        try: return f.result(timeout=20)
        except Exception as e:
            if "already exists" in str(e).lower() or "TOPIC_ALREADY_EXISTS" in str(e): return
            if "_TRANSPORT" not in str(e) or attempt == 19: raise
            time.sleep(0.25)
create()
failed, delivered, acked = [], {"pre": 0, "post": 0}, set()
def done(err, msg):
    if err: failed.append(str(err))
    else:
        delivered[msg.value().decode().split(":")[0]] += 1
        acked.add(msg.value().decode())
p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5, "message.timeout.ms": 60000})
i, deadline = 0, time.time() + 60
while not os.path.exists(FLAG) and time.time() < deadline:
    p.produce("{TOPIC}", value=f"pre:{i}".encode(), on_delivery=done)
    i += 1
    p.poll(0)
    time.sleep(0.005)
for j in range(POST):
    p.produce("{TOPIC}", value=f"post:{j}".encode(), on_delivery=done)
    p.poll(0)
left = p.flush(60)
c = Consumer({"bootstrap.servers": BOOT, "group.id": "after-restart", "auto.offset.reset": "earliest",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe(["{TOPIC}"])
read, deadline = set(), time.time() + 60
while not acked <= read and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error():
        read.add(m.value().decode())
c.close()
lost = sorted(acked - read)
print(json.dumps({"failed": failed[:5], "left": left, "pre_delivered": delivered["pre"],
                  "post_delivered": delivered["post"], "lost": len(lost), "lost_sample": lost[:5],
                  "post_consumed": len([v for v in read if v.startswith("post:")])}))
"#;

#[test]
fn producers_and_consumers_carry_on_across_a_source_broker_restart() {
    let _turn = disruptive();
    let rig = KafkaRig::start("orders*", "");
    let proxy = &rig.proxy;
    let listen = rig.listen;
    let flag = proxy.config().dir().join("restarted");
    let child = spawn_script(listen, "orders", &flag);

    // Traffic must be flowing through the proxy before the broker goes.
    wait_until(
        Duration::from_secs(30),
        "produce traffic through the proxy",
        || {
            proxy
                .scrape()
                .lines()
                .filter(|l| l.starts_with("cutover_bytes_total") && l.contains("to_upstream"))
                .any(|l| {
                    l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                        > 50_000.0
                })
        },
    );
    // Each of the three brokers leads one of the three partitions.
    rig.source.kill(1);
    rig.source.restart(1);
    let out = nothing_lost(child, &flag, proxy);
    assert!(out["pre_delivered"].as_u64().unwrap() > 0, "{out:#}");
    assert!(
        proxy.log_tail(200).contains("upstream failed"),
        "the restart should have cut the proxied connections:\n{}",
        proxy.log_tail(30)
    );
}

/// The same broker `kill -9` and restart with the topic in `dual_write`
/// (half its partitions written to the target): the source's part of the
/// splice loses its leader mid-traffic, the target's part carries on, and
/// every acknowledged record, from both clusters, is read back.
#[test]
fn a_source_broker_killed_in_dual_write_loses_nothing() {
    const TOPIC: &str = "dw-restart";
    let _turn = disruptive();
    let rig = KafkaRig::start(&format!("{TOPIC}*"), ", dual_write_percent: 50");
    let proxy = &rig.proxy;
    let flag = proxy.config().dir().join("restarted-dw");
    let child = spawn_script(rig.listen, TOPIC, &flag);
    let produced = |cluster: &str| {
        proxy.metric_sum(
            "cutover_kafka_records_total",
            &[
                &format!("topic=\"{TOPIC}\""),
                "direction=\"produced\"",
                &format!("cluster=\"{cluster}\""),
            ],
        )
    };
    wait_until(
        Duration::from_secs(60),
        "produce traffic through the proxy",
        || produced("old") > 200.0,
    );
    let (code, out) = rig.ctl(&["migrate-metadata", "events", TOPIC]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    for to in ["dual_read", "dual_write"] {
        let (code, out) = rig.ctl(&["advance", "events", TOPIC, "--force"]);
        assert_eq!(code, 0, "advance to {to}: {out}\n{}", proxy.log_tail(30));
    }
    wait_until(
        Duration::from_secs(60),
        "records written to the target in dual_write",
        || produced("new") > 200.0,
    );
    let on_source = produced("old");
    rig.source.kill(1);
    rig.source.restart(1);
    wait_until(
        Duration::from_secs(60),
        "the source's partitions written again after the restart",
        || produced("old") > on_source + 100.0,
    );
    nothing_lost(child, &flag, proxy);
}

/// [`SCRIPT`] producing to `topic` through the proxy at `listen` until
/// `flag` exists.
fn spawn_script(listen: u16, topic: &str, flag: &std::path::Path) -> std::process::Child {
    let script = SCRIPT
        .replace("{LISTEN}", &listen.to_string())
        .replace("{TOPIC}", topic)
        .replace("{FLAG}", &flag.display().to_string());
    Command::new(kafka_python())
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python")
}

/// Tells the script the disruption is over (`flag`), and checks that
/// every record it was acknowledged, before and after, was read back.
fn nothing_lost(
    child: std::process::Child,
    flag: &std::path::Path,
    proxy: &support::CutoverProcess,
) -> serde_json::Value {
    std::fs::write(flag, b"").expect("write the flag");
    let out = finish_kafka_script(child);
    println!("{out:#}");
    assert_eq!(
        out["failed"],
        serde_json::json!([]),
        "{out:#}\n{}",
        proxy.log_tail(30)
    );
    assert_eq!(out["left"], 0, "{out:#}");
    assert_eq!(out["lost"], 0, "{out:#}\n{}", proxy.log_tail(30));
    assert_eq!(out["post_delivered"], 300, "{out:#}");
    assert_eq!(out["post_consumed"], 300, "{out:#}\n{}", proxy.log_tail(30));
    out
}

/// Produce v12 (the highest the proxy offers; KIP-951 hints from v10) of
/// one record to `topic`/0.
fn produce(client: &mut RawKafka, topic: &str, value: &str) -> ProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(record_batch(&[value]))),
                ]),
        ]);
    client.call(ApiKey::Produce, 12, &request)
}

/// `topic`/0's leader as the source itself describes it.
fn source_leader(rig: &KafkaRig, topic: &str) -> Option<u32> {
    let out = rig.source.tool(
        "org.apache.kafka.tools.TopicCommand",
        &["--describe", "--topic", topic],
    );
    let text = output_text(&out);
    let at = text.find("Leader: ")? + "Leader: ".len();
    text[at..].split_whitespace().next()?.parse().ok()
}

#[test]
fn a_moved_leader_is_hinted_to_the_proxy_not_to_the_client() {
    let _turn = disruptive();
    let rig = KafkaRig::start("hints*", "");
    let out = rig.source.tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--create",
            "--topic",
            "hints",
            "--replica-assignment",
            "1:2:3",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let mut client = RawKafka::connect(rig.listen);
    // The proxy learns the leader (broker 1) from a Metadata through it.
    wait_until(Duration::from_secs(30), "hints/0 has a leader", || {
        let asked = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("hints")))),
        ]));
        let answer: MetadataResponse = client.call(ApiKey::Metadata, 9, &asked);
        answer.topics.first().is_some_and(|t| {
            t.error_code == 0 && t.partitions.first().is_some_and(|p| p.leader_id.0 >= 0)
        })
    });
    let first = produce(&mut client, "hints", "before the move");
    assert_eq!(first.responses[0].partition_responses[0].error_code, 0);

    // Replicas 2:3:1 and a preferred election: broker 2 leads, broker 1
    // stays up and answers NOT_LEADER_OR_FOLLOWER with a KIP-951 hint.
    let plan = rig.proxy.config().dir().join("reassign.json");
    std::fs::write(
        &plan,
        r#"{"version":1,"partitions":[{"topic":"hints","partition":0,"replicas":[2,3,1]}]}"#,
    )
    .unwrap();
    let out = rig.source.tool(
        "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
        &[
            "--reassignment-json-file",
            &plan.display().to_string(),
            "--execute",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    wait_until(Duration::from_secs(60), "broker 2 leads hints/0", || {
        let _ = rig.source.tool(
            "org.apache.kafka.tools.LeaderElectionCommand",
            &[
                "--election-type",
                "PREFERRED",
                "--topic",
                "hints",
                "--partition",
                "0",
            ],
        );
        source_leader(&rig, "hints") == Some(2)
    });

    // No Metadata went through the proxy since: it still routes to broker 1.
    let moved = produce(&mut client, "hints", "right after the move");
    let p = &moved.responses[0].partition_responses[0];
    assert_eq!(
        p.error_code, 6,
        "NOT_LEADER_OR_FOLLOWER from the old leader: {moved:?}"
    );
    let real: Vec<i32> = rig.source.ports().into_iter().map(i32::from).collect();
    assert!(
        moved.node_endpoints.iter().all(|e| !real.contains(&e.port)),
        "a real broker reached the client: {:?}",
        moved.node_endpoints
    );
    assert!(
        moved.node_endpoints.is_empty(),
        "{:?}",
        moved.node_endpoints
    );
    assert_eq!(p.current_leader.leader_id.0, -1, "{moved:?}");
    // The proxy took the hint: the next produce reaches broker 2.
    let after = produce(&mut client, "hints", "after the hint");
    assert_eq!(
        after.responses[0].partition_responses[0].error_code,
        0,
        "{after:?}\n{}",
        rig.proxy.log_tail(20)
    );
}

/// A librdkafka producer (acks=all) and a group consuming along, both
/// through the proxy, until FLAG appears; then POST more records, and the
/// group must read every acknowledged one within 60 s.
const ALONG: &str = r#"
import json, os, threading, time
from confluent_kafka import Producer, Consumer
from confluent_kafka.admin import AdminClient, NewTopic
BOOT, FLAG, POST = "127.0.0.1:{LISTEN}", "{FLAG}", 300
admin = AdminClient({"bootstrap.servers": BOOT})
admin.create_topics([NewTopic("twice", num_partitions=3)])["twice"].result(timeout=30)
acked, read, failed, lock = set(), set(), [], threading.Lock()
stop = threading.Event()
def consume():
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "twice-group", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe(["twice"])
    while not stop.is_set():
        m = c.poll(0.2)
        if m is not None and not m.error():
            with lock: read.add(m.value().decode())
    c.close()
t = threading.Thread(target=consume); t.start()
def done(err, msg):
    if err: failed.append(str(err))
    else:
        with lock: acked.add(msg.value().decode())
p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5, "message.timeout.ms": 90000})
i, deadline = 0, time.time() + 150
while not os.path.exists(FLAG) and time.time() < deadline:
    p.produce("twice", value=f"v:{i}".encode(), on_delivery=done)
    i += 1
    p.poll(0)
    time.sleep(0.005)
for j in range(POST):
    p.produce("twice", value=f"post:{j}".encode(), on_delivery=done)
    p.poll(0)
left = p.flush(90)
caught_up, deadline = None, time.time() + 60
start = time.time()
while time.time() < deadline:
    with lock:
        if acked <= read:
            caught_up = time.time() - start
            break
    time.sleep(0.2)
stop.set(); t.join(30)
with lock: missing = sorted(acked - read)
print(json.dumps({"sent": i + POST, "acked": len(acked), "failed": failed[:5], "left": left,
                  "missing": len(missing), "missing_sample": missing[:5], "caught_up_s": caught_up}))
"#;

#[test]
fn a_group_reads_everything_across_two_successive_broker_restarts() {
    let _turn = disruptive();
    let rig = KafkaRig::start("twice*", "");
    let proxy = &rig.proxy;
    let flag = proxy.config().dir().join("restarted-twice");
    let script = ALONG
        .replace("{LISTEN}", &rig.listen.to_string())
        .replace("{FLAG}", &flag.display().to_string());
    let child = Command::new(kafka_python())
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let fetched = || {
        proxy.metric_sum(
            "cutover_kafka_records_total",
            &["topic=\"twice\"", "direction=\"fetched\""],
        )
    };
    wait_until(
        Duration::from_secs(60),
        "the group reading through the proxy",
        || fetched() > 500.0,
    );
    // Broker 1 is also the first configured endpoint: the proxy's bootstrap
    // connections (Metadata) reset with it.
    for node in [1, 2] {
        rig.source.kill(node);
        rig.source.restart(node);
        let before = fetched();
        wait_until(
            Duration::from_secs(60),
            "the group reading again after the restart",
            || fetched() > before + 200.0,
        );
    }
    std::fs::write(&flag, b"").expect("write the flag");
    // The script ran through both restarts: longer than one script's deadline.
    let out = finish_client(child, Duration::from_secs(300), "python");
    println!("{out:#}");
    assert_eq!(out["failed"], serde_json::json!([]), "{out:#}");
    assert_eq!(out["left"], 0, "{out:#}");
    assert_eq!(out["missing"], 0, "{out:#}\n{}", proxy.log_tail(40));
    assert!(out["acked"].as_u64().unwrap() > 1000, "{out:#}");
}
