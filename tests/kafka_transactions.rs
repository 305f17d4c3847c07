//! A transactional producer through the whole walk, black box with Apache
//! Kafka clusters and the Java client (`SpliceLoad` with
//! `producer.transactional.id`): it writes transactions of 10 records over
//! 3 partitions and aborts every fourth on purpose, while a `read_committed`
//! consumer group reads and the topic walks `source → dual_read →
//! dual_write (half the partitions switched) → cutover → target`, back to
//! `cutover` (the partitions write to the source again) and to `target`. Every
//! committed record is read exactly once, in order, no aborted record is
//! ever read, and each switch either waited for the open transaction or
//! refused (the walk retries the step, as an operator would). `target` is
//! entered without `--force`, once its check allows it, as an operator
//! would.

mod support;

use std::time::{Duration, Instant};

use support::{KafkaRig, finish_java, spawn_java};

const PARTITIONS: usize = 3;
/// How long the producer runs; the walk happens inside this window.
const LOAD_SECONDS: u64 = 60;
const JAVA_DEADLINE: Duration = Duration::from_secs(LOAD_SECONDS + 100);
/// How long one step of the walk is retried while a switch refuses.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn a_transactional_producer_walks_to_the_target_and_read_committed_sees_no_aborted_record() {
    let topic = "txn-orders";
    let rig = KafkaRig::start(&format!("{topic}*"), ", dual_write_percent: 50");
    rig.source.create_topic(topic, PARTITIONS as u32);
    let boot = format!("127.0.0.1:{}", rig.listen);
    let group = "txn-app";
    let java = spawn_java(
        "SpliceLoad",
        &[
            &boot,
            topic,
            group,
            &PARTITIONS.to_string(),
            &LOAD_SECONDS.to_string(),
            "isolation.level=read_committed",
            "producer.transactional.id=txn-orders-producer",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rig.proxy.scrape().contains(&format!("group=\"{group}\"")) {
        assert!(
            Instant::now() < deadline,
            "the group never committed through the proxy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = rig.ctl(&["migrate-metadata", "events", topic]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    let mut refusals = Vec::new();
    let walk = [
        ("advance", "dual_read"),
        ("advance", "dual_write"),
        ("advance", "cutover"),
        ("advance", "target"),
        ("rollback", "cutover"),
        ("advance", "target"),
    ];
    for (verb, to) in walk {
        let started = Instant::now();
        loop {
            // `target` only once the check allows it (the group has read
            // past the source segments); the other steps forced past the
            // checks, which a test this short cannot satisfy.
            let mut args = vec![verb, "events", topic];
            if to != "target" {
                args.push("--force");
            }
            let (code, out) = rig.ctl(&args);
            if code == 0 {
                break;
            }
            assert!(
                started.elapsed() < STEP_DEADLINE,
                "{verb} to {to}: {out}\n{}",
                rig.proxy.log_tail(40)
            );
            refusals.push(format!("{to}: {out}"));
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(rig.topic_status(topic)["state"], to);
        println!("{verb} to {to} at {}", epoch_ms());
        // Transactions run on the new layout for a while before the next step.
        std::thread::sleep(Duration::from_secs(3));
    }
    let report = finish_java(java, JAVA_DEADLINE);
    println!("{report:#}\nrefused steps: {refusals:#?}");
    let log = rig.proxy.log_tail(60);
    assert_eq!(report["consumer_error"], "", "{report:#}\n{log}");
    assert!(report["txn_committed"].as_u64().unwrap() > 50, "{report:#}");
    assert!(report["txn_aborted"].as_u64().unwrap() > 10, "{report:#}");
    for key in [
        "failed",
        "lost",
        "reordered",
        "offset_mismatch",
        "duplicates",
        "aborted_read",
        "txn_failed",
    ] {
        assert_eq!(report[key], 0, "{key}: {report:#}\n{log}");
    }
}

fn epoch_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("epoch ms fit u64")
}
