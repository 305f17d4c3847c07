//! Kafka SASL on both hops, against Apache Kafka 4.1.1 clusters that only
//! let SASL clients in on the listeners the proxy uses: the source knows
//! the proxy as a SCRAM-SHA-256 user, the target as a SCRAM-SHA-512 user of
//! another name. Clients log in to the proxy with users written by
//! `cutover user add`: the Java client with SCRAM-SHA-256, librdkafka with
//! SCRAM-SHA-512 and PLAIN. The clusters start once per test binary.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use support::{
    Config, CutoverProcess, KafkaCluster, SaslUsers, cutover_bin, finish_java, finish_kafka_script,
    free_port, kafka_python, kafka_tool, output_text, spawn_java, wait_until,
};

/// The test binary's CA and server certificate (`support::tls`): the
/// clusters' SASL_SSL listeners and the proxy's TLS listener use them.
fn certs() -> &'static Path {
    static CERTS: OnceLock<tempfile::TempDir> = OnceLock::new();
    CERTS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            support::tls::certificates(dir.path());
            dir
        })
        .path()
}

fn source() -> &'static KafkaCluster {
    static SOURCE: OnceLock<KafkaCluster> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let users = SaslUsers {
            users: vec![
                ("SCRAM-SHA-256", "proxy-old", "old-secret"),
                ("SCRAM-SHA-256", "alice-old", "alice-old-secret"),
            ],
            tls_dir: Some(certs().to_owned()),
            reauth_ms: Some(REAUTH_MS),
        };
        KafkaCluster::start_with("sasl-source", 1, Some(&users))
    })
}

fn target() -> &'static KafkaCluster {
    static TARGET: OnceLock<KafkaCluster> = OnceLock::new();
    TARGET.get_or_init(|| {
        let users = SaslUsers {
            users: vec![
                ("SCRAM-SHA-512", "proxy-new", "new-secret"),
                ("SCRAM-SHA-512", "alice-new", "alice-new-secret"),
            ],
            tls_dir: Some(certs().to_owned()),
            reauth_ms: Some(REAUTH_MS),
        };
        KafkaCluster::start_with("sasl-target", 1, Some(&users))
    })
}

/// Both clusters' `connections.max.reauth.ms`: the proxy's connections
/// must log in again every few seconds (KIP-368) or be closed by the broker.
const REAUTH_MS: u32 = 6000;

/// How long the Java client may take to write and read back its records.
const JAVA_DEADLINE: Duration = Duration::from_secs(150);

fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).expect("write secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path.display().to_string()
}

