//! The RocketMQ proxy in `source`, black box against two Apache RocketMQ
//! 5.3.3 clusters (the source with two masters): produce and consume
//! through it with Apache's Java client, routes and
//! cluster info naming only proxy endpoints, both header encodings
//! answered in kind, the readiness checks refusing with reasons (and
//! `--force` recorded), and bad input closing only its own connection.
//! Needs `tests/peers/install.sh rocketmq`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cutover_rocketmq::{ClusterInfo, Encoding, TopicRouteData};
use support::{ClientLib, RocketmqRig, rpc, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn source_state_relays_clients_and_answers_in_their_encoding() {
    let rig = RocketmqRig::start("");
    rig.source.create_topic("events", 2);

    // Both encodings, answered in kind; only proxy addresses, and in
    // `source` only the source's queues.
    for encoding in [Encoding::Json, Encoding::Binary] {
        let answer =
            rpc(&rig.namesrv, 105, &[("topic", "events")], encoding).expect("route answered");
        assert_eq!(answer.encoding, encoding);
        assert_eq!(answer.header.code, 0, "{:?}", answer.header.remark);
        let route = TopicRouteData::decode(&answer.body).unwrap();
        let mut names: Vec<&str> = route
            .queue_datas
            .iter()
            .map(|q| q.broker_name.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["broker-a", "broker-b"], "{route:?}");
        for b in &route.broker_datas {
            let addr = b.master_addr().unwrap();
            assert!(
                rig.source.brokers.iter().all(|real| real.addr() != addr),
                "clients must not be sent to the real broker: {addr}"
            );
            assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        }
    }
    let info = rpc(&rig.namesrv, 106, &[], Encoding::Binary).expect("cluster info answered");
    assert_eq!(info.encoding, Encoding::Binary);
    let info = ClusterInfo::decode(&info.body).unwrap();
    let names: Vec<&String> = info.broker_addr_table.keys().collect();
    assert_eq!(
        names,
        ["broker-a", "broker-a-target", "broker-b"],
        "target names are suffixed"
    );
    let real: Vec<String> = rig
        .source
        .brokers
        .iter()
        .chain(&rig.target.brokers)
        .map(support::RocketmqBroker::addr)
        .collect();
    for b in info.broker_addr_table.values() {
        let addr = b.master_addr().unwrap();
        assert!(!real.iter().any(|r| r == addr), "{addr}");
    }
    let missing = rpc(&rig.namesrv, 105, &[("topic", "nope")], Encoding::Json).unwrap();
    assert_eq!(missing.header.code, 17, "unknown topic stays unknown");

    // Produce and consume through the proxy.
    let traffic = || {
        (
            rig.proxy
                .metric_sum("cutover_requests_total", &["topic=\"events\""]),
            rig.proxy
                .metric_sum("cutover_bytes_total", &["direction=\"to_upstream\""]),
            rig.proxy
                .metric_sum("cutover_bytes_total", &["direction=\"to_client\""]),
            rig.proxy
                .metric_sum("cutover_request_duration_seconds_count", &[]),
        )
    };
    let before = traffic();
    let mut consumer = rig.client("consume", "c", "events", "readers", &[]);
    let mut producer = rig.client("produce", "p", "events", "writers", &["--count", "200"]);
    wait_until(DEADLINE, "200 messages acknowledged", || {
        producer.lines().len() == 200
    });
    wait_until(DEADLINE, "200 messages consumed", || {
        consumer.lines().len() >= 200
    });
    let summary = producer.stop(Duration::from_secs(30));
    assert_eq!(summary["acked"], 200, "{summary}");
    consumer.stop(Duration::from_secs(30));
    // 200 sends, each counted, timed and relayed both ways (a send frame
    // carries at least its topic, group and body: over 50 bytes).
    let after = traffic();
    assert!(
        after.0 - before.0 >= 200.0,
        "requests {before:?} -> {after:?}"
    );
    assert!(
        after.1 - before.1 >= 200.0 * 50.0,
        "bytes up {before:?} -> {after:?}"
    );
    assert!(
        after.2 - before.2 >= 200.0 * 50.0,
        "bytes down {before:?} -> {after:?}"
    );
    assert!(
        after.3 - before.3 >= 200.0,
        "latency count {before:?} -> {after:?}"
    );
    assert_eq!(
        rig.target.max_offsets("events", 2),
        0,
        "nothing reaches the target in source"
    );
    assert_eq!(rig.source.max_offsets("events", 2), 200);
    let (_, status) = rig.ctl(&["status"]);
    assert!(
        status.contains("events") && status.contains("source"),
        "{status}"
    );
}

#[test]
fn checks_refuse_with_reasons_and_force_is_recorded() {
    let rig = RocketmqRig::start("");
    rig.source.create_topic("bills", 2);
    let _proxied = rig.client("consume", "via-proxy", "bills", "billing", &[]);
    // The same group straight at the source: invisible to the proxy.
    let bypass = support::RocketmqClient::start(
        rig.dir.path(),
        "consume",
        "bypass",
        &[
            "--namesrv",
            &rig.source.namesrv(),
            "--topic",
            "bills",
            "--group",
            "billing",
        ],
    );
    let mut last = String::new();
    wait_until(DEADLINE, "the check to name the bypassing consumer", || {
        let (code, out) = rig.ctl(&["check", "orders", "bills"]);
        last = out;
        code == 1 && last.contains("without the proxy")
    });
    assert!(
        last.contains("FAIL    target_topic_exists")
            && last.contains("cluster \"new\" (target) has no topic bills"),
        "{last}"
    );
    assert!(last.contains("FAIL    all_group_members_proxied"), "{last}");
    assert!(last.contains("group billing: client"), "{last}");
    assert!(last.contains("pass    target_reachable"), "{last}");

    let (code, out) = rig.ctl(&["advance", "orders", "bills"]);
    assert_eq!(code, 1, "refused: {out}");
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", "bills"]);
    assert_eq!(code, 0, "{out}");
    // The bypassing consumer is still there: only --force moves the topic.
    let (code, out) = rig.ctl(&["advance", "--force", "orders", "bills"]);
    assert_eq!(code, 0, "forced: {out}");
    drop(bypass);
    let (_, history) = rig.ctl(&["history", "orders"]);
    let row = history
        .lines()
        .find(|l| l.contains("source→dual_read"))
        .unwrap_or_default();
    assert!(
        row.contains(" yes (1 failed)"),
        "forced move recorded: {history}"
    );

    // Back to source needs the target's queues drained: nothing there yet.
    let (code, out) = rig.ctl(&["check", "--rollback", "orders", "bills"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pass    target_backlog_zero"), "{out}");
}

#[test]
fn bad_frames_close_only_their_own_connection() {
    let rig = RocketmqRig::start("");
    let info = rpc(&rig.namesrv, 106, &[], Encoding::Json).unwrap();
    let info = ClusterInfo::decode(&info.body).unwrap();
    let endpoint = info.broker_addr_table["broker-a"]
        .master_addr()
        .unwrap()
        .to_owned();

    let mut healthy = TcpStream::connect(&rig.namesrv).unwrap();
    healthy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    // A header of an unknown serialize type on the NameServer facade.
    let mut garbage = TcpStream::connect(&rig.namesrv).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage
        .write_all(&[0, 0, 0, 8, 0xff, 0, 0, 4, b'j', b'u', b'n', b'k'])
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        garbage.read(&mut buf).unwrap_or(0),
        0,
        "closed without an answer"
    );

    // A declared length of 2 GiB on a broker endpoint.
    let mut huge = TcpStream::connect(&endpoint).unwrap();
    huge.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    huge.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert_eq!(
        huge.read(&mut buf).unwrap_or(0),
        0,
        "closed without an answer"
    );

    // The other connection is untouched.
    let request = cutover_rocketmq::encode(
        &cutover_rocketmq::Header::request(106, 9),
        &[],
        Encoding::Json,
    )
    .unwrap();
    healthy.write_all(&request).unwrap();
    let answer = support::read_frame(&mut healthy).expect("healthy connection answered");
    assert_eq!(answer.header.opaque, 9);
    assert_eq!(answer.header.code, 0);

    wait_until(
        Duration::from_secs(5),
        "both closes logged with a reason",
        || {
            let log = rig.proxy.log_tail(200);
            log.contains("closing rocketmq nameserver client connection")
                && log.contains("unknown header serialize type")
                && log.contains("above the limit")
        },
    );
}

#[test]
fn java_4_9_client_with_the_vip_channel_is_relayed() {
    let rig = RocketmqRig::start("");
    rig.source.create_topic("legacy", 2);
    // 4.9.8 reads the 4.x route JSON and, with the VIP channel on, talks to
    // each broker endpoint's port − 2.
    let v4 = ClientLib::V4;
    let vip = ["--vip", "true"];
    let mut consumer = rig.client_on(v4, "consume", "c4", "legacy", "legacy-readers", &vip);
    let mut producer = rig.client_on(
        v4,
        "produce",
        "p4",
        "legacy",
        "legacy-writers",
        &["--vip", "true", "--interval-ms", "20"],
    );
    wait_until(DEADLINE, "100 messages acknowledged", || {
        producer.lines().len() >= 100
    });
    // The producer, still sending, reaches the brokers on their VIP ports.
    let info = rpc(&rig.namesrv, 106, &[], Encoding::Json).unwrap();
    let info = ClusterInfo::decode(&info.body).unwrap();
    let vip_ports: Vec<u16> = info
        .broker_addr_table
        .values()
        .filter_map(|b| b.master_addr()?.rsplit(':').next()?.parse::<u16>().ok())
        .map(|p| p - 2)
        .collect();
    assert!(
        vip_ports.iter().any(|p| established_to(*p)),
        "no connection to a VIP port {vip_ports:?}"
    );
    let summary = producer.stop(Duration::from_secs(30));
    let acked = producer.lines();
    assert_eq!(summary["acked"], acked.len(), "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    wait_until(DEADLINE, "every acknowledged message consumed", || {
        let seen: std::collections::BTreeSet<String> = consumer.lines().into_iter().collect();
        acked.iter().all(|m| seen.contains(m))
    });
    consumer.stop(Duration::from_secs(30));
    assert_eq!(rig.source.max_offsets("legacy", 2), acked.len() as i64);
    // Both masters took part: the producer spreads over every queue.
    for b in &rig.source.brokers {
        let on = support::RocketmqCluster::broker_max_offsets(b, "legacy", 2);
        assert!(on > 0, "nothing reached {}", b.name);
    }
}

/// Whether the proxy accepted a connection on `port` that is still open:
/// an ESTABLISHED (`01`) row of /proc/net/tcp{,6} whose local address has
/// that port (the Java client's own end may be an IPv6 socket).
fn established_to(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let table = std::fs::read_to_string(table).unwrap_or_default();
        table.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 3
                && cols[3] == "01"
                && cols[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
    })
}

