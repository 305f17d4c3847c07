//! The Redis proxy against two real redis-server peers: routing in every
//! state, RESP3, pipelining, transactions and scripts, and bad input.

mod support;

use std::time::Duration;

use support::{RawClient, RedisRig, wait_until};

fn advance(rig: &RedisRig, keyspace: &str, force: bool) {
    let mut args = vec!["advance", "cache", keyspace];
    if force {
        args.push("--force");
    }
    rig.ctl_ok(&args);
}

#[test]
fn every_state_routes_writes_to_its_authoritative_cluster_and_converges() {
    let rig = RedisRig::start("");
    // source: transparent; the target never sees the write.
    assert_eq!(rig.cli(&["set", "session:a", "1"]), "OK");
    assert_eq!(rig.source.cli(&["get", "session:a"]), "1");
    assert_eq!(rig.target.cli(&["exists", "session:a"]), "0");

    advance(&rig, "sessions", false); // dual_read: writes still source only, reads from source
    assert_eq!(rig.cli(&["set", "session:b", "2"]), "OK");
    assert_eq!(rig.target.cli(&["exists", "session:b"]), "0");
    assert_eq!(rig.cli(&["get", "session:b"]), "2");

    advance(&rig, "sessions", false); // dual_write: source authoritative, target converged
    rig.wait_backfill("sessions");
    assert_eq!(rig.cli(&["set", "session:c", "3", "PX", "60000"]), "OK");
    assert_eq!(rig.cli(&["incr", "session:n"]), "1");
    rig.wait_converged("sessions");
    for key in ["session:a", "session:b", "session:c", "session:n"] {
        assert_eq!(
            rig.target.cli(&["get", key]),
            rig.source.cli(&["get", key]),
            "{key}"
        );
    }
    let ttl: i64 = rig.target.cli(&["pttl", "session:c"]).parse().unwrap();
    assert!(
        (55_000..=60_000).contains(&ttl),
        "TTL carried as absolute expiry: {ttl}"
    );
    assert_eq!(
        rig.target.cli(&["exists", "plain"]),
        "0",
        "rest is still in source"
    );

    advance(&rig, "sessions", false); // cutover: target authoritative, source converged back
    assert_eq!(rig.cli(&["incr", "session:n"]), "2");
    assert_eq!(rig.target.cli(&["get", "session:n"]), "2");
    rig.wait_converged("sessions");
    assert_eq!(
        rig.source.cli(&["get", "session:n"]),
        "2",
        "copied back so a rollback loses nothing"
    );

    advance(&rig, "sessions", false); // target: the source is no longer used
    assert_eq!(rig.cli(&["set", "session:d", "4"]), "OK");
    assert_eq!(rig.target.cli(&["get", "session:d"]), "4");
    assert_eq!(rig.source.cli(&["exists", "session:d"]), "0");
    assert_eq!(
        rig.cli(&["get", "session:a"]),
        "1",
        "reads come from the target"
    );
    // The other keyspace never moved.
    assert_eq!(rig.cli(&["set", "plain", "x"]), "OK");
    assert_eq!(rig.source.cli(&["get", "plain"]), "x");
    assert_eq!(rig.target.cli(&["exists", "plain"]), "0");
}

#[test]
fn dual_write_to_cutover_is_refused_until_backfill_and_verify_pass() {
    let rig = RedisRig::start("{ backfill_on_enter: false }");
    for i in 0..50 {
        rig.source.cli(&["set", &format!("session:old{i}"), "v"]);
    }
    advance(&rig, "sessions", false);
    advance(&rig, "sessions", false);
    let refused = rig.proxy.ctl(&["advance", "cache", "sessions"]);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("backfill_complete") && text.contains("no backfill has run"),
        "{text}"
    );
    assert!(
        text.contains("verify_clean") && text.contains("differ"),
        "{text}"
    );
    rig.ctl_ok(&["backfill", "cache", "sessions"]);
    rig.wait_backfill("sessions");
    let verify = rig.ctl_ok(&["verify", "cache", "sessions", "--sample", "100"]);
    assert!(verify.contains("50 identical, 0 differ"), "{verify}");
    advance(&rig, "sessions", false);
    assert_eq!(rig.state("sessions"), "cutover");
}

