//! Pop consumption through the proxy, and `migrate-metadata --all
//! --follow`, black box: Apache RocketMQ 5.3.3
//! clusters of their own (source masters broker-a and broker-b, target
//! one master), started with the timer wheel on, which Apache requires
//! for pop (`pop message is forbidden because timerWheelEnable is false`)
//! and which the other RocketMQ binaries keep off for their delayed-message
//! gates. Apache's 5.x Java push consumer lets the brokers rebalance its
//! group (QUERY_ASSIGNMENT) and pops the queues they assign in POP mode
//! (POP_MESSAGE, ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME) while the topic
//! walks source → target. Following creates on the target the topics and
//! groups made on the source afterwards (kept here: it copies every source
//! topic, which the other binaries' tests expect the target to lack).
//! Needs `tests/peers/install.sh rocketmq`.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cutover_rocketmq::{Encoding, Header, encode};
use support::{RocketmqClient, RocketmqCluster, RocketmqRig, wait_until};

const TOPIC: &str = "pops";
const GROUP: &str = "poppers";
const QUEUES: i32 = 4;
const STEP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a popped message stays invisible before the broker delivers
/// it again unless acked: short, so an ack that missed its checkpoint
/// shows as a redelivery within the test.
const INVISIBLE_MS: &str = "10000";

/// Apache `RequestCode.SET_MESSAGE_REQUEST_MODE`.
const SET_MESSAGE_REQUEST_MODE: i32 = 401;

/// This binary's clusters, with the timer wheel on.
fn timer_wheel_clusters() -> &'static (RocketmqCluster, RocketmqCluster) {
    static CLUSTERS: OnceLock<(RocketmqCluster, RocketmqCluster)> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        let mut all = RocketmqCluster::start_all_with(
            &[
                ("ClusterOld", &["broker-a", "broker-b"]),
                ("ClusterNew", &["broker-a"]),
            ],
            "timerWheelEnable=true\n",
        );
        let target = all.pop().expect("target cluster");
        let source = all.pop().expect("source cluster");
        (source, target)
    })
}

/// One admin request with a body to the broker at `addr`, which must
/// succeed.
fn admin(addr: &str, code: i32, ext: &[(&str, &str)], body: &[u8]) -> cutover_rocketmq::Frame {
    let mut header = Header::request(code, 1);
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    let frame = encode(&header, body, Encoding::Json).expect("encode");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(&frame).expect("write");
    support::read_frame(&mut stream).expect("an answer")
}

/// `group`'s config in the subscription group table of the broker at
/// `addr` (GET_ALL_SUBSCRIPTIONGROUP_CONFIG, which creates nothing).
fn group_config(addr: &str, group: &str) -> Option<serde_json::Value> {
    let got = admin(addr, 201, &[], &[]);
    assert_eq!(got.header.code, 0, "{:?}", got.header.remark);
    let body = cutover_rocketmq::quote_integer_keys(&got.body);
    let mut table: serde_json::Value = serde_json::from_slice(&body).expect("group table");
    table["subscriptionGroupTable"]
        .get_mut(group)
        .map(serde_json::Value::take)
}