#[test]
fn a_group_that_never_used_the_proxy_blocks_dual_read() {
    let rig = RocketmqRig::start("");
    rig.source.create_topic("audits", 2);
    // A route asked through the proxy registers the topic with the migration.
    let route = rpc(&rig.namesrv, 105, &[("topic", "audits")], Encoding::Json).unwrap();
    assert_eq!(route.header.code, 0, "{:?}", route.header.remark);
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", "audits"]);
    assert_eq!(code, 0, "{out}");
    // Only straight at the source: the proxy never sees this group.
    let mut bypass = support::RocketmqClient::start(
        rig.dir.path(),
        "consume",
        "auditor",
        &[
            "--namesrv",
            &rig.source.namesrv(),
            "--topic",
            "audits",
            "--group",
            "audit-bypass",
        ],
    );
    let mut last = String::new();
    wait_until(DEADLINE, "the check to name the group", || {
        let (code, out) = rig.ctl(&["check", "orders", "audits"]);
        last = out;
        code == 1 && last.contains("group audit-bypass: client")
    });
    assert!(last.contains("FAIL    all_group_members_proxied"), "{last}");
    assert!(last.contains("without the proxy"), "{last}");
    // The client's address as the broker sees it is named.
    assert!(last.contains("from 127.0.0.1:"), "{last}");
    let (code, out) = rig.ctl(&["advance", "orders", "audits"]);
    assert_eq!(code, 1, "refused: {out}");

    // Once it is gone (its offsets may keep it listed) no member bypasses
    // the proxy.
    bypass.stop(Duration::from_secs(30));
    wait_until(DEADLINE, "the check to pass without the member", || {
        let (code, out) = rig.ctl(&["check", "orders", "audits"]);
        last = out;
        code == 0
    });
    assert!(last.contains("pass    all_group_members_proxied"), "{last}");
}

