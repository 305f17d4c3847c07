//! Every metric cutover exports, in one catalogue with its description,
//! plus the few helpers that emit them together with their log lines.
//!
//! Labels stay low-cardinality: migration, topic, cluster, direction,
//! outcome, state — never client addresses or keys.

mod live;

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use live::Mirrored;
pub use live::{Labels, Live, LiveHistogram, SeriesKey, bucket_quantile, live};

/// Re-exported so call sites write `metrics::counter!(metrics::REQUESTS, ...)`
/// with the catalogue constant beside the macro.
pub use ::metrics::{counter, gauge, histogram};

/// Kind of a catalogued metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic count.
    Counter,
    /// Current value.
    Gauge,
    /// Distribution (Prometheus histogram).
    Histogram,
}

/// One catalogued metric.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// Prometheus name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names.
    pub labels: &'static [&'static str],
    /// What it means.
    pub help: &'static str,
}

macro_rules! catalogue {
    ($($ident:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(#[doc = $help] pub const $ident: &str = $name;)*
        /// Every metric, for `/metrics` descriptions and the README table.
        pub const CATALOGUE: &[MetricDef] = &[
            $(MetricDef { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help },)*
        ];
    };
}

catalogue! {
    CONNECTIONS_OPEN = "cutover_client_connections", Gauge, ["migration"],
        "Client connections currently open on a migration's listener.";
    CONNECTIONS_ACCEPTED = "cutover_client_connections_accepted_total", Counter, ["migration"],
        "Client connections accepted on a migration's listener.";
    CONNECTIONS_CLOSED = "cutover_client_connections_closed_total", Counter, ["migration", "reason"],
        "Client connections closed, by reason (client, idle, protocol_error, shutdown, upstream, auth: credentials refused, internal: the proxy's own failure).";
    REQUESTS = "cutover_requests_total", Counter, ["migration", "topic", "cluster"],
        "Requests forwarded to an upstream cluster, per topic (Redis: keyspace).";
    REQUEST_ERRORS = "cutover_request_errors_total", Counter, ["migration", "cluster", "kind"],
        "Requests answered with an error, by kind (upstream_unreachable, upstream_timeout, refused, protocol, auth: a client's credentials refused by the proxy).";
    REQUEST_DURATION = "cutover_request_duration_seconds", Histogram, ["migration", "cluster"],
        "Time from forwarding a request upstream to its reply.";
    BYTES = "cutover_bytes_total", Counter, ["migration", "cluster", "direction"],
        "Bytes relayed, direction to_upstream or to_client.";
    UPSTREAM_CONNECT_ERRORS = "cutover_upstream_connect_errors_total", Counter, ["migration", "cluster"],
        "Failed attempts to connect to an upstream cluster.";
    UPSTREAM_CONNECTS = "cutover_upstream_connections_total", Counter, ["migration", "cluster"],
        "Connections opened to an upstream cluster (TCP, and TLS when configured).";
    TOPIC_STATE = "cutover_topic_state", Gauge, ["migration", "topic"],
        "Migration state of a topic: 0 source, 1 dual_read, 2 dual_write, 3 cutover, 4 target.";
    TOPIC_EPOCH = "cutover_topic_epoch", Gauge, ["migration", "topic"],
        "Epoch of a topic's state; grows with every transition.";
    TRANSITIONS = "cutover_transitions_total", Counter, ["migration", "topic", "action", "outcome"],
        "Advance/rollback requests per topic, by outcome (moved, refused, failed).";
    SHADOW_READS = "cutover_redis_shadow_reads_total", Counter, ["migration", "topic", "outcome"],
        "Shadow reads compared against the other side, by outcome (match, mismatch, error).";
    REDIS_COPY_BACKLOG = "cutover_redis_copy_backlog", Gauge, ["migration", "topic"],
        "Keys of a Redis keyspace waiting to be copied to the other side (sampled every second).";
    REDIS_REPAIR_SET = "cutover_redis_repair_set", Gauge, ["migration", "topic"],
        "Keys of a Redis keyspace whose copy failed and awaits a retry (sampled every second).";
    REDIS_BACKFILL_PERCENT = "cutover_redis_backfill_percent", Gauge, ["migration", "topic"],
        "Progress of a Redis keyspace's latest backfill, 0 to 100; 0 when none has run (sampled every second).";
    KAFKA_FENCE_SECONDS = "cutover_kafka_fence_seconds", Histogram, ["migration", "topic"],
        "How long produce on a Kafka partition was held while its writes switched cluster.";
    KAFKA_SWITCHES = "cutover_kafka_switches_total", Counter, ["migration", "topic", "to", "outcome"],
        "Kafka partition switches, by destination cluster (source, target) and outcome (switched, failed).";
    KAFKA_PARTITIONS_ON_TARGET = "cutover_kafka_partitions_on_target", Gauge, ["migration", "topic"],
        "Partitions of a Kafka topic whose writes go to the target.";
    KAFKA_BYPASSED = "cutover_kafka_bypassed_records", Gauge, ["migration", "topic", "cluster"],
        "Records written to a cluster around the proxy after a Kafka partition's writes left it (past its last segment there); served once the partition writes there again.";
    KAFKA_HISTORY_RECORDS = "cutover_kafka_history_records_total", Counter, ["migration", "topic"],
        "Records the Kafka history copy (history: copy) wrote to the target and saw acknowledged.";
    KAFKA_HISTORY_BYTES = "cutover_kafka_history_bytes_total", Counter, ["migration", "topic"],
        "Bytes of record batches the Kafka history copy wrote to the target and saw acknowledged.";
    KAFKA_HISTORY_LAG = "cutover_kafka_history_lag_offsets", Gauge, ["migration", "topic"],
        "Source offsets the Kafka history copy has yet to copy, over the topic's partitions (0 once every copy is at the source's end).";
    KAFKA_RECORDS = "cutover_kafka_records_total", Counter, ["migration", "topic", "cluster", "direction"],
        "Kafka records (offsets) produced to or fetched from a cluster, per topic; direction produced or fetched.";
    KAFKA_RECORD_BYTES = "cutover_kafka_record_bytes_total", Counter, ["migration", "topic", "cluster", "direction"],
        "Bytes of Kafka record batches produced to or fetched from a cluster, per topic.";
    KAFKA_ERRORS = "cutover_kafka_partition_errors_total", Counter, ["migration", "topic", "cluster", "code"],
        "Kafka Produce and Fetch answers with a partition error, by Kafka error code.";
    KAFKA_SESSION_LINKS = "cutover_kafka_session_links_total", Counter, ["migration", "cluster"],
        "Upstream connections opened for Kafka client sessions (each logged in first when the cluster has auth); a client that fails its own login opens none.";
    KAFKA_REAUTHENTICATIONS = "cutover_kafka_reauthentications_total", Counter, ["migration", "cluster"],
        "SASL re-logins (KIP-368) on live Kafka client sessions' upstream connections, before the broker's session lifetime ran out.";
    KAFKA_SPLIT_REQUESTS = "cutover_kafka_split_requests_total", Counter, ["migration", "topic", "api"],
        "Kafka client requests (Produce, Fetch, ListOffsets) the proxy split over several upstream brokers or clusters, once per topic they name; against cutover_requests_total, the share not passed through whole.";
    KAFKA_GROUP_LAG = "cutover_kafka_group_lag", Gauge, ["migration", "group", "topic"],
        "Records a consumer group has yet to commit on a topic: last seen high watermarks minus its last commit through the proxy (published once a second).";
    ROCKETMQ_ROUTES = "cutover_rocketmq_routes_total", Counter, ["migration", "topic"],
        "Route requests for a migrated RocketMQ topic answered by the proxy's NameServer.";
    ROCKETMQ_SENDS = "cutover_rocketmq_sends_total", Counter, ["migration", "topic", "cluster"],
        "RocketMQ send requests answered by a broker, per topic and cluster.";
    ROCKETMQ_PULLS = "cutover_rocketmq_pulls_total", Counter, ["migration", "topic", "cluster"],
        "RocketMQ pull and pop requests answered by a broker, per topic and cluster.";
    ROCKETMQ_MESSAGES = "cutover_rocketmq_messages_total", Counter, ["migration", "topic", "cluster", "direction"],
        "RocketMQ messages acknowledged to producers (direction produced) or delivered in pulls (consumed).";
    ROCKETMQ_ERRORS = "cutover_rocketmq_errors_total", Counter, ["migration", "topic", "cluster", "code"],
        "RocketMQ send and pull answers with an error response code (pull misses excluded).";
}

/// Upper bounds (seconds) of the latency histogram buckets, shared by
/// Prometheus and the live mirror so both compute the same quantiles.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Metrics the live console plots; only these are mirrored, so every other
/// handle stays exactly the Prometheus one.
pub(crate) const MIRRORED: &[&str] = &[
    REQUESTS,
    BYTES,
    REQUEST_ERRORS,
    REQUEST_DURATION,
    CONNECTIONS_OPEN,
];

/// The metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The Prometheus recorder rejected its settings.
    #[error(transparent)]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    /// A recorder is already installed in this process.
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
}

/// Installs the global recorder (Prometheus, with the console's series
/// mirrored into [`live()`]) and describes every metric.
///
/// # Errors
/// When a recorder is already installed (a second call in one process).
pub fn install() -> Result<PrometheusHandle, InstallError> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(Mirrored { inner: recorder })
        .map_err(|_| InstallError::AlreadyInstalled)?;
    describe();
    Ok(handle)
}

