//! The Redis migration walked source → … → target → … → source while real
//! clients write continuously, and a target outage healed by the repair set.
//!
//! Every writer checks each acknowledged reply against its own count of
//! earlier acknowledged writes (INCR returns n+1, LPUSH returns length+1,
//! HSET adds one field), so a write lost across any authority change shows
//! up as the next reply being wrong. At each converging state the writers
//! pause and both clusters are compared key by key.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use support::{RedisRig, wait_until, wait_until_async};
use tokio::sync::watch;

const WRITERS: usize = 4;

#[derive(Debug, Default, Clone)]
struct Acked {
    counter: i64,
    list_len: i64,
    fields: i64,
    rest_counter: i64,
}

struct Control {
    pause: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    paused: AtomicUsize,
    ops: AtomicU64,
}

async fn writer(url: String, w: usize, control: Arc<Control>) -> Result<Acked, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut pause = control.pause.subscribe();
    let stop = control.stop.subscribe();
    let mut acked = Acked::default();
    let mut i = 0u64;
    while !*stop.borrow() {
        if *pause.borrow() {
            control.paused.fetch_add(1, Ordering::SeqCst);
            let _ = pause.wait_for(|p| !p).await;
            control.paused.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        i += 1;
        one_round(&mut conn, w, i, &mut acked)
            .await
            .map_err(|e| format!("writer {w} op {i}: {e}"))?;
        control.ops.fetch_add(1, Ordering::Relaxed);
    }
    Ok(acked)
}

async fn one_round(
    conn: &mut MultiplexedConnection,
    w: usize,
    i: u64,
    acked: &mut Acked,
) -> Result<(), String> {
    let e = |e: redis::RedisError| e.to_string();
    let counter: i64 = conn.incr(format!("session:ctr:{w}"), 1).await.map_err(e)?;
    expect("INCR session counter", counter, acked.counter + 1)?;
    acked.counter = counter;
    let len: i64 = conn
        .lpush(format!("session:list:{w}"), i)
        .await
        .map_err(e)?;
    expect("LPUSH length", len, acked.list_len + 1)?;
    acked.list_len = len;
    let added: i64 = conn
        .hset(format!("session:hash:{w}"), format!("f{i}"), i)
        .await
        .map_err(e)?;
    expect("HSET new field", added, 1)?;
    acked.fields += 1;
    let _: () = redis::cmd("SET")
        .arg(format!("session:px:{w}:{}", i % 5))
        .arg(i)
        .arg("PX")
        .arg(600_000)
        .query_async(conn)
        .await
        .map_err(e)?;
    let expired: i64 = conn
        .expire(format!("session:hash:{w}"), 600)
        .await
        .map_err(e)?;
    expect("EXPIRE existing hash", expired, 1)?;
    let rest: i64 = conn.incr(format!("ctr:{w}"), 1).await.map_err(e)?;
    expect("INCR rest counter", rest, acked.rest_counter + 1)?;
    acked.rest_counter = rest;
    Ok(())
}

fn expect(what: &str, got: i64, want: i64) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: got {got}, expected {want}: an acknowledged write was lost"
        ))
    }
}

/// Every `session:*` key, with (type, DUMP payload or a hash's sorted fields, PTTL), from one server.
async fn snapshot(url: &str) -> std::collections::BTreeMap<String, (String, Option<Vec<u8>>, i64)> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys("session:*").await.unwrap();
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dump: Option<Vec<u8>> = if kind == "hash" {
            // A hash past its listpack size is a hash table whose DUMP
            // lists fields in bucket order, which differs between two
            // servers holding the same fields: compare the sorted fields.
            let mut fields: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(&key).await.unwrap();
            fields.sort();
            Some(format!("{fields:?}").into_bytes())
        } else {
            redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap()
        };
        let ttl: i64 = conn.pttl(&key).await.unwrap();
        out.insert(key, (kind, dump, ttl));
    }
    out
}

