//! The RocketMQ walk, black box: two Apache RocketMQ 5.3.3 clusters (the
//! source with masters broker-a and broker-b, the target with one), cutover
//! between them, and Apache's Java producer and push consumer through the
//! proxy the whole time. The topic walks source → dual_read → dual_write → cutover →
//! target and back to source while messages flow; every acknowledged
//! message must be consumed at least once (every 25th only after a retry
//! through the group's %RETRY% topic), and duplicates are counted and
//! printed. Needs `tests/peers/install.sh rocketmq`.
//!
//! Clients poll routes every second, and each step waits for evidence that
//! clients follow it (the consumer progressing, messages landing on the
//! cluster the state writes to) rather than for a fixed time.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use support::{RocketmqClient, RocketmqRig, wait_until};

const TOPIC: &str = "orders";
const QUEUES: i32 = 4;
/// Long enough for clients to pick up a route change and for a check that
/// needs a quiet source to pass.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// Waits until the consumer has `more` lines beyond what it has now.
fn progress(consumer: &RocketmqClient, more: usize, what: &str) {
    let start = consumer.lines().len();
    wait_until(
        STEP_DEADLINE,
        &format!("{more} more messages consumed {what}"),
        || consumer.lines().len() >= start + more,
    );
}

/// Runs `ctl advance|rollback orders TOPIC` until it moves (its checks may
/// need clients to follow the previous step first); returns the output.
fn step(rig: &RocketmqRig, action: &str, expect: &str) -> String {
    step_topic(rig, TOPIC, action, expect)
}

fn step_topic(rig: &RocketmqRig, topic: &str, action: &str, expect: &str) -> String {
    let mut last = String::new();
    let started = Instant::now();
    wait_until(
        STEP_DEADLINE,
        &format!("{action} {topic} to {expect}"),
        || {
            let (code, out) = rig.ctl(&[action, "orders", topic]);
            last = out;
            code == 0
        },
    );
    assert!(last.contains(expect), "{action}: {last}");
    eprintln!("[{:>5.1?}] {}", started.elapsed(), last.trim());
    last
}

