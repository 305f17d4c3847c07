//! The embedded file store always reopens into an acknowledged state
//! (DESIGN.md §1: "A transition is written durably ... before it takes
//! effect"; §3: "survives crash mid-write").
//!
//! Each round a worker thread walks three Redis keyspaces with forced
//! `ctl advance/rollback --json` while the main thread SIGKILLs the proxy
//! after a random 20–200 ms, usually in the middle of a transition. After a
//! restart every topic must be at its last acknowledged (state, epoch) or
//! exactly one transition beyond it (the in-flight move whose answer was
//! lost), and its history must be the unbroken chain of epochs 1..=epoch.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Config, CutoverProcess, free_port};

const ROUNDS: u64 = 25;
const TOPICS: [&str; 3] = ["alpha", "beta", "rest"];
const STATES: [&str; 5] = ["source", "dual_read", "dual_write", "cutover", "target"];
/// Upper bound on ctl commands one worker issues in a round (it is stopped
/// by the kill long before; the bound only keeps the loop finite).
const MAX_COMMANDS_PER_ROUND: usize = 1_000;
/// Kill delay range, milliseconds.
const KILL_AFTER_MS: (u64, u64) = (20, 200);

/// xorshift64*: small, deterministic, seeded per round.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn state_index(name: &str) -> usize {
    STATES
        .iter()
        .position(|s| *s == name)
        .unwrap_or_else(|| panic!("unknown state {name:?}"))
}

/// (state index, epoch) per topic.
type Positions = BTreeMap<String, (usize, u64)>;

/// One ctl command the worker ran.
struct Issued {
    topic: String,
    action: &'static str,
    started: Instant,
    ended: Instant,
    acknowledged: bool,
}

fn ctl(socket: &PathBuf, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run cutover ctl {args:?}: {e}"))
}

/// Walks the topics randomly but legally from `acked`, recording every
/// acknowledged move into it, until `stop` or a command fails.
fn walk(
    socket: PathBuf,
    seed: u64,
    acked: Arc<Mutex<Positions>>,
    stop: Arc<AtomicBool>,
) -> Vec<Issued> {
    let mut rng = Rng::new(seed);
    let mut issued = Vec::new();
    for _ in 0..MAX_COMMANDS_PER_ROUND {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize];
        let (state, epoch) = acked.lock().unwrap()[topic];
        let action = match state {
            0 => "advance",
            4 => "rollback",
            _ if rng.below(2) == 0 => "advance",
            _ => "rollback",
        };
        let started = Instant::now();
        let out = ctl(&socket, &[action, "m", topic, "--force", "--json"]);
        let ended = Instant::now();
        let acknowledged = out.status.code() == Some(0);
        issued.push(Issued {
            topic: topic.to_owned(),
            action,
            started,
            ended,
            acknowledged,
        });
        if !acknowledged {
            // The proxy is gone (exit 2: unreachable) or refused: stop walking.
            break;
        }
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "acknowledged {action} {topic} printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let outcome = &answer["outcomes"][0];
        assert_eq!(outcome["outcome"], "moved", "{answer:#}");
        let t = &outcome["transition"];
        let to = state_index(t["to"].as_str().expect("transition.to"));
        let expected_to = if action == "advance" {
            state + 1
        } else {
            state - 1
        };
        assert_eq!(
            (t["from"].as_str(), to, t["epoch"].as_u64()),
            (Some(STATES[state]), expected_to, Some(epoch + 1)),
            "acknowledged {action} of {topic} from ({}, {epoch}): {answer:#}",
            STATES[state]
        );
        acked
            .lock()
            .unwrap()
            .insert(topic.to_owned(), (to, epoch + 1));
    }
    issued
}

fn status_positions(proxy: &CutoverProcess) -> Positions {
    let out = proxy.ctl(&["status", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "ctl status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let migration = &status["migrations"][0];
    assert_eq!(migration["name"], "m", "{status:#}");
    migration["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_owned(),
                (
                    state_index(t["state"].as_str().expect("state")),
                    t["epoch"].as_u64().expect("epoch"),
                ),
            )
        })
        .collect()
}

/// History of one topic: entries 1..=epoch, a chain from `source` to `state`.
fn assert_history(proxy: &CutoverProcess, round: u64, topic: &str, (state, epoch): (usize, u64)) {
    let out = proxy.ctl(&["history", "m", topic, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "ctl history: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    let entries = history.as_array().expect("history array");
    let summary: Vec<String> = entries
        .iter()
        .map(|e| format!("{}:{}→{}", e["epoch"], e["from"], e["to"]))
        .collect();
    assert_eq!(
        entries.len() as u64,
        epoch,
        "round {round}: {topic} is at epoch {epoch} but history has {} entries: {summary:?}",
        entries.len()
    );
    let mut expected_from = "source";
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["topic"], topic, "round {round}: {summary:?}");
        assert_eq!(
            entry["epoch"].as_u64(),
            Some(i as u64 + 1),
            "round {round}: {topic} history epochs not 1..={epoch}: {summary:?}"
        );
        assert_eq!(
            entry["from"].as_str(),
            Some(expected_from),
            "round {round}: {topic} history entry {} does not start where the previous ended: {summary:?}",
            i + 1
        );
        let from = state_index(expected_from);
        let to = entry["to"].as_str().expect("to");
        assert_eq!(
            from.abs_diff(state_index(to)),
            1,
            "round {round}: {topic} history entry {} skips a state: {summary:?}",
            i + 1
        );
        expected_from = STATES[state_index(to)];
    }
    assert_eq!(
        expected_from, STATES[state],
        "round {round}: {topic} history ends at {expected_from} but the topic is {}: {summary:?}",
        STATES[state]
    );
}

