//! A source broker restart under traffic, black box: a librdkafka producer
//! keeps producing through the proxy while the real tansu broker behind it
//! is killed and started again on the same port. The proxy drops the
//! affected client connections, librdkafka reconnects through the same
//! virtual broker and retries, and nothing the producer was promised is
//! lost; a group consumer then reads every record written after the
//! restart. (tansu keeps data in memory, so records acknowledged before
//! the restart die with it; that is the broker's doing, not the proxy's,
//! and the test only counts records produced after it.)

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{
    Config, CutoverProcess, Tansu, finish_kafka_script, free_port, kafka_python, tcp_accepts,
    wait_until,
};

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
        f = admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=1)])["orders"]
        try: return f.result(timeout=20)
        except Exception as e:
            if "already exists" in str(e).lower() or "TOPIC_ALREADY_EXISTS" in str(e): return
            if "_TRANSPORT" not in str(e) or attempt == 19: raise
            time.sleep(0.25)
create()
failed, delivered = [], {"pre": 0, "post": 0}
def done(err, msg):
    if err: failed.append(str(err))
    else: delivered[msg.value().decode().split(":")[0]] += 1
p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5, "message.timeout.ms": 60000})
i, deadline = 0, time.time() + 60
while not os.path.exists(FLAG) and time.time() < deadline:
    p.produce("orders", value=f"pre:{i}".encode(), on_delivery=done)
    i += 1
    p.poll(0)
    time.sleep(0.005)
create()  # the restarted broker came back empty
for j in range(POST):
    p.produce("orders", value=f"post:{j}".encode(), on_delivery=done)
    p.poll(0)
left = p.flush(60)
c = Consumer({"bootstrap.servers": BOOT, "group.id": "after-restart", "auto.offset.reset": "earliest",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe(["orders"])
post, deadline = set(), time.time() + 60
while len(post) < POST and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error() and m.value().startswith(b"post:"):
        post.add(m.value().decode())
c.close()
print(json.dumps({"failed": failed[:5], "left": left, "pre_delivered": delivered["pre"],
                  "post_delivered": delivered["post"], "post_consumed": len(post)}))
"#;

#[test]
fn producers_and_consumers_carry_on_across_a_source_broker_restart() {
    let mut source = Tansu::start();
    let target = Tansu::start();
    let (listen, broker_port) = (free_port(), free_port());
    let proxy = CutoverProcess::start(Config::new().append(&format!(
        "clusters:\n\
         \x20 - {{ name: old, protocol: kafka, endpoints: [\"{}\"] }}\n\
         \x20 - {{ name: new, protocol: kafka, endpoints: [\"{}\"] }}\n\
         migrations:\n\
         \x20 - {{ name: events, protocol: kafka, listen: 127.0.0.1:{listen}, source: old, target: new,\n\
         \x20     topics: [ {{ match: \"*\" }} ], kafka: {{ brokers_listen_base: {broker_port}, virtual_brokers: 1 }} }}\n",
        source.addr(),
        target.addr()
    )));
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
    source.restart();
    assert!(tcp_accepts(&source.addr()));
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
    assert_eq!(out["post_delivered"], 300, "{out:#}");
    assert_eq!(out["post_consumed"], 300, "{out:#}\n{}", proxy.log_tail(30));
    assert!(
        proxy.log_tail(200).contains("upstream failed"),
        "the restart should have cut the proxied connections:\n{}",
        proxy.log_tail(30)
    );
}