#[test]
fn resp3_clients_get_resp3_replies_from_the_upstream() {
    let rig = RedisRig::start("");
    let mut client = RawClient::connect(rig.port);
    let hello = client.roundtrip(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", b"%");
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    // A missing key is RESP3's null `_`, which only an upstream speaking RESP3 sends.
    client.send(b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n");
    assert_eq!(client.read_exact_len(3), b"_\r\n");
    client.send(
        b"*4\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n",
    );
    assert_eq!(
        client.read_exact_len(4 + 18),
        b":1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(
        rig.cli(&["-3", "--no-raw", "hgetall", "h"]),
        "1# \"f\" => \"v\""
    );
}

#[test]
fn ten_thousand_pipelined_commands_across_both_clusters_answer_in_order() {
    let rig = RedisRig::start("");
    for _ in 0..4 {
        advance(&rig, "sessions", true); // sessions on the target; rest stays on the source
    }
    assert_eq!(rig.state("sessions"), "target");
    let mut pipeline = Vec::new();
    for i in 0..10_000 {
        let key = if i % 2 == 0 { "session:ctr" } else { "ctr" };
        pipeline.extend_from_slice(
            format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
        );
    }
    let expected: Vec<u8> = (1..=5_000)
        .flat_map(|n| format!(":{n}\r\n:{n}\r\n").into_bytes())
        .collect();
    let traffic = || {
        (
            rig.proxy.metric_sum("cutover_requests_total", &[]),
            rig.proxy
                .metric_sum("cutover_bytes_total", &["direction=\"to_upstream\""]),
            rig.proxy
                .metric_sum("cutover_bytes_total", &["direction=\"to_client\""]),
            rig.proxy
                .metric_sum("cutover_request_duration_seconds_count", &[]),
        )
    };
    let before = traffic();
    let mut client = RawClient::connect(rig.port);
    client.send(&pipeline);
    assert_eq!(
        String::from_utf8_lossy(&client.read_exact_len(expected.len())),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(rig.target.cli(&["get", "session:ctr"]), "5000");
    assert_eq!(rig.source.cli(&["get", "ctr"]), "5000");
    // Every command is counted and timed, every byte relayed either way.
    let after = traffic();
    let grew = |a: f64, b: f64| b - a;
    assert!(
        grew(before.0, after.0) >= 10_000.0,
        "requests {before:?} -> {after:?}"
    );
    assert!(
        grew(before.1, after.1) >= pipeline.len() as f64,
        "bytes up {before:?} -> {after:?}"
    );
    assert!(
        grew(before.2, after.2) >= expected.len() as f64,
        "bytes down {before:?} -> {after:?}"
    );
    assert!(
        grew(before.3, after.3) >= 10_000.0,
        "latency count {before:?} -> {after:?}"
    );
}

#[test]
fn multi_key_commands_split_across_clusters_or_are_refused_clearly() {
    let rig = RedisRig::start("");
    for _ in 0..4 {
        advance(&rig, "sessions", true);
    }
    assert_eq!(rig.cli(&["mset", "session:1", "a", "k1", "b"]), "OK");
    assert_eq!(rig.target.cli(&["get", "session:1"]), "a");
    assert_eq!(rig.source.cli(&["get", "k1"]), "b");
    assert_eq!(
        rig.cli(&["--no-raw", "mget", "k1", "session:1", "nothing"]),
        "1) \"b\"\n2) \"a\"\n3) (nil)"
    );
    assert_eq!(rig.cli(&["del", "k1", "session:1", "nothing"]), "2");
    let refused = rig.cli(&["sunionstore", "session:dst", "k1"]);
    assert!(
        refused.starts_with("CUTOVER SUNIONSTORE touches keyspaces in different states"),
        "{refused}"
    );
    assert!(
        refused.contains("sessions: target") && refused.contains("rest: source"),
        "{refused}"
    );
    let keyless = rig.cli(&["dbsize"]);
    assert!(
        keyless.starts_with("CUTOVER DBSIZE would see only one cluster"),
        "{keyless}"
    );
}

#[tokio::test]
async fn transactions_and_scripts_run_on_the_authoritative_side_and_converge() {
    let rig = RedisRig::start("");
    advance(&rig, "sessions", false);
    advance(&rig, "sessions", false);
    rig.wait_backfill("sessions");
    let client = redis::Client::open(rig.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("session:tx", 5)
        .cmd("HSET")
        .arg("session:h")
        .arg("f")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((a, b), (5, 1));
    let script = redis::Script::new(
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], 2)",
    );
    let n: i64 = script
        .key("session:s")
        .key("session:tx")
        .arg("from-lua")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 7);
    rig.wait_converged("sessions");
    assert_eq!(rig.target.cli(&["get", "session:tx"]), "7");
    assert_eq!(rig.target.cli(&["hget", "session:h", "f"]), "v");
    assert_eq!(rig.target.cli(&["get", "session:s"]), "from-lua");
    let verify = rig.ctl_ok(&["verify", "cache", "sessions"]);
    assert!(verify.contains("0 differ"), "{verify}");
}

#[test]
fn bad_input_is_answered_with_an_error_and_other_clients_are_unaffected() {
    let rig = RedisRig::start("");
    let mut healthy = RawClient::connect(rig.port);
    assert_eq!(
        healthy.roundtrip(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", b"+OK"),
        b"+OK\r\n"
    );

    // A 1 GB bulk length is refused from its header alone, in Redis's
    // words for a length over its own limit, then the connection closes.
    let mut huge = RawClient::connect(rig.port);
    huge.send(b"*2\r\n$3\r\nGET\r\n$1073741824\r\n");
    let (reply, closed) = huge.read_to_close();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(closed, "the stream cannot be framed any more");

    let mut malformed = RawClient::connect(rig.port);
    malformed.send(b"*1\r\n$x\r\nGET\r\n");
    let (reply, closed) = malformed.read_to_close();
    assert!(
        String::from_utf8_lossy(&reply).starts_with("-ERR Protocol error"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(closed);

    let mut unknown = RawClient::connect(rig.port);
    let reply = unknown.roundtrip(b"*2\r\n$7\r\nNOTACMD\r\n$1\r\nx\r\n", b"-");
    assert_eq!(
        reply, b"-ERR unknown command 'NOTACMD', with args beginning with: 'x' \r\n",
        "Redis's own words, relayed"
    );
    let arity = unknown.roundtrip(b"*1\r\n$3\r\nGET\r\n", b"-");
    assert_eq!(
        arity,
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );

    assert_eq!(
        healthy.roundtrip(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$1"),
        b"$1\r\nv\r\n"
    );
}

#[test]
fn an_unreachable_cluster_is_a_clear_error_and_recovers_when_it_returns() {
    let mut rig = RedisRig::start("");
    for _ in 0..4 {
        advance(&rig, "sessions", true);
    }
    rig.target.stop();
    let mut client = RawClient::connect(rig.port);
    let reply = client.roundtrip(b"*2\r\n$3\r\nGET\r\n$9\r\nsession:1\r\n", b"-");
    let expected = format!(
        "-ERR cutover: cluster \"new\" is unreachable at {}",
        rig.target.addr()
    );
    assert!(
        String::from_utf8_lossy(&reply).starts_with(&expected),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(
        client.roundtrip(b"*3\r\n$3\r\nSET\r\n$5\r\nother\r\n$1\r\n1\r\n", b"+"),
        b"+OK\r\n",
        "the source keyspace still works"
    );
    rig.target.restart();
    wait_until(
        Duration::from_secs(10),
        "the target answers through the proxy again",
        || rig.cli(&["set", "session:1", "back"]) == "OK",
    );
    assert_eq!(rig.target.cli(&["get", "session:1"]), "back");
}

#[test]
fn a_client_that_half_closes_after_pipelining_still_gets_every_reply() {
    let rig = RedisRig::start("");
    let mut client = RawClient::connect(rig.port);
    client.send(b"*3\r\n$3\r\nSET\r\n$2\r\nhc\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$2\r\nhc\r\n*2\r\n$3\r\nGET\r\n$2\r\nhc\r\n");
    client.finish_sending();
    let (reply, closed) = client.read_to_close();
    assert_eq!(String::from_utf8_lossy(&reply), "+OK\r\n:2\r\n$1\r\n2\r\n");
    assert!(closed, "the proxy closes once every reply is written");
}

/// GET `path` over the proxy's admin socket; the body.
fn admin_get(rig: &RedisRig, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(rig.proxy.socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the shadow-read counter of `topic` and `outcome`.
fn shadow_metric(rig: &RedisRig, topic: &str, outcome: &str) -> u64 {
    let scrape = rig.proxy.scrape();
    let wanted = [
        format!("topic=\"{topic}\""),
        format!("outcome=\"{outcome}\""),
    ];
    scrape
        .lines()
        .filter(|l| l.starts_with("cutover_redis_shadow_reads_total{"))
        .filter(|l| wanted.iter().all(|w| l.contains(w.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// In `dual_read` every read is also sent to the target and compared: a
/// key changed on the target behind the proxy's back is counted as a
/// mismatch of its own keyspace only, in the metrics, in `ctl status` and
/// in the console's data, and equal keys count as matches.
#[test]
fn dual_read_counts_a_key_that_differs_on_the_target_as_a_mismatch() {
    let rig = RedisRig::start("{ shadow_read_ratio: 1.0 }");
    rig.source.cli(&["set", "session:same", "v"]);
    rig.target.cli(&["set", "session:same", "v"]);
    rig.source.cli(&["set", "session:diff", "v"]);
    rig.target
        .cli(&["set", "session:diff", "changed behind the proxy"]);
    rig.source.cli(&["set", "other", "v"]);
    rig.target.cli(&["set", "other", "v"]);
    advance(&rig, "sessions", false);
    advance(&rig, "rest", false);
    assert_eq!(rig.state("sessions"), "dual_read");

    // The client is answered from the source, whatever the target holds.
    // One connection, kept open until the comparisons are counted: a shadow
    // reply still on its way when its client leaves is not compared.
    let mut client = RawClient::connect(rig.port);
    for key in ["session:diff", "session:same", "other"] {
        client.send(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
    }
    assert_eq!(client.read_exact_len(3 * 7), b"$1\r\nv\r\n".repeat(3));
    wait_until(
        Duration::from_secs(5),
        "three shadow comparisons are counted",
        || {
            shadow_metric(&rig, "sessions", "match") + shadow_metric(&rig, "sessions", "mismatch")
                == 2
                && shadow_metric(&rig, "rest", "match") == 1
        },
    );
    assert_eq!(shadow_metric(&rig, "sessions", "mismatch"), 1);
    assert_eq!(shadow_metric(&rig, "sessions", "match"), 1);
    assert_eq!(shadow_metric(&rig, "rest", "mismatch"), 0);

    let sessions = rig.keyspace("sessions");
    let reads = &sessions["details"]["shadow_reads"];
    assert_eq!(reads["mismatch"], 1, "{sessions:#}");
    assert_eq!(reads["match"], 1, "{sessions:#}");
    assert_eq!(reads["error"], 0, "{sessions:#}");
    assert_eq!(
        rig.keyspace("rest")["details"]["shadow_reads"]["mismatch"],
        0
    );

    let dashboard: serde_json::Value =
        serde_json::from_str(&admin_get(&rig, "/api/v1/dashboard")).expect("dashboard JSON");
    let topic = dashboard["migrations"][0]["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == "sessions")
        .unwrap_or_else(|| panic!("{dashboard:#}"));
    assert_eq!(topic["details"]["shadow_reads"]["mismatch"], 1, "{topic:#}");
    // The console page renders that field in its own column.
    assert!(admin_get(&rig, "/console").contains("data-testid=\"shadow-mismatch\""));
}