/// Sends `count` transactional messages through the proxy whose local
/// transaction answers "unknown", so each is committed only by the
/// broker's check-back (CHECK_TRANSACTION_STATE, broker → client through
/// the proxy); waits until the producer saw a check-back for every one.
fn transact(rig: &RocketmqRig, id: &str, topic: &str, count: usize) -> Vec<String> {
    let n = count.to_string();
    let mut producer = rig.client("transact", id, topic, "tx-producers", &["--count", &n]);
    wait_until(
        Duration::from_secs(90),
        &format!("{id}: a check-back for each of {count} half messages"),
        || producer.exited(),
    );
    let summary = producer.stop(Duration::from_secs(5));
    assert_eq!(summary["acked"], count, "{summary}");
    assert_eq!(summary["checked"], count, "{summary}");
    producer.lines()
}

/// Transactional messages through the proxy: halves stored, the brokers'
/// check-backs (broker → client) relayed, commits landing in `source` and
/// `dual_write`, and open halves and delayed messages not yet due holding
/// the topic back from `target`.
#[test]
fn transactional_messages_are_committed_by_check_backs_through_the_proxy() {
    const TOPIC: &str = "payments";
    let rig = RocketmqRig::start(", quiet_window: 1s");
    rig.source.create_topic(TOPIC, 2);
    let consumer = rig.client("consume", "tx-reader", TOPIC, "payment-readers", &[]);
    let mut sent = transact(&rig, "tx-source", TOPIC, 20);

    // In dual_write the halves land on both clusters, and both clusters'
    // brokers ask back through their endpoints.
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", TOPIC]);
    assert_eq!(code, 0, "{out}");
    for state in ["dual_read", "dual_write"] {
        let mut last = String::new();
        wait_until(DEADLINE, &format!("advance to {state}"), || {
            let (code, out) = rig.ctl(&["advance", "orders", TOPIC]);
            last = out;
            code == 0
        });
        assert!(last.contains(state), "{last}");
    }
    let target_before = rig.target.max_offsets(TOPIC, 4);
    // Producers follow the new route at their next poll (every second).
    std::thread::sleep(Duration::from_secs(3));
    sent.extend(transact(&rig, "tx-dual-write", TOPIC, 40));
    assert!(
        rig.target.max_offsets(TOPIC, 4) > target_before,
        "committed transactional messages reached the target in dual_write"
    );

    // Messages delayed by 30 s (level 4) sent in dual_write wait on both
    // clusters' schedule queues and hold the topic back from `target`
    // until due, as do halves left open (answered "unknown" at every
    // check-back) until resolved.
    let mut delayed = rig.client(
        "produce",
        "delayed",
        TOPIC,
        "delayed-producers",
        &["--count", "12", "--delay-level", "4"],
    );
    wait_until(DEADLINE, "12 delayed messages stored", || {
        delayed.lines().len() == 12
    });
    let mut held = rig.client(
        "transact",
        "tx-held",
        TOPIC,
        "tx-held-producers",
        &["--count", "12", "--hold", "true"],
    );
    wait_until(DEADLINE, "12 half messages stored", || {
        held.lines().len() == 12
    });
    let mut last = String::new();
    wait_until(DEADLINE, "advance to cutover", || {
        let (code, out) = rig.ctl(&["advance", "orders", TOPIC]);
        last = out;
        code == 0
    });
    let (code, out) = rig.ctl(&["check", "orders", TOPIC]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL    source_half_messages_resolved")
            && out.contains("not yet resolved on cluster \"old\""),
        "{out}"
    );
    assert!(
        out.contains("FAIL    source_delayed_zero")
            && out.contains("not yet due on cluster \"old\""),
        "{out}"
    );
    // The producer commits at the next check-backs, and the gate opens.
    let summary = held.stop(Duration::from_secs(60));
    assert_eq!(summary["checked"], 12, "{summary}");
    sent.extend(held.lines());
    delayed.stop(Duration::from_secs(30));
    sent.extend(delayed.lines());
    wait_until(
        DEADLINE,
        "the half messages resolved and the delayed ones due",
        || {
            let (_, out) = rig.ctl(&["check", "orders", TOPIC]);
            last = out;
            last.contains("pass    source_half_messages_resolved")
                && last.contains("pass    source_delayed_zero")
        },
    );
    wait_until(DEADLINE, "every committed message consumed", || {
        let seen: std::collections::BTreeSet<String> = consumer.lines().into_iter().collect();
        sent.iter().all(|m| seen.contains(m))
    });
}

