//! The test-peer tooling itself: if these fail, every black-box test built
//! on `tests/support` is suspect. Needs `tests/peers/install.sh redis etcd kafka`.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use support::{
    ChildGuard, Config, CutoverProcess, Etcd, KafkaCluster, RedisServer, finish_java, free_port,
    http_get, kafka_python, output_text, spawn_java, tcp_accepts, wait_until, wait_until_async,
};

/// A killed and reaped process leaves /proc at once; allow for a slow box.
const GONE_DEADLINE: Duration = Duration::from_secs(5);

fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn redis_server_round_trips_and_restarts_on_same_port() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.addr(), format!("127.0.0.1:{port}"));
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["SET", "greeting", "hello world"]), "OK");
    assert_eq!(redis.cli(&["GET", "greeting"]), "hello world");

    let first_pid = redis.pid().expect("running");
    redis.stop();
    assert!(
        !proc_exists(first_pid),
        "redis-server {first_pid} survived stop()"
    );
    assert!(
        !tcp_accepts(&redis.addr()),
        "port {port} still accepts after stop()"
    );

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid(), Some(first_pid));
    assert_eq!(redis.cli(&["PING"]), "PONG");
    // Nothing is persisted, so the restarted server is empty.
    assert_eq!(redis.cli(&["EXISTS", "greeting"]), "0");
}

#[test]
fn redis_server_serves_the_async_client_crate() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut conn)
            .await
            .unwrap();
        let got: String = redis::cmd("GET")
            .arg("k")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(got, "v");
    });
    assert_eq!(redis.cli(&["GET", "k"]), "v");
}

#[test]
fn redis_server_drop_kills_it() {
    let redis = RedisServer::start();
    let pid = redis.pid().expect("running");
    drop(redis);
    wait_until(GONE_DEADLINE, "redis-server to exit after drop", || {
        !proc_exists(pid)
    });
}

#[test]
fn child_guard_kills_on_drop() {
    let guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("30"));
    let pid = guard.pid();
    assert!(proc_exists(pid), "sleep {pid} not running");
    drop(guard);
    wait_until(GONE_DEADLINE, "sleep to exit after drop", || {
        !proc_exists(pid)
    });
}

#[test]
fn child_guard_kills_when_its_test_panics() {
    let (tx, rx) = mpsc::channel();
    let outcome = thread::spawn(move || {
        let guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("30"));
        tx.send(guard.pid()).unwrap();
        panic!("deliberate panic with a live child");
    })
    .join();
    assert!(outcome.is_err(), "the thread should have panicked");
    let pid = rx.recv().unwrap();
    wait_until(GONE_DEADLINE, "sleep to exit after panic", || {
        !proc_exists(pid)
    });
}

#[test]
fn child_guard_captures_stdout_and_stderr() {
    let mut guard = ChildGuard::spawn(
        "sh",
        Command::new("sh").args(["-c", "echo to-stdout; echo to-stderr >&2; exec sleep 30"]),
    );
    wait_until(GONE_DEADLINE, "both streams in the log", || {
        let tail = guard.log_tail(10);
        tail.contains("to-stdout") && tail.contains("to-stderr")
    });
    assert!(guard.is_running());
    guard.kill();
    assert!(!guard.is_running());
}

#[test]
#[should_panic(expected = "exited")]
fn child_guard_wait_ready_reports_early_exit() {
    let mut guard = ChildGuard::spawn("false", &mut Command::new("false"));
    guard.wait_ready(
        Duration::from_secs(5),
        "something that never happens",
        || false,
    );
}

#[test]
fn free_port_never_repeats() {
    let ports: Vec<u16> = (0..4)
        .map(|_| thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<_>>()))
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(ports.len(), 200);
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), 200, "free_port repeated a port");
    assert!(ports.iter().all(|&p| p != 0));
}

#[test]
#[should_panic(expected = "waiting for the impossible")]
fn wait_until_panics_with_what_on_timeout() {
    wait_until(Duration::from_millis(50), "the impossible", || false);
}