async fn assert_identical(rig: &RedisRig, when: &str) -> usize {
    let source = snapshot(&rig.source.url()).await;
    let target = snapshot(&rig.target.url()).await;
    let source_keys: Vec<_> = source.keys().collect();
    let target_keys: Vec<_> = target.keys().collect();
    assert_eq!(source_keys, target_keys, "{when}: key sets differ");
    let mut divergent = Vec::new();
    for (key, (kind, dump, ttl)) in &source {
        let (other_kind, other_dump, other_ttl) = &target[key];
        let ttl_ok = (*ttl < 0 && ttl == other_ttl)
            || (*ttl >= 0 && *other_ttl >= 0 && (ttl - other_ttl).abs() <= 1_000);
        if kind != other_kind || dump != other_dump || !ttl_ok {
            divergent.push(key.clone());
        }
    }
    assert!(divergent.is_empty(), "{when}: divergent keys {divergent:?}");
    source.len()
}

async fn run_some(control: &Control, ops: u64) {
    let start = control.ops.load(Ordering::Relaxed);
    wait_until_async(Duration::from_secs(30), "writers make progress", || async {
        control.ops.load(Ordering::Relaxed) >= start + ops
    })
    .await;
}

async fn paused<F: std::future::Future<Output = ()>>(control: &Control, body: F) {
    control.pause.send_replace(true);
    wait_until_async(Duration::from_secs(10), "writers pause", || async {
        control.paused.load(Ordering::SeqCst) == WRITERS
    })
    .await;
    body.await;
    control.pause.send_replace(false);
}