/// Sets `group`'s mode for `topic` to POP on the broker at `addr` (what
/// `mqadmin setConsumeMode -m POP` does).
fn set_pop_mode(addr: &str, topic: &str, group: &str) {
    let body = serde_json::json!({
        "topic": topic, "consumerGroup": group, "mode": "POP", "popShareQueueNum": 0,
    });
    let answer = admin(
        addr,
        SET_MESSAGE_REQUEST_MODE,
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!(answer.header.code, 0, "{addr}: {:?}", answer.header.remark);
}

/// Waits until the consumer has `more` lines beyond what it has now.
fn progress(consumer: &RocketmqClient, more: usize, what: &str) {
    let start = consumer.lines().len();
    wait_until(
        STEP_DEADLINE,
        &format!("{more} more messages popped {what}"),
        || consumer.lines().len() >= start + more,
    );
}

/// The tests of this file take turns on the shared clusters: following
/// (`--all --follow`) copies every topic and group of the source to the
/// target, the walk's own included, while the walk creates and checks
/// them itself.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// `ctl advance orders TOPIC [--force]` until it moves.
fn advance(rig: &RocketmqRig, expect: &str, force: bool) {
    let mut args = vec!["advance", "orders", TOPIC];
    if force {
        args.push("--force");
    }
    let deadline = Instant::now() + STEP_DEADLINE;
    let last = loop {
        let (code, out) = rig.ctl(&args);
        if code == 0 {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "advance to {expect} still refused after {STEP_DEADLINE:?}: {out}\n{}",
            rig.proxy.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(last.contains(expect), "{last}");
}

/// Every acknowledged message is popped and its ack lands (none is
/// delivered again after the invisible time) while the topic walks to
/// `target`; the queue assignments cover both clusters where the state
/// reads both.
#[test]
fn pop_consumer_reads_everything_across_the_walk() {
    let _turn = one_at_a_time();
    let started = Instant::now();
    let rig = RocketmqRig::start_on(timer_wheel_clusters(), ", quiet_window: 1s");
    rig.source.create_topic(TOPIC, QUEUES);
    let route = support::rpc(&rig.namesrv, 105, &[("topic", TOPIC)], Encoding::Json)
        .expect("route through the proxy");
    assert_eq!(route.header.code, 0, "{:?}", route.header.remark);
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", TOPIC]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    for broker in rig.source.brokers.iter().chain(&rig.target.brokers) {
        set_pop_mode(&broker.addr(), TOPIC, GROUP);
    }
    let mut consumer = rig.client(
        "consume",
        "popper",
        TOPIC,
        GROUP,
        &["--pop", "true", "--pop-invisible-ms", INVISIBLE_MS],
    );
    let mut producer = rig.client(
        "produce",
        "pop-producer",
        TOPIC,
        "pop-producers",
        &["--interval-ms", "5"],
    );
    progress(&consumer, 50, "in source");
    for state in ["dual_read", "dual_write", "cutover"] {
        advance(&rig, state, false);
        if state == "dual_write" {
            wait_until(STEP_DEADLINE, "messages written to the target", || {
                rig.target.max_offsets(TOPIC, QUEUES) > 20
            });
        }
        progress(&consumer, 50, &format!("in {state}"));
    }
    // With the timer wheel on, the delayed-message gate cannot count and
    // refuses by name; every other gate of the step passes.
    let mut last = String::new();
    wait_until(
        STEP_DEADLINE,
        "only the delayed-message gate to refuse",
        || {
            let (code, out) = rig.ctl(&["check", "orders", TOPIC]);
            last = out;
            code == 1 && last.matches("FAIL ").count() == 1
        },
    );
    assert!(last.contains("FAIL    source_delayed_zero"), "{last}");
    assert!(last.contains("timer wheel"), "{last}");
    advance(&rig, "target", true);
    progress(&consumer, 50, "in target");

    producer.stop(Duration::from_secs(30));
    let acked: BTreeSet<String> = producer.lines().into_iter().collect();
    wait_until(
        Duration::from_secs(60),
        "every acknowledged message popped",
        || {
            let seen: BTreeSet<String> = consumer.lines().into_iter().collect();
            acked.is_subset(&seen)
        },
    );
    // Past the invisible time, any message whose ack missed its checkpoint
    // has been delivered again: watch for it that long.
    let lines_now = consumer.lines().len();
    let watch = Instant::now();
    let invisible = Duration::from_millis(INVISIBLE_MS.parse().expect("ms")) * 2;
    wait_until(
        invisible + Duration::from_secs(5),
        "the watch to end",
        || consumer.lines().len() > lines_now || watch.elapsed() >= invisible,
    );
    let consumed = consumer.stop(Duration::from_secs(30));
    let lines = consumer.lines();
    let distinct: BTreeSet<&String> = lines.iter().collect();
    let duplicates = lines.len() - distinct.len();
    let _ = writeln!(
        std::io::stderr().lock(),
        "rocketmq pop walk: {} acknowledged, {} deliveries, {duplicates} duplicate deliveries, consumer {consumed}, {:.1?}",
        acked.len(),
        lines.len(),
        started.elapsed()
    );
    assert!(
        consumed["popped"].as_u64().unwrap_or(0) >= u64::try_from(acked.len()).expect("count"),
        "every delivery came from a pop: {consumed}"
    );
    assert_eq!(
        duplicates, 0,
        "acks that missed their broker are delivered again"
    );
}

/// `migrate-metadata --all --follow`: a topic (under a `%` namespace) and a
/// group created on the source after the first copy reach the target by
/// themselves, and following reports them; after a restart of the proxy
/// it follows again without being asked (the state store records it).
#[test]
fn following_creates_topics_and_groups_made_later_on_the_source() {
    const LATE_TOPIC: &str = "latens%arrivals";
    const LATE_GROUP: &str = "latens%arrival-readers";
    const AFTER_RESTART: &str = "latens%after-restart";
    let _turn = one_at_a_time();
    let mut rig = RocketmqRig::start_on(timer_wheel_clusters(), "");
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", "--all", "--follow"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("following"), "{out}");
    for broker in &rig.source.brokers {
        create_source_topic(&broker.addr(), LATE_TOPIC);
        let group =
            serde_json::json!({"groupName": LATE_GROUP, "retryMaxTimes": 5, "consumeEnable": true});
        let got = admin(&broker.addr(), 200, &[], group.to_string().as_bytes());
        assert_eq!(got.header.code, 0, "{:?}", got.header.remark);
    }
    let target = rig.target.brokers[0].addr();
    wait_for_target_topic(&rig, LATE_TOPIC);
    // Read from the group table: asking for one group (code 352) makes a
    // broker with autoCreateSubscriptionGroup create it with defaults,
    // which would race the follower.
    wait_until(STEP_DEADLINE, "the late group on the target", || {
        group_config(&target, LATE_GROUP).is_some()
    });
    let config = group_config(&target, LATE_GROUP).expect("the late group");
    assert_eq!(
        config["retryMaxTimes"], 5,
        "the source's settings: {config}"
    );
    // Asking again reports what following did (and starts nothing new).
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", "--all", "--follow", "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let follow = &report["follow"];
    assert_eq!(follow["following"], true, "{follow}");
    assert_eq!(follow["resumes_after_restart"], true, "{follow}");
    assert!(follow["created"].as_u64().unwrap_or(0) >= 2, "{follow}");

    // Restarted, the proxy follows again on its own: nothing asks it to.
    rig.proxy.restart();
    for broker in &rig.source.brokers {
        create_source_topic(&broker.addr(), AFTER_RESTART);
    }
    wait_for_target_topic(&rig, AFTER_RESTART);
    let log = rig.proxy.log_tail(400);
    assert!(
        log.contains("resuming following the source's topics and groups"),
        "{log}"
    );
}

/// Creates `topic` with 2 queues on the source broker at `addr`.
fn create_source_topic(addr: &str, topic: &str) {
    let got = admin(
        addr,
        17,
        &[
            ("topic", topic),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", "2"),
            ("writeQueueNums", "2"),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
            ("topicSysFlag", "0"),
            ("order", "false"),
        ],
        &[],
    );
    assert_eq!(got.header.code, 0, "{:?}", got.header.remark);
}

/// Waits until the target's NameServer routes `topic` with the 4 write
/// queues of the source's two masters.
fn wait_for_target_topic(rig: &RocketmqRig, topic: &str) {
    wait_until(STEP_DEADLINE, &format!("{topic} on the target"), || {
        support::rpc(
            &rig.target.namesrv(),
            105,
            &[("topic", topic)],
            Encoding::Json,
        )
        .is_some_and(|r| {
            r.header.code == 0
                && cutover_rocketmq::TopicRouteData::decode(&r.body).is_ok_and(|d| {
                    d.queue_datas
                        .iter()
                        .map(|q| q.write_queue_nums)
                        .sum::<i32>()
                        == 4
                })
        })
    });
}
