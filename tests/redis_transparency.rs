//! Transparency: a broad set of Redis behaviours (transactions with
//! queue-time errors, bad key counts, malformed and unknown subcommands,
//! deeply nested script replies, a busy script, blocking commands losing
//! their key, CLIENT REPLY / UNBLOCK, malformed RESP) is run against
//! redis-server directly and then through cutover in `source`, `dual_write`
//! and `cutover`; every raw reply must be byte-identical.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cutover_redis::{Limits, reply_len};
use support::{RedisRig, RedisServer, wait_until};

/// How long one reply may take (the busy script is killed well before).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies compared per run; a behaviour that silently stops producing
/// replies fails here rather than shrinking the comparison.
const EXPECTED_REPLIES: usize = 176;

/// A raw client connection that reads whole RESP replies.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("read timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        self.raw(&out);
    }

    /// The next whole reply.
    fn reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = reply_len(&self.buf, &Limits::default()).expect("valid RESP") {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "connection closed mid-reply after {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!(
                    "no reply within {REPLY_TIMEOUT:?} ({e}); have {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Everything until the server closes the connection.
    fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        self.stream
            .read_to_end(&mut out)
            .expect("the connection closes after a protocol error");
        out
    }
}

/// Replies with a label each, in the order they were read.
#[derive(Default)]
struct Transcript {
    replies: Vec<(String, Vec<u8>)>,
}

impl Transcript {
    fn record(&mut self, label: &str, reply: Vec<u8>) {
        self.replies.push((label.to_owned(), reply));
    }

    /// Sends each command on `conn` and records its reply.
    fn commands(&mut self, conn: &mut Conn, commands: &[&[&str]]) {
        for args in commands {
            conn.send(args);
            let reply = conn.reply();
            self.record(&args.join(" "), reply);
        }
    }
}

/// Where the behaviours run: the port clients use and the redis-servers
/// that actually execute the commands (to see when one is busy or blocked).
struct Place<'a> {
    port: u16,
    servers: Vec<&'a RedisServer>,
}