#[test]
fn file_store_reopens_into_an_acknowledged_state_after_sigkill() {
    let test_started = Instant::now();
    let dead = || format!("127.0.0.1:{}", free_port());
    let config = Config::new().append(&format!(
        r#"clusters:
  - {{ name: old, protocol: redis, endpoints: ["{}"] }}
  - {{ name: new, protocol: redis, endpoints: ["{}"] }}
migrations:
  - name: m
    protocol: redis
    listen: 127.0.0.1:{}
    source: old
    target: new
    topics:
      - {{ name: alpha, match: "a:*" }}
      - {{ name: beta, match: "b:*" }}
      - {{ name: rest, match: "*" }}
"#,
        dead(),
        dead(),
        free_port()
    ));
    let mut proxy = CutoverProcess::start(config);
    let socket = proxy.socket();
    let mut baseline: Positions = TOPICS.iter().map(|t| ((*t).to_owned(), (0, 0))).collect();
    assert_eq!(status_positions(&proxy), baseline, "fresh store");

    let mut killed_in_flight = 0;
    let mut lost_but_committed = 0;
    let mut acknowledged_total = 0;
    for round in 0..ROUNDS {
        if round > 0 {
            proxy.restart();
        }
        let acked = Arc::new(Mutex::new(baseline.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (socket, acked, stop) = (socket.clone(), acked.clone(), stop.clone());
            thread::spawn(move || walk(socket, round, acked, stop))
        };
        let mut rng = Rng::new(round ^ 0xDEAD_BEEF);
        let delay = KILL_AFTER_MS.0 + rng.below(KILL_AFTER_MS.1 - KILL_AFTER_MS.0 + 1);
        // The delay is the chaos, not synchronisation: the kill is meant to
        // land at an arbitrary point of whatever the worker is doing.
        thread::sleep(Duration::from_millis(delay));
        let killed_at = Instant::now();
        proxy.kill9();
        stop.store(true, Ordering::SeqCst);
        let issued = worker.join().expect("worker thread panicked");
        let acked = acked.lock().unwrap().clone();
        acknowledged_total += issued.iter().filter(|c| c.acknowledged).count();

        // The command the kill interrupted, if any: started before the kill
        // and not answered.
        let in_flight = issued
            .iter()
            .find(|c| c.started <= killed_at && killed_at <= c.ended);
        if in_flight.is_some() {
            killed_in_flight += 1;
        }
        let lost = issued
            .iter()
            .find(|c| !c.acknowledged && c.started <= killed_at);

        proxy.restart();
        let observed = status_positions(&proxy);
        assert_eq!(
            observed.keys().collect::<Vec<_>>(),
            acked.keys().collect::<Vec<_>>(),
            "round {round}: topics"
        );
        let mut beyond = Vec::new();
        for topic in TOPICS {
            let (ack_state, ack_epoch) = acked[topic];
            let (state, epoch) = observed[topic];
            if (state, epoch) == (ack_state, ack_epoch) {
                continue;
            }
            assert!(
                epoch == ack_epoch + 1 && state.abs_diff(ack_state) == 1,
                "round {round}: {topic} reopened at ({}, {epoch}); last acknowledged ({}, {ack_epoch}), \
                 so only that or one step beyond it is allowed",
                STATES[state],
                STATES[ack_state]
            );
            beyond.push(topic);
            // The only move allowed to be persisted unacknowledged is the
            // one whose answer the kill swallowed.
            let lost =
                lost.unwrap_or_else(|| panic!("round {round}: {topic} moved with no command lost"));
            let expected = if lost.action == "advance" {
                ack_state + 1
            } else {
                ack_state.wrapping_sub(1)
            };
            assert!(
                lost.topic == topic && state == expected,
                "round {round}: {topic} is one step beyond its ack at {}, but the lost command was {} {}",
                STATES[state],
                lost.action,
                lost.topic
            );
        }
        assert!(
            beyond.len() <= 1,
            "round {round}: more than one topic beyond its ack: {beyond:?}"
        );
        lost_but_committed += beyond.len();
        for topic in TOPICS {
            assert_history(&proxy, round, topic, observed[topic]);
        }
        baseline = observed;
    }
    proxy.kill9();
    println!(
        "{ROUNDS} rounds in {:.1?}: kill landed while a ctl command was in flight in {killed_in_flight} \
         round(s); {lost_but_committed} unacknowledged move(s) were found committed; \
         {acknowledged_total} acknowledged move(s) in all",
        test_started.elapsed()
    );
    assert!(
        killed_in_flight > 0,
        "no kill landed during a ctl command in {ROUNDS} rounds: the test did not exercise a crash mid-transition"
    );
}
