//! RocketMQ rows of `alloc_per_request`: synchronous SEND_MESSAGE_V2 of one
//! 100-byte message to a `source`-state topic on Apache RocketMQ 5.3.3 (one
//! broker per cluster), one at a time on one connection to the proxy's
//! endpoint for the source broker, with the header as Apache's Java client
//! writes it (JSON, one-letter keys, properties with escaped separators),
//! and the same in the ROCKETMQ binary encoding. The client is raw: frames
//! built with the codec, no JVM client.

use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover_rocketmq::{Encoding, Header, RequestCode, ResponseCode, TopicRouteData, encode};

use super::common::wait_until;
use super::support::{RocketmqCluster, read_frame, rocketmq_migration, rpc};
use super::{Row, measure, start_proxy};

const TOPIC: &str = "alloc-bench";
const GROUP: &str = "alloc-bench-producer";

pub fn run(n: u64) -> Vec<Row> {
    let mut clusters =
        RocketmqCluster::start_all(&[("ClusterOld", &["broker-a"]), ("ClusterNew", &["broker-a"])]);
    let target = clusters.pop().expect("target cluster");
    let source = clusters.pop().expect("source cluster");
    source.create_topic(TOPIC, 4);
    let (listen, config) = rocketmq_migration(&source, &target, "");
    start_proxy(&config.write(), listen);
    let namesrv = format!("127.0.0.1:{listen}");
    // The route the proxy answers names its endpoint for broker-a.
    let mut endpoint = None;
    wait_until(
        "the proxy routes the topic",
        Duration::from_secs(60),
        || {
            endpoint = rpc(
                &namesrv,
                RequestCode::GET_ROUTEINFO_BY_TOPIC,
                &[("topic", TOPIC)],
                Encoding::Json,
            )
            .filter(|f| f.header.code == ResponseCode::SUCCESS)
            .and_then(|f| TopicRouteData::decode(&f.body).ok())
            .and_then(|route| {
                route
                    .broker_datas
                    .into_iter()
                    .find_map(|b| b.broker_addrs.get(&0).cloned())
            });
            endpoint.is_some()
        },
    );
    let endpoint = endpoint.expect("an endpoint");
    let mut client = TcpStream::connect(&endpoint).expect("connect to the proxy's broker endpoint");
    client.set_nodelay(true).expect("nodelay");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let body = vec![b'v'; 100];
    let mut rows = Vec::new();
    for (encoding, request) in [
        (
            Encoding::Json,
            "SEND_MESSAGE_V2 JSON header, 1 message of 100 B, sync",
        ),
        (
            Encoding::Binary,
            "SEND_MESSAGE_V2 binary header, 1 message of 100 B, sync",
        ),
    ] {
        rows.push(measure("RocketMQ", request, n, |i| {
            let frame = encode(&send_header(i), &body, encoding).expect("encode a send");
            std::io::Write::write_all(&mut client, &frame).expect("send");
            let answer = read_frame(&mut client).expect("the proxy's answer");
            assert_eq!(
                answer.header.code,
                ResponseCode::SUCCESS,
                "send answered {} ({:?})",
                answer.header.code,
                answer.header.remark
            );
        }));
    }
    drop((source, target));
    rows
}

/// A SEND_MESSAGE_V2 header as the Java client 5.3 fills it.
fn send_header(i: u64) -> Header {
    let mut h = Header::request(
        RequestCode::SEND_MESSAGE_V2,
        i32::try_from(i & 0x7fff_ffff).unwrap_or(0),
    );
    h.version = 475;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string();
    let queue = (i % 4).to_string();
    let properties = format!("UNIQ_KEY\u{1}ALLOC{i:016X}\u{2}WAIT\u{1}true\u{2}");
    for (k, v) in [
        ("a", GROUP),
        ("b", TOPIC),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", &queue),
        ("f", "0"),
        ("g", &now),
        ("h", "0"),
        ("i", &properties),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
        ("n", "broker-a"),
    ] {
        h.set_ext(k, v);
    }
    h
}
