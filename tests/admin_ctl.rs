//! The admin surface as an operator meets it (DESIGN.md §1, §3): `cutover
//! run` with its 0600 admin socket, `cutover ctl` status/advance/rollback/
//! history in human and JSON form with their exit codes, state surviving
//! SIGKILL, refused and forced advances, the token-guarded TCP admin API,
//! the README's config-less `cutover run`, and the Redis listener's answer
//! when the source cluster is down.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ChildGuard, Config, CutoverProcess, RedisServer, free_port, http_get, wait_until};

/// Every raw HTTP exchange and client read gives up after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a log line may take to reach the log file.
const LOG_DEADLINE: Duration = Duration::from_secs(5);
/// How long the config-less proxy may take to open its socket.
const READY_DEADLINE: Duration = Duration::from_secs(10);

const TOKEN: &str = "s3cret-admin-token";

// ---------------------------------------------------------------- helpers

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "cutover ctl {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs ctl and asserts its exit code; returns stdout.
fn ctl_code(proxy: &CutoverProcess, args: &[&str], code: i32) -> String {
    let out = proxy.ctl(args);
    assert_eq!(out.status.code(), Some(code), "{}", describe(args, &out));
    text(&out.stdout)
}

/// Runs ctl with `--json` output expected, asserts the exit code, parses stdout.
fn ctl_json(proxy: &CutoverProcess, args: &[&str], code: i32) -> Value {
    let out = proxy.ctl(args);
    assert_eq!(out.status.code(), Some(code), "{}", describe(args, &out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ctl {args:?} printed no JSON ({e}):\n{}", text(&out.stdout)))
}

/// (migration, topic) → (state, epoch) from `ctl status --json`.
fn states(proxy: &CutoverProcess) -> BTreeMap<(String, String), (String, u64)> {
    let status = ctl_json(proxy, &["status", "--json"], 0);
    let mut map = BTreeMap::new();
    for m in status["migrations"].as_array().expect("migrations array") {
        for t in m["topics"].as_array().expect("topics array") {
            let key = (
                m["name"].as_str().expect("name").to_owned(),
                t["name"].as_str().expect("topic name").to_owned(),
            );
            let value = (
                t["state"].as_str().expect("state").to_owned(),
                t["epoch"].as_u64().expect("epoch"),
            );
            map.insert(key, value);
        }
    }
    map
}

fn state_of(proxy: &CutoverProcess, migration: &str, topic: &str) -> (String, u64) {
    states(proxy)
        .remove(&(migration.to_owned(), topic.to_owned()))
        .unwrap_or_else(|| panic!("status has no {migration}/{topic}"))
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The single moved transition of a `--json` advance/rollback answer.
fn moved(answer: &Value) -> &Value {
    let outcomes = answer["outcomes"].as_array().expect("outcomes array");
    assert_eq!(outcomes.len(), 1, "one outcome expected: {answer:#}");
    assert_eq!(outcomes[0]["outcome"], "moved", "{answer:#}");
    &outcomes[0]["transition"]
}

fn assert_transition(t: &Value, topic: &str, from: &str, to: &str, epoch: u64, forced: bool) {
    assert_eq!(t["migration"], "cache", "{t:#}");
    assert_eq!(t["topic"], topic, "{t:#}");
    assert_eq!(t["from"], from, "{t:#}");
    assert_eq!(t["to"], to, "{t:#}");
    assert_eq!(t["epoch"], epoch, "{t:#}");
    assert_eq!(t["forced"], forced, "{t:#}");
    assert!(
        t["actor"].as_str().is_some_and(|a| a.starts_with("ctl:")),
        "actor of a ctl move: {t:#}"
    );
    assert!(t["at_ms"].as_u64().is_some_and(|ms| ms > 0), "{t:#}");
}

/// The check named `name` in a checks array.
fn check_named<'a>(checks: &'a Value, name: &str) -> &'a Value {
    checks
        .as_array()
        .expect("checks array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#}"))
}

/// Two Redis clusters `cache-old`/`cache-new` and migration `cache`
/// (keyspaces `sessions`, `rest`) on a free listener.
fn cache_config(source: &str, target: &str, listen: u16) -> Config {
    Config::new().append(&format!(
        r#"clusters:
  - {{ name: cache-old, protocol: redis, endpoints: ["{source}"] }}
  - {{ name: cache-new, protocol: redis, endpoints: ["{target}"] }}
migrations:
  - name: cache
    protocol: redis
    listen: 127.0.0.1:{listen}
    source: cache-old
    target: cache-new
    topics:
      - {{ name: sessions, match: "session:*" }}
      - {{ name: rest, match: "*" }}
"#
    ))
}

