//! Leaders move on the 3-broker source under load through the proxy, the
//! way an operator moves them: a partition reassignment
//! (`ReassignPartitionsCommand`) that changes each partition's preferred
//! replica, then a preferred-leader election (`LeaderElectionCommand`).
//! Once in `source` and once in `dual_write` (half the partitions switched
//! to the target). The Java client's idempotent producer and consumer
//! group (`SpliceLoad`) run throughout: no acknowledged record is lost,
//! duplicated or reordered, and no send fails (the leader changes surface
//! to the proxy only as retriable errors, which clients retry).

mod support;

use std::time::{Duration, Instant};

use support::{KafkaRig, finish_java, output_text, spawn_java};

const PARTITIONS: usize = 3;
/// How long the producer runs; both leader moves happen inside it.
const LOAD_SECONDS: u64 = 45;
const JAVA_DEADLINE: Duration = Duration::from_secs(LOAD_SECONDS + 160);
/// How long a moved leader may take to show in the cluster's metadata.
const LEADER_DEADLINE: Duration = Duration::from_secs(30);

/// Each partition's leader on the source, by partition.
fn leaders(rig: &KafkaRig, topic: &str) -> Vec<i32> {
    let out = rig.source.tool(
        "org.apache.kafka.tools.TopicCommand",
        &["--describe", "--topic", topic],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut found = vec![-1; PARTITIONS];
    for line in text.lines() {
        let field = |name: &str| {
            line.split('\t')
                .find_map(|f| f.trim().strip_prefix(name))
                .and_then(|v| v.trim().parse::<i32>().ok())
        };
        if let (Some(p), Some(leader)) = (field("Partition:"), field("Leader:"))
            && let Some(slot) = found.get_mut(usize::try_from(p).unwrap_or(usize::MAX))
        {
            *slot = leader;
        }
    }
    found
}

/// Makes the broker after each partition's current leader its preferred
/// replica (a reassignment that only reorders the replicas), elects the
/// preferred leaders, and waits until they lead. Returns the new leaders.
fn move_leaders(rig: &KafkaRig, topic: &str, round: usize, scratch: &std::path::Path) -> Vec<i32> {
    let current = leaders(rig, topic);
    let order = |p: usize| -> Vec<usize> {
        let first = usize::try_from(current[p]).expect("a leader");
        (0..3).map(|i| (first + i) % 3 + 1).collect()
    };
    let partitions: Vec<serde_json::Value> = (0..PARTITIONS)
        .map(|p| serde_json::json!({"topic": topic, "partition": p, "replicas": order(p)}))
        .collect();
    let plan = scratch.join(format!("reassign-{round}.json"));
    let json = serde_json::json!({"version": 1, "partitions": partitions});
    std::fs::write(&plan, json.to_string()).expect("reassignment plan");
    let plan = plan.display().to_string();
    let out = rig.source.tool(
        "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
        &["--execute", "--reassignment-json-file", &plan],
    );
    assert!(out.status.success(), "reassign: {}", output_text(&out));
    let elect: Vec<serde_json::Value> = (0..PARTITIONS)
        .map(|p| serde_json::json!({"topic": topic, "partition": p}))
        .collect();
    let election = scratch.join(format!("elect-{round}.json"));
    std::fs::write(
        &election,
        serde_json::json!({ "partitions": elect }).to_string(),
    )
    .expect("election plan");
    let election = election.display().to_string();
    let want: Vec<i32> = (0..PARTITIONS)
        .map(|p| i32::try_from(order(p)[0]).unwrap())
        .collect();
    let deadline = Instant::now() + LEADER_DEADLINE;
    loop {
        // Asked again until it holds: the reassignment's new order reaches
        // the controller a moment after the command returns.
        let out = rig.source.tool(
            "org.apache.kafka.tools.LeaderElectionCommand",
            &[
                "--election-type",
                "PREFERRED",
                "--path-to-json-file",
                &election,
            ],
        );
        let now = leaders(rig, topic);
        if now == want {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "leaders {now:?}, wanted {want:?}: {}",
            output_text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn leaders_move_under_load_in_source_and_dual_write_without_losing_a_record() {
    let topic = "lead-orders";
    let rig = KafkaRig::start(&format!("{topic}*"), ", dual_write_percent: 50");
    rig.source.create_topic(topic, PARTITIONS as u32);
    let scratch = tempfile::tempdir().expect("scratch dir");
    let boot = format!("127.0.0.1:{}", rig.listen);
    let java = spawn_java(
        "SpliceLoad",
        &[
            &boot,
            topic,
            "lead-app",
            &PARTITIONS.to_string(),
            &LOAD_SECONDS.to_string(),
            // A send stuck past this fails and is reported, well before
            // the test's deadline (the default is 120 s).
            "producer.delivery.timeout.ms=40000",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rig.proxy.scrape().contains("group=\"lead-app\"") {
        assert!(
            Instant::now() < deadline,
            "the group never committed through the proxy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = leaders(&rig, topic);
    let in_source = move_leaders(&rig, topic, 1, scratch.path());
    std::thread::sleep(Duration::from_secs(3));
    let (code, out) = rig.ctl(&["migrate-metadata", "events", topic]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    for to in ["dual_read", "dual_write"] {
        let (code, out) = rig.ctl(&["advance", "events", topic, "--force"]);
        assert_eq!(
            code,
            0,
            "advance to {to}: {out}\n{}",
            rig.proxy.log_tail(30)
        );
    }
    let in_dual_write = move_leaders(&rig, topic, 2, scratch.path());
    println!("leaders {before:?} → {in_source:?} (source) → {in_dual_write:?} (dual_write)");
    let errors: Vec<String> = rig
        .proxy
        .scrape()
        .lines()
        .filter(|l| l.starts_with("cutover_kafka_partition_errors_total{") && !l.ends_with(" 0"))
        .map(str::to_owned)
        .collect();
    println!("partition errors the clusters answered: {errors:#?}");
    let report = finish_java(java, JAVA_DEADLINE);
    println!("{report:#}");
    let log = rig.proxy.log_tail(60);
    assert!(report["acked"].as_u64().unwrap() > 1000, "{report:#}");
    // A leader hint relayed with a real address (KIP-951) made the client
    // write straight to the source, around the proxy: the bypass check
    // saw those records and consumers never did.
    let full = rig.proxy.log_tail(2000);
    assert!(
        !full.contains("records written to a cluster around the proxy"),
        "{full}"
    );
    for key in [
        "failed",
        "lost",
        "reordered",
        "offset_mismatch",
        "duplicates",
    ] {
        assert_eq!(report[key], 0, "{key}: {report:#}\n{log}");
    }
}