#[test]
fn sigterm_lets_a_long_polled_pull_finish_then_closes() {
    let mut rig = RocketmqRig::start("");
    rig.source.create_topic("drains", 1);
    let info = rpc(&rig.namesrv, 106, &[], Encoding::Json).unwrap();
    let info = ClusterInfo::decode(&info.body).unwrap();
    let endpoint = info.broker_addr_table["broker-a"]
        .master_addr()
        .unwrap()
        .to_owned();
    // A pull at the end of an empty queue, suspended up to 4 s (sysFlag 6:
    // suspend, so the broker holds it until a message arrives or the time
    // is up, and subscription, carried in the header since no heartbeat
    // registered the group).
    let mut header = cutover_rocketmq::Header::request(11, 41);
    for (k, v) in [
        ("consumerGroup", "drain-group"),
        ("topic", "drains"),
        ("queueId", "0"),
        ("queueOffset", "0"),
        ("maxMsgNums", "32"),
        ("sysFlag", "6"),
        ("commitOffset", "0"),
        ("suspendTimeoutMillis", "4000"),
        ("subscription", "*"),
        ("subVersion", "0"),
        ("expressionType", "TAG"),
    ] {
        header.set_ext(k, v);
    }
    let pull = cutover_rocketmq::encode(&header, &[], Encoding::Json).unwrap();
    let mut s = TcpStream::connect(&endpoint).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let before = rig.proxy.bytes_upstream();
    s.write_all(&pull).unwrap();
    wait_until(
        Duration::from_secs(5),
        "the pull is relayed to broker-a",
        || rig.proxy.bytes_upstream() >= before + pull.len() as f64,
    );
    let signalled = std::time::Instant::now();
    rig.proxy.sigterm();
    let answer = support::read_frame(&mut s).expect("the in-flight pull is answered, not cut off");
    let held = signalled.elapsed();
    assert_eq!(answer.header.opaque, 41);
    assert_eq!(
        answer.header.code, 19,
        "PULL_NOT_FOUND: {:?}",
        answer.header.remark
    );
    assert!(
        held >= Duration::from_secs(1),
        "the answer came {held:?} after SIGTERM: the broker was still holding the pull when it landed"
    );
    rig.proxy.assert_drained(&mut s, &rig.namesrv);
}