fn describe() {
    for def in CATALOGUE {
        let unit = if def.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if def.name.starts_with("cutover_bytes") {
            Some(Unit::Bytes)
        } else {
            None
        };
        match (def.kind, unit) {
            (Kind::Counter, Some(unit)) => describe_counter!(def.name, unit, def.help),
            (Kind::Counter, None) => describe_counter!(def.name, def.help),
            (Kind::Gauge, _) => describe_gauge!(def.name, def.help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(def.name, unit, def.help),
            (Kind::Histogram, None) => describe_histogram!(def.name, def.help),
        }
    }
}

/// Exports a Redis keyspace's convergence progress (the console's sampler
/// reads it from the driver's status once a second).
pub fn publish_redis_progress(
    migration: &str,
    topic: &str,
    copy_backlog: f64,
    repair_set: f64,
    backfill_percent: Option<f64>,
) {
    let labels = [
        ("migration", migration.to_owned()),
        ("topic", topic.to_owned()),
    ];
    gauge!(REDIS_COPY_BACKLOG, &labels).set(copy_backlog);
    gauge!(REDIS_REPAIR_SET, &labels).set(repair_set);
    gauge!(REDIS_BACKFILL_PERCENT, &labels).set(backfill_percent.unwrap_or(0.0));
}

/// The `action` label values of [`TRANSITIONS`].
pub const TRANSITION_ACTIONS: &[&str] = &["advance", "rollback"];

/// The `outcome` label values of [`TRANSITIONS`].
pub const TRANSITION_OUTCOMES: &[&str] = &["moved", "refused", "failed"];

/// Exports a topic's state (its index, 0 `source` to 4 `target`) and epoch.
pub fn publish_topic_state(migration: &str, topic: &str, state: u8, epoch: u64) {
    let labels = [
        ("migration", migration.to_owned()),
        ("topic", topic.to_owned()),
    ];
    gauge!(TOPIC_STATE, &labels).set(f64::from(state));
    #[allow(clippy::cast_precision_loss)] // epochs stay far below 2^52
    gauge!(TOPIC_EPOCH, &labels).set(epoch as f64);
}

/// Counts an advance/rollback outcome (values of [`TRANSITION_ACTIONS`]
/// and [`TRANSITION_OUTCOMES`]).
pub fn record_transition(
    migration: &str,
    topic: &str,
    action: &'static str,
    outcome: &'static str,
) {
    transitions_counter(migration, topic, action, outcome).increment(1);
}

/// Creates a topic's transition counters at zero, so dashboards see the
/// series (and `rate()` works) before the first advance.
pub fn register_topic(migration: &str, topic: &str) {
    for action in TRANSITION_ACTIONS {
        for outcome in TRANSITION_OUTCOMES {
            let _ = transitions_counter(migration, topic, action, outcome);
        }
    }
}

/// Creates a Kafka topic's splice series at zero (the fence histogram
/// appears with the first switch).
pub fn register_kafka_topic(migration: &str, topic: &str, clusters: [&str; 2]) {
    for to in ["source", "target"] {
        for outcome in ["switched", "failed"] {
            let _ = counter!(KAFKA_SWITCHES, "migration" => migration.to_owned(), "topic" => topic.to_owned(), "to" => to, "outcome" => outcome);
        }
    }
    gauge!(KAFKA_PARTITIONS_ON_TARGET, "migration" => migration.to_owned(), "topic" => topic.to_owned())
        .set(0.0);
    let _ = counter!(KAFKA_HISTORY_RECORDS, "migration" => migration.to_owned(), "topic" => topic.to_owned());
    let _ = counter!(KAFKA_HISTORY_BYTES, "migration" => migration.to_owned(), "topic" => topic.to_owned());
    gauge!(KAFKA_HISTORY_LAG, "migration" => migration.to_owned(), "topic" => topic.to_owned())
        .set(0.0);
    for api in ["Produce", "Fetch", "ListOffsets"] {
        let _ = counter!(KAFKA_SPLIT_REQUESTS, "migration" => migration.to_owned(), "topic" => topic.to_owned(), "api" => api);
    }
    for cluster in clusters {
        gauge!(KAFKA_BYPASSED, "migration" => migration.to_owned(), "topic" => topic.to_owned(), "cluster" => cluster.to_owned())
            .set(0.0);
        for direction in ["produced", "fetched"] {
            let labels = [
                ("migration", migration.to_owned()),
                ("topic", topic.to_owned()),
                ("cluster", cluster.to_owned()),
                ("direction", direction.to_owned()),
            ];
            let _ = counter!(KAFKA_RECORDS, &labels);
            let _ = counter!(KAFKA_RECORD_BYTES, &labels);
        }
        // NOT_LEADER_OR_FOLLOWER (6): what a moved leader or a restarted
        // broker answers first, so its series exists from the start.
        let _ = counter!(KAFKA_ERRORS, "migration" => migration.to_owned(), "topic" => topic.to_owned(), "cluster" => cluster.to_owned(), "code" => "6");
    }
}

/// Creates a RocketMQ topic's traffic counters at zero for both clusters.
pub fn register_rocketmq_topic(migration: &str, topic: &str, clusters: [&str; 2]) {
    let _ =
        counter!(ROCKETMQ_ROUTES, "migration" => migration.to_owned(), "topic" => topic.to_owned());
    for cluster in clusters {
        let labels = [
            ("migration", migration.to_owned()),
            ("topic", topic.to_owned()),
            ("cluster", cluster.to_owned()),
        ];
        let _ = counter!(ROCKETMQ_SENDS, &labels);
        let _ = counter!(ROCKETMQ_PULLS, &labels);
        for direction in ["produced", "consumed"] {
            let mut l = labels.to_vec();
            l.push(("direction", direction.to_owned()));
            let _ = counter!(ROCKETMQ_MESSAGES, &l);
        }
        // Codes are open-ended; NO_PERMISSION (16) is the one a migration
        // step itself can cause (a producer on a stale route writing to a
        // queue that became read-only), so its series exists from the start.
        let mut l = labels.to_vec();
        l.push(("code", "16".to_owned()));
        let _ = counter!(ROCKETMQ_ERRORS, &l);
    }
}

/// Creates a migration's connection-close counters at zero.
pub fn register_listener(migration: &str) {
    for reason in [
        "client",
        "idle",
        "protocol_error",
        "shutdown",
        "upstream",
        "auth",
        "internal",
    ] {
        let _ =
            counter!(CONNECTIONS_CLOSED, "migration" => migration.to_owned(), "reason" => reason);
    }
}

fn transitions_counter(
    migration: &str,
    topic: &str,
    action: &'static str,
    outcome: &'static str,
) -> ::metrics::Counter {
    counter!(
        TRANSITIONS,
        "migration" => migration.to_owned(),
        "topic" => topic.to_owned(),
        "action" => action,
        "outcome" => outcome
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_are_unique_prefixed_and_described() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for def in CATALOGUE {
            assert!(def.name.starts_with("cutover_"), "{}", def.name);
            assert!(def.help.ends_with('.'), "{}", def.name);
            assert_eq!(
                def.kind == Kind::Counter,
                def.name.ends_with("_total"),
                "{}",
                def.name
            );
        }
    }

    #[test]
    fn readme_metrics_table_lists_exactly_the_catalogue() {
        let readme = include_str!("../../README.md");
        let documented: Vec<&str> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `cutover_")?.split('`').next())
            .collect();
        for def in CATALOGUE {
            let prefix = format!("| `{}` |", def.name);
            let row = readme.lines().find(|l| l.starts_with(&prefix));
            let row = row.unwrap_or_else(|| panic!("README lacks a row for {}", def.name));
            let kind = match def.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let expected = format!("| {kind} | {} |", def.labels.join(", "));
            assert!(
                row.contains(&expected),
                "README row for {} is stale: {row}",
                def.name
            );
        }
        assert_eq!(
            documented.len(),
            CATALOGUE.len(),
            "README documents unknown metrics: {documented:?}"
        );
    }
}
