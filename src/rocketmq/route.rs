//! The merged view clients get from the proxy's NameServer: which cluster's
//! queues a topic shows in each state, with which permission bits
//! (DESIGN.md §2), target broker names suffixed and every broker address
//! replaced by the proxy's endpoint for it. Pure: the caller supplies the
//! upstream answers and the endpoint lookup.
//!
//! | state        | source queues | target queues |
//! |--------------|---------------|---------------|
//! | `source`     | RW            | absent        |
//! | `dual_read`  | RW            | R             |
//! | `dual_write` | RW            | RW            |
//! | `cutover`    | R             | RW            |
//! | `target`     | absent        | RW            |
//!
//! A queue never gains a bit its cluster did not grant (an operator's
//! read-only topic stays read-only); only the table's bits are taken away.

use cutover_rocketmq::{
    BrokerData, ClusterInfo, PERM_INHERIT, PERM_READ, PERM_WRITE, TopicRouteData,
};

use super::endpoints::Side;
use crate::migration::State;

/// How a topic's route is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// A migrated topic in this state.
    Migrated(State),
    /// Not migrated (no pattern matches, or a system topic such as
    /// `TBW102`): the source's route, addresses rewritten. Writes must never
    /// reach the target by way of a topic the operator did not move.
    SourceOnly,
    /// A consumer group's `%RETRY%`/`%DLQ%` topic: whatever either cluster
    /// has, as it has it, so retried messages are consumed wherever they
    /// were stored.
    Union,
}

/// Whether a side takes part, and whether its answer is required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// Permission bits the side may keep; 0 = absent.
    pub mask: i32,
    /// The route cannot be answered without this side.
    pub required: bool,
}

const RW: i32 = PERM_READ | PERM_WRITE;

impl Plan {
    /// What is needed from `side`.
    #[must_use]
    pub fn need(self, side: Side) -> Need {
        let (mask, required) = match (self, side) {
            (Plan::SourceOnly, Side::Source) => (RW, true),
            (Plan::SourceOnly, Side::Target) => (0, false),
            (Plan::Union, _) => (RW, false),
            (Plan::Migrated(state), side) => match (state, side) {
                (State::Source, Side::Source) => (RW, true),
                (State::Source, Side::Target) | (State::Target, Side::Source) => (0, false),
                (State::DualRead, Side::Source) | (State::DualWrite, Side::Source) => (RW, true),
                (State::DualRead, Side::Target) => (PERM_READ, false),
                (State::DualWrite, Side::Target) => (RW, true),
                (State::Cutover, Side::Source) => (PERM_READ, false),
                (State::Cutover, Side::Target) | (State::Target, Side::Target) => (RW, true),
            },
        };
        Need { mask, required }
    }
}

/// Merges the sides' routes of one topic (`None`: that side has no such
/// topic or was not asked). `name(side, real)` gives the name clients see;
/// `addr(side, real_name, real_addr)` the proxy endpoint (`host:port`).
/// Returns `None` when no side contributes a queue.
///
/// # Errors
/// Whatever `addr` fails with (no endpoint could be opened): the route must
/// then not be answered, or clients would be sent around the proxy.
pub fn merge_route<E>(
    plan: Plan,
    source: Option<TopicRouteData>,
    target: Option<TopicRouteData>,
    name: &dyn Fn(Side, &str) -> String,
    addr: &mut dyn FnMut(Side, &str, &str) -> Result<String, E>,
) -> Result<Option<TopicRouteData>, E> {
    let mut out: Option<TopicRouteData> = None;
    for (side, route) in [(Side::Source, source), (Side::Target, target)] {
        let need = plan.need(side);
        let Some(route) = route else { continue };
        if need.mask == 0 {
            continue;
        }
        let merged = out.get_or_insert_with(|| TopicRouteData {
            order_topic_conf: route.order_topic_conf.clone(),
            extra: route.extra.clone(),
            ..TopicRouteData::default()
        });
        for mut queue in route.queue_datas {
            queue.perm = queue.perm & need.mask | queue.perm & PERM_INHERIT;
            queue.broker_name = name(side, &queue.broker_name);
            merged.queue_datas.push(queue);
        }
        for broker in route.broker_datas {
            merged
                .broker_datas
                .push(rewrite_broker(side, broker, name, addr)?);
        }
    }
    Ok(out.filter(|r| !r.queue_datas.is_empty()))
}