/// Broadcasting consumers of one group through the proxy each read every
/// message (their offsets are their own, never committed to a broker).
#[test]
fn broadcasting_consumers_each_read_every_message() {
    const TOPIC: &str = "notices";
    let rig = RocketmqRig::start("");
    rig.source.create_topic(TOPIC, 2);
    let broadcast = ["--broadcast", "true"];
    let mut first = rig.client("consume", "bc-1", TOPIC, "notice-readers", &broadcast);
    let mut second = rig.client("consume", "bc-2", TOPIC, "notice-readers", &broadcast);
    // Each starts from the queues' first offset (its own, local offsets).
    let mut producer = rig.client(
        "produce",
        "notifier",
        TOPIC,
        "notifiers",
        &["--count", "50"],
    );
    wait_until(DEADLINE, "50 messages acknowledged", || {
        producer.lines().len() == 50
    });
    let sent = producer.lines();
    for c in [&first, &second] {
        wait_until(DEADLINE, "each consumer read all 50", || {
            let seen: std::collections::BTreeSet<String> = c.lines().into_iter().collect();
            sent.iter().all(|m| seen.contains(m))
        });
    }
    producer.stop(Duration::from_secs(30));
    first.stop(Duration::from_secs(30));
    second.stop(Duration::from_secs(30));
}