/// `cutover user add`, the password on stdin.
fn user_add(users_file: &Path, mechanism: &str, name: &str, password: &str) {
    let mut child = Command::new(cutover_bin())
        .args(["user", "add", "--users-file"])
        .arg(users_file)
        .args(["--mechanism", mechanism, "--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cutover user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password on stdin");
    let out = child.wait_with_output().expect("user add");
    assert!(out.status.success(), "user add: {}", output_text(&out));
}

/// A proxy between the SASL clusters with clients' users alice
/// (SCRAM-SHA-256) and bob (SCRAM-SHA-512); `old_password` is what the
/// proxy presents to the source; `extra` goes into `kafka:`, `old_auth`
/// and `new_auth` into the clusters' `auth:`.
struct Rig {
    proxy: CutoverProcess,
    listen: u16,
    _dir: tempfile::TempDir,
    /// When set, the rig's own clients (`python`, `java`) reach the
    /// proxy's TLS listener trusting this CA.
    client_ca: Option<String>,
}

fn rig(
    pattern: &str,
    old_password: &str,
    kafka_extra: &str,
    old_auth: &str,
    new_auth: &str,
) -> Rig {
    rig_with(
        pattern,
        old_password,
        kafka_extra,
        old_auth,
        new_auth,
        "",
        None,
    )
}

/// A file of the test certificates.
fn cert_file(name: &str) -> String {
    certs().join(name).display().to_string()
}

/// As [`rig`], with TLS on every hop: the migration's listener offers the
/// test certificate, and the proxy reaches both clusters at their SASL_SSL
/// listeners.
fn tls_rig(pattern: &str, kafka_extra: &str) -> Rig {
    rig_with(
        pattern,
        "old-secret",
        kafka_extra,
        "",
        "",
        &format!(
            "    tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            cert_file("server.pem"),
            cert_file("server.key")
        ),
        Some(&format!("{{ ca_file: \"{}\" }}", cert_file("ca.pem"))),
    )
}

/// As [`rig`], `migration_extra` appended to the migration (e.g. `tls:`),
/// and `cluster_tls`: both clusters reached at their SASL_SSL listeners
/// with this `tls:` value.
fn rig_with(
    pattern: &str,
    old_password: &str,
    kafka_extra: &str,
    old_auth: &str,
    new_auth: &str,
    migration_extra: &str,
    cluster_tls: Option<&str>,
) -> Rig {
    let (source, target) = (source(), target());
    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("kafka-users");
    user_add(&users, "SCRAM-SHA-256", "alice", "alice-secret");
    user_add(&users, "SCRAM-SHA-512", "bob", "bob-secret");
    let text = std::fs::read_to_string(&users).expect("users file");
    assert!(
        !text.contains("alice-secret") && !text.contains("bob-secret"),
        "the users file holds salted keys, never passwords:\n{text}"
    );
    let old_pw = secret_file(dir.path(), "old.pw", old_password);
    let new_pw = secret_file(dir.path(), "new.pw", "new-secret");
    let (listen, broker_port) = (free_port(), free_port());
    let (old_endpoints, new_endpoints) = match cluster_tls {
        Some(_) => (
            source.sasl_ssl_endpoints_yaml(),
            target.sasl_ssl_endpoints_yaml(),
        ),
        None => (source.sasl_endpoints_yaml(), target.sasl_endpoints_yaml()),
    };
    let tls = cluster_tls
        .map(|t| format!(", tls: {t}"))
        .unwrap_or_default();
    let config = Config::new().append(&format!(
        "clusters:\n\
         \x20 - {{ name: old, protocol: kafka, endpoints: {}, auth: {{ mechanism: SCRAM-SHA-256, username: proxy-old, password_file: \"{old_pw}\"{old_auth} }}{tls} }}\n\
         \x20 - {{ name: new, protocol: kafka, endpoints: {}, auth: {{ mechanism: SCRAM-SHA-512, username: proxy-new, password_file: \"{new_pw}\"{new_auth} }}{tls} }}\n\
         migrations:\n\
         \x20 - name: events\n\
         \x20   protocol: kafka\n\
         \x20   listen: 127.0.0.1:{listen}\n\
         \x20   source: old\n\
         \x20   target: new\n\
         \x20   topics: [ {{ match: \"{pattern}\" }} ]\n\
         \x20   kafka: {{ brokers_listen_base: {broker_port}, virtual_brokers: 1, users_file: \"{}\"{kafka_extra} }}\n{migration_extra}",
        old_endpoints,
        new_endpoints,
        users.display()
    ));
    Rig {
        proxy: CutoverProcess::start(config),
        listen,
        _dir: dir,
        client_ca: None,
    }
}

impl Rig {
    fn python(&self, mechanism: &str, user: &str, password: &str, body: &str) -> Value {
        let script = format!(
            "import json, time\n\
             from confluent_kafka import Producer, Consumer, TopicPartition, KafkaException\n\
             CONF = {{\"bootstrap.servers\": \"127.0.0.1:{}\", \"security.protocol\": \"SASL_PLAINTEXT\",\n\
             \x20       \"sasl.mechanism\": \"{mechanism}\", \"sasl.username\": \"{user}\", \"sasl.password\": \"{password}\"}}\n{}{body}",
            self.listen,
            self.client_ca.as_ref().map_or(String::new(), |ca| format!(
                "CONF.update({{\"security.protocol\": \"SASL_SSL\", \"ssl.ca.location\": \"{ca}\"}})\n"
            )),
        );
        let child = Command::new(kafka_python())
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        finish_kafka_script(child)
    }

    fn ctl(&self, args: &[&str]) -> Value {
        let out = self.proxy.ctl(args);
        assert!(
            out.status.success(),
            "ctl {args:?}: {}\n{}",
            output_text(&out),
            self.proxy.log_tail(30)
        );
        serde_json::from_slice(&out.stdout).expect("ctl JSON")
    }

    fn java(&self, topic: &str, group: &str, count: u32) -> Value {
        let props = self._dir.path().join(format!("{group}.properties"));
        let transport = match &self.client_ca {
            Some(ca) => format!(
                "security.protocol=SASL_SSL\nssl.truststore.type=PEM\nssl.truststore.location={ca}\n"
            ),
            None => "security.protocol=SASL_PLAINTEXT\n".to_owned(),
        };
        std::fs::write(
            &props,
            transport
                + "sasl.mechanism=SCRAM-SHA-256\n\
                   sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"alice-secret\";\n",
        )
        .expect("client properties");
        let boot = format!("127.0.0.1:{}", self.listen);
        let java = spawn_java(
            "ProduceConsume",
            &[
                &boot,
                topic,
                group,
                &count.to_string(),
                &props.display().to_string(),
            ],
        );
        finish_java(java, JAVA_DEADLINE)
    }

    fn links(&self) -> f64 {
        self.proxy.metric_sum(
            "cutover_kafka_session_links_total",
            &["migration=\"events\""],
        )
    }

    fn auth_failures(&self) -> f64 {
        self.proxy.metric_sum(
            "cutover_request_errors_total",
            &["migration=\"events\"", "kind=\"auth\""],
        )
    }
}

/// librdkafka: produce `n` values `PREFIX-i` over 3 partitions.
const PRODUCE: &str = r#"
failed, done = [], [0]
def cb(err, msg):
    if err: failed.append(str(err))
    else: done[0] += 1
p = Producer(CONF)
for i in range({N}):
    p.produce("{TOPIC}", key=str(i).encode(), value=f"{PREFIX}-{i}".encode(), on_delivery=cb)
left = p.flush(60)
print(json.dumps({"delivered": done[0], "failed": failed[:3], "left": left}))
"#;

/// librdkafka: read the whole topic with a fresh group: distinct records
/// (partition, virtual offset) and distinct values.
const READ_ALL: &str = r#"
c = Consumer({**CONF, "group.id": "{GROUP}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe(["{TOPIC}"])
records, values, errors, deadline = set(), set(), [], time.time() + 90
while len(records) < {N} and time.time() < deadline:
    m = c.poll(0.5)
    if m is None: continue
    if m.error(): errors.append(str(m.error())); continue
    records.add((m.partition(), m.offset()))
    values.add(m.value().decode())
c.commit(asynchronous=False)
c.close()
print(json.dumps({"records": len(records), "values": len(values), "errors": errors[:3]}))
"#;

fn produce(rig: &Rig, topic: &str, prefix: &str, n: u32) {
    let out = rig.python(
        "SCRAM-SHA-512",
        "bob",
        "bob-secret",
        &PRODUCE
            .replace("{N}", &n.to_string())
            .replace("{TOPIC}", topic)
            .replace("{PREFIX}", prefix),
    );
    assert_eq!(out["delivered"], n, "{out:#}\n{}", rig.proxy.log_tail(30));
    assert_eq!(out["left"], 0, "{out:#}");
}

/// Authentication and TLS on every hop through a whole walk: the Java
/// client (SCRAM-SHA-256) and librdkafka (SCRAM-SHA-512) log in over the
/// proxy's TLS listener while a topic walks `source → target`, the proxy
/// logging in to each cluster (its own SCRAM user) over SASL_SSL; every
/// record is read back.
#[test]
fn clients_log_in_with_scram_and_a_topic_walks_to_the_target_with_nothing_lost() {
    // TLS on every hop: clients reach the proxy's TLS listener (SASL_SSL),
    // the proxy reaches both clusters at their SASL_SSL listeners.
    let mut rig = tls_rig("walk*", ", dual_write_percent: 50");
    rig.client_ca = Some(cert_file("ca.pem"));
    let out = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &source().bootstrap(),
            "--create",
            "--topic",
            "walk",
            "--partitions",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));

    // source: the Java client (SCRAM-SHA-256) writes and reads back.
    let java = rig.java("walk", "walk-java-1", 300);
    assert_eq!(java["errors"], 0, "{java:#}\n{}", rig.proxy.log_tail(40));
    assert_eq!(java["acked"], 300, "{java:#}");
    assert_eq!(java["consumed"], 300, "{java:#}");
    assert!(rig.links() > 0.0, "sessions reached the clusters");
    let mut total = 300;

    // The proxy's own connections log in too: the topic is created on the
    // target through the target's SASL listener.
    let migrated = rig.ctl(&["migrate-metadata", "events", "walk", "--json"]);
    assert_eq!(migrated["topics"][0]["outcome"], "created", "{migrated:#}");
    for (state, prefix) in [
        ("dual_read", "dr"),
        ("dual_write", "dw"),
        ("cutover", "co"),
        ("target", "tg"),
    ] {
        let moved = rig.ctl(&["advance", "events", "walk", "--force", "--json"]);
        assert_eq!(moved["outcomes"][0]["outcome"], "moved", "{moved:#}");
        assert_eq!(moved["outcomes"][0]["transition"]["to"], state, "{moved:#}");
        // librdkafka (SCRAM-SHA-512) writes in every state.
        produce(&rig, "walk", prefix, 200);
        total += 200;
    }
    let java = rig.java("walk", "walk-java-2", 100);
    assert_eq!(java["errors"], 0, "{java:#}\n{}", rig.proxy.log_tail(40));
    total += 100;
    let read = rig.python(
        "SCRAM-SHA-512",
        "bob",
        "bob-secret",
        &READ_ALL
            .replace("{N}", &total.to_string())
            .replace("{TOPIC}", "walk")
            .replace("{GROUP}", "walk-reader"),
    );
    assert_eq!(
        read["records"],
        total,
        "nothing lost: {read:#}\n{}",
        rig.proxy.log_tail(40)
    );
    // ProduceConsume writes values j0, j1, ...: its second run repeats the
    // first's 100 values at offsets of their own.
    assert_eq!(read["values"], total - 100, "{read:#}");
    assert_eq!(read["errors"], serde_json::json!([]), "{read:#}");
    assert_eq!(rig.auth_failures(), 0.0);
}

/// librdkafka with `PASSWORD`: what a metadata request ends with.
const LOGIN: &str = r#"
errors = []
p = Producer({**CONF, "error_cb": lambda e: errors.append(str(e)), "reconnect.backoff.ms": 1000})
try:
    md = p.list_topics(timeout=6)
    ok, topics = True, sorted(md.topics)
except KafkaException as e:
    ok, topics = False, []
    errors.append(str(e))
# Errors reach error_cb from poll.
deadline = time.time() + 10
while not ok and time.time() < deadline and not any("Authentication" in e for e in errors):
    p.poll(0.5)
print(json.dumps({"ok": ok, "errors": errors, "topics": topics}))
"#;

#[test]
fn a_wrong_password_is_refused_without_an_upstream_connection() {
    let rig = rig("login*", "old-secret", "", "", "");
    let out = rig.python("SCRAM-SHA-512", "bob", "not-bobs", LOGIN);
    assert_eq!(out["ok"], false, "{out:#}");
    let errors = out["errors"].to_string();
    assert!(
        errors.contains("Authentication failed for user bob with SASL mechanism SCRAM-SHA-512: invalid credentials"),
        "the client is told why: {out:#}"
    );
    wait_until(Duration::from_secs(10), "the failure is counted", || {
        rig.auth_failures() >= 1.0
    });
    let log = rig.proxy.log_tail(200);
    assert!(
        log.lines()
            .any(|l| l.contains("kafka client authentication failed")
                && l.contains("127.0.0.1:")
                && l.contains("bob")),
        "logged with the client's address:\n{log}"
    );
    assert!(!log.contains("not-bobs"), "the password is never logged");
    assert_eq!(
        rig.links(),
        0.0,
        "no upstream connection for a client that failed to log in"
    );

    // PLAIN is checked against the same salted entries.
    let out = rig.python("PLAIN", "alice", "wrong", LOGIN);
    assert_eq!(out["ok"], false, "{out:#}");
    assert_eq!(rig.links(), 0.0);
    let out = rig.python("PLAIN", "alice", "alice-secret", LOGIN);
    assert_eq!(out["ok"], true, "{out:#}\n{}", rig.proxy.log_tail(30));
    assert!(rig.links() > 0.0, "a logged-in client reaches the source");
}

#[test]
fn a_cluster_refusing_the_proxy_is_named_in_a_precise_error_until_its_password_file_is_fixed() {
    let rig = rig("refused*", "not-the-password", "", "", "");
    let out = rig.python("SCRAM-SHA-512", "bob", "bob-secret", LOGIN);
    assert_eq!(out["ok"], false, "{out:#}");
    wait_until(
        Duration::from_secs(20),
        "the source's refusal in the log",
        || {
            rig.proxy.log_tail(300).contains(
            "authentication failed: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256",
        )
        },
    );
    let log = rig.proxy.log_tail(300);
    let line = log
        .lines()
        .find(|l| l.contains("invalid credentials with SASL mechanism SCRAM-SHA-256"))
        .unwrap_or_default();
    assert!(
        line.contains("cluster \\\"old\\\"") || line.contains("cluster \"old\""),
        "names the cluster: {line}"
    );
    assert!(
        !log.contains("not-the-password"),
        "the password is never logged"
    );

    // The operator fixes the password file: the next login uses it, with
    // the same proxy process (the file is read at every login).
    let pid = rig.proxy.pid();
    secret_file(rig._dir.path(), "old.pw", "old-secret");
    let out = rig.python("SCRAM-SHA-512", "bob", "bob-secret", LOGIN);
    assert_eq!(out["ok"], true, "{out:#}\n{}", rig.proxy.log_tail(30));
    assert!(rig.links() > 0.0, "the client reached the source");
    assert_eq!(rig.proxy.pid(), pid, "no restart");
}

/// librdkafka: one record to each of `TOPICS`, with the delivery outcome.
const PRODUCE_EACH: &str = r#"
results = {}
def cb(err, msg):
    results[msg.topic()] = str(err) if err else "ok"
p = Producer({**CONF, "message.timeout.ms": 20000})
for t in [{TOPICS}]:
    p.produce(t, value=b"x", on_delivery=cb)
p.flush(30)
print(json.dumps(results))
"#;

#[test]
fn client_users_reach_each_cluster_as_their_mapped_principal_and_acl_refusals_pass_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let old_pw = secret_file(dir.path(), "alice-old.pw", "alice-old-secret");
    let new_pw = secret_file(dir.path(), "alice-new.pw", "alice-new-secret");
    let rig = rig(
        "acl*",
        "old-secret",
        ", upstream_identity: client",
        &format!(", users: {{ alice: {{ username: alice-old, password_file: \"{old_pw}\" }} }}"),
        &format!(", users: {{ alice: {{ username: alice-new, password_file: \"{new_pw}\" }} }}"),
    );
    let boot = source().bootstrap();
    for topic in ["acl-open", "acl-denied"] {
        let out = kafka_tool(
            "org.apache.kafka.tools.TopicCommand",
            &[
                "--bootstrap-server",
                &boot,
                "--create",
                "--topic",
                topic,
                "--partitions",
                "1",
            ],
        );
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // Everyone may use acl-denied, except that alice-old (alice's principal
    // on the source, not the proxy's) may not write to it.
    for rule in [
        &["--allow-principal", "User:*", "--operation", "All"][..],
        &["--deny-principal", "User:alice-old", "--operation", "Write"][..],
    ] {
        let mut args = vec![
            "--bootstrap-server",
            &boot,
            "--add",
            "--topic",
            "acl-denied",
        ];
        args.extend_from_slice(rule);
        let out = kafka_tool("org.apache.kafka.tools.AclCommand", &args);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let body = PRODUCE_EACH.replace("{TOPICS}", "\"acl-open\", \"acl-denied\"");
    let out = rig.python("SCRAM-SHA-256", "alice", "alice-secret", &body);
    assert_eq!(out["acl-open"], "ok", "{out:#}\n{}", rig.proxy.log_tail(30));
    assert!(
        out["acl-denied"]
            .as_str()
            .is_some_and(|e| e.contains("TOPIC_AUTHORIZATION_FAILED")),
        "the broker's refusal of alice-old passes back as it was: {out:#}"
    );
    // bob logs in with SCRAM and has no principal on the clusters: refused
    // at login, naming the cluster.
    let out = rig.python("SCRAM-SHA-512", "bob", "bob-secret", LOGIN);
    assert_eq!(out["ok"], false, "{out:#}");
    assert!(
        out["errors"]
            .to_string()
            .contains("cluster \\\"old\\\" has no credentials for user bob"),
        "{out:#}"
    );
}

/// SASL_SSL on both hops: clients log in over the migration's TLS
/// listener, and the proxy reaches the clusters only at their SASL_SSL
/// listeners (`clusters[].tls`), logging in there.
#[test]
fn clients_log_in_over_tls_with_sasl_ssl() {
    let file = cert_file;
    let rig = tls_rig("tls*", "");
    let tls = format!(
        "CONF.update({{\"security.protocol\": \"SASL_SSL\", \"ssl.ca.location\": \"{}\"}})\n",
        file("ca.pem")
    );
    let body = tls.clone()
        + &PRODUCE
            .replace("{N}", "50")
            .replace("{TOPIC}", "tls-events")
            .replace("{PREFIX}", "t");
    let out = rig.python("PLAIN", "alice", "alice-secret", &body);
    assert_eq!(out["delivered"], 50, "{out:#}\n{}", rig.proxy.log_tail(30));
    let body = tls
        + &READ_ALL
            .replace("{N}", "50")
            .replace("{TOPIC}", "tls-events")
            .replace("{GROUP}", "tls-reader");
    let read = rig.python("SCRAM-SHA-512", "bob", "bob-secret", &body);
    assert_eq!(read["records"], 50, "{read:#}");
    // Without TLS the listener does not speak Kafka at all.
    let out = rig.python("PLAIN", "alice", "alice-secret", LOGIN);
    assert_eq!(out["ok"], false, "{out:#}");
}

/// Mutual TLS on the migration's listener (`tls.client_ca_file`): a client
/// presenting a certificate the CA signed logs in and produces; one
/// without a certificate fails its handshake before any Kafka byte, which
/// is counted as a client auth error and logged.
#[test]
fn clients_without_a_certificate_are_refused_under_mutual_tls() {
    let file = cert_file;
    let rig = rig_with(
        "mtls*",
        "old-secret",
        "",
        "",
        "",
        &format!(
            "    tls: {{ cert_file: \"{}\", key_file: \"{}\", client_ca_file: \"{}\" }}\n",
            file("server.pem"),
            file("server.key"),
            file("ca.pem")
        ),
        None,
    );
    let refusals = || {
        rig.proxy.metric_sum(
            "cutover_request_errors_total",
            &["kind=\"auth\"", "cluster=\"client\""],
        )
    };
    let before = refusals();
    let no_cert = format!(
        "CONF.update({{\"security.protocol\": \"SASL_SSL\", \"ssl.ca.location\": \"{}\"}})\n",
        file("ca.pem")
    );
    let out = rig.python("PLAIN", "alice", "alice-secret", &(no_cert + LOGIN));
    assert_eq!(out["ok"], false, "{out:#}");
    wait_until(
        Duration::from_secs(10),
        "the refused handshake counted",
        || refusals() > before,
    );
    let log = rig.proxy.log_tail(200);
    assert!(
        log.contains("client certificate refused (mutual TLS)"),
        "{log}"
    );
    let with_cert = format!(
        "CONF.update({{\"security.protocol\": \"SASL_SSL\", \"ssl.ca.location\": \"{}\", \"ssl.certificate.location\": \"{}\", \"ssl.key.location\": \"{}\"}})\n",
        file("ca.pem"),
        file("server.pem"),
        file("server.key")
    );
    let body = with_cert
        + &PRODUCE
            .replace("{N}", "20")
            .replace("{TOPIC}", "mtls-events")
            .replace("{PREFIX}", "m");
    let out = rig.python("PLAIN", "alice", "alice-secret", &body);
    assert_eq!(out["delivered"], 20, "{out:#}\n{}", rig.proxy.log_tail(30));
}

/// librdkafka: a producer and a consumer kept busy for longer than two
/// broker session lifetimes, one record every 300 ms.
const LONG_LIVED: &str = r#"
p = Producer(CONF)
c = Consumer({**CONF, "group.id": "reauth", "auto.offset.reset": "earliest"})
c.subscribe(["reauth-events"])
sent, got, errors = 0, set(), []
end = time.time() + {SECONDS}
while time.time() < end:
    p.produce("reauth-events", value=f"r{sent}".encode())
    sent += 1
    p.poll(0)
    m = c.poll(0.3)
    if m is not None:
        if m.error(): errors.append(str(m.error()))
        else: got.add(m.value().decode())
left = p.flush(20)
deadline = time.time() + 30
while len(got) < sent and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error(): got.add(m.value().decode())
c.close()
print(json.dumps({"sent": sent, "left": left, "consumed": len(got), "errors": errors[:3]}))
"#;

#[test]
fn the_proxys_connections_log_in_again_before_the_brokers_sessions_expire() {
    let rig = rig("reauth*", "old-secret", "", "", "");
    let out = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &source().bootstrap(),
            "--create",
            "--topic",
            "reauth-events",
            "--partitions",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let seconds = (REAUTH_MS * 3 / 1000).to_string();
    let out = rig.python(
        "SCRAM-SHA-512",
        "bob",
        "bob-secret",
        &LONG_LIVED.replace("{SECONDS}", &seconds),
    );
    assert!(out["sent"].as_u64().unwrap_or(0) > 20, "{out:#}");
    assert_eq!(out["left"], 0, "{out:#}");
    assert_eq!(
        out["consumed"],
        out["sent"],
        "{out:#}\n{}",
        rig.proxy.log_tail(30)
    );
    assert_eq!(out["errors"], serde_json::json!([]), "{out:#}");
    let relogins = rig.proxy.metric_sum(
        "cutover_kafka_reauthentications_total",
        &["migration=\"events\"", "cluster=\"old\""],
    );
    assert!(relogins >= 2.0, "the links logged in again: {relogins}");
    for reason in ["upstream", "internal"] {
        let closed = rig.proxy.metric_sum(
            "cutover_client_connections_closed_total",
            &["migration=\"events\"", &format!("reason=\"{reason}\"")],
        );
        assert_eq!(
            closed,
            0.0,
            "no client connection closed for reason {reason}:\n{}",
            rig.proxy.log_tail(30)
        );
    }
}

#[test]
fn clients_log_in_again_on_their_connections_when_their_session_runs_out() {
    let rig = rig(
        "relogin*",
        "old-secret",
        // librdkafka logs in again at 90% of the lifetime; 8 s leaves its
        // timer 0.8 s of slack on a busy 2-core machine.
        ", client_session_lifetime: 8s",
        "",
        "",
    );
    let out = kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &source().bootstrap(),
            "--create",
            "--topic",
            "relogin-events",
            "--partitions",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let body = LONG_LIVED
        .replace("reauth-events", "relogin-events")
        .replace("\"reauth\"", "\"relogin\"")
        .replace("{SECONDS}", "20");
    let out = rig.python("SCRAM-SHA-512", "bob", "bob-secret", &body);
    assert_eq!(out["left"], 0, "{out:#}");
    assert_eq!(
        out["consumed"],
        out["sent"],
        "{out:#}\n{}",
        rig.proxy.log_tail(30)
    );
    assert_eq!(out["errors"], serde_json::json!([]), "{out:#}");
    let log = rig.proxy.log_tail(500);
    let again = log
        .lines()
        .filter(|l| l.contains("kafka client logged in") && l.contains("again=true"))
        .count();
    assert!(
        again >= 2,
        "librdkafka logged in again on its connections:\n{log}"
    );
    assert!(
        !log.contains("session expired without logging in again"),
        "{log}"
    );
    let closed = rig.proxy.metric_sum(
        "cutover_client_connections_closed_total",
        &["migration=\"events\"", "reason=\"auth\""],
    );
    assert_eq!(closed, 0.0, "{log}");
}
