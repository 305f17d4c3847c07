//! Pre-resolved per-topic metric handles, read by the broker sessions on
//! every send and pull without a lock, a `String` key or a label vector.
//!
//! `metrics::counter!(NAME, labels...)` on the request path allocates its
//! labels and looks the series up in the recorder each time; a
//! [`TopicHandles`] holds the counters of one topic on one cluster,
//! resolved once. The handles live in an immutable map published with
//! arc-swap: sessions look a topic up by `&str` in the current map; the
//! control side (start-up, discovery) and, for a topic not there yet, the
//! session's slow path publish a new map with the topic added, under a
//! mutex that only publishers take. A topic's entry is never replaced, so
//! its last-send time (kept here as an atomic) is never lost.
//!
//! Bounded: past [`MAX_TOPICS`] topics per cluster, new topics get handles
//! that are not kept (correct counts, the slow path each time).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::metrics::Counter;
use arc_swap::ArcSwap;

use super::endpoints::Side;
use crate::metrics;

/// Topics kept per cluster at most (the per-topic metrics already make
/// each topic a Prometheus series, so this is far above any real count).
pub const MAX_TOPICS: usize = 16 * 1024;

/// The counters of one topic on one cluster.
pub struct TopicHandles {
    /// The topic, shared by every request remembered for it.
    pub topic: Arc<str>,
    /// `cutover_requests_total`.
    pub requests: Counter,
    /// `cutover_rocketmq_sends_total`.
    pub sends: Counter,
    /// `cutover_rocketmq_pulls_total`.
    pub pulls: Counter,
    /// `cutover_rocketmq_messages_total{direction="produced"}`.
    pub produced: Counter,
    /// `cutover_rocketmq_messages_total{direction="consumed"}`.
    pub consumed: Counter,
    /// When a send was last relayed: nanoseconds after [`Handles`]' base
    /// instant, plus one (0: never).
    last_send: AtomicU64,
}

impl TopicHandles {
    fn new(migration: &str, topic: &str, cluster: &str) -> Self {
        let labels = [
            ("migration", migration.to_owned()),
            ("topic", topic.to_owned()),
            ("cluster", cluster.to_owned()),
        ];
        let with = |direction: &str| {
            let mut l = labels.to_vec();
            l.push(("direction", direction.to_owned()));
            metrics::counter!(metrics::ROCKETMQ_MESSAGES, &l)
        };
        TopicHandles {
            topic: Arc::from(topic),
            requests: metrics::counter!(metrics::REQUESTS, &labels),
            sends: metrics::counter!(metrics::ROCKETMQ_SENDS, &labels),
            pulls: metrics::counter!(metrics::ROCKETMQ_PULLS, &labels),
            produced: with("produced"),
            consumed: with("consumed"),
            last_send: AtomicU64::new(0),
        }
    }
}

type Map = HashMap<Box<str>, Arc<TopicHandles>>;

/// The published handles of one migration, per cluster.
pub struct Handles {
    migration: Arc<str>,
    clusters: [Box<str>; 2],
    maps: [ArcSwap<Map>; 2],
    /// Held by publishers only, so two never drop each other's topic.
    publishing: Mutex<()>,
    base: Instant,
}

fn index(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Target => 1,
    }
}

impl Handles {
    /// No topic yet, for `migration` between clusters `[source, target]`.
    pub fn new(migration: &str, clusters: [&str; 2]) -> Self {
        Handles {
            migration: Arc::from(migration),
            clusters: clusters.map(Box::from),
            maps: [ArcSwap::default(), ArcSwap::default()],
            publishing: Mutex::new(()),
            base: Instant::now(),
        }
    }

    /// `topic`'s handles on `side`, if published: no lock, no allocation.
    pub fn get(&self, side: Side, topic: &str) -> Option<Arc<TopicHandles>> {
        self.maps[index(side)].load().get(topic).cloned()
    }

    /// `topic`'s handles on `side`, publishing them first if new (the slow
    /// path: resolves the series and copies the map once per topic).
    pub fn publish(&self, side: Side, topic: &str) -> Arc<TopicHandles> {
        if let Some(h) = self.get(side, topic) {
            return h;
        }
        let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let map = &self.maps[index(side)];
        let current = map.load_full();
        if let Some(h) = current.get(topic) {
            return h.clone();
        }
        let handles = Arc::new(TopicHandles::new(
            &self.migration,
            topic,
            &self.clusters[index(side)],
        ));
        if current.len() < MAX_TOPICS {
            let mut next = Map::clone(&current);
            next.insert(Box::from(topic), handles.clone());
            map.store(Arc::new(next));
        }
        handles
    }

    /// Publishes `topic` on both clusters (control side: start-up and
    /// discovery), so its first send takes the fast path.
    pub fn publish_both(&self, topic: &str) {
        for side in [Side::Source, Side::Target] {
            self.publish(side, topic);
        }
    }

    /// A send of `handles`' topic was relayed now.
    pub fn sent(&self, handles: &TopicHandles) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        handles.last_send.store(nanos + 1, Ordering::Relaxed);
    }

    /// When a send of `topic` was last relayed to `side`.
    pub fn last_sent(&self, topic: &str, side: Side) -> Option<Instant> {
        let nanos = self.get(side, topic)?.last_send.load(Ordering::Relaxed);
        (nanos > 0).then(|| self.base + Duration::from_nanos(nanos - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_published_once_and_found_by_str() {
        let h = Handles::new("m", ["a", "b"]);
        assert!(h.get(Side::Source, "t").is_none());
        let first = h.publish(Side::Source, "t");
        let again = h.publish(Side::Source, "t");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(Arc::ptr_eq(&h.get(Side::Source, "t").unwrap(), &first));
        assert!(h.get(Side::Target, "t").is_none(), "per cluster");
        assert_eq!(&*first.topic, "t");
    }

    #[test]
    fn last_send_is_kept_per_topic_and_cluster() {
        let h = Handles::new("m", ["a", "b"]);
        assert_eq!(h.last_sent("t", Side::Source), None);
        let t = h.publish(Side::Source, "t");
        assert_eq!(
            h.last_sent("t", Side::Source),
            None,
            "published, never sent"
        );
        let before = Instant::now();
        h.sent(&t);
        let at = h.last_sent("t", Side::Source).unwrap();
        assert!(at >= before.checked_sub(Duration::from_millis(1)).unwrap());
        assert!(at <= Instant::now());
        assert_eq!(h.last_sent("t", Side::Target), None);
        // Publishing another topic keeps the first one's entry.
        h.publish(Side::Source, "u");
        assert_eq!(h.last_sent("t", Side::Source), Some(at));
    }
}
