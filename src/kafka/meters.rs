//! Pre-resolved metric handles (issue 19): `counter!(NAME, "label" =>
//! x.to_string())` on the request path builds its labels, hashes them and
//! looks the series up on every call, allocating each time. Here each
//! series the data plane counts is resolved once, when first used, and
//! kept: per migration the handles whose labels name only a cluster, per
//! topic the ones that name the topic too, in an immutable map published
//! with arc-swap and read by `&str` without allocating or locking.
//!
//! Each topic also keeps its partitions' last seen high watermarks
//! ([`crate::kafka::marks`]), which the data plane writes on every answer.
//!
//! Handles are resolved on first use (not eagerly) so a series appears in
//! the export exactly when it did before: a topic's `requests` series for
//! a cluster only once a request of that topic went there.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use metrics::{Counter, Histogram};

use crate::kafka::cluster::Side;
use crate::kafka::marks::PartitionMarks;
use crate::metrics as names;

/// Topics whose handles are kept at most; beyond, each use resolves its
/// handles afresh (slower, still correct).
const MAX_TOPICS: usize = 65_536;

/// Which way records went (the `direction` label of the record counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Produced = 0,
    Fetched = 1,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Self::Produced => "produced",
            Self::Fetched => "fetched",
        }
    }
}

/// A request split over several brokers or clusters (the `api` label of
/// the split counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SplitApi {
    Produce = 0,
    Fetch = 1,
    ListOffsets = 2,
}

impl SplitApi {
    fn label(self) -> &'static str {
        match self {
            Self::Produce => "Produce",
            Self::Fetch => "Fetch",
            Self::ListOffsets => "ListOffsets",
        }
    }
}

/// The labels every handle carries: the migration and each cluster's name.
#[derive(Debug)]
struct Labels {
    migration: Arc<str>,
    /// `[source, target]`.
    clusters: [Arc<str>; 2],
}

/// One topic's handles, each resolved on first use.
#[derive(Default)]
pub(crate) struct TopicMeters {
    /// `requests{topic, cluster}` per side.
    requests: [OnceLock<Counter>; 2],
    /// `kafka_records{topic, cluster, direction}` per side and direction.
    records: [[OnceLock<Counter>; 2]; 2],
    /// `kafka_record_bytes{…}` likewise.
    record_bytes: [[OnceLock<Counter>; 2]; 2],
    /// `kafka_split_requests{topic, api}` per API.
    split: [OnceLock<Counter>; 3],
    /// Last seen high watermark per partition (for the lag gauge).
    marks: PartitionMarks,
}

/// The per-migration handles and the published per-topic map.
pub(crate) struct Meters {
    labels: Labels,
    topics: ArcSwap<HashMap<Arc<str>, Arc<TopicMeters>>>,
    /// `bytes{cluster, direction="to_upstream"}` per side.
    to_upstream: [OnceLock<Counter>; 2],
    /// `bytes{cluster="client", direction="to_client"}`.
    to_client: OnceLock<Counter>,
    /// `request_duration_seconds{cluster}` per side.
    duration: [OnceLock<Histogram>; 2],
}

/// One topic's handles with the labels to resolve them, as a handler uses
/// them for one request.
pub(crate) struct Topic<'a> {
    meters: &'a Meters,
    name: &'a str,
    handles: Arc<TopicMeters>,
}

impl Meters {
    /// No handle resolved yet, for `migration` between `clusters`
    /// (`[source, target]`).
    #[must_use]
    pub(crate) fn new(migration: &str, clusters: [&str; 2]) -> Self {
        Meters {
            labels: Labels {
                migration: Arc::from(migration),
                clusters: clusters.map(Arc::from),
            },
            topics: ArcSwap::default(),
            to_upstream: Default::default(),
            to_client: OnceLock::new(),
            duration: Default::default(),
        }
    }

    fn migration(&self) -> String {
        self.labels.migration.to_string()
    }

    fn cluster(&self, side: Side) -> String {
        self.labels.clusters[side as usize].to_string()
    }

    /// Bytes of requests sent to `side`.
    pub(crate) fn to_upstream(&self, side: Side) -> &Counter {
        self.to_upstream[side as usize].get_or_init(|| {
            metrics::counter!(names::BYTES, "migration" => self.migration(), "cluster" => self.cluster(side), "direction" => "to_upstream")
        })
    }

