//! Session-level behaviour with real clients: redis-benchmark through a
//! converging keyspace, client AUTH, TLS on both sides, SIGTERM draining.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Config, CutoverProcess, RawClient, RedisRig, RedisServer, free_port, wait_until};

#[test]
fn redis_benchmark_through_dual_write_leaves_both_clusters_identical() {
    let rig = RedisRig::start("");
    rig.ctl_ok(&["advance", "cache", "rest"]);
    rig.ctl_ok(&["advance", "cache", "rest"]);
    rig.wait_backfill("rest");
    let output = Command::new("redis-benchmark")
        .args([
            "-p",
            &rig.port.to_string(),
            "-n",
            "4000",
            "-c",
            "8",
            "-P",
            "4",
            "-r",
            "500",
            "-t",
            "set,incr,lpush,hset",
            "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for test in ["SET", "INCR", "LPUSH", "HSET"] {
        assert!(
            text.contains(&format!("{test}: ")),
            "redis-benchmark ran {test}: {text}"
        );
    }
    rig.wait_converged("rest");
    assert_eq!(rig.source.cli(&["dbsize"]), rig.target.cli(&["dbsize"]));
    let verify = rig.ctl_ok(&["verify", "cache", "rest", "--sample", "5000"]);
    assert!(verify.contains(" 0 differ"), "{verify}");
}

#[test]
fn clients_must_authenticate_to_the_proxy_when_a_password_is_set() {
    let rig = RedisRig::start("{ client_password: s3cret }");
    let mut client = RawClient::connect(rig.port);
    assert_eq!(
        client.roundtrip(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"-"),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        client.roundtrip(b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n", b"-"),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        client.roundtrip(b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n", b"+"),
        b"+OK\r\n"
    );
    assert_eq!(
        client.roundtrip(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", b"+"),
        b"+OK\r\n"
    );
    let mut resp3 = RawClient::connect(rig.port);
    let hello = resp3.roundtrip(
        b"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n",
        b"%",
    );
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    assert_eq!(rig.source.cli(&["get", "k"]), "v");
}

#[test]
fn tls_is_offered_to_clients_and_used_towards_the_cluster() {
    let certs = tempfile::tempdir().unwrap();
    support::tls::certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let tls_port = free_port();
    let source = RedisServer::start_tls(certs.path(), tls_port, "no");
    let target = RedisServer::start();
    let port = free_port();
    let config = Config::new().append(&format!(
        "clusters:\n  - {{ name: old, protocol: redis, endpoints: [\"127.0.0.1:{tls_port}\"], tls: {{ ca_file: \"{ca}\", server_name: localhost }} }}\n\
         \x20 - {{ name: new, protocol: redis, endpoints: [\"{}\"] }}\n\
         migrations:\n  - name: cache\n    protocol: redis\n    listen: 127.0.0.1:{port}\n    source: old\n    target: new\n\
         \x20   topics: [ {{ name: rest, match: \"*\" }} ]\n    tls: {{ cert_file: \"{cert}\", key_file: \"{key}\" }}\n",
        target.addr(),
        ca = file("ca.pem"),
        cert = file("server.pem"),
        key = file("server.key"),
    ));
    let _proxy = CutoverProcess::start(config);
    let tls_cli = |args: &[&str]| {
        let output = Command::new("redis-cli")
            .args([
                "--tls",
                "--cacert",
                &file("ca.pem"),
                "--sni",
                "localhost",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .args(args)
            .output()
            .expect("run redis-cli --tls");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(tls_cli(&["set", "secure", "yes"]), "OK");
    assert_eq!(tls_cli(&["get", "secure"]), "yes");
    assert_eq!(
        source.cli(&["get", "secure"]),
        "yes",
        "reached the source over TLS"
    );
    let mut plain = RawClient::connect(port);
    plain.send(b"*1\r\n$4\r\nPING\r\n");
    let (reply, _) = plain.read_to_close();
    assert!(
        !reply.starts_with(b"+PONG"),
        "a plaintext client must not be served on a TLS listener"
    );
}

#[test]
fn sigterm_stops_accepting_and_lets_in_flight_requests_finish() {
    let mut rig = RedisRig::start("");
    let mut blocked = RawClient::connect(rig.port);
    blocked.send(b"*3\r\n$5\r\nBLPOP\r\n$5\r\nqueue\r\n$1\r\n1\r\n");
    // The BLPOP is in flight on the source when SIGTERM arrives.
    wait_until(
        Duration::from_secs(5),
        "BLPOP is blocked on the source",
        || rig.source.cli(&["client", "list"]).contains("cmd=blpop"),
    );
    let pid = rig.proxy.pid().expect("proxy pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (reply, closed) = blocked.read_to_close();
    assert_eq!(
        reply, b"*-1\r\n",
        "the in-flight BLPOP is answered (timed out) before the connection closes"
    );
    assert!(closed);
    wait_until(
        Duration::from_secs(10),
        "the proxy exits after draining",
        || !rig.proxy.is_running(),
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", rig.port)).is_err(),
        "no longer accepting"
    );
}

/// Runs `ctl backfill` on `sessions` and waits for it, sampling the
/// progress percent from `ctl status` all along; returns the elapsed time
/// and the samples.
fn timed_backfill(rig: &RedisRig) -> (Duration, Vec<f64>) {
    let started = std::time::Instant::now();
    rig.ctl_ok(&["backfill", "cache", "sessions"]);
    let mut samples = Vec::new();
    wait_until(Duration::from_secs(30), "the backfill completes", || {
        let backfill = &rig.keyspace("sessions")["details"]["backfill"];
        assert!(backfill["error"].is_null(), "backfill failed: {backfill}");
        samples.push(backfill["percent"].as_f64().expect("percent"));
        backfill["complete"] == true
    });
    (started.elapsed(), samples)
}

/// The percent rises, never falls, is seen strictly between 0 and 100
/// while the (rate-limited, so seconds-long) backfill runs, and ends at 100.
fn assert_progress(samples: &[f64]) {
    assert!(
        samples.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {samples:?}"
    );
    assert!(
        samples.iter().any(|p| *p > 0.0 && *p < 100.0),
        "no progress between 0 and 100% was shown: {samples:?}"
    );
    assert_eq!(samples.last(), Some(&100.0), "{samples:?}");
}

#[test]
fn backfill_respects_its_bytes_per_second_limit() {
    let rig = RedisRig::start("{ backfill_on_enter: false, backfill_bytes_per_second: 2000000 }");
    // Hex digests do not compress, so DUMP payloads stay ~2 KB (RDB compresses repeated bytes).
    let script = "for i = 1, 2000 do local v = {} for j = 1, 51 do v[j] = redis.sha1hex(i .. ':' .. j) end \
                  redis.call('SET', 'session:bf:' .. i, table.concat(v)) end";
    rig.source.cli(&["eval", script, "0"]);
    rig.ctl_ok(&["advance", "cache", "sessions"]);
    rig.ctl_ok(&["advance", "cache", "sessions"]);
    let (elapsed, samples) = timed_backfill(&rig);
    // About 4 MB at 2 MB/s; the first SCAN batch goes out before any pacing.
    assert!(
        elapsed >= Duration::from_millis(1200),
        "backfill finished in {elapsed:?}, faster than its limit allows"
    );
    assert_eq!(rig.target.cli(&["dbsize"]), "2000");
    assert_progress(&samples);
}

#[test]
fn backfill_respects_its_keys_per_second_limit() {
    // Small values: the byte limit (default 50 MB/s) is never the bound.
    let rig = RedisRig::start("{ backfill_on_enter: false, backfill_keys_per_second: 1000 }");
    rig.source.cli(&[
        "eval",
        "for i = 1, 3000 do redis.call('SET', 'session:k:' .. i, i) end",
        "0",
    ]);
    rig.ctl_ok(&["advance", "cache", "sessions"]);
    rig.ctl_ok(&["advance", "cache", "sessions"]);
    let (elapsed, samples) = timed_backfill(&rig);
    // 3000 keys at 1000 keys/s: the pacing after the last SCAN batch waits
    // until 3 s; allow a little for SCAN's uneven batch sizes.
    assert!(
        elapsed >= Duration::from_millis(2500),
        "3000 keys backfilled in {elapsed:?}, faster than 1000 keys/s allows"
    );
    assert_eq!(rig.target.cli(&["dbsize"]), "3000");
    let details = &rig.keyspace("sessions")["details"]["backfill"];
    assert_eq!(details["queued"], 3000, "{details}");
    assert_eq!(details["visited"], 3000, "{details}");
    assert_progress(&samples);
}
