//! `/metrics` exposes every metric in the catalogue (src/metrics.rs), so
//! the README table and the Grafana dashboard never point at nothing.

mod support;

use std::time::Duration;

use cutover::metrics::CATALOGUE;
use support::{RedisRig, wait_until};

#[test]
fn every_catalogued_metric_is_exported() {
    let rig = RedisRig::start("");
    assert_eq!(rig.cli(&["set", "k", "v"]), "OK");
    let missing = || -> Vec<&str> {
        let text = rig.proxy.scrape();
        CATALOGUE
            .iter()
            .map(|def| def.name)
            // A Redis rig has no Kafka or RocketMQ topic to label these
            // with; tests/kafka_splice.rs and tests/rocketmq_walk.rs check
            // them against their own rigs.
            .filter(|name| !name.starts_with("cutover_rocketmq_"))
            .filter(|name| !name.starts_with("cutover_kafka_"))
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
