//! Redis ACL users through the proxy, against two redis-server peers that
//! have ACL users of their own and a password on `default`: clients log in
//! at the proxy as users from `redis.users_file`, each cluster sees them as
//! their own (or mapped) user so its command restrictions still apply, a
//! keyspace walks to the target, wrong passwords never reach a cluster and
//! are slowed down, and the users file is reloaded without a restart. The
//! proxy reaches both servers over TLS only (client certificates required).

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use redis::Commands;
use sha2::{Digest, Sha256};
use std::path::Path;

use support::{RawClient, RedisRig, RedisServer, free_port, wait_until};

/// The `default` user's password on both servers: the proxy's own login
/// (copies, backfill, checks).
const ADMIN_PW: &str = "admin-pw";

/// redis-cli against a peer as its `default` user.
fn admin(server: &RedisServer, args: &[&str]) -> String {
    let mut all = vec!["--no-auth-warning", "--user", "default", "--pass", ADMIN_PW];
    all.extend_from_slice(args);
    server.cli(&all)
}

/// A redis-server where `alice_name` may do anything but LPUSH, `bob`
/// may only read, and `default` needs [`ADMIN_PW`]; it also listens with
/// TLS on `tls_port` (certificates from `certs`, client certificates
/// required there), while its plain port stays for the test's own probes.
fn acl_server(alice_name: &str, alice_pw: &str, certs: &Path, tls_port: u16) -> RedisServer {
    let server = RedisServer::start_tls(certs, tls_port, "yes");
    let alice_pass = format!(">{alice_pw}");
    let alice = [
        "ACL",
        "SETUSER",
        alice_name,
        "on",
        &alice_pass,
        "~*",
        "&*",
        "+@all",
        "-lpush",
    ];
    assert_eq!(server.cli(&alice), "OK");
    let bob = [
        "ACL",
        "SETUSER",
        "bob",
        "on",
        ">bob-pw",
        "~*",
        "+@read",
        "+@connection",
    ];
    assert_eq!(server.cli(&bob), "OK");
    let default = ["ACL", "SETUSER", "default", "on", "resetpass", ">admin-pw"];
    assert_eq!(server.cli(&default), "OK");
    server
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct AclRig {
    rig: RedisRig,
    users_file: std::path::PathBuf,
    /// Holds the users and password files for the proxy's lifetime.
    _files: tempfile::TempDir,
}

/// Source knows alice as `alice`; the target as `alice2` with another
/// password, mapped in the target's `auth.users`.
fn start() -> AclRig {
    let files = tempfile::tempdir().expect("temp dir");
    let users_file = files.path().join("users.acl");
    std::fs::write(
        &users_file,
        format!(
            "# copied from the source's ACL LIST, passwords as digests\n\
             user default off\n\
             user alice on #{} ~* &* +@all -lpush\n\
             user bob on >bob-pw ~* +@read\n",
            sha256_hex("alice-pw")
        ),
    )
    .expect("write users file");
    let alice2_pw = files.path().join("alice2.pw");
    std::fs::write(&alice2_pw, "alice2-pw\n").expect("write password file");
    let certs = files.path().join("certs");
    std::fs::create_dir(&certs).expect("certificate dir");
    support::tls::certificates(&certs);
    let tls_ports = [free_port(), free_port()];
    let source = acl_server("alice", "alice-pw", &certs, tls_ports[0]);
    let target = acl_server("alice2", "alice2-pw", &certs, tls_ports[1]);
    // The proxy reaches both servers over TLS only, presenting the test's
    // certificate (the servers require one).
    let file = |name: &str| certs.join(name).display().to_string();
    let tls = format!(
        ", tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\", server_name: localhost }}",
        file("ca.pem"),
        file("server.pem"),
        file("server.key")
    );
    let source_extra = format!(", auth: {{ password: {ADMIN_PW} }}{tls}");
    let target_extra = format!(
        ", auth: {{ password: {ADMIN_PW}, users: {{ alice: {{ username: alice2, password_file: \"{}\" }} }} }}{tls}",
        alice2_pw.display()
    );
    let rig = RedisRig::start_at(
        source,
        target,
        tls_ports.map(|p| format!("127.0.0.1:{p}")),
        [&source_extra, &target_extra],
        &format!("{{ users_file: \"{}\" }}", users_file.display()),
    );
    AclRig {
        rig,
        users_file,
        _files: files,
    }
}

fn client(rig: &RedisRig, user: &str, password: &str) -> redis::Connection {
    let url = format!("redis://{user}:{password}@127.0.0.1:{}/", rig.port);
    redis::Client::open(url)
        .expect("client")
        .get_connection()
        .unwrap_or_else(|e| panic!("{user} logs in through the proxy: {e}"))
}

/// The error reply, upper-cased (the client library spells `NOPERM` its own way).
fn refused<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> String {
    match result {
        Ok(v) => panic!("expected an error reply, got {v:?}"),
        Err(e) => e.to_string().to_uppercase(),
    }
}

/// The users the proxy's sessions are logged in as on `server`.
fn upstream_users(server: &RedisServer) -> Vec<String> {
    admin(server, &["CLIENT", "LIST"])
        .lines()
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("user=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn acl_users_keep_their_own_rights_on_each_cluster_through_a_walk() {
    let acl = start();
    let rig = &acl.rig;
    let mut anonymous = RawClient::connect(rig.port);
    assert_eq!(
        anonymous.roundtrip(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"-"),
        b"-NOAUTH Authentication required.\r\n",
        "the users file turns `default` off"
    );
    let mut alice = client(rig, "alice", "alice-pw");
    let mut bob = client(rig, "bob", "bob-pw");
    let () = alice.set("k1", "v1").expect("alice writes");
    assert_eq!(admin(&rig.source, &["GET", "k1"]), "v1");
    assert!(upstream_users(&rig.source).contains(&"alice".to_owned()));
    let push = refused(alice.lpush::<_, _, ()>("list", "x"));
    assert!(push.contains("NOPERM"), "source's rule for alice: {push}");
    assert_eq!(bob.get::<_, String>("k1").expect("bob reads"), "v1");
    let write = refused(bob.set::<_, _, ()>("k2", "x"));
    assert!(write.contains("NOPERM"), "bob is read-only: {write}");
    assert_eq!(admin(&rig.source, &["EXISTS", "k2"]), "0");
    // A RESP3 client logs in with `HELLO 3 AUTH bob bob-pw`.
    let url = format!("redis://bob:bob-pw@127.0.0.1:{}/?protocol=resp3", rig.port);
    let mut resp3 = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("HELLO 3 AUTH through the proxy");
    assert_eq!(
        resp3.get::<_, String>("k1").expect("bob reads over RESP3"),
        "v1"
    );

    for _ in 0..2 {
        rig.ctl_ok(&["advance", "cache", "rest"]);
    }
    rig.wait_backfill("rest");
    let () = alice.set("k3", "v3").expect("alice writes in dual_write");
    rig.wait_converged("rest");
    assert_eq!(admin(&rig.target, &["GET", "k1"]), "v1", "backfilled");
    assert_eq!(admin(&rig.target, &["GET", "k3"]), "v3", "converged");
    rig.ctl_ok(&["advance", "cache", "rest"]);
    rig.ctl_ok(&["advance", "cache", "rest"]);
    assert_eq!(rig.state("rest"), "target");

    let () = alice.set("k4", "v4").expect("alice writes in target");
    assert_eq!(admin(&rig.target, &["GET", "k4"]), "v4");
    assert_eq!(admin(&rig.source, &["EXISTS", "k4"]), "0");
    let on_target = upstream_users(&rig.target);
    assert!(
        on_target.contains(&"alice2".to_owned()) && !on_target.contains(&"alice".to_owned()),
        "alice reaches the target as its mapped user alice2: {on_target:?}"
    );
    let push = refused(alice.lpush::<_, _, ()>("list", "x"));
    assert!(push.contains("NOPERM"), "target's rule for alice2: {push}");
    assert_eq!(
        bob.get::<_, String>("k4").expect("bob reads the target"),
        "v4"
    );
    let write = refused(bob.set::<_, _, ()>("k5", "x"));
    assert!(
        write.contains("NOPERM"),
        "bob is read-only there too: {write}"
    );
    assert!(upstream_users(&rig.target).contains(&"bob".to_owned()));
}

/// Failed logins the server has recorded in its ACL LOG.
fn failed_logins(server: &RedisServer) -> usize {
    admin(server, &["ACL", "LOG"])
        .lines()
        .filter(|line| line.trim() == "auth")
        .count()
}

#[test]
fn wrong_passwords_reach_no_cluster_and_repeated_ones_are_slowed_down() {
    let acl = start();
    let rig = &acl.rig;
    let mut guesser = RawClient::connect(rig.port);
    let mut took = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let reply = guesser.roundtrip(b"*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$5\r\nguess\r\n", b"-");
        took.push(started.elapsed());
        assert_eq!(
            reply,
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
    }
    let unknown = guesser.roundtrip(b"*3\r\n$4\r\nAUTH\r\n$7\r\nmallory\r\n$2\r\npw\r\n", b"-");
    assert!(
        unknown.starts_with(b"-WRONGPASS"),
        "same answer for an unknown user"
    );
    assert_eq!(
        [failed_logins(&rig.source), failed_logins(&rig.target)],
        [0, 0],
        "no cluster saw the wrong passwords"
    );
    // The probe can see one: a wrong password sent to the server itself.
    rig.source.cli(&[
        "--no-auth-warning",
        "--user",
        "alice",
        "--pass",
        "guess",
        "PING",
    ]);
    assert_eq!(
        failed_logins(&rig.source),
        1,
        "the server logs a wrong password"
    );
    assert!(
        took[..3].iter().all(|t| *t < Duration::from_millis(150)),
        "the first failures are answered at once: {took:?}"
    );
    assert!(
        took[4] >= Duration::from_millis(350) && took[5] >= Duration::from_millis(750),
        "later failures from the address are held back, growing: {took:?}"
    );
    let counted = rig.proxy.metric_sum(
        "cutover_request_errors_total",
        &["kind=\"auth\"", "migration=\"cache\""],
    );
    assert!(counted >= 7.0, "every refusal counted: {counted}");
    let log = rig.proxy.log_tail(40);
    assert!(
        log.contains("client authentication failed") && log.contains("127.0.0.1"),
        "refusals are logged with the client address:\n{log}"
    );
}

#[test]
fn users_file_changes_apply_without_a_restart() {
    let acl = start();
    let (rig, users_file) = (&acl.rig, &acl.users_file);
    let mut probe = RawClient::connect(rig.port);
    let carol = b"*3\r\n$4\r\nAUTH\r\n$5\r\ncarol\r\n$8\r\ncarol-pw\r\n";
    assert!(probe.roundtrip(carol, b"-").starts_with(b"-WRONGPASS"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(users_file)
        .and_then(|mut f| f.write_all(b"user carol on >carol-pw ~* +@all\n"))
        .expect("append carol");
    wait_until(Duration::from_secs(10), "carol is accepted", || {
        RawClient::connect(rig.port).roundtrip(carol, b"") == b"+OK\r\n"
    });
    std::fs::write(users_file, "user carol on #not-a-digest\n").expect("break the file");
    wait_until(Duration::from_secs(10), "the bad file is reported", || {
        rig.proxy
            .log_tail(20)
            .contains("redis users file not reloaded")
    });
    assert_eq!(
        RawClient::connect(rig.port).roundtrip(carol, b""),
        b"+OK\r\n",
        "a file that no longer parses keeps the last good users"
    );
}