#[test]
fn walk_there_and_back_loses_no_message() {
    let started = Instant::now();
    let rig = RocketmqRig::start(", quiet_window: 1s");
    rig.source.create_topic(TOPIC, QUEUES);
    // Every 25th message is first answered "later": it comes back through
    // the group's %RETRY% topic, whichever cluster it was pulled from.
    let mut consumer = rig.client(
        "consume",
        "consumer",
        TOPIC,
        "walkers",
        &["--retry-every", "25"],
    );
    let mut producer = rig.client(
        "produce",
        "p1",
        TOPIC,
        "walk-producers",
        &["--interval-ms", "5"],
    );
    progress(&consumer, 50, "in source");

    let (code, out) = rig.ctl(&["migrate-metadata", "orders", TOPIC]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    assert!(out.contains("created"), "{out}");

    step(&rig, "advance", "dual_read");
    progress(&consumer, 50, "in dual_read");
    step(&rig, "advance", "dual_write");
    wait_until(
        STEP_DEADLINE,
        "messages written to the target in dual_write",
        || rig.target.max_offsets(TOPIC, QUEUES) > 20,
    );
    progress(&consumer, 50, "in dual_write");
    step(&rig, "advance", "cutover");
    progress(&consumer, 50, "in cutover");
    // Needs the producers off the source (quiet window) and the source drained.
    step(&rig, "advance", "target");
    let source_at_target = rig.source.max_offsets(TOPIC, QUEUES);
    progress(&consumer, 50, "in target");
    assert_eq!(
        rig.source.max_offsets(TOPIC, QUEUES),
        source_at_target,
        "nothing reaches the source in target"
    );

    step(&rig, "rollback", "cutover");
    progress(&consumer, 50, "back in cutover");
    step(&rig, "rollback", "dual_write");
    wait_until(
        STEP_DEADLINE,
        "messages written to the source again",
        || rig.source.max_offsets(TOPIC, QUEUES) > source_at_target + 20,
    );
    step(&rig, "rollback", "dual_read");
    progress(&consumer, 50, "back in dual_read");
    // Needs the target's queues drained before they leave the route.
    step(&rig, "rollback", "source");
    progress(&consumer, 50, "back in source");

    let produced = producer.stop(Duration::from_secs(30));
    let acked: BTreeSet<String> = producer.lines().into_iter().collect();
    wait_until(
        Duration::from_secs(60),
        "every acknowledged message consumed",
        || {
            let seen: BTreeSet<String> = consumer.lines().into_iter().collect();
            acked.is_subset(&seen)
        },
    );
    let consumed = consumer.stop(Duration::from_secs(30));
    let lines = consumer.lines();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &lines {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let lost = acked
        .iter()
        .filter(|m| !counts.contains_key(m.as_str()))
        .count();
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // Written to stderr directly (not eprintln!, which the harness captures)
    // so the counts show in every run's output.
    let _ = writeln!(
        std::io::stderr().lock(),
        "rocketmq walk: {} acknowledged, {} deliveries, {lost} lost, {duplicates} duplicate deliveries, producer {produced}, consumer {consumed}, {:.1?}",
        acked.len(),
        lines.len(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "lost messages");
    assert!(
        consumed["retried"].as_u64().unwrap_or(0) > 0,
        "no delivery was retried: {consumed}"
    );
    // Every RocketMQ series is exported for the topic, and the walk moved
    // messages through both clusters.
    let metrics = rig.proxy.scrape();
    let series = |name: &str| -> Vec<&str> {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("topic=\"{TOPIC}\"")))
            .collect()
    };
    for def in cutover::metrics::CATALOGUE
        .iter()
        .filter(|d| d.name.starts_with("cutover_rocketmq_"))
    {
        assert!(
            !series(def.name).is_empty(),
            "{} not exported for {TOPIC}",
            def.name
        );
    }
    for cluster in ["old", "new"] {
        let sent: f64 = series("cutover_rocketmq_sends_total")
            .iter()
            .filter(|l| l.contains(&format!("cluster=\"{cluster}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(sent > 0.0, "no sends counted to {cluster}:\n{metrics}");
    }
    let (_, history) = rig.ctl(&["history", "orders"]);
    assert_eq!(
        history.lines().filter(|l| l.contains('→')).count(),
        8,
        "{history}"
    );
}

/// Orderly consumption across the walk to `target`: the consumer locks its
/// queues (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ, relayed to the broker that owns
/// each queue, target names translated) and every queue of every real
/// broker is delivered in the order it was written. Across the two
/// clusters there is no order (a producer writes both in `dual_write`).
#[test]
fn orderly_consumer_keeps_queue_order_across_the_walk() {
    const SEQ_TOPIC: &str = "sequences";
    let started = Instant::now();
    let rig = RocketmqRig::start(", quiet_window: 1s");
    rig.source.create_topic(SEQ_TOPIC, QUEUES);
    let consumer = rig.client(
        "consume",
        "orderly",
        SEQ_TOPIC,
        "sequencers",
        &["--orderly", "true"],
    );
    let mut producer = rig.client(
        "produce",
        "s1",
        SEQ_TOPIC,
        "seq-producers",
        &["--interval-ms", "5"],
    );
    progress(&consumer, 50, "orderly in source");
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", SEQ_TOPIC]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    for state in ["dual_read", "dual_write", "cutover", "target"] {
        step_topic(&rig, SEQ_TOPIC, "advance", state);
        progress(&consumer, 50, &format!("orderly in {state}"));
    }
    assert!(
        rig.target.max_offsets(SEQ_TOPIC, QUEUES) > 50,
        "the target's queues were written"
    );
    producer.stop(Duration::from_secs(30));
    let acked: BTreeSet<String> = producer.lines().into_iter().collect();
    let delivered = |c: &RocketmqClient| -> Vec<(String, String)> {
        c.lines()
            .iter()
            .filter_map(|l| l.split_once('\t'))
            .map(|(body, queue)| (body.to_owned(), queue.to_owned()))
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "every acknowledged message consumed in order",
        || {
            let seen: BTreeSet<String> = delivered(&consumer).into_iter().map(|(b, _)| b).collect();
            acked.is_subset(&seen)
        },
    );
    // First delivery of each message, per queue: sequence numbers rise.
    let mut first = BTreeSet::new();
    let mut last_seq: BTreeMap<String, u64> = BTreeMap::new();
    let mut out_of_order = Vec::new();
    let mut redelivered = 0usize;
    for (body, queue) in delivered(&consumer) {
        if !first.insert(body.clone()) {
            redelivered += 1;
            continue;
        }
        let seq: u64 = body
            .rsplit(':')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("body {body}"));
        if let Some(prev) = last_seq.insert(queue.clone(), seq)
            && prev > seq
        {
            out_of_order.push(format!("{queue}: {prev} then {seq}"));
        }
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "rocketmq orderly walk: {} acknowledged, {} queues, {redelivered} redeliveries, {} out of order, {:.1?}",
        acked.len(),
        last_seq.len(),
        out_of_order.len(),
        started.elapsed()
    );
    assert!(
        last_seq.len() > usize::try_from(QUEUES).unwrap(),
        "queues of both clusters were consumed: {last_seq:?}"
    );
    assert!(out_of_order.is_empty(), "{out_of_order:?}");
}