fn step(rig: &RedisRig, action: &str, expect_state: &str) {
    let out = rig.ctl_ok(&[action, "cache", "sessions"]);
    assert!(out.contains(&format!("→ {expect_state}")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_walk_under_concurrent_writers_loses_nothing_and_converges() {
    let rig = RedisRig::start("{ shadow_read_ratio: 0.2 }");
    let control = Arc::new(Control {
        pause: watch::Sender::new(false),
        stop: watch::Sender::new(false),
        paused: AtomicUsize::new(0),
        ops: AtomicU64::new(0),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(rig.url(), w, control.clone())))
        .collect();
    run_some(&control, 100).await;

    step(&rig, "advance", "dual_read");
    run_some(&control, 100).await;
    step(&rig, "advance", "dual_write");
    rig.wait_backfill("sessions");
    run_some(&control, 100).await;
    paused(&control, async {
        rig.wait_converged("sessions");
        let keys = assert_identical(&rig, "dual_write after backfill").await;
        assert!(keys >= WRITERS * 4, "{keys} keys compared");
    })
    .await;
    step(&rig, "advance", "cutover"); // the write fence moves authority under load
    run_some(&control, 200).await;
    paused(&control, async {
        rig.wait_converged("sessions");
        assert_identical(&rig, "cutover").await;
    })
    .await;
    step(&rig, "advance", "target");
    run_some(&control, 200).await;

    step(&rig, "rollback", "cutover"); // a reverse backfill copies target-only writes back
    rig.wait_backfill("sessions");
    run_some(&control, 100).await;
    paused(&control, async {
        rig.wait_converged("sessions");
        assert_identical(&rig, "cutover after rollback from target").await;
    })
    .await;
    step(&rig, "rollback", "dual_write"); // fence again, authority back to the source
    run_some(&control, 200).await;
    paused(&control, async {
        rig.wait_converged("sessions");
        assert_identical(&rig, "dual_write after rollback").await;
    })
    .await;
    step(&rig, "rollback", "dual_read");
    run_some(&control, 100).await;
    step(&rig, "rollback", "source");
    run_some(&control, 100).await;

    control.stop.send_replace(true);
    let mut total = 0;
    for (w, handle) in writers.into_iter().enumerate() {
        let acked = handle
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n--- proxy log ---\n{}", rig.proxy.log_tail(40)));
        assert_eq!(
            rig.source.cli(&["get", &format!("session:ctr:{w}")]),
            acked.counter.to_string()
        );
        assert_eq!(
            rig.source.cli(&["llen", &format!("session:list:{w}")]),
            acked.list_len.to_string()
        );
        assert_eq!(
            rig.source.cli(&["hlen", &format!("session:hash:{w}")]),
            acked.fields.to_string()
        );
        assert_eq!(
            rig.source.cli(&["get", &format!("ctr:{w}")]),
            acked.rest_counter.to_string()
        );
        total += acked.counter;
    }
    let mismatches = metric(&rig, "cutover_redis_shadow_reads_total", "mismatch");
    println!(
        "walk: {total} rounds acknowledged by {WRITERS} writers, 0 lost, 0 divergent keys, {mismatches} shadow mismatches"
    );
}

/// Sums a counter's samples whose labels contain `label` from `/metrics` over the admin socket.
fn metric(rig: &RedisRig, name: &str, label: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(rig.proxy.socket()).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn copies_that_fail_while_the_target_is_down_are_kept_durably_and_converge() {
    let mut rig = RedisRig::start("");
    rig.ctl_ok(&["advance", "cache", "sessions"]);
    rig.ctl_ok(&["advance", "cache", "sessions"]);
    rig.wait_backfill("sessions");
    rig.target.stop();
    for i in 0..20 {
        assert_eq!(
            rig.cli(&["set", &format!("session:r{i}"), &format!("v{i}")]),
            "OK",
            "the source stays authoritative"
        );
    }
    wait_until(
        Duration::from_secs(15),
        "failed copies reach the repair set",
        || rig.keyspace("sessions")["details"]["repair_set"] == 20,
    );
    let refused = rig.proxy.ctl(&["check", "cache", "sessions"]);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL    repair_set_empty") && text.contains("20 key(s) failed to copy"),
        "{text}"
    );

    // The repair set is durable: a proxy killed now still knows the 20 keys.
    let blob = rig
        .proxy
        .config()
        .state_dir()
        .join("blobs")
        .join("redis-repair.cache");
    wait_until(Duration::from_secs(5), "repair set persisted", || {
        std::fs::read_to_string(&blob)
            .map(|b| b.lines().count() == 20)
            .unwrap_or(false)
    });
    rig.proxy.kill9();
    rig.proxy.restart();
    assert_eq!(rig.keyspace("sessions")["details"]["repair_set"], 20);

    rig.target.restart();
    rig.wait_converged("sessions");
    for i in 0..20 {
        assert_eq!(
            rig.target.cli(&["get", &format!("session:r{i}")]),
            format!("v{i}")
        );
    }
}

/// The row of check `name` in `ctl check` output, and the exit code.
fn check_row(rig: &RedisRig, name: &str) -> (Option<i32>, String) {
    let out = rig.proxy.ctl(&["check", "cache", "sessions"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in:\n{text}"))
        .to_owned();
    (out.status.code(), row)
}

/// `cutover → dual_write → cutover` needs no new backfill while convergence
/// held (every write copied, no failed copy, no restart), and says why; a
/// failed copy since the backfill makes the check ask for a new one.
#[test]
fn a_rollback_from_cutover_keeps_the_backfill_while_convergence_holds() {
    let mut rig = RedisRig::start("");
    rig.cli(&["set", "session:before", "1"]);
    step(&rig, "advance", "dual_read");
    step(&rig, "advance", "dual_write");
    rig.wait_backfill("sessions");
    step(&rig, "advance", "cutover");
    rig.cli(&["set", "session:in-cutover", "2"]);
    rig.wait_converged("sessions");
    step(&rig, "rollback", "dual_write");
    rig.cli(&["set", "session:back-in-dual-write", "3"]);
    rig.wait_converged("sessions");

    let (code, row) = check_row(&rig, "backfill_complete");
    assert_eq!(code, Some(0), "{row}");
    assert!(
        row.starts_with("pass") && row.contains("still counts") && row.contains("no failed copy"),
        "{row}"
    );
    step(&rig, "advance", "cutover");
    assert_eq!(rig.target.cli(&["get", "session:back-in-dual-write"]), "3");
    assert_eq!(rig.source.cli(&["get", "session:in-cutover"]), "2");

    // A copy fails while the target is down in dual_write (and is repaired
    // later): the backfill no longer vouches for the keyspace.
    step(&rig, "rollback", "dual_write");
    rig.target.stop();
    assert_eq!(rig.cli(&["set", "session:lost-copy", "4"]), "OK");
    wait_until(Duration::from_secs(15), "the copy fails", || {
        rig.keyspace("sessions")["details"]["repair_set"] == 1
    });
    rig.target.restart();
    rig.wait_converged("sessions");
    let (code, row) = check_row(&rig, "backfill_complete");
    assert_eq!(code, Some(1), "{row}");
    assert!(
        row.starts_with("FAIL") && row.contains("copy(ies) failed since it completed"),
        "{row}"
    );
}