    /// Bytes of answers written to clients.
    pub(crate) fn to_client(&self) -> &Counter {
        self.to_client.get_or_init(|| {
            metrics::counter!(names::BYTES, "migration" => self.migration(), "cluster" => "client", "direction" => "to_client")
        })
    }

    /// Time from sending a request to `side` to its answer.
    pub(crate) fn duration(&self, side: Side) -> &Histogram {
        self.duration[side as usize].get_or_init(|| {
            metrics::histogram!(names::REQUEST_DURATION, "migration" => self.migration(), "cluster" => self.cluster(side))
        })
    }

    /// `topic`'s handles: read from the published map, or (first time)
    /// added to a new map that is then published.
    pub(crate) fn topic<'a>(&'a self, topic: &'a str) -> Topic<'a> {
        let handles = match self.topics.load().get(topic) {
            Some(found) => found.clone(),
            None => self.learn(topic),
        };
        Topic {
            meters: self,
            name: topic,
            handles,
        }
    }

    /// The slow path: publishes a map with `topic` added (bounded).
    fn learn(&self, topic: &str) -> Arc<TopicMeters> {
        let mut learnt = None;
        self.topics.rcu(|map| {
            if let Some(found) = map.get(topic) {
                learnt = Some(found.clone());
                return map.clone();
            }
            let fresh = Arc::new(TopicMeters::default());
            learnt = Some(fresh.clone());
            if map.len() >= MAX_TOPICS {
                return map.clone();
            }
            let mut next = HashMap::clone(map);
            next.insert(Arc::from(topic), fresh);
            Arc::new(next)
        });
        learnt.unwrap_or_default()
    }
}

impl Topic<'_> {
    fn labels(&self, side: Side) -> [(&'static str, String); 3] {
        [
            ("migration", self.meters.migration()),
            ("topic", self.name.to_owned()),
            ("cluster", self.meters.cluster(side)),
        ]
    }

    /// One request of this topic to `side`.
    pub(crate) fn requests(&self, side: Side) -> &Counter {
        self.handles.requests[side as usize]
            .get_or_init(|| metrics::counter!(names::REQUESTS, &self.labels(side)))
    }

    /// Records (offsets) that went `direction` through `side`.
    pub(crate) fn records(&self, side: Side, direction: Direction) -> &Counter {
        self.handles.records[side as usize][direction as usize]
            .get_or_init(|| self.directed(names::KAFKA_RECORDS, side, direction))
    }

    /// Bytes of record batches that went `direction` through `side`.
    pub(crate) fn record_bytes(&self, side: Side, direction: Direction) -> &Counter {
        self.handles.record_bytes[side as usize][direction as usize]
            .get_or_init(|| self.directed(names::KAFKA_RECORD_BYTES, side, direction))
    }

    fn directed(&self, name: &'static str, side: Side, direction: Direction) -> Counter {
        let [m, t, c] = self.labels(side);
        let labels = [m, t, c, ("direction", direction.label().to_owned())];
        metrics::counter!(name, &labels)
    }

    /// This topic's last seen high watermarks.
    pub(crate) fn marks(&self) -> &PartitionMarks {
        &self.handles.marks
    }

    /// A request of `api` naming this topic split over several brokers.
    pub(crate) fn split(&self, api: SplitApi) -> &Counter {
        self.handles.split[api as usize].get_or_init(|| {
            metrics::counter!(names::KAFKA_SPLIT_REQUESTS, "migration" => self.meters.migration(), "topic" => self.name.to_owned(), "api" => api.label())
        })
    }

    /// An error `code` answered for this topic by `side` (rare: resolved
    /// on each use).
    pub(crate) fn error(&self, side: Side, code: i16) {
        let [m, t, c] = self.labels(side);
        let labels = [m, t, c, ("code", code.to_string())];
        metrics::counter!(names::KAFKA_ERRORS, &labels).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_learnt_once_and_found_by_name() {
        let meters = Meters::new("m", ["a", "b"]);
        let first = meters.topic("t").handles;
        let again = meters.topic("t").handles;
        assert!(
            Arc::ptr_eq(&first, &again),
            "the published handles are reused"
        );
        assert!(!Arc::ptr_eq(&first, &meters.topic("u").handles));
        assert_eq!(meters.topics.load().len(), 2);
    }
}
