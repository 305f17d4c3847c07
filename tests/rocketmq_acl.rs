//! RocketMQ ACL, black box: two Apache RocketMQ 5.3.3 clusters with ACL 2.0
//! authentication on their brokers and a different account on each, and
//! cutover between them with its own client account (`accounts_file`).
//! Clients sign as the proxy's account (which neither cluster knows); the
//! proxy checks that signature and signs every request it sends to a
//! cluster with that cluster's account: relayed, rewritten (target broker
//! names) and its own (routes, metadata, offsets, checks).
//!
//! The clusters also serve TLS, with a certificate of tests/support/tls.rs,
//! and the proxy reaches them over TLS only: the target's broker speaks
//! nothing else (`tls.server.mode=enforcing`), while the NameServers and
//! the source's broker serve plain text beside it (`permissive`), which
//! this file's own probes use. The last test puts clients on TLS to the
//! proxy too. Needs `tests/peers/install.sh rocketmq`.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cutover::rocketmq::acl::Credentials;
use cutover_rocketmq::{Encoding, Frame, Header, TopicRouteData, encode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{
    ClientLib, Config, CutoverProcess, RocketmqClient, RocketmqCluster, free_port_block,
    read_frame, rpc, wait_until,
};
use tempfile::TempDir;

const QUEUES: i32 = 4;
/// How long one step may take: two JVM clients starting, logging in over
/// TLS and rebalancing take seconds on a quiet machine but over a minute on
/// 2 cores shared with builds (measured: the first 50 messages of a TLS
/// walk not consumed within 60 s at load 20–30).
const STEP_DEADLINE: Duration = Duration::from_secs(150);
/// The clusters' own accounts (created by the brokers at first start).
const SOURCE_ACCOUNT: (&str, &str) = ("oldadmin", "oldsecret1");
const TARGET_ACCOUNT: (&str, &str) = ("newadmin", "newsecret2");
/// The account clients sign with towards the proxy; no cluster knows it.
const CLIENT_ACCOUNT: (&str, &str) = ("walker", "walkersecret");

/// Broker settings of ACL 2.0 authentication with `account` as the first
/// user (and the broker's own inner client).
fn acl_settings((user, secret): (&str, &str)) -> String {
    format!(
        "authenticationEnabled=true\n\
         authenticationProvider=org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider\n\
         authenticationMetadataProvider=org.apache.rocketmq.auth.authentication.provider.LocalAuthenticationMetadataProvider\n\
         initAuthenticationUser={{\"username\":\"{user}\",\"password\":\"{secret}\"}}\n\
         innerClientAuthenticationCredentials={{\"accessKey\":\"{user}\",\"secretKey\":\"{secret}\"}}\n"
    )
}

/// JVM properties of RocketMQ's TLS (`TlsSystemConfig`) in `mode`
/// (`enforcing`: TLS only, and a client certificate signed by the test CA
/// required; `permissive`: TLS and plain text, no client certificate
/// asked), with the certificate in `certs` and no config file. An
/// enforcing broker also registers with its NameServer over TLS.
fn tls_properties(certs: &Path, mode: &str) -> Vec<String> {
    let mut properties = if mode == "enforcing" {
        vec![
            "-Dtls.server.need.client.auth=require".to_owned(),
            "-Dtls.server.authClient=true".to_owned(),
            format!(
                "-Dtls.server.trustCertPath={}",
                certs.join("ca.pem").display()
            ),
        ]
    } else {
        Vec::new()
    };
    properties.extend([
        format!("-Dtls.server.mode={mode}"),
        "-Dtls.test.mode.enable=false".to_owned(),
        format!(
            "-Dtls.server.certPath={}",
            certs.join("server.pem").display()
        ),
        format!(
            "-Dtls.server.keyPath={}",
            certs.join("server.key").display()
        ),
        format!("-Dtls.config.file={}", certs.join("none").display()),
    ]);
    properties
}

/// The clusters of this binary and the certificates they serve.
struct Peers {
    source: RocketmqCluster,
    target: RocketmqCluster,
    certs: TempDir,
}

/// Source `AclOld` and target `AclNew` (one broker each, `broker-a` both,
/// so target names are rewritten), started once for this binary.
fn peers() -> &'static Peers {
    static PEERS: OnceLock<Peers> = OnceLock::new();
    PEERS.get_or_init(|| {
        let started = Instant::now();
        let certs = tempfile::tempdir().expect("certificate dir");
        support::tls::certificates(certs.path());
        let permissive = tls_properties(certs.path(), "permissive");
        let target = {
            let (namesrv, broker) = (
                permissive.clone(),
                tls_properties(certs.path(), "enforcing"),
            );
            std::thread::spawn(move || {
                RocketmqCluster::start_all_jvm(
                    &[("AclNew", &["broker-a"])],
                    &acl_settings(TARGET_ACCOUNT),
                    [&namesrv, &broker],
                )
                .pop()
                .expect("target cluster")
            })
        };
        let source = RocketmqCluster::start_all_jvm(
            &[("AclOld", &["broker-a"])],
            &acl_settings(SOURCE_ACCOUNT),
            [&permissive, &permissive],
        )
        .pop()
        .expect("source cluster");
        let target = target.join().expect("target cluster started");
        let _ = writeln!(
            std::io::stderr().lock(),
            "rocketmq acl: source and target clusters ready in {:.1?}",
            started.elapsed()
        );
        Peers {
            source,
            target,
            certs,
        }
    })
}

