//! A source broker restart under traffic, black box: a librdkafka producer
//! (acks=all) keeps producing through the proxy while one of the three
//! Apache Kafka brokers of the source is SIGKILLed and started again on the
//! same ports and data. The proxy drops the affected client connections,
//! librdkafka reconnects through the same virtual broker and retries
//! (leadership moves to the surviving replicas), and nothing the producer
//! was promised is lost: a group consumer then reads every acknowledged
//! record, before and after the restart.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{KafkaRig, finish_kafka_script, kafka_python, wait_until};

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
        f = admin.create_topics([NewTopic("orders", num_partitions=3)])["orders"]
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
    p.produce("orders", value=f"pre:{i}".encode(), on_delivery=done)
    i += 1
    p.poll(0)
    time.sleep(0.005)
for j in range(POST):
    p.produce("orders", value=f"post:{j}".encode(), on_delivery=done)
    p.poll(0)
left = p.flush(60)
c = Consumer({"bootstrap.servers": BOOT, "group.id": "after-restart", "auto.offset.reset": "earliest",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe(["orders"])
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
    let rig = KafkaRig::start("orders*", "");
    let proxy = &rig.proxy;
    let listen = rig.listen;
    let flag = proxy.config().dir().join("restarted");
    let script = SCRIPT
        .replace("{LISTEN}", &listen.to_string())
        .replace("{FLAG}", &flag.display().to_string());
    let child = Command::new(kafka_python())
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");

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
    std::fs::write(&flag, b"").expect("write the flag");
    let out = finish_kafka_script(child);
    println!("{out:#}");

    assert_eq!(
        out["failed"],
        serde_json::json!([]),
        "{out:#}\n{}",
        proxy.log_tail(30)
    );
    assert_eq!(out["left"], 0, "{out:#}");
    assert!(out["pre_delivered"].as_u64().unwrap() > 0, "{out:#}");
    assert_eq!(out["lost"], 0, "{out:#}\n{}", proxy.log_tail(30));
    assert_eq!(out["post_delivered"], 300, "{out:#}");
    assert_eq!(out["post_consumed"], 300, "{out:#}\n{}", proxy.log_tail(30));
    assert!(
        proxy.log_tail(200).contains("upstream failed"),
        "the restart should have cut the proxied connections:\n{}",
        proxy.log_tail(30)
    );
}