/// The clients `ctl clients` lists for `topic`, as JSON rows.
fn client_rows(rig: &RocketmqRig, topic: &str) -> Vec<serde_json::Value> {
    let (code, out) = rig.ctl(&["clients", "orders", topic, "--json"]);
    assert_eq!(code, 0, "{out}");
    let body: serde_json::Value = serde_json::from_str(&out).expect(&out);
    body["topics"][0]["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The row of `group` with `role` reached `via` (proxied or direct).
fn row_of<'a>(
    rows: &'a [serde_json::Value],
    role: &str,
    group: &str,
    via: &str,
) -> Option<&'a serde_json::Value> {
    rows.iter()
        .find(|r| r["role"] == role && r["group"] == group && r["via"] == via)
}

/// Item 7's inventory: a producer and a consumer through the proxy and a
/// producer and a consumer straight at the source are each listed with
/// their client id, address, language and version, marked proxied or
/// direct; the direct ones come from the source brokers' own lists.
#[test]
fn ctl_clients_lists_proxied_and_direct_clients_of_a_topic() {
    const TOPIC: &str = "ledger";
    let rig = RocketmqRig::start("");
    rig.source.create_topic(TOPIC, 2);
    // A route asked through the proxy registers the topic with the migration.
    let route = rpc(&rig.namesrv, 105, &[("topic", TOPIC)], Encoding::Json).unwrap();
    assert_eq!(route.header.code, 0, "{:?}", route.header.remark);
    let slow = ["--count", "1000000", "--interval-ms", "200"];
    let mut writer = rig.client("produce", "ledger-writer", TOPIC, "ledger-writers", &slow);
    let mut reader = rig.client("consume", "ledger-reader", TOPIC, "ledger-proxied", &[]);
    let source = rig.source.namesrv();
    let direct = |mode: &str, id: &str, group: &str, extra: &[&str]| {
        let mut args = vec![
            "--namesrv",
            source.as_str(),
            "--topic",
            TOPIC,
            "--group",
            group,
        ];
        args.extend_from_slice(extra);
        support::RocketmqClient::start(rig.dir.path(), mode, id, &args)
    };
    let mut bypass_writer = direct("produce", "ledger-bypass-writer", "ledger-bypassers", &slow);
    let mut bypass_reader = direct("consume", "ledger-bypass-reader", "ledger-direct", &[]);
    let mut rows = Vec::new();
    wait_until(DEADLINE, "all four clients to be listed", || {
        rows = client_rows(&rig, TOPIC);
        row_of(&rows, "producer", "ledger-writers", "proxied").is_some()
            && row_of(&rows, "consumer", "ledger-proxied", "proxied")
                .is_some_and(|r| r["brokers"].as_array().is_some_and(|b| b.len() == 2))
            && row_of(&rows, "producer", "ledger-bypassers", "direct").is_some()
            && row_of(&rows, "consumer", "ledger-direct", "direct")
                .is_some_and(|r| r["brokers"].as_array().is_some_and(|b| b.len() == 2))
    });
    for (role, group, via) in [
        ("producer", "ledger-writers", "proxied"),
        ("consumer", "ledger-proxied", "proxied"),
        ("producer", "ledger-bypassers", "direct"),
        ("consumer", "ledger-direct", "direct"),
    ] {
        let r = row_of(&rows, role, group, via).unwrap();
        assert_eq!(r["language"], "JAVA", "{r}");
        assert_eq!(r["version_name"], "V5_3_3", "{r}");
        assert_eq!(r["connected"], true, "{r}");
        assert!(
            r["client_id"].as_str().is_some_and(|id| id.contains('@')),
            "{r}"
        );
        // The client's own address, never one of the proxy's.
        let addr = r["addr"].as_str().unwrap_or_default();
        assert!(addr.starts_with("127.0.0.1:"), "{r}");
        if role == "producer" && via == "direct" {
            assert_eq!(
                r["topic_known"], false,
                "brokers do not say what a producer sends: {r}"
            );
        } else {
            assert_eq!(r["topic_known"], true, "{r}");
        }
    }
    // Proxied rows carry when the proxy last heard from them.
    let proxied = row_of(&rows, "consumer", "ledger-proxied", "proxied").unwrap();
    assert!(proxied["last_seen_ms"].as_u64().is_some(), "{proxied}");
    // The same clients, by name, in the human table of every topic.
    let (code, out) = rig.ctl(&["clients", "orders"]);
    assert_eq!(code, 0, "{out}");
    for (group, via) in [
        ("ledger-writers", "proxied"),
        ("ledger-proxied", "proxied"),
        ("ledger-bypassers", "direct (any topic)"),
        ("ledger-direct", "direct"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(TOPIC) && l.contains(group) && l.contains(via)),
            "{group} {via}: {out}"
        );
    }
    // The gate reads the same rows: the direct consumer is named.
    let (code, out) = rig.ctl(&["check", "orders", TOPIC]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("group ledger-direct: client"), "{out}");
    assert!(!out.contains("group ledger-proxied: client"), "{out}");
    // A proxied consumer that left stays listed as gone.
    reader.stop(Duration::from_secs(30));
    wait_until(DEADLINE, "the proxied consumer to show as gone", || {
        rows = client_rows(&rig, TOPIC);
        row_of(&rows, "consumer", "ledger-proxied", "proxied")
            .is_some_and(|r| r["connected"] == false)
    });
    for c in [&mut writer, &mut bypass_writer, &mut bypass_reader] {
        c.stop(Duration::from_secs(30));
    }
}