fn clusters() -> (&'static RocketmqCluster, &'static RocketmqCluster) {
    let peers = peers();
    (&peers.source, &peers.target)
}

/// One request signed as `account` on a fresh connection.
fn signed_rpc(addr: &str, code: i32, ext: &[(&str, &str)], account: (&str, &str)) -> Option<Frame> {
    let mut header = Header::request(code, 7);
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    Credentials::new(account.0, account.1).sign(&mut header, &[]);
    let frame = encode(&header, &[], Encoding::Json).ok()?;
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(&frame).ok()?;
    read_frame(&mut stream)
}

/// [`signed_rpc`] over TLS, trusting the test CA and presenting the test
/// certificate when `client_cert`; why it failed otherwise.
fn tls_signed_rpc(
    addr: &str,
    client_cert: bool,
    code: i32,
    ext: &[(&str, &str)],
    account: (&str, &str),
) -> Result<Frame, String> {
    let certs = peers().certs.path();
    let pem = |file: &str| certs.join(file);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem("ca.pem")).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = if client_cert {
        let chain = CertificateDer::pem_file_iter(pem("server.pem"))
            .map_err(|e| e.to_string())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_file(pem("server.key")).map_err(|e| e.to_string())?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?
    } else {
        builder.with_no_client_auth()
    };
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut header = Header::request(code, 7);
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    Credentials::new(account.0, account.1).sign(&mut header, &[]);
    let frame = encode(&header, &[], Encoding::Json).map_err(|e| e.to_string())?;
    tls.write_all(&frame).map_err(|e| e.to_string())?;
    read_frame(&mut tls).ok_or_else(|| "no answer".to_owned())
}

/// Creates `topic` on every broker of `cluster`, signed as `account`, and
/// waits for the NameServer's route.
fn create_topic(cluster: &RocketmqCluster, topic: &str, account: (&str, &str)) {
    let q = QUEUES.to_string();
    for b in &cluster.brokers {
        let answer = signed_rpc(
            &b.addr(),
            17,
            &support::create_topic_fields(topic, &q),
            account,
        )
        .expect("UPDATE_AND_CREATE_TOPIC answered");
        assert_eq!(
            answer.header.code, 0,
            "create {topic}: {:?}",
            answer.header.remark
        );
    }
    wait_until(STEP_DEADLINE, &format!("route of {topic}"), || {
        rpc(&cluster.namesrv(), 105, &[("topic", topic)], Encoding::Json)
            .is_some_and(|f| f.header.code == 0)
    });
}