impl Place<'_> {
    fn conn(&self) -> Conn {
        Conn::open(self.port)
    }

    /// Waits until a server runs a script past the busy threshold.
    fn wait_busy(&self) {
        wait_until(REPLY_TIMEOUT, "a server answers BUSY", || {
            self.servers.iter().any(|s| {
                let mut probe = Conn::open(s.port());
                probe.send(&["PING"]);
                probe.reply().starts_with(b"-BUSY")
            })
        });
    }

    /// CONFIG SET on every server directly, behind the proxy's back.
    fn set_everywhere(&self, parameter: &str, value: &str) {
        for server in &self.servers {
            assert_eq!(server.cli(&["CONFIG", "SET", parameter, value]), "OK");
        }
    }

    /// Waits until `n` clients are blocked across the servers.
    fn wait_blocked(&self, n: usize) {
        wait_until(REPLY_TIMEOUT, "a client is blocked", || {
            let blocked: usize = self
                .servers
                .iter()
                .map(|s| {
                    let info = s.cli(&["INFO", "clients"]);
                    info.lines()
                        .find_map(|l| l.strip_prefix("blocked_clients:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0)
                })
                .sum();
            blocked >= n
        });
    }
}

/// Runs every behaviour with keys prefixed by `p` (each run its own keys).
fn run(place: &Place, p: &str) -> Transcript {
    let mut t = Transcript::default();
    transactions(place, p, &mut t);
    key_counts(place, p, &mut t);
    malformed_commands(place, p, &mut t);
    nested_replies(place, p, &mut t);
    busy_script(place, p, &mut t);
    blocking(place, p, &mut t);
    reply_modes(place, p, &mut t);
    out_of_memory(place, p, &mut t);
    resp3(place, p, &mut t);
    pubsub_reset(place, &mut t);
    protocol_errors(place, &mut t);
    t
}

fn transactions(place: &Place, p: &str, t: &mut Transcript) {
    let (foo1, foo2, tk, w) = (
        format!("{p}foo1"),
        format!("{p}foo2"),
        format!("{p}t"),
        format!("{p}w"),
    );
    let mut a = place.conn();
    t.commands(
        &mut a,
        &[
            &["MULTI"],
            &["SET", &foo1, "bar1"],
            &["NON-EXISTING-COMMAND"],
            &["SET", &foo2, "bar2"],
            &["EXEC"],
            &["EXISTS", &foo1, &foo2],
            &["MULTI"],
            &["SET", &tk, "1"],
            &["SET", &tk],
            &["EXEC"],
            &["MULTI"],
            &["SET", &tk, "a"],
            &["INCR", &tk],
            &["GET", &tk],
            &["EXEC"],
            &["MULTI"],
            &["MULTI"],
            &["WATCH", &tk],
            &["DISCARD"],
            &["EXEC"],
            &["DISCARD"],
            &["MULTI"],
            &["EXEC"],
            &["MULTI"],
            &["PING"],
            &["ECHO", "x"],
            &["EVAL", "return 1", "-1"],
            &["XGROUP", "HELP", "x"],
            &["EXEC"],
            &["MULTI"],
            &["EXEC", "x"],
            &["EXEC"],
            &["MULTI"],
            &["SET", &tk, "discarded"],
            &["DISCARD"],
            &["GET", &tk],
            &["WATCH", &tk],
            &["MULTI"],
            &["DISCARD"],
            &["UNWATCH"],
            &["MULTI"],
            &["DISCARD", "x"],
            &["EXEC"],
        ],
    );
    let mut b = place.conn();
    t.commands(&mut a, &[&["WATCH", &w]]);
    t.commands(&mut b, &[&["SET", &w, "1"]]);
    t.commands(
        &mut a,
        &[&["MULTI"], &["SET", &w, "2"], &["EXEC"], &["GET", &w]],
    );
}

fn key_counts(place: &Place, p: &str, t: &mut Transcript) {
    let (k, d) = (format!("{p}a"), format!("{p}d"));
    let mut c = place.conn();
    t.commands(
        &mut c,
        &[
            &["SINTERCARD", "0", &k],
            &["SINTERCARD", "-1", &k],
            &["SINTERCARD", "5", &k],
            &["SINTERCARD", "x", &k],
            &["SINTERCARD", "1", &k, "LIMIT", "-1"],
            &["LMPOP", "0", "LEFT"],
            &["LMPOP", "-1", &k, "LEFT"],
            &["LMPOP", "5", &k, "LEFT"],
            &["BLMPOP", "0", "0", "LEFT"],
            &["BLMPOP", "0", "5", &k, "LEFT"],
            &["ZMPOP", "0", "MIN"],
            &["ZMPOP", "3", &k, "MIN"],
            &["BZMPOP", "0", "-1", &k, "MIN"],
            &["ZUNIONSTORE", &d, "0", &k],
            &["ZUNIONSTORE", &d, "5", &k],
            &["ZINTER", "0", &k],
            &["ZINTERCARD", "3", &k],
            &["ZDIFF", "-1", &k],
            &["ZDIFFSTORE", &d, "9", &k],
            &["EVAL", "return 1", "-1"],
            &["EVAL", "return 1", "5", &k],
            &["EVAL", "return 1", "x"],
            &["EVAL_RO", "return 1", "3", &k],
            &["EVALSHA", "0123456789012345678901234567890123456789", "-1"],
            &["FCALL", "f", "-1"],
            &["FCALL", "f", "5", &k],
            &["FCALL_RO", "f", "2", &k],
        ],
    );
}

fn malformed_commands(place: &Place, p: &str, t: &mut Transcript) {
    let k = format!("{p}m");
    let mut c = place.conn();
    t.commands(
        &mut c,
        &[
            &["XGROUP", "HELP", "x"],
            &["XGROUP", "CREATE", &k],
            &["FUNCTION", "bad_subcommand"],
            &["SCRIPT", "nope"],
            &["CONFIG", "GET"],
            &["OBJECT", "ENCODING"],
            &["CLIENT", "NOPE"],
            &["NOTACMD", "x", "y"],
            &["GET"],
            &["SET", &k],
            &["PING", "a", "b"],
            &["PING"],
            &["PING", "hello"],
            &["ECHO"],
            &["ECHO", "hi"],
            &["CLIENT", "REPLY", "maybe"],
            &["CLIENT", "NO-EVICT", "maybe"],
            &["CLIENT", "NO-EVICT", "on"],
            &["CLIENT", "NO-EVICT", "off"],
            &["HELLO", "4"],
            &["HELLO", "x"],
            &["HELLO", "2", "AUTH"],
            &["SELECT", "1"],
            &["SET", &k, "in db 1"],
            &["SELECT", "99"],
            &["GET", &k],
            &["SELECT", "-1"],
            &["SELECT", "x"],
            &["SELECT", "0"],
            &["GET", &k],
            &["CLIENT", "SETNAME", "before-reset"],
            &["RESET"],
            &["CLIENT", "GETNAME"],
        ],
    );
}

fn nested_replies(place: &Place, p: &str, t: &mut Transcript) {
    let k = format!("{p}n");
    let mut c = place.conn();
    t.commands(
        &mut c,
        &[
            &[
                "EVAL",
                "local t = #KEYS for i = 1, 100 do t = {t, i} end return t",
                "1",
                &k,
            ],
            &[
                "EVAL",
                "local t = 7 for i = 1, 40 do t = {t} end return t",
                "1",
                &k,
            ],
            &["PING"],
        ],
    );
}

fn busy_script(place: &Place, p: &str, t: &mut Transcript) {
    let k = format!("{p}busy");
    let mut a = place.conn();
    let mut b = place.conn();
    t.commands(&mut b, &[&["PING"]]);
    a.send(&["EVAL", "local k = KEYS[1] while true do end", "1", &k]);
    place.wait_busy();
    t.commands(&mut b, &[&["PING"], &["ECHO", "e"], &["SCRIPT", "KILL"]]);
    let busy = &t.replies[t.replies.len() - 3].1;
    assert!(
        busy.starts_with(b"-BUSY "),
        "{}",
        String::from_utf8_lossy(busy)
    );
    t.record("busy EVAL", a.reply());
    t.commands(
        &mut b,
        &[&["PING"], &["SCRIPT", "KILL"], &["FUNCTION", "KILL"]],
    );
}

fn blocking(place: &Place, p: &str, t: &mut Transcript) {
    let (s, l) = (format!("{p}s"), format!("{p}l"));
    let mut a = place.conn();
    let mut b = place.conn();
    t.commands(&mut b, &[&["XGROUP", "CREATE", &s, "g", "$", "MKSTREAM"]]);
    a.send(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "BLOCK",
        "0",
        "STREAMS",
        &s,
        ">",
    ]);
    place.wait_blocked(1);
    t.commands(&mut b, &[&["DEL", &s]]);
    t.record("XREADGROUP after DEL", a.reply());

    a.send(&["CLIENT", "ID"]);
    let id = String::from_utf8(a.reply()).expect("id");
    let id = id.trim_start_matches(':').trim_end();
    a.send(&["BLPOP", &l, "0"]);
    place.wait_blocked(1);
    t.commands(
        &mut b,
        &[
            &["CLIENT", "UNBLOCK", id],
            &["CLIENT", "UNBLOCK", id, "ERROR"],
            &["CLIENT", "UNBLOCK", "987654321"],
            &["CLIENT", "UNBLOCK", "x"],
            &["CLIENT", "UNBLOCK", id, "SOMETIMES"],
        ],
    );
    t.record("unblocked BLPOP", a.reply());
    a.send(&["BLPOP", &l, "0"]);
    place.wait_blocked(1);
    t.commands(&mut b, &[&["CLIENT", "UNBLOCK", id, "ERROR"]]);
    t.record("BLPOP unblocked with an error", a.reply());

    b.send(&["CLIENT", "ID"]);
    let own = String::from_utf8(b.reply()).expect("id");
    let own = own.trim_start_matches(':').trim_end();
    t.commands(
        &mut b,
        &[
            &["CLIENT", "KILL", "ID", own],
            &["CLIENT", "KILL", "ID", "987654321"],
            &["CLIENT", "KILL", "ID", "x"],
            &["CLIENT", "KILL", "ID", id],
        ],
    );
    t.record("killed client's connection", a.read_to_close());
}

