//! Every metric cutover exports, in one catalogue with its description,
//! plus the few helpers that emit them together with their log lines.
//!
//! Labels stay low-cardinality: migration, topic, cluster, direction,
//! outcome, state — never client addresses or keys.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Re-exported so call sites write `metrics::counter!(metrics::REQUESTS, ...)`
/// with the catalogue constant beside the macro.
pub use ::metrics::{counter, gauge, histogram};

use crate::migration::{Action, Outcome, TopicHandle};

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
        "Client connections closed, by reason (client, idle, protocol_error, shutdown, upstream).";
    REQUESTS = "cutover_requests_total", Counter, ["migration", "topic", "cluster"],
        "Requests forwarded to an upstream cluster, per topic (Redis: keyspace).";
    REQUEST_ERRORS = "cutover_request_errors_total", Counter, ["migration", "cluster", "kind"],
        "Requests answered with an error, by kind (upstream_unreachable, upstream_timeout, refused, protocol).";
    REQUEST_DURATION = "cutover_request_duration_seconds", Histogram, ["migration", "cluster"],
        "Time from forwarding a request upstream to its reply.";
    BYTES = "cutover_bytes_total", Counter, ["migration", "cluster", "direction"],
        "Bytes relayed, direction to_upstream or to_client.";
    UPSTREAM_CONNECT_ERRORS = "cutover_upstream_connect_errors_total", Counter, ["migration", "cluster"],
        "Failed attempts to connect to an upstream cluster.";
    TOPIC_STATE = "cutover_topic_state", Gauge, ["migration", "topic"],
        "Migration state of a topic: 0 source, 1 dual_read, 2 dual_write, 3 cutover, 4 target.";
    TOPIC_EPOCH = "cutover_topic_epoch", Gauge, ["migration", "topic"],
        "Epoch of a topic's state; grows with every transition.";
    TRANSITIONS = "cutover_transitions_total", Counter, ["migration", "topic", "action", "outcome"],
        "Advance/rollback requests per topic, by outcome (moved, refused, failed).";
    SHADOW_READS = "cutover_redis_shadow_reads_total", Counter, ["migration", "topic", "outcome"],
        "Shadow reads compared against the other side, by outcome (match, mismatch, error).";
}

/// Installs the global recorder and describes every metric.
///
/// # Errors
/// When a recorder is already installed (a second call in one process).
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ],
        )?
        .install_recorder()?;
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

/// Exports a topic's state and epoch gauges.
pub fn publish_topic_state(topic: &TopicHandle) {
    let (state, epoch) = topic.snapshot();
    let labels = [
        ("migration", topic.migration.to_string()),
        ("topic", topic.name.to_string()),
    ];
    gauge!(TOPIC_STATE, &labels).set(f64::from(state.index()));
    #[allow(clippy::cast_precision_loss)] // epochs stay far below 2^52
    gauge!(TOPIC_EPOCH, &labels).set(epoch as f64);
}

/// Counts an advance/rollback outcome.
pub fn record_transition(topic: &TopicHandle, action: Action, outcome: &Outcome) {
    let outcome = match outcome {
        Outcome::Moved { .. } => "moved",
        Outcome::Refused { .. } => "refused",
        Outcome::Failed { .. } => "failed",
    };
    counter!(
        TRANSITIONS,
        "migration" => topic.migration.to_string(),
        "topic" => topic.name.to_string(),
        "action" => action.as_str(),
        "outcome" => outcome
    )
    .increment(1);
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
        let readme = include_str!("../README.md");
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