/// Sum of `topic`'s max offsets on `cluster`, asked as `account`.
fn max_offsets(cluster: &RocketmqCluster, topic: &str, account: (&str, &str)) -> i64 {
    let mut sum = 0;
    for b in &cluster.brokers {
        for q in 0..QUEUES {
            sum += signed_rpc(
                &b.addr(),
                30,
                &[("topic", topic), ("queueId", &q.to_string())],
                account,
            )
            .and_then(|f| f.header.ext("offset").and_then(|o| o.parse::<i64>().ok()))
            .unwrap_or(0);
        }
    }
    sum
}

fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.display().to_string()
}

/// cutover between the ACL clusters, its clients checked against
/// [`CLIENT_ACCOUNT`].
struct AclRig {
    proxy: CutoverProcess,
    namesrv: String,
    dir: TempDir,
    /// The CA clients check the proxy's certificate with, when on TLS.
    tls_ca: Option<String>,
}

impl AclRig {
    fn start() -> AclRig {
        AclRig::start_on(false)
    }

    /// The proxy reaches the clusters over TLS (`clusters[].tls`), checking
    /// their certificates; with `tls`, clients reach the proxy over TLS too
    /// (`migrations[].tls`).
    fn start_on(tls: bool) -> AclRig {
        AclRig::start_as(tls, SOURCE_ACCOUNT)
    }

    /// [`AclRig::start_on`], signing towards the source as `source_account`
    /// (its secret in the file `old.secret` of the rig's directory).
    fn start_as(tls: bool, source_account: (&str, &str)) -> AclRig {
        let (source, target) = clusters();
        let certs = peers().certs.path();
        // The test's server certificate doubles as the proxy's client one.
        let cluster_tls = format!(
            ", tls: {{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}",
            certs.join("ca.pem").display(),
            certs.join("server.pem").display(),
            certs.join("server.key").display()
        );
        let listener_tls = if tls {
            format!(
                "\x20   tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
                certs.join("server.pem").display(),
                certs.join("server.key").display()
            )
        } else {
            String::new()
        };
        static STARTING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let old = secret_file(dir.path(), "old.secret", &format!("{}\n", source_account.1));
        let new = secret_file(dir.path(), "new.secret", &format!("{}\n", TARGET_ACCOUNT.1));
        let accounts = secret_file(
            dir.path(),
            "accounts",
            &format!(
                "# clients of orders\n{} {}\n",
                CLIENT_ACCOUNT.0, CLIENT_ACCOUNT.1
            ),
        );
        let listen = free_port_block(1);
        let base = free_port_block(8);
        let config = Config::new().append(&format!(
            "clusters:\n\
             \x20 - {{ name: old, protocol: rocketmq, endpoints: [\"{}\"], auth: {{ username: {}, password_file: \"{old}\" }}{cluster_tls} }}\n\
             \x20 - {{ name: new, protocol: rocketmq, endpoints: [\"{}\"], auth: {{ username: {}, password_file: \"{new}\" }}{cluster_tls} }}\n\
             migrations:\n\
             \x20 - name: orders\n\
             \x20   protocol: rocketmq\n\
             \x20   listen: 127.0.0.1:{listen}\n\
             \x20   source: old\n\
             \x20   target: new\n\
             \x20   topics: [ {{ match: \"*\" }} ]\n\
             \x20   rocketmq: {{ brokers_listen_base: {base}, max_brokers: 4, quiet_window: 1s, accounts_file: \"{accounts}\" }}\n\
             {listener_tls}",
            source.namesrv(),
            source_account.0,
            target.namesrv(),
            TARGET_ACCOUNT.0,
        ));
        AclRig {
            proxy: CutoverProcess::start(config),
            namesrv: format!("127.0.0.1:{listen}"),
            dir,
            tls_ca: tls.then(|| certs.join("ca.pem").display().to_string()),
        }
    }

