//! `/metrics` exposes every metric in the catalogue (src/metrics.rs), so
//! the README table and the Grafana dashboard never point at nothing.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use cutover::metrics::CATALOGUE;
use support::{RedisRig, wait_until};

fn scrape(rig: &RedisRig) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(rig.proxy.socket()).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn every_catalogued_metric_is_exported() {
    let rig = RedisRig::start("");
    assert_eq!(rig.cli(&["set", "k", "v"]), "OK");
    let missing = || -> Vec<&str> {
        let text = scrape(&rig);
        CATALOGUE
            .iter()
            .map(|def| def.name)
            // A Redis rig has no RocketMQ topic to label these with;
            // tests/rocketmq_proxy.rs checks them against a RocketMQ rig.
            .filter(|name| !name.starts_with("cutover_rocketmq_"))
            .filter(|name| {
                !text
                    .lines()
                    .any(|l| l.starts_with(name) && !l.starts_with('#'))
            })
            .collect()
    };
    let last = std::cell::RefCell::new(Vec::new());
    let appeared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            Duration::from_secs(10),
            "every catalogued metric appears on /metrics",
            || {
                let now = missing();
                let done = now.is_empty();
                *last.borrow_mut() = now;
                done
            },
        );
    }));
    assert!(appeared.is_ok(), "not exported: {:?}", last.borrow());
}