#[test]
fn wait_until_polls_until_true() {
    let mut calls = 0;
    wait_until(Duration::from_secs(5), "third call", || {
        calls += 1;
        calls == 3
    });
    assert_eq!(calls, 3);
}

#[tokio::test]
async fn wait_until_async_polls_until_true() {
    let mut calls = 0;
    wait_until_async(Duration::from_secs(5), "third call", || {
        calls += 1;
        let done = calls == 3;
        async move { done }
    })
    .await;
    assert_eq!(calls, 3);
}

#[tokio::test]
#[should_panic(expected = "waiting for the async impossible")]
async fn wait_until_async_panics_with_what_on_timeout() {
    wait_until_async(
        Duration::from_millis(50),
        "the async impossible",
        || async { false },
    )
    .await;
}

/// How long the Java client may take to produce and read back 20 records.
const JAVA_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn apache_kafka_starts_and_serves_librdkafka_the_java_client_and_its_tools() {
    let kafka = KafkaCluster::start("smoke", 1);
    assert!(tcp_accepts(&kafka.addr()));
    // A real librdkafka client gets metadata naming the advertised listener.
    let script = format!(
        "from confluent_kafka.admin import AdminClient\n\
         md = AdminClient({{'bootstrap.servers': '{}'}}).list_topics(timeout=10)\n\
         print(','.join(f'{{b.host}}:{{b.port}}' for b in md.brokers.values()))\n",
        kafka.addr()
    );
    let out = Command::new(kafka_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), kafka.addr());

    // Kafka's own tool creates a topic; a Java program launched from source
    // writes and reads it back with a group.
    kafka.create_topic("smoke", 2);
    let java = spawn_java(
        "ProduceConsume",
        &[&kafka.bootstrap(), "smoke", "smoke-group", "20"],
    );
    let result = finish_java(java, JAVA_DEADLINE);
    assert_eq!(result["acked"], 20, "{result}");
    assert_eq!(result["consumed"], 20, "{result}");
    assert_eq!(result["committed_total"], 20, "{result}");
    let groups = kafka.tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &["--list"],
    );
    assert!(
        output_text(&groups).contains("smoke-group"),
        "{}",
        output_text(&groups)
    );

    let pid = kafka.pid(1);
    kafka.kill(1);
    wait_until(GONE_DEADLINE, "the Kafka node to exit", || {
        !proc_exists(pid)
    });
}

#[test]
fn etcd_starts_healthy_and_restarts_on_same_port() {
    let mut etcd = Etcd::start();
    assert!(tcp_accepts(&etcd.addr()));
    let (status, body) = http_get(&etcd.addr(), "/health").expect("GET /health");
    assert_eq!(status, 200);
    assert!(body.contains("\"health\":\"true\""), "{body}");

    let port = etcd.client_port();
    etcd.restart();
    assert_eq!(etcd.client_port(), port);
    assert_eq!(http_get(&etcd.addr(), "/health").map(|(s, _)| s), Some(200));
}

#[test]
fn config_renders_yaml_with_socket_state_and_appended_text() {
    let config = Config::new()
        .admin("listen: 127.0.0.1:9100")
        .append("clusters:\n  - { name: old, protocol: redis, endpoints: [\"127.0.0.1:1\"] }");
    let yaml: serde_norway::Value = serde_norway::from_str(&config.render()).unwrap();
    assert_eq!(
        yaml["admin"]["socket"].as_str(),
        Some(config.socket().to_str().unwrap())
    );
    assert_eq!(yaml["admin"]["listen"].as_str(), Some("127.0.0.1:9100"));
    assert_eq!(
        yaml["state"]["file"].as_str(),
        Some(config.state_dir().to_str().unwrap())
    );
    assert_eq!(yaml["clusters"][0]["name"].as_str(), Some("old"));
    assert!(config.socket().starts_with(config.dir()));
}

#[test]
#[should_panic(expected = "exited")]
fn cutover_process_reports_a_proxy_that_exits() {
    // Not valid config: the proxy must exit instead of opening its socket.
    let _proxy = CutoverProcess::start(Config::new().append("clusters: [ {"));
}