    fn client(
        &self,
        mode: &str,
        id: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> RocketmqClient {
        self.client_on(ClientLib::V5, mode, id, topic, group, extra)
    }

    /// A client on `lib` signing as [`CLIENT_ACCOUNT`], on TLS when the rig is.
    fn client_on(
        &self,
        lib: ClientLib,
        mode: &str,
        id: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> RocketmqClient {
        let mut args = vec![
            "--namesrv",
            self.namesrv.as_str(),
            "--topic",
            topic,
            "--group",
            group,
            "--access-key",
            CLIENT_ACCOUNT.0,
            "--secret-key",
            CLIENT_ACCOUNT.1,
        ];
        if let Some(ca) = &self.tls_ca {
            args.extend(["--tls-ca", ca.as_str()]);
        }
        args.extend_from_slice(extra);
        RocketmqClient::start_on(lib, self.dir.path(), mode, id, &args)
    }

    fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = self.proxy.ctl(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn step(&self, topic: &str, action: &str, expect: &str) {
        let mut last = String::new();
        wait_until(
            STEP_DEADLINE,
            &format!("{action} {topic} to {expect}"),
            || {
                let (code, out) = self.ctl(&[action, "orders", topic]);
                last = out;
                code == 0
            },
        );
        assert!(last.contains(expect), "{action}: {last}");
    }

    /// The address the proxy gives clients for the source broker of `topic`.
    fn broker_endpoint(&self, topic: &str) -> String {
        let mut addr = None;
        wait_until(STEP_DEADLINE, "a route from the proxy", || {
            addr = signed_rpc(&self.namesrv, 105, &[("topic", topic)], CLIENT_ACCOUNT)
                .filter(|f| f.header.code == 0)
                .and_then(|f| TopicRouteData::decode(&f.body).ok())
                .and_then(|r| r.broker_datas.first()?.master_addr().map(str::to_owned));
            addr.is_some()
        });
        addr.expect("route")
    }
}

fn progress(consumer: &RocketmqClient, more: usize, what: &str) {
    let start = consumer.lines().len();
    wait_until(
        STEP_DEADLINE,
        &format!("{more} more messages consumed {what}"),
        || consumer.lines().len() >= start + more,
    );
}

/// A signing producer and push consumer on `topic` through `rig` while
/// the topic walks from `source` to `last`; returns the acknowledged
/// bodies and how many of them were never consumed.
fn walk(rig: &AclRig, topic: &str, last: &str) -> (usize, usize) {
    let started = Instant::now();
    let (source, _) = clusters();
    create_topic(source, topic, SOURCE_ACCOUNT);
    let mut consumer = rig.client(
        "consume",
        &format!("{topic}-c"),
        topic,
        &format!("{topic}-readers"),
        &[],
    );
    let mut producer = rig.client(
        "produce",
        &format!("{topic}-p"),
        topic,
        &format!("{topic}-writers"),
        // A loaded machine can hold one send past the client's 3 s default;
        // that says nothing about signing, so give sends room.
        &["--interval-ms", "5", "--send-timeout-ms", "15000"],
    );
    progress(&consumer, 50, "in source");

    let (code, out) = rig.ctl(&["migrate-metadata", "orders", topic]);
    assert_eq!(code, 0, "migrate-metadata: {out}");
    for state in ["dual_read", "dual_write", "cutover", "target"] {
        rig.step(topic, "advance", state);
        if state == "dual_write" {
            wait_until(STEP_DEADLINE, "messages written to the target", || {
                produced_to(rig, topic, "new") > 20.0
            });
        }
        progress(&consumer, 30, &format!("in {state}"));
        if state == last {
            break;
        }
    }

    let produced = producer.stop(Duration::from_secs(30));
    let acked: BTreeSet<String> = producer.lines().into_iter().collect();
    wait_until(
        Duration::from_secs(60),
        "every acknowledged message consumed",
        || {
            let seen: BTreeSet<String> = consumer.lines().into_iter().collect();
            acked.is_subset(&seen)
        },
    );
    let consumed = consumer.stop(Duration::from_secs(30));
    let seen: BTreeSet<String> = consumer.lines().into_iter().collect();
    let lost = acked.difference(&seen).count();
    let _ = writeln!(
        std::io::stderr().lock(),
        "rocketmq acl walk of {topic} to {last}: {} acknowledged, {lost} lost, producer {produced}, consumer {consumed}, {:.1?}",
        acked.len(),
        started.elapsed()
    );
    assert!(max_offsets(source, topic, SOURCE_ACCOUNT) > 0);
    assert!(produced_to(rig, topic, "new") > 0.0);
    let connections = upstream_connections(&rig.proxy);
    assert!(connections >= 4.0, "TLS connections opened: {connections}");
    assert_eq!(
        rig.proxy
            .metric_sum("cutover_upstream_connect_errors_total", &[]),
        0.0,
        "a TLS handshake with a cluster failed:\n{}",
        rig.proxy.log_tail(50)
    );
    (acked.len(), lost)
}

/// Sends of `topic` the proxy saw acknowledged by `cluster` (the target's
/// broker speaks TLS only, so this file cannot ask it directly).
fn produced_to(rig: &AclRig, topic: &str, cluster: &str) -> f64 {
    rig.proxy.metric_sum(
        "cutover_rocketmq_messages_total",
        &[
            &format!("topic=\"{topic}\""),
            &format!("cluster=\"{cluster}\""),
            "direction=\"produced\"",
        ],
    )
}

/// Signing clients walk a topic source → target through the proxy (plain
/// text to the proxy, TLS from it): every acknowledged message is consumed,
/// though neither cluster knows the clients' account, and the proxy's own
/// requests (metadata copy, route and offset checks) pass the clusters'
/// authentication.
#[test]
fn signed_clients_walk_source_to_target_with_no_loss() {
    let rig = AclRig::start();
    let (acked, lost) = walk(&rig, "acl-orders", "target");
    assert_eq!(lost, 0);
    assert!(acked > 100, "too few messages: {acked}");
    assert!(
        auth_refusals(&rig.proxy) == 0.0,
        "a signed client was refused"
    );
}

/// TLS on both hops, with signing clients: Apache's Java client checks the
/// proxy's certificate (`--tls-ca`), the proxy checks every NameServer's
/// and broker's against `clusters[].tls.ca_file` (the target's broker
/// speaks TLS only and requires the proxy's client certificate), and a
/// topic walks `source → target` (both clusters written on the way) with
/// every acknowledged message consumed. A plain-text client gets no answer from
/// the TLS listener, nor from the target's broker.
#[test]
fn tls_clients_and_tls_clusters_walk_with_no_loss() {
    let rig = AclRig::start_on(true);
    assert!(
        signed_rpc(&rig.namesrv, 105, &[("topic", "acl-tls")], CLIENT_ACCOUNT).is_none(),
        "the TLS listener answered plain text"
    );
    let (_, target) = clusters();
    assert!(
        signed_rpc(
            &target.brokers[0].addr(),
            30,
            &[("topic", "acl-tls"), ("queueId", "0")],
            TARGET_ACCOUNT
        )
        .is_none(),
        "the enforcing broker answered plain text"
    );
    let (acked, lost) = walk(&rig, "acl-tls", "target");
    assert_eq!(lost, 0);
    assert!(acked > 50, "too few messages: {acked}");
    // What the proxy presented: the target's broker wants a client
    // certificate signed by the CA, and answers nothing without one.
    let ask = |client_cert| {
        tls_signed_rpc(
            &target.brokers[0].addr(),
            client_cert,
            30,
            &[("topic", "acl-tls"), ("queueId", "0")],
            TARGET_ACCOUNT,
        )
    };
    let answer = ask(true).expect("an answer over mutual TLS");
    assert_eq!(answer.header.code, 0, "{:?}", answer.header.remark);
    assert!(ask(false).is_err(), "answered without a client certificate");
}

/// Apache's 4.9.8 client signs with its own `AclClientRPCHook` (from the
/// request's header object rather than the encoded fields): the proxy's
/// check accepts it, and a producer's messages reach a push consumer
/// through the proxy, every one of them.
#[test]
fn java_4_9_client_signs_and_is_relayed() {
    const TOPIC: &str = "acl-v4";
    const COUNT: usize = 60;
    let rig = AclRig::start();
    let (source, _) = clusters();
    create_topic(source, TOPIC, SOURCE_ACCOUNT);
    let mut consumer = rig.client_on(
        ClientLib::V4,
        "consume",
        "acl-v4-c",
        TOPIC,
        "acl-v4-readers",
        &[],
    );
    let mut producer = rig.client_on(
        ClientLib::V4,
        "produce",
        "acl-v4-p",
        TOPIC,
        "acl-v4-writers",
        &["--count", &COUNT.to_string(), "--send-timeout-ms", "15000"],
    );
    wait_until(
        STEP_DEADLINE,
        "the 4.9.8 producer sends its messages",
        || producer.exited(),
    );
    let summary = producer.stop(Duration::from_secs(10));
    assert_eq!(summary["acked"], COUNT, "{summary}");
    let acked: BTreeSet<String> = producer.lines().into_iter().collect();
    wait_until(STEP_DEADLINE, "the 4.9.8 consumer reads them all", || {
        let seen: BTreeSet<String> = consumer.lines().into_iter().collect();
        acked.is_subset(&seen)
    });
    consumer.stop(Duration::from_secs(30));
    assert_eq!(
        auth_refusals(&rig.proxy),
        0.0,
        "a 4.9.8 request was refused"
    );
}

/// The proxy's `cutover_upstream_connections_total`: connections it opened
/// to either cluster (NameServers and brokers).
fn upstream_connections(proxy: &CutoverProcess) -> f64 {
    proxy.metric_sum("cutover_upstream_connections_total", &[])
}

/// Refused client signatures counted by the proxy.
fn auth_refusals(proxy: &CutoverProcess) -> f64 {
    proxy.metric_sum(
        "cutover_request_errors_total",
        &["kind=\"auth\"", "migration=\"orders\""],
    )
}

/// The remark of a NO_PERMISSION (16) answer, which must be one.
fn refused(answer: Option<Frame>, what: &str) -> String {
    let answer = answer.unwrap_or_else(|| panic!("{what}: no answer"));
    let remark = answer.header.remark.clone().unwrap_or_default();
    assert_eq!(answer.header.code, 16, "{what}: {remark}");
    remark
}

/// A wrong secret, an unknown account or no signature gets RocketMQ's own
/// NO_PERMISSION answer from the proxy, at its NameServer and at a broker
/// endpoint, and from Apache's Java client signing with a wrong secret:
/// no upstream connection is opened and no byte relayed, every refusal is
/// counted and logged with the client's address, and repeated failures are
/// held back. The right secret is then relayed, re-signed as the cluster's
/// account (which the broker accepts and the client's account it refuses).
#[test]
fn wrong_secret_is_refused_without_reaching_the_cluster() {
    const TOPIC: &str = "acl-refused";
    let rig = AclRig::start();
    let (source, _) = clusters();
    create_topic(source, TOPIC, SOURCE_ACCOUNT);
    let endpoint = rig.broker_endpoint(TOPIC);
    let ext = [("topic", TOPIC), ("queueId", "0")];
    // The broker itself refuses unsigned requests and the clients' account.
    let broker = source.brokers[0].addr();
    refused(
        rpc(&broker, 30, &ext, Encoding::Json),
        "unsigned, at the broker",
    );
    refused(
        signed_rpc(&broker, 30, &ext, CLIENT_ACCOUNT),
        "client account, at the broker",
    );
    let (bytes, connections, refusals) = (
        rig.proxy.bytes_upstream(),
        upstream_connections(&rig.proxy),
        auth_refusals(&rig.proxy),
    );
    assert!(
        connections >= 2.0,
        "start-up probes and the route lookup connected: {connections}"
    );

    let wrong = (CLIENT_ACCOUNT.0, "not-the-secret");
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let remark = refused(signed_rpc(&endpoint, 30, &ext, wrong), "wrong secret");
        took.push(started.elapsed());
        assert_eq!(
            remark,
            format!("check signature failed for AccessKey {}.", CLIENT_ACCOUNT.0)
        );
    }
    assert!(
        took[..3].iter().all(|t| *t < Duration::from_millis(150)),
        "the first failures are answered at once: {took:?}"
    );
    assert!(
        took[3] >= Duration::from_millis(190) && took[4] >= Duration::from_millis(390),
        "later failures from the address are held back, growing: {took:?}"
    );
    let remark = refused(rpc(&endpoint, 30, &ext, Encoding::Json), "unsigned");
    assert!(remark.contains("not signed"), "{remark}");
    let remark = refused(
        signed_rpc(&endpoint, 30, &ext, ("mallory", "x")),
        "unknown account",
    );
    assert_eq!(remark, "User:mallory is not found.");
    let remark = refused(
        signed_rpc(&rig.namesrv, 105, &[("topic", TOPIC)], wrong),
        "wrong secret at the NameServer",
    );
    assert!(remark.contains("signature"), "{remark}");

    // Apache's client with a wrong secret: every request refused, nothing sent.
    let mut producer = RocketmqClient::start(
        rig.dir.path(),
        "produce",
        "acl-wrong",
        &[
            "--namesrv",
            &rig.namesrv,
            "--topic",
            TOPIC,
            "--group",
            "acl-wrong",
            "--access-key",
            CLIENT_ACCOUNT.0,
            "--secret-key",
            "not-the-secret",
            "--count",
            "2",
        ],
    );
    wait_until(
        Duration::from_secs(120),
        "the wrong-secret producer gives up",
        || producer.exited(),
    );
    let summary = producer.stop(Duration::from_secs(10));
    assert_eq!(summary["acked"], 0, "{summary}");
    assert_eq!(summary["failed"], 2, "{summary}");
    assert!(producer.lines().is_empty());

    let counted = auth_refusals(&rig.proxy) - refusals;
    assert!(counted >= 9.0, "every refusal counted: {counted}");
    assert_eq!(
        upstream_connections(&rig.proxy),
        connections,
        "a refused client made the proxy connect to a cluster"
    );
    assert_eq!(
        rig.proxy.bytes_upstream(),
        bytes,
        "a refused request reached a cluster"
    );
    let closed = rig.proxy.metric_sum(
        "cutover_client_connections_closed_total",
        &["reason=\"auth\""],
    );
    assert!(closed >= 8.0, "refused connections closed: {closed}");
    let log = rig.proxy.log_tail(400);
    assert!(
        log.lines().any(
            |l| l.contains("rocketmq client authentication failed") && l.contains("127.0.0.1:")
        ),
        "{log}"
    );

    // The right secret passes and the broker, which does not know the
    // client's account, accepts the proxy's signature.
    let answer = signed_rpc(&endpoint, 30, &ext, CLIENT_ACCOUNT).expect("an answer");
    assert_eq!(answer.header.code, 0, "{:?}", answer.header.remark);
    assert!(rig.proxy.bytes_upstream() > bytes);
    assert!(upstream_connections(&rig.proxy) > connections);
}

/// Creates (`AUTH_CREATE_USER`, 3001) or updates (`AUTH_UPDATE_USER`,
/// 3002) a user of the broker at `addr`, as the source's own account would
/// with `mqadmin createUser` / `updateUser`.
fn set_user(addr: &str, code: i32, (user, secret): (&str, &str)) {
    let mut header = Header::request(code, 11);
    header.set_ext("username", user);
    let body =
        serde_json::json!({"username": user, "password": secret, "userType": "Normal"}).to_string();
    Credentials::new(SOURCE_ACCOUNT.0, SOURCE_ACCOUNT.1).sign(&mut header, body.as_bytes());
    let frame = encode(&header, body.as_bytes(), Encoding::Json).expect("encode");
    let mut stream = TcpStream::connect(addr).expect("connect to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(&frame).expect("write");
    let answer = read_frame(&mut stream).expect("an answer");
    assert_eq!(answer.header.code, 0, "{code}: {:?}", answer.header.remark);
}

/// A connection to the proxy at `endpoint` whose first request (signed
/// as the client) was served.
fn admitted_connection(endpoint: &str, ext: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(endpoint).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let answer = on_connection(&mut stream, 1, ext, CLIENT_ACCOUNT);
    assert_eq!(answer.header.code, 0, "{:?}", answer.header.remark);
    stream
}

/// One more request (GET_MAX_OFFSET) signed as `account` on an open
/// connection.
fn on_connection(
    stream: &mut TcpStream,
    opaque: i32,
    ext: &[(&str, &str)],
    account: (&str, &str),
) -> Frame {
    let mut header = Header::request(30, opaque);
    for (k, v) in ext {
        header.set_ext(*k, *v);
    }
    Credentials::new(account.0, account.1).sign(&mut header, &[]);
    let frame = encode(&header, &[], Encoding::Json).expect("encode");
    stream.write_all(&frame).expect("write to the proxy");
    read_frame(stream).expect("an answer on the same connection")
}

/// A cluster's secret rotates without a restart, and connections already
/// open follow it: every RocketMQ request is signed, so unlike a Kafka
/// login the new secret must reach requests on open connections. The
/// cluster first stops accepting the old secret (checked at the broker),
/// which the proxy's requests then meet; once the secret file is
/// rewritten, the same client connection is served again.
#[test]
fn a_rotated_cluster_secret_reaches_open_connections_without_a_restart() {
    const TOPIC: &str = "acl-rotate";
    const BEFORE: (&str, &str) = ("rotator", "rotsecret1");
    const AFTER: (&str, &str) = ("rotator", "rotsecret2");
    let (source, _) = clusters();
    let broker = source.brokers[0].addr();
    set_user(&broker, 3001, BEFORE);
    create_topic(source, TOPIC, SOURCE_ACCOUNT);
    let rig = AclRig::start_as(false, BEFORE);
    let endpoint = rig.broker_endpoint(TOPIC);
    let ext = [("topic", TOPIC), ("queueId", "0")];
    let mut stream = admitted_connection(&endpoint, &ext);

    set_user(&broker, 3002, AFTER);
    wait_until(
        Duration::from_secs(30),
        "the broker refusing the old secret",
        || signed_rpc(&broker, 30, &ext, BEFORE).is_some_and(|f| f.header.code == 16),
    );
    let answer = on_connection(&mut stream, 2, &ext, CLIENT_ACCOUNT);
    assert_eq!(
        answer.header.code, 16,
        "the proxy still signs with the old secret: {:?}",
        answer.header.remark
    );
    secret_file(rig.dir.path(), "old.secret", &format!("{}\n", AFTER.1));
    let mut opaque = 3;
    wait_until(
        Duration::from_secs(10),
        "the open connection served with the new secret",
        || {
            opaque += 1;
            on_connection(&mut stream, opaque, &ext, CLIENT_ACCOUNT)
                .header
                .code
                == 0
        },
    );
    let log = rig.proxy.log_tail(400);
    assert!(log.contains("the cluster's secret file changed"), "{log}");
}

/// A later request of an admitted connection that fails the signature
/// check gets RocketMQ's NO_PERMISSION answer (its own opaque, the
/// broker's wording), as a first request would, and then the connection
/// closes, counted with reason `auth`.
#[test]
fn a_refused_later_request_is_answered_then_closed() {
    const TOPIC: &str = "acl-later";
    let rig = AclRig::start();
    let (source, _) = clusters();
    create_topic(source, TOPIC, SOURCE_ACCOUNT);
    let endpoint = rig.broker_endpoint(TOPIC);
    let ext = [("topic", TOPIC), ("queueId", "0")];
    let mut stream = admitted_connection(&endpoint, &ext);
    let closed = || {
        rig.proxy.metric_sum(
            "cutover_client_connections_closed_total",
            &["reason=\"auth\""],
        )
    };
    let before = closed();
    let wrong = (CLIENT_ACCOUNT.0, "not-the-secret");
    let answer = on_connection(&mut stream, 2, &ext, wrong);
    assert_eq!(answer.header.opaque, 2);
    let remark = refused(Some(answer), "a later request with a wrong secret");
    assert_eq!(
        remark,
        format!("check signature failed for AccessKey {}.", CLIENT_ACCOUNT.0)
    );
    assert!(
        read_frame(&mut stream).is_none(),
        "the connection closes after the refusal"
    );
    wait_until(Duration::from_secs(10), "the close counted", || {
        closed() > before
    });
}