fn rewrite_broker<E>(
    side: Side,
    mut broker: BrokerData,
    name: &dyn Fn(Side, &str) -> String,
    addr: &mut dyn FnMut(Side, &str, &str) -> Result<String, E>,
) -> Result<BrokerData, E> {
    for real in broker.broker_addrs.values_mut() {
        *real = addr(side, &broker.broker_name, real)?;
    }
    broker.broker_name = name(side, &broker.broker_name);
    Ok(broker)
}

/// Merges both clusters' broker tables: every broker of either side,
/// target names suffixed, addresses replaced.
///
/// # Errors
/// Whatever `addr` fails with.
pub fn merge_cluster_info<E>(
    source: Option<ClusterInfo>,
    target: Option<ClusterInfo>,
    name: &dyn Fn(Side, &str) -> String,
    addr: &mut dyn FnMut(Side, &str, &str) -> Result<String, E>,
) -> Result<ClusterInfo, E> {
    let mut out = ClusterInfo::default();
    for (side, info) in [(Side::Source, source), (Side::Target, target)] {
        let Some(info) = info else { continue };
        if out.extra.is_empty() {
            out.extra = info.extra.clone();
        }
        for (_, broker) in info.broker_addr_table {
            let broker = rewrite_broker(side, broker, name, addr)?;
            out.broker_addr_table
                .insert(broker.broker_name.clone(), broker);
        }
        for (cluster, names) in info.cluster_addr_table {
            out.cluster_addr_table
                .entry(cluster)
                .or_default()
                .extend(names.iter().map(|n| name(side, n)));
        }
    }
    Ok(out)
}

/// Topics the proxy never migrates: the broker's own and RocketMQ's
/// internal ones. `%RETRY%`/`%DLQ%` topics follow [`Plan::Union`].
#[must_use]
pub fn is_system_topic(topic: &str) -> bool {
    const EXACT: &[&str] = &[
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "BenchmarkTest",
        "OFFSET_MOVED_EVENT",
        "SELF_TEST_TOPIC",
        "RMQ_SYS_TRACE_TOPIC",
    ];
    EXACT.contains(&topic)
        || topic.starts_with("RMQ_SYS_")
        || topic.starts_with("rmq_sys_")
        || topic.ends_with("_REPLY_TOPIC")
}