/// Requests on one connection to `addr`, each answered before the next.
struct Admin(TcpStream);

impl Admin {
    fn connect(addr: &str) -> Admin {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Admin(stream)
    }

    fn call(&mut self, code: i32, ext: &[(&str, &str)], body: &[u8]) -> cutover_rocketmq::Frame {
        let mut header = cutover_rocketmq::Header::request(code, 1);
        for (k, v) in ext {
            header.set_ext(*k, *v);
        }
        let frame = cutover_rocketmq::encode(&header, body, Encoding::Json).expect("encode");
        self.0.write_all(&frame).expect("write");
        support::read_frame(&mut self.0).expect("an answer")
    }

    fn create_topic(&mut self, topic: &str, queues: i32) {
        let q = queues.to_string();
        let got = self.call(17, &support::create_topic_fields(topic, &q), &[]);
        assert_eq!(got.header.code, 0, "{topic}: {:?}", got.header.remark);
    }

    fn create_group(&mut self, group: &str, retry_max: i32) {
        let body = serde_json::json!({
            "groupName": group, "consumeEnable": true, "consumeFromMinEnable": true,
            "consumeBroadcastEnable": true, "retryQueueNums": 1, "retryMaxTimes": retry_max,
            "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1,
        });
        let got = self.call(200, &[], body.to_string().as_bytes());
        assert_eq!(got.header.code, 0, "{group}: {:?}", got.header.remark);
    }
}