/// A loopback address nothing listens on.
fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// One HTTP/1.0 request over raw TCP (HTTP/1.0 so the answer is never
/// chunked); returns (status, head, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let sock: SocketAddr = addr.parse().expect("addr");
    let mut stream = TcpStream::connect_timeout(&sock, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("send {method} {path}: {e}"));
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("read answer to {method} {path}: {e}"));
    let response = text(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in answer to {method} {path}: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

fn assert_unauthorized(what: &str, answer: &(u16, String, String)) {
    let (status, head, body) = answer;
    assert_eq!(*status, 401, "{what}: expected 401\n{head}\n\n{body}");
    let json: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: 401 body is not JSON ({e}): {body:?}"));
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: 401 body has no \"error\": {body}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{what}: 401 without WWW-Authenticate: Bearer\n{head}"
    );
}

// ---------------------------------------------------------------- tests

#[test]
fn ctl_walks_a_topic_and_state_survives_sigkill() {
    let old = RedisServer::start();
    let new = RedisServer::start();
    let config = cache_config(&old.addr(), &new.addr(), free_port()).append(&format!(
        r#"  - name: legacy
    protocol: redis
    listen: 127.0.0.1:{}
    source: cache-old
    target: cache-new
    initial_state: target
    topics: [ {{ name: all, match: "*" }} ]
"#,
        free_port()
    ));
    let mut proxy = CutoverProcess::start(config);

    // The admin socket exists, is a socket, and only its owner may use it.
    let meta = fs::metadata(proxy.socket()).expect("admin socket exists");
    assert!(
        meta.file_type().is_socket(),
        "{:?} is not a socket",
        proxy.socket()
    );
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "admin socket mode is {:o}",
        meta.permissions().mode() & 0o777
    );

    // Human status: header and one row per topic of every migration.
    let human = ctl_code(&proxy, &["status"], 0);
    let lines: Vec<&str> = human.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "MIGRATION",
            "PROTOCOL",
            "TOPIC",
            "STATE",
            "EPOCH",
            "LAST",
            "TRANSITION"
        ],
        "{human}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["cache", "redis", "sessions", "source", "0", "-"],
            ["cache", "redis", "rest", "source", "0", "-"],
            ["legacy", "redis", "all", "target", "0", "-"],
        ],
        "{human}"
    );

    // JSON status: exactly the documented keys.
    let status = ctl_json(&proxy, &["status", "--json"], 0);
    assert_eq!(keys(&status), set(&["migrations"]), "{status:#}");
    let migrations = status["migrations"].as_array().unwrap();
    assert_eq!(migrations.len(), 2, "{status:#}");
    for m in migrations {
        assert_eq!(
            keys(m),
            set(&[
                "name", "protocol", "source", "target", "listen", "served", "topics"
            ]),
            "{m:#}"
        );
        assert_eq!(m["protocol"], "redis");
        assert_eq!(m["source"], "cache-old");
        assert_eq!(m["target"], "cache-new");
        assert_eq!(m["served"], true);
        assert!(
            m["listen"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{m:#}"
        );
        for t in m["topics"].as_array().unwrap() {
            // A never-moved topic has no last transition: absent or null.
            let mut found = keys(t);
            if t.get("last_transition").is_some_and(Value::is_null) {
                found.remove("last_transition");
            }
            assert_eq!(
                found,
                set(&["name", "state", "epoch", "details"]),
                "never-moved topic: {t:#}"
            );
        }
    }
    assert_eq!(migrations[0]["name"], "cache");
    assert_eq!(migrations[1]["name"], "legacy");

    // advance (human), advance (json), rollback (json): epochs 1, 2, 3.
    let first = ctl_code(&proxy, &["advance", "cache", "sessions"], 0);
    assert_eq!(first, "sessions: source → dual_read (epoch 1)\n");
    let second = ctl_json(&proxy, &["advance", "cache", "sessions", "--json"], 0);
    let t = moved(&second);
    assert_transition(t, "sessions", "dual_read", "dual_write", 2, false);
    for name in ["source_reachable", "target_reachable"] {
        let check = check_named(&t["checks"], name);
        assert_eq!(check["passed"], true, "{t:#}");
    }
    let third = ctl_json(&proxy, &["rollback", "cache", "sessions", "--json"], 0);
    assert_transition(
        moved(&third),
        "sessions",
        "dual_write",
        "dual_read",
        3,
        false,
    );
    assert_eq!(
        state_of(&proxy, "cache", "sessions"),
        ("dual_read".into(), 3)
    );
    assert_eq!(state_of(&proxy, "cache", "rest"), ("source".into(), 0));

    // Status of a moved topic carries all five documented keys.
    let status = ctl_json(&proxy, &["status", "--json"], 0);
    let sessions = &status["migrations"][0]["topics"][0];
    assert_eq!(
        keys(sessions),
        set(&["name", "state", "epoch", "last_transition", "details"]),
        "{sessions:#}"
    );
    assert_transition(
        &sessions["last_transition"],
        "sessions",
        "dual_write",
        "dual_read",
        3,
        false,
    );

    // History, human then JSON: the three moves in order.
    let human = ctl_code(&proxy, &["history"], 0);
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), 4, "header + 3 rows:\n{human}");
    let moves: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            // The actor has spaces (`ctl:u (socket uid N u)`): FORCED is last.
            vec![
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                cells[cells.len() - 1],
            ]
        })
        .collect();
    assert_eq!(
        moves,
        [
            ["cache", "sessions", "source→dual_read", "1", "no"],
            ["cache", "sessions", "dual_read→dual_write", "2", "no"],
            ["cache", "sessions", "dual_write→dual_read", "3", "no"],
        ],
        "{human}"
    );
    let history = ctl_json(&proxy, &["history", "cache", "sessions", "--json"], 0);
    let entries = history.as_array().expect("history is an array");
    assert_eq!(entries.len(), 3, "{history:#}");
    let expected = [
        ("source", "dual_read"),
        ("dual_read", "dual_write"),
        ("dual_write", "dual_read"),
    ];
    for (i, (entry, (from, to))) in entries.iter().zip(expected).enumerate() {
        assert_transition(entry, "sessions", from, to, i as u64 + 1, false);
    }
    assert_eq!(
        ctl_json(&proxy, &["history", "cache", "rest", "--json"], 0),
        Value::Array(vec![]),
        "rest never moved"
    );

    // The end of the walk is refused with exit 1, nothing moves.
    let end = ctl_code(&proxy, &["advance", "legacy", "all"], 1);
    assert!(
        end.starts_with("all: refused: cannot advance from target: it is the end of the walk\n"),
        "{end}"
    );
    let end = ctl_json(&proxy, &["rollback", "cache", "rest", "--json"], 1);
    let outcome = &end["outcomes"][0];
    assert_eq!(outcome["outcome"], "refused", "{end:#}");
    assert_eq!(outcome["topic"], "rest", "{end:#}");
    assert!(
        outcome["reason"]
            .as_str()
            .is_some_and(|r| r.contains("end of the walk")),
        "{end:#}"
    );
    assert_eq!(state_of(&proxy, "legacy", "all"), ("target".into(), 0));
    assert_eq!(state_of(&proxy, "cache", "rest"), ("source".into(), 0));

    // Unknown migration / topic: a bad request, exit 2, named.
    let args = ["advance", "nosuch", "sessions"];
    let out = proxy.ctl(&args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&args, &out));
    assert!(
        text(&out.stderr).contains("no migration named \"nosuch\""),
        "{}",
        describe(&args, &out)
    );
    let out = proxy.ctl(&["advance", "cache", "nosuch"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        describe(&["advance"], &out)
    );
    assert!(
        text(&out.stderr).contains("has no topic \"nosuch\""),
        "{}",
        describe(&["advance", "cache", "nosuch"], &out)
    );

    // SIGKILL and restart: every topic resumes exactly where it was.
    let before = states(&proxy);
    let history_before = ctl_json(&proxy, &["history", "--json"], 0);
    proxy.kill9();
    proxy.restart();
    assert_eq!(states(&proxy), before, "states after SIGKILL + restart");
    let history_after = ctl_json(&proxy, &["history", "--json"], 0);
    assert_eq!(
        history_after.as_array().map(Vec::len),
        Some(3),
        "{history_after:#}"
    );
    assert_eq!(
        history_after, history_before,
        "history after SIGKILL + restart"
    );
}