/// Whether `topic` is a consumer group's retry or dead-letter topic.
#[must_use]
pub fn is_group_topic(topic: &str) -> bool {
    topic.starts_with("%RETRY%") || topic.starts_with("%DLQ%")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cutover_rocketmq::QueueData;

    use super::*;

    fn route(broker: &str, addr: &str, queues: i32) -> TopicRouteData {
        TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: broker.into(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                ..QueueData::default()
            }],
            broker_datas: vec![BrokerData {
                cluster: "c".into(),
                broker_name: broker.into(),
                broker_addrs: BTreeMap::from([(0, addr.to_owned())]),
                ..BrokerData::default()
            }],
            ..TopicRouteData::default()
        }
    }

    fn name(side: Side, real: &str) -> String {
        match side {
            Side::Source => real.to_owned(),
            Side::Target => format!("{real}-t"),
        }
    }

    fn merged(plan: Plan) -> Option<TopicRouteData> {
        let mut addr = |side: Side, _: &str, real: &str| -> Result<String, ()> {
            Ok(format!("proxy-{}-{real}", side.as_str()))
        };
        merge_route(
            plan,
            Some(route("a", "s:1", 4)),
            Some(route("a", "t:1", 2)),
            &name,
            &mut addr,
        )
        .unwrap()
    }

    fn perms(r: &TopicRouteData) -> Vec<(String, i32)> {
        r.queue_datas
            .iter()
            .map(|q| (q.broker_name.clone(), q.perm))
            .collect()
    }

    #[test]
    fn every_state_shows_the_design_table() {
        let cases = [
            (State::Source, vec![("a", 6)]),
            (State::DualRead, vec![("a", 6), ("a-t", 4)]),
            (State::DualWrite, vec![("a", 6), ("a-t", 6)]),
            (State::Cutover, vec![("a", 4), ("a-t", 6)]),
            (State::Target, vec![("a-t", 6)]),
        ];
        for (state, want) in cases {
            let r = merged(Plan::Migrated(state)).unwrap();
            let want: Vec<_> = want.into_iter().map(|(n, p)| (n.to_owned(), p)).collect();
            assert_eq!(perms(&r), want, "{state}");
            for b in &r.broker_datas {
                let addr = b.master_addr().unwrap();
                assert!(addr.starts_with("proxy-"), "{addr}");
                assert_eq!(b.broker_name.ends_with("-t"), addr.contains("target"));
            }
        }
        assert_eq!(
            perms(&merged(Plan::SourceOnly).unwrap()),
            vec![("a".into(), 6)]
        );
        assert_eq!(
            perms(&merged(Plan::Union).unwrap()),
            vec![("a".into(), 6), ("a-t".into(), 6)]
        );
    }

    #[test]
    fn bits_are_only_taken_away() {
        let mut source = route("a", "s:1", 1);
        source.queue_datas[0].perm = PERM_READ | PERM_INHERIT;
        let mut addr = |_: Side, _: &str, real: &str| -> Result<String, ()> { Ok(real.into()) };
        let r = merge_route(
            Plan::Migrated(State::DualWrite),
            Some(source),
            None,
            &name,
            &mut addr,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.queue_datas[0].perm, PERM_READ | PERM_INHERIT);
    }

    #[test]
    fn no_queue_means_no_route_and_addr_errors_stop_the_answer() {
        let mut addr = |_: Side, _: &str, _: &str| -> Result<String, &str> { Err("full") };
        let none = merge_route(
            Plan::Migrated(State::Target),
            Some(route("a", "s:1", 1)),
            None,
            &name,
            &mut addr,
        );
        assert_eq!(none, Ok(None));
        let err = merge_route(
            Plan::Migrated(State::Source),
            Some(route("a", "s:1", 1)),
            None,
            &name,
            &mut addr,
        );
        assert_eq!(err, Err("full"));
    }

    #[test]
    fn cluster_info_lists_both_clusters() {
        let info = |addr: &str| ClusterInfo {
            broker_addr_table: BTreeMap::from([(
                "a".to_owned(),
                route("a", addr, 1).broker_datas[0].clone(),
            )]),
            cluster_addr_table: BTreeMap::from([("c".to_owned(), ["a".to_owned()].into())]),
            ..ClusterInfo::default()
        };
        let mut addr = |side: Side, _: &str, real: &str| -> Result<String, ()> {
            Ok(format!("{}-{real}", side.as_str()))
        };
        let merged =
            merge_cluster_info(Some(info("s:1")), Some(info("t:1")), &name, &mut addr).unwrap();
        assert_eq!(merged.broker_addr_table.len(), 2);
        assert_eq!(
            merged.broker_addr_table["a-t"].master_addr(),
            Some("target-t:1")
        );
        assert_eq!(merged.cluster_addr_table["c"].len(), 2);
    }

    #[test]
    fn system_and_group_topics_are_told_apart() {
        assert!(is_system_topic("TBW102"));
        assert!(is_system_topic("RMQ_SYS_TRANS_HALF_TOPIC"));
        assert!(is_system_topic("broker-a_REPLY_TOPIC"));
        assert!(!is_system_topic("orders"));
        assert!(is_group_topic("%RETRY%g"));
        assert!(!is_group_topic("orders"));
    }
}