/// Item 6 at scale: 1,000 topics (some under a `%` namespace) and 1,000
/// groups created on the source's two masters are planned (`--export`),
/// the plan narrowed and given one topic name no broker takes, and applied
/// (`--import`) in one task: each item reported created, already there
/// (made on the target beforehand) or failed with the broker's reason; the
/// target then routes the topics with the source's total queue count and
/// holds the groups with the source's settings.
#[test]
fn migrate_metadata_plans_and_applies_a_thousand_topics_and_groups() {
    const N: usize = 1000;
    let rig = RocketmqRig::start("");
    let name = |i: usize| {
        if i % 10 == 7 {
            format!("bulkns%bulk-{i:04}")
        } else {
            format!("bulk-{i:04}")
        }
    };
    let group = |i: usize| format!("bulk-readers-{i:04}");
    let started = std::time::Instant::now();
    for broker in &rig.source.brokers {
        let mut admin = Admin::connect(&broker.addr());
        for i in 0..N {
            admin.create_topic(&name(i), 2);
            admin.create_group(&group(i), 7);
        }
    }
    let seeded = started.elapsed();
    // Already on the target: reported, not changed.
    let mut target = Admin::connect(&rig.target.brokers[0].addr());
    target.create_topic(&name(1), 4);
    target.create_group(&group(1), 16);

    let plan_file = rig.dir.path().join("plan.json");
    let plan_path = plan_file.to_str().unwrap();
    let started = std::time::Instant::now();
    let (code, out) = rig.ctl(&["migrate-metadata", "orders", "--all", "--export", plan_path]);
    assert_eq!(code, 0, "{out}");
    let planned = started.elapsed();
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    // The plan covers the whole source, not only topics seen through the
    // proxy (none of these ever was).
    let bulk = |v: &serde_json::Value| v["name"].as_str().is_some_and(|n| n.contains("bulk-"));
    let topics: Vec<serde_json::Value> = plan["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| bulk(t))
        .cloned()
        .collect();
    let groups: Vec<serde_json::Value> = plan["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| bulk(g))
        .cloned()
        .collect();
    assert_eq!((topics.len(), groups.len()), (N, N), "{out}");
    let t7 = topics.iter().find(|t| t["name"] == name(7)).unwrap();
    assert_eq!(
        t7["source_write_queues"], 4,
        "2 on each source master: {t7}"
    );
    assert_eq!(t7["write_queues_per_master"], 4, "one target master: {t7}");
    assert!(plan["topics"].as_array().unwrap().iter().all(|t| {
        let n = t["name"].as_str().unwrap_or_default();
        !n.starts_with("%RETRY%") && n != "TBW102" && n != "broker-b" && n != "ClusterOld"
    }));
    // Narrowed to this test's items (other tests share the clusters), plus
    // a name every broker refuses.
    let mut edited = topics;
    edited.push(serde_json::json!({
        "name": "no spaces allowed", "read_queues_per_master": 1, "write_queues_per_master": 1,
    }));
    plan["topics"] = serde_json::Value::Array(edited);
    plan["groups"] = serde_json::Value::Array(groups);
    std::fs::write(&plan_file, plan.to_string()).unwrap();

    let started = std::time::Instant::now();
    let (code, out) = rig.ctl(&[
        "migrate-metadata",
        "orders",
        "--import",
        plan_path,
        "--json",
    ]);
    let applied = started.elapsed();
    assert_eq!(code, 1, "one item failed: {out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let items = report["items"].as_array().unwrap();
    let outcome = |kind: &str, n: &str| {
        items
            .iter()
            .find(|i| i["kind"] == kind && i["name"] == n)
            .unwrap_or_else(|| panic!("{kind} {n} not reported"))
    };
    assert_eq!(report["created"], 2 * N - 2, "{}", report["failed"]);
    assert_eq!(report["present"], 2);
    assert_eq!(report["failed"], 1);
    assert_eq!(outcome("topic", &name(1))["outcome"], "present");
    assert_eq!(outcome("group", &group(1))["outcome"], "present");
    assert_eq!(outcome("topic", &name(7))["outcome"], "created");
    let bad = outcome("topic", "no spaces allowed");
    assert_eq!(bad["outcome"], "failed");
    assert!(
        bad["reason"].as_str().is_some_and(|r| r.contains("code")),
        "{bad}"
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "rocketmq metadata: {N} topics and {N} groups seeded on 2 masters in {seeded:.1?}, planned in {planned:.1?}, applied in {applied:.1?}"
    );
    // The target routes a namespaced topic with the source's total.
    wait_until(DEADLINE, "the target to route a created topic", || {
        rpc(
            &rig.target.namesrv(),
            105,
            &[("topic", &name(17))],
            Encoding::Json,
        )
        .is_some_and(|r| {
            r.header.code == 0
                && TopicRouteData::decode(&r.body).is_ok_and(|d| {
                    d.queue_datas
                        .iter()
                        .map(|q| q.write_queue_nums)
                        .sum::<i32>()
                        == 4
                })
        })
    });
    // A group keeps the source's settings; the one already there is unchanged.
    let got = target.call(352, &[("group", &group(9))], &[]);
    assert_eq!(got.header.code, 0, "{:?}", got.header.remark);
    let config: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(config["retryMaxTimes"], 7, "{config}");
    let got = target.call(352, &[("group", &group(1))], &[]);
    let config: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(config["retryMaxTimes"], 16, "{config}");
}