#[test]
fn refused_advance_names_the_failed_check_and_force_overrides_it() {
    let old = RedisServer::start();
    let dead = dead_addr();
    let proxy = CutoverProcess::start(cache_config(&old.addr(), &dead, free_port()));

    let refused = ctl_code(&proxy, &["advance", "cache", "sessions"], 1);
    let lines: Vec<&str> = refused.lines().collect();
    let unreachable = format!("cluster \"cache-new\" is unreachable at {dead}");
    assert!(
        lines[0].starts_with(&format!(
            "sessions: refused: target_reachable: {unreachable}"
        )),
        "{refused}"
    );
    let fail_row = lines
        .iter()
        .find(|l| l.starts_with("FAIL"))
        .unwrap_or_else(|| panic!("no FAIL row:\n{refused}"));
    let cells: Vec<&str> = fail_row.split_whitespace().collect();
    assert_eq!(cells[1], "target_reachable", "{refused}");
    assert!(fail_row.contains(&unreachable), "{refused}");
    assert_eq!(state_of(&proxy, "cache", "sessions"), ("source".into(), 0));
    assert_eq!(
        ctl_json(&proxy, &["history", "--json"], 0),
        Value::Array(vec![])
    );

    // The JSON form of the same refusal.
    let answer = ctl_json(&proxy, &["advance", "cache", "sessions", "--json"], 1);
    let outcome = &answer["outcomes"][0];
    assert_eq!(outcome["outcome"], "refused", "{answer:#}");
    let check = check_named(&outcome["checks"], "target_reachable");
    assert_eq!(check["passed"], false, "{answer:#}");
    assert!(
        check["reason"].as_str().unwrap().contains(&unreachable),
        "{answer:#}"
    );

    // --force moves it, and history says so.
    let forced = ctl_code(&proxy, &["advance", "cache", "sessions", "--force"], 0);
    assert_eq!(forced, "sessions: source → dual_read (epoch 1) (forced)\n");
    assert_eq!(
        state_of(&proxy, "cache", "sessions"),
        ("dual_read".into(), 1)
    );
    let history = ctl_json(&proxy, &["history", "cache", "sessions", "--json"], 0);
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{history:#}");
    assert_transition(&entries[0], "sessions", "source", "dual_read", 1, true);
    assert_eq!(
        check_named(&entries[0]["checks"], "target_reachable")["passed"],
        false,
        "history keeps the overridden check: {history:#}"
    );
    let human = ctl_code(&proxy, &["history"], 0);
    let row = human.lines().nth(1).unwrap_or_default();
    assert!(row.ends_with("yes (1 failed)"), "{human}");
}

/// `ctl advance/rollback` on a topic list and on `--all`: one outcome per
/// topic, in order; exit 0 only when every topic moved, 1 when any was
/// refused, and the refused ones stay put while the others move.
#[test]
fn batches_report_each_topic_and_exit_1_when_any_is_refused() {
    let old = RedisServer::start();
    let new = RedisServer::start();
    let proxy = CutoverProcess::start(cache_config(&old.addr(), &new.addr(), free_port()));

    let both = ctl_code(&proxy, &["advance", "cache", "sessions", "rest"], 0);
    assert_eq!(
        both,
        "sessions: source → dual_read (epoch 1)\nrest: source → dual_read (epoch 1)\n"
    );
    ctl_code(&proxy, &["rollback", "cache", "sessions"], 0);

    // sessions is at the start of the walk: refused; rest still moves.
    let mixed = ctl_code(&proxy, &["rollback", "cache", "--all"], 1);
    let lines: Vec<&str> = mixed.lines().collect();
    assert_eq!(
        lines,
        [
            "sessions: refused: cannot rollback from source: it is the end of the walk",
            "(no readiness checks for this step)",
            "rest: dual_read → source (epoch 2)",
        ],
        "{mixed}"
    );
    assert_eq!(state_of(&proxy, "cache", "sessions"), ("source".into(), 2));
    assert_eq!(state_of(&proxy, "cache", "rest"), ("source".into(), 2));

    // The same in JSON, from a topic list in the other order.
    ctl_code(&proxy, &["advance", "cache", "rest"], 0);
    let answer = ctl_json(
        &proxy,
        &["rollback", "cache", "rest", "sessions", "--json"],
        1,
    );
    let outcomes = answer["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 2, "{answer:#}");
    assert_eq!(outcomes[0]["outcome"], "moved", "{answer:#}");
    assert_eq!(outcomes[0]["transition"]["topic"], "rest", "{answer:#}");
    assert_eq!(outcomes[0]["transition"]["to"], "source", "{answer:#}");
    assert_eq!(outcomes[1]["topic"], "sessions", "{answer:#}");
    assert_eq!(outcomes[1]["outcome"], "refused", "{answer:#}");

    // --all when every topic can move: exit 0, both moved.
    let all = ctl_json(&proxy, &["advance", "cache", "--all", "--json"], 0);
    let outcomes = all["outcomes"].as_array().expect("outcomes");
    let moved: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|o| {
            assert_eq!(o["outcome"], "moved", "{all:#}");
            (
                o["transition"]["topic"].as_str().unwrap(),
                o["transition"]["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(moved, [("sessions", "dual_read"), ("rest", "dual_read")]);

    // A refusal by a failed gate in a batch: the target goes away; both
    // are refused, named, and nothing moves.
    drop(new);
    let refused = ctl_json(&proxy, &["advance", "cache", "--all", "--json"], 1);
    for o in refused["outcomes"].as_array().expect("outcomes") {
        assert_eq!(o["outcome"], "refused", "{refused:#}");
        assert_eq!(
            check_named(&o["checks"], "target_reachable")["passed"],
            false,
            "{refused:#}"
        );
    }
    assert_eq!(state_of(&proxy, "cache", "rest"), ("dual_read".into(), 5));

    // The history names who moved: the local user, even with neither
    // $USER nor $LOGNAME set (a service account, a container).
    let who = Command::new("id").arg("-un").output().expect("id -un");
    let user = text(&who.stdout).trim().to_owned();
    let out = Command::new(support::cutover_bin())
        .args(["ctl", "--socket"])
        .arg(proxy.socket())
        .args(["rollback", "cache", "rest", "--force", "--json"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .expect("run ctl");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let uid = text(&Command::new("id").arg("-u").output().expect("id -u").stdout)
        .trim()
        .to_owned();
    // The claim, then what the kernel says about the socket's peer.
    let proven = format!("(socket uid {uid} {user})");
    assert_eq!(
        moved_actor(&answer),
        format!("ctl:{user} {proven}"),
        "{answer:#}"
    );

    // Every other admin action lands in the action log with the same
    // identity, refused ones too (the target is gone).
    assert_eq!(
        ctl_json(&proxy, &["history", "--actions", "--json"], 0),
        Value::Array(vec![]),
        "no action yet"
    );
    let verify = Command::new(support::cutover_bin())
        .args(["ctl", "--socket"])
        .arg(proxy.socket())
        .args(["verify", "cache", "rest", "--sample", "5"])
        .output()
        .expect("run ctl");
    let actions = ctl_json(
        &proxy,
        &["history", "cache", "rest", "--actions", "--json"],
        0,
    );
    let [logged] = actions.as_array().expect("actions").as_slice() else {
        panic!("one action logged: {actions:#}");
    };
    assert_eq!(logged["action"], "verify", "{logged:#}");
    assert_eq!(logged["topic"], "rest", "{logged:#}");
    assert_eq!(logged["params"]["sample"], 5, "{logged:#}");
    assert_eq!(
        logged["actor"],
        format!("ctl:{user} {proven}"),
        "{logged:#}"
    );
    let outcome = logged["outcome"].as_str().unwrap_or_default();
    match verify.status.code() {
        Some(0) => assert_eq!(outcome, "done", "{logged:#}"),
        _ => assert!(
            outcome.starts_with("refused: ")
                && text(&verify.stderr).contains(&outcome["refused: ".len()..]),
            "the log keeps the refusal ctl printed: {logged:#}\n{}",
            text(&verify.stderr)
        ),
    }
    let table = ctl_code(&proxy, &["history", "--actions"], 0);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.contains("verify")),
        "{table}"
    );

    // The log is a file, not a terminal: no colour escape codes in it.
    let log = fs::read_to_string(proxy.config().dir().join("cutover.log")).expect("log");
    assert!(log.contains("cutover is running"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}

fn moved_actor(answer: &Value) -> String {
    moved(answer)["actor"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn redis_client_gets_an_error_promptly_when_the_source_is_down() {
    let dead_source = dead_addr();
    let dead_target = dead_addr();
    let listen = free_port();
    let proxy = CutoverProcess::start(cache_config(&dead_source, &dead_target, listen));

    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let mut client = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to the cache listener {addr}: {e}"));
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let started = Instant::now();
    client.write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    // Read one RESP line; every read is bounded by the 5 s timeout.
    while !reply.ends_with(b"\r\n") && reply.len() < 4096 {
        let n = client.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no reply to GET within {IO_TIMEOUT:?} ({e}); got {:?}",
                text(&reply)
            )
        });
        assert!(n > 0, "proxy closed the connection; got {:?}", text(&reply));
        reply.extend_from_slice(&buf[..n]);
    }
    let elapsed = started.elapsed();
    let reply = text(&reply);
    let expected = format!("-ERR cutover: cluster \"cache-old\" is unreachable at {dead_source}");
    assert!(
        reply.starts_with(&expected),
        "reply {reply:?}, expected {expected:?}..."
    );
    assert!(elapsed < IO_TIMEOUT, "error took {elapsed:?}");

    let mut tail = String::new();
    wait_until(
        LOG_DEADLINE,
        "a log line naming cache-old and its address",
        || {
            tail = proxy.log_tail(200);
            tail.lines()
                .any(|l| l.contains("cache-old") && l.contains(&dead_source))
        },
    );
}

#[test]
fn tcp_admin_requires_the_bearer_token() {
    let admin = free_port();
    let addr = format!("127.0.0.1:{admin}");
    let config = cache_config(&dead_addr(), &dead_addr(), free_port());
    let token_file = config.dir().join("admin.token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = config
        .admin(&format!("listen: {addr}"))
        .admin(&format!("token_file: \"{}\"", token_file.display()));
    let proxy = CutoverProcess::start(config);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let wrong = [("Authorization", "Bearer not-the-token")];
    let json = ("Content-Type", "application/json");
    let advance = "/api/v1/migrations/cache/advance";
    let body = r#"{"topics":["sessions"],"force":true}"#;

    assert_unauthorized(
        "GET status, no token",
        &http(&addr, "GET", "/api/v1/status", &[], None),
    );
    assert_unauthorized(
        "GET status, wrong token",
        &http(&addr, "GET", "/api/v1/status", &wrong, None),
    );
    assert_eq!(http_get(&addr, "/api/v1/status").map(|(s, _)| s), Some(401));
    assert_unauthorized(
        "POST advance, no token",
        &http(&addr, "POST", advance, &[json], Some(body)),
    );
    assert_unauthorized(
        "POST advance, wrong token",
        &http(&addr, "POST", advance, &[json, wrong[0]], Some(body)),
    );
    assert_eq!(
        state_of(&proxy, "cache", "sessions"),
        ("source".into(), 0),
        "an unauthorized advance moved the topic"
    );
    assert_eq!(
        ctl_json(&proxy, &["history", "--json"], 0),
        Value::Array(vec![])
    );
    assert_unauthorized(
        "GET /metrics, no token",
        &http(&addr, "GET", "/metrics", &[], None),
    );

    // With the token.
    let (status, head, text) = http(&addr, "GET", "/api/v1/status", &auth, None);
    assert_eq!(status, 200, "{head}\n\n{text}");
    let view: Value = serde_json::from_str(&text).expect("status JSON");
    assert_eq!(view["migrations"][0]["name"], "cache", "{view:#}");
    assert_eq!(view["migrations"][0]["topics"][0]["state"], "source");
    let (status, head, text) = http(&addr, "POST", advance, &[json, auth[0]], Some(body));
    assert_eq!(status, 200, "{head}\n\n{text}");
    let answer: Value = serde_json::from_str(&text).expect("advance JSON");
    let t = moved(&answer);
    assert_eq!(
        (&t["from"], &t["to"], &t["epoch"]),
        (&"source".into(), &"dual_read".into(), &1.into())
    );
    assert_eq!(t["forced"], true, "{answer:#}");
    // No actor claimed: "api", with the token that authenticated it.
    assert_eq!(t["actor"], "api (token admin.token)", "{answer:#}");
    assert_eq!(
        state_of(&proxy, "cache", "sessions"),
        ("dual_read".into(), 1)
    );
    let (status, head, metrics) = http(&addr, "GET", "/metrics", &auth, None);
    assert_eq!(status, 200, "{head}\n\n{metrics}");
    assert!(metrics.contains("cutover_topic_state"), "{metrics}");
}

#[test]
fn tcp_admin_metrics_public_opens_only_metrics() {
    let admin = free_port();
    let addr = format!("127.0.0.1:{admin}");
    let config = cache_config(&dead_addr(), &dead_addr(), free_port());
    let token_file = config.dir().join("admin.token");
    fs::write(&token_file, TOKEN).unwrap();
    let config = config
        .admin(&format!("listen: {addr}"))
        .admin(&format!("token_file: \"{}\"", token_file.display()))
        .admin("metrics_public: true");
    let _proxy = CutoverProcess::start(config);

    let (status, head, metrics) = http(&addr, "GET", "/metrics", &[], None);
    assert_eq!(status, 200, "{head}\n\n{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cutover_topic_state{") && l.contains("topic=\"sessions\"")),
        "no cutover_topic_state sample for sessions:\n{metrics}"
    );
    assert_unauthorized(
        "GET status, no token, metrics_public",
        &http(&addr, "GET", "/api/v1/status", &[], None),
    );
    assert_unauthorized(
        "POST advance, no token, metrics_public",
        &http(
            &addr,
            "POST",
            "/api/v1/migrations/cache/advance",
            &[("Content-Type", "application/json")],
            Some(r#"{"all":true,"force":true}"#),
        ),
    );
}

#[test]
fn run_without_config_uses_the_embedded_example() {
    // The embedded example listens for Redis clients on 127.0.0.1:7379.
    if let Err(e) = TcpListener::bind("127.0.0.1:7379") {
        panic!(
            "127.0.0.1:7379 is busy ({e}): `cutover run` without --config listens there \
             (config/example.yaml), so this test cannot run; stop whatever holds the port"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.arg("run")
        .current_dir(dir.path())
        .env_remove("CUTOVER_SOCKET");
    let mut child = ChildGuard::spawn("cutover-embedded", &mut cmd);
    let socket = dir.path().join("cutover.sock");
    child.wait_ready(
        READY_DEADLINE,
        "./cutover.sock of the embedded config",
        || UnixStream::connect(&socket).is_ok(),
    );
    assert!(
        dir.path().join("cutover-state").is_dir(),
        "./cutover-state was not created"
    );

    // ctl's default socket is ./cutover.sock too.
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["ctl", "status", "--json"])
        .current_dir(dir.path())
        .env_remove("CUTOVER_SOCKET")
        .output()
        .expect("run cutover ctl status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe(&["status", "--json"], &out)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let migrations: Vec<(&str, &str, bool)> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["protocol"].as_str().unwrap(),
                m["served"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        migrations[..]
            .iter()
            .map(|m| (m.0, m.1))
            .collect::<Vec<_>>(),
        [
            ("cache", "redis"),
            ("events", "kafka"),
            ("orders", "rocketmq")
        ],
        "{status:#}"
    );
    assert!(migrations[0].2, "the redis migration is served: {status:#}");
    let cache_topics: Vec<(&str, &str, u64)> = status["migrations"][0]["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["state"].as_str().unwrap(),
                t["epoch"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cache_topics,
        [("sessions", "source", 0), ("rest", "source", 0)],
        "{status:#}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["ctl", "status"])
        .current_dir(dir.path())
        .env_remove("CUTOVER_SOCKET")
        .output()
        .expect("run cutover ctl status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe(&["status"], &out)
    );
    let human = text(&out.stdout);
    for name in ["cache", "events", "orders"] {
        assert!(
            human
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "human status does not list {name}:\n{human}"
        );
    }
    assert!(
        child.is_running(),
        "the proxy exited:\n{}",
        child.log_tail(40)
    );
}

#[test]
fn ctl_exits_2_when_the_proxy_is_unreachable() {
    let mut proxy = CutoverProcess::start(cache_config(&dead_addr(), &dead_addr(), free_port()));
    proxy.kill9();
    // The killed proxy left its socket file behind: connecting is refused.
    for args in [&["status"][..], &["advance", "cache", "sessions"][..]] {
        let out = proxy.ctl(args);
        assert!(
            text(&out.stderr).contains("cannot reach cutover's admin socket"),
            "{}",
            describe(args, &out)
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "ctl exit codes: 2 = bad request or proxy unreachable\n{}",
            describe(args, &out)
        );
    }
}