fn reply_modes(place: &Place, p: &str, t: &mut Transcript) {
    let k = format!("{p}r");
    let mut c = place.conn();
    for args in [
        &["CLIENT", "REPLY", "OFF"][..],
        &["SET", &k, "1"],
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "ON"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", &k],
        &["ECHO", "after skip"],
        &["CLIENT", "REPLY", "SKIP"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", &k],
    ] {
        c.send(args);
    }
    for label in ["REPLY ON", "ECHO after skip", "REPLY ON after SKIP", "GET"] {
        let reply = c.reply();
        t.record(label, reply);
    }
    // Whether RESET right after SKIP is answered: read up to a marker.
    for args in [
        &["CLIENT", "REPLY", "SKIP"][..],
        &["RESET"],
        &["ECHO", "end"],
    ] {
        c.send(args);
    }
    let mut replies = Vec::new();
    while !replies.ends_with(b"$3\r\nend\r\n") {
        replies.extend(c.reply());
    }
    t.record("SKIP, RESET, ECHO end", replies);
}

fn resp3(place: &Place, p: &str, t: &mut Transcript) {
    let (h, z, n) = (format!("{p}h3"), format!("{p}z3"), format!("{p}n3"));
    let mut c = place.conn();
    // HELLO's reply names the connection id, which differs by design.
    c.send(&["HELLO", "3"]);
    assert!(c.reply().starts_with(b"%7\r\n"));
    t.commands(
        &mut c,
        &[
            &["GET", &h],
            &["HSET", &h, "f", "v"],
            &["HGETALL", &h],
            &["ZADD", &z, "1.5", "m"],
            &["ZSCORE", &z, "m"],
            &[
                "EVAL",
                "local t = 1 for i = 1, 60 do t = {t} end return t",
                "1",
                &n,
            ],
            &["MULTI"],
            &["HGETALL", &h],
            &["NON-EXISTING-COMMAND"],
            &["EXEC"],
            &["HELLO", "2", "SETNAME"],
        ],
    );
}

fn pubsub_reset(place: &Place, t: &mut Transcript) {
    // The channel name is echoed back, so it is the same in every run.
    let channel = "transparency";
    let mut c = place.conn();
    t.commands(
        &mut c,
        &[
            &["SUBSCRIBE", channel],
            &["PING"],
            &["RESET"],
            &["PING"],
            &["CLIENT", "GETNAME"],
        ],
    );
}

fn out_of_memory(place: &Place, p: &str, t: &mut Transcript) {
    let k = format!("{p}oom");
    let mut c = place.conn();
    t.commands(&mut c, &[&["PING"]]);
    place.set_everywhere("maxmemory", "1");
    t.commands(
        &mut c,
        &[
            &["SET", &k, "v"],
            &["MULTI"],
            &["GET", &k],
            &["SET", &k, "v"],
            &["EXEC"],
            &["GET", &k],
        ],
    );
    let oom = &t.replies[t.replies.len() - 6].1;
    assert!(
        oom.starts_with(b"-OOM "),
        "{}",
        String::from_utf8_lossy(oom)
    );
    place.set_everywhere("maxmemory", "0");
    t.commands(&mut c, &[&["SET", &k, "v"], &["GET", &k]]);
}

fn protocol_errors(place: &Place, t: &mut Transcript) {
    let cases: [&[u8]; 9] = [
        b"*x\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\nfoo\r\n",
        b"*1\r\n$-5\r\n",
        b"*2\r\n$3\r\nGET\r\n$1073741824\r\n",
        b"SET k \"abc\r\n",
        b"*-5\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPINGxx*0\r\n*3000000000\r\n",
        b"*1\r\n$4\r\nPING\r\n*1\r\n\xff\r\n",
        b"PING\r\n*1\r\n$4\r\nECHO\r\n",
    ];
    for bytes in cases {
        let mut c = place.conn();
        c.raw(bytes);
        if bytes.ends_with(b"ECHO\r\n") {
            // A whole request with a wrong arity: answered, connection kept.
            let first = c.reply();
            t.record("inline PING", first);
            let second = c.reply();
            t.record("ECHO without argument", second);
            continue;
        }
        let reply = c.read_to_close();
        t.record(&String::from_utf8_lossy(bytes), reply);
    }
}

/// Makes scripts count as busy after 100 ms instead of 5 s.
fn quick_busy(servers: &[&RedisServer]) {
    for server in servers {
        assert_eq!(
            server.cli(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
            "OK"
        );
    }
}

fn assert_same(reference: &Transcript, through: &Transcript, state: &str) {
    assert_eq!(
        through.replies.len(),
        reference.replies.len(),
        "{state}: reply count"
    );
    for ((label, want), (_, got)) in reference.replies.iter().zip(&through.replies) {
        assert!(
            want == got,
            "{state}: {label}\n  redis:   {:?}\n  cutover: {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got)
        );
    }
}

fn advance_all(rig: &RedisRig, state: &str) {
    for keyspace in ["sessions", "rest"] {
        rig.ctl_ok(&["advance", "cache", keyspace]);
        assert_eq!(rig.state(keyspace), state);
    }
}

#[test]
fn cutover_answers_byte_for_byte_as_redis_in_every_state() {
    let reference = RedisServer::start();
    quick_busy(&[&reference]);
    let direct = run(
        &Place {
            port: reference.port(),
            servers: vec![&reference],
        },
        "r0:",
    );
    assert_eq!(direct.replies.len(), EXPECTED_REPLIES);

    let rig = RedisRig::start("");
    quick_busy(&[&rig.source, &rig.target]);
    let place = Place {
        port: rig.port,
        servers: vec![&rig.source, &rig.target],
    };
    assert_same(&direct, &run(&place, "r0:"), "source");

    advance_all(&rig, "dual_read");
    advance_all(&rig, "dual_write");
    rig.wait_backfill("sessions");
    rig.wait_backfill("rest");
    assert_same(&direct, &run(&place, "r1:"), "dual_write");
    converging_refusals(&rig);

    // The keyspace's authority moves between MULTI and EXEC: EXEC aborts.
    let mut c = place.conn();
    c.send(&["MULTI"]);
    assert_eq!(c.reply(), b"+OK\r\n");
    c.send(&["SET", "r1:moved", "1"]);
    assert_eq!(c.reply(), b"+QUEUED\r\n");
    advance_all(&rig, "cutover");
    c.send(&["EXEC"]);
    let exec = String::from_utf8(c.reply()).expect("utf-8");
    assert!(
        exec.starts_with("-EXECABORT cutover: keyspace rest moved to cluster \"new\""),
        "{exec}"
    );
    c.send(&["EXISTS", "r1:moved"]);
    assert_eq!(
        c.reply(),
        b":0\r\n",
        "the aborted transaction wrote nothing"
    );

    assert_same(&direct, &run(&place, "r2:"), "cutover");
}

/// What cutover refuses while keyspaces converge, and that it says why.
fn converging_refusals(rig: &RedisRig) {
    let mut c = Conn::open(rig.port);
    for args in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["SWAPDB", "0", "1"],
        &["FUNCTION", "FLUSH"],
    ] {
        c.send(args);
        let reply = String::from_utf8(c.reply()).expect("utf-8");
        assert!(
            reply.starts_with("-CUTOVER ") && reply.contains("target first, then source"),
            "{args:?}: {reply}"
        );
    }
    c.send(&["CLIENT", "TRACKING", "ON"]);
    let reply = String::from_utf8(c.reply()).expect("utf-8");
    assert!(
        reply.starts_with("-CUTOVER CLIENT TRACKING is not supported"),
        "{reply}"
    );
}
