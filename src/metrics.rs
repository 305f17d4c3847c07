//! Every metric cutover exports, in one catalogue with its description,
//! plus the few helpers that emit them together with their log lines.
//!
//! Labels stay low-cardinality: migration, topic, cluster, direction,
//! outcome, state — never client addresses or keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use ::metrics::{
    CounterFn, GaugeFn, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    describe_counter, describe_gauge, describe_histogram,
};
use dashmap::DashMap;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

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
    REDIS_COPY_BACKLOG = "cutover_redis_copy_backlog", Gauge, ["migration", "topic"],
        "Keys of a Redis keyspace waiting to be copied to the other side (sampled every second).";
    REDIS_REPAIR_SET = "cutover_redis_repair_set", Gauge, ["migration", "topic"],
        "Keys of a Redis keyspace whose copy failed and awaits a retry (sampled every second).";
    REDIS_BACKFILL_PERCENT = "cutover_redis_backfill_percent", Gauge, ["migration", "topic"],
        "Progress of a Redis keyspace's latest backfill, 0 to 100; 0 when none has run (sampled every second).";
}

/// Upper bounds (seconds) of the latency histogram buckets, shared by
/// Prometheus and the live mirror so both compute the same quantiles.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Metrics the live console plots; only these are mirrored, so every other
/// handle stays exactly the Prometheus one.
const MIRRORED: &[&str] = &[
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
    transitions_counter(topic, action, outcome).increment(1);
}

/// Creates a topic's transition counters at zero, so dashboards see the
/// series (and `rate()` works) before the first advance.
pub fn register_topic(topic: &TopicHandle) {
    for action in [Action::Advance, Action::Rollback] {
        for outcome in ["moved", "refused", "failed"] {
            let _ = transitions_counter(topic, action, outcome);
        }
    }
}

/// Creates a migration's connection-close counters at zero.
pub fn register_listener(migration: &str) {
    for reason in ["client", "idle", "protocol_error", "shutdown", "upstream"] {
        let _ =
            counter!(CONNECTIONS_CLOSED, "migration" => migration.to_owned(), "reason" => reason);
    }
}

fn transitions_counter(
    topic: &TopicHandle,
    action: Action,
    outcome: &'static str,
) -> ::metrics::Counter {
    counter!(
        TRANSITIONS,
        "migration" => topic.migration.to_string(),
        "topic" => topic.name.to_string(),
        "action" => action.as_str(),
        "outcome" => outcome
    )
}

// ------------------------------------------------------------------ live mirror

/// Label pairs of one series, sorted by label name.
pub type Labels = Vec<(String, String)>;

/// One mirrored series: catalogue name and labels.
pub type SeriesKey = (&'static str, Labels);

/// Bucket counts of a mirrored histogram: one per [`LATENCY_BUCKETS`] bound
/// plus the overflow bucket, not cumulative.
#[derive(Debug)]
pub struct LiveHistogram {
    buckets: Vec<AtomicU64>,
}

impl LiveHistogram {
    fn new() -> Self {
        LiveHistogram {
            buckets: (0..=LATENCY_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn record(&self, seconds: f64) {
        // Prometheus `le` semantics: the first bound at or above the value.
        let index = LATENCY_BUCKETS.partition_point(|bound| *bound < seconds);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Current counts per bucket.
    #[must_use]
    pub fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// Readable copies of the series the console plots. The Prometheus handles
/// cannot be read back, and parsing `/metrics` text once a second would be
/// fragile, so the recorder tees these few series into plain atomics.
#[derive(Debug, Default)]
pub struct Live {
    counters: DashMap<SeriesKey, Arc<AtomicU64>>,
    /// `f64` bits.
    gauges: DashMap<SeriesKey, Arc<AtomicU64>>,
    histograms: DashMap<SeriesKey, Arc<LiveHistogram>>,
}

/// The process-wide mirror; empty when no recorder is installed (unit tests).
#[must_use]
pub fn live() -> &'static Live {
    static LIVE: LazyLock<Live> = LazyLock::new(Live::default);
    &LIVE
}

fn series_key(name: &'static str, key: &Key) -> SeriesKey {
    let mut labels: Labels = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (name, labels)
}

impl Live {
    /// The counter cell of a series, created at zero.
    #[must_use]
    pub fn counter(&self, name: &'static str, labels: Labels) -> Arc<AtomicU64> {
        self.counters.entry((name, labels)).or_default().clone()
    }

    /// The gauge cell (`f64` bits) of a series, created at zero.
    #[must_use]
    pub fn gauge(&self, name: &'static str, labels: Labels) -> Arc<AtomicU64> {
        self.gauges.entry((name, labels)).or_default().clone()
    }

    /// The histogram of a series, created empty.
    #[must_use]
    pub fn histogram(&self, name: &'static str, labels: Labels) -> Arc<LiveHistogram> {
        self.histograms
            .entry((name, labels))
            .or_insert_with(|| Arc::new(LiveHistogram::new()))
            .clone()
    }

    /// Every counter's current value.
    #[must_use]
    pub fn counter_values(&self) -> Vec<(SeriesKey, u64)> {
        self.counters
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Relaxed)))
            .collect()
    }

    /// Every gauge's current value.
    #[must_use]
    pub fn gauge_values(&self) -> Vec<(SeriesKey, f64)> {
        self.gauges
            .iter()
            .map(|e| {
                let value = f64::from_bits(e.value().load(Ordering::Relaxed));
                (e.key().clone(), value)
            })
            .collect()
    }

    /// Every histogram's current bucket counts.
    #[must_use]
    pub fn histogram_values(&self) -> Vec<(SeriesKey, Vec<u64>)> {
        self.histograms
            .iter()
            .map(|e| (e.key().clone(), e.value().counts()))
            .collect()
    }
}

/// The estimated `q` quantile (0..=1) of non-cumulative bucket counts over
/// [`LATENCY_BUCKETS`], interpolated inside the bucket as Prometheus'
/// `histogram_quantile` does; `None` without observations.
#[must_use]
pub fn bucket_quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // counts per window stay far below 2^52
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &count) in counts.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let reached = (below + count) as f64;
        if count > 0 && reached >= rank {
            let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                // Overflow bucket: the highest bound is all that is known.
                return LATENCY_BUCKETS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            #[allow(clippy::cast_precision_loss)]
            let within = (rank - below as f64) / count as f64;
            return Some(lower + (upper - lower) * within);
        }
        below += count;
    }
    LATENCY_BUCKETS.last().copied()
}

/// The Prometheus recorder, teeing [`MIRRORED`] series into [`live()`].
struct Mirrored {
    inner: PrometheusRecorder,
}

fn mirrored(key: &Key) -> Option<&'static str> {
    MIRRORED.iter().copied().find(|name| *name == key.name())
}

struct TeeCounter {
    prometheus: ::metrics::Counter,
    live: Arc<AtomicU64>,
}

impl CounterFn for TeeCounter {
    fn increment(&self, value: u64) {
        self.prometheus.increment(value);
        self.live.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.prometheus.absolute(value);
        self.live.fetch_max(value, Ordering::Relaxed);
    }
}

struct TeeGauge {
    prometheus: ::metrics::Gauge,
    live: Arc<AtomicU64>,
}

impl TeeGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }
}

impl GaugeFn for TeeGauge {
    fn increment(&self, value: f64) {
        self.prometheus.increment(value);
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.prometheus.decrement(value);
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.prometheus.set(value);
        self.live.store(value.to_bits(), Ordering::Relaxed);
    }
}

struct TeeHistogram {
    prometheus: ::metrics::Histogram,
    live: Arc<LiveHistogram>,
}

impl HistogramFn for TeeHistogram {
    fn record(&self, value: f64) {
        self.prometheus.record(value);
        self.live.record(value);
    }
}

impl Recorder for Mirrored {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> ::metrics::Counter {
        let prometheus = self.inner.register_counter(key, metadata);
        match mirrored(key) {
            Some(name) => ::metrics::Counter::from_arc(Arc::new(TeeCounter {
                prometheus,
                live: live().counter(name, series_key(name, key).1),
            })),
            None => prometheus,
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> ::metrics::Gauge {
        let prometheus = self.inner.register_gauge(key, metadata);
        match mirrored(key) {
            Some(name) => ::metrics::Gauge::from_arc(Arc::new(TeeGauge {
                prometheus,
                live: live().gauge(name, series_key(name, key).1),
            })),
            None => prometheus,
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> ::metrics::Histogram {
        let prometheus = self.inner.register_histogram(key, metadata);
        match mirrored(key) {
            Some(name) => ::metrics::Histogram::from_arc(Arc::new(TeeHistogram {
                prometheus,
                live: live().histogram(name, series_key(name, key).1),
            })),
            None => prometheus,
        }
    }
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
    fn quantiles_interpolate_inside_buckets() {
        let mut counts = vec![0; LATENCY_BUCKETS.len() + 1];
        assert_eq!(bucket_quantile(&counts, 0.5), None);
        // 100 observations in (1ms, 2.5ms]: the median sits in the middle.
        counts[4] = 100;
        let p50 = bucket_quantile(&counts, 0.5).unwrap();
        assert!((p50 - 0.00175).abs() < 1e-9, "{p50}");
        // One slow outlier above every bound: p99 stays in the 1ms bucket,
        // the maximum reports the highest bound.
        counts[LATENCY_BUCKETS.len()] = 1;
        assert!(bucket_quantile(&counts, 0.99).unwrap() <= 0.0025);
        assert_eq!(bucket_quantile(&counts, 1.0), Some(5.0));
    }

    #[test]
    fn live_histogram_uses_le_buckets() {
        let h = LiveHistogram::new();
        h.record(0.001);
        h.record(0.0011);
        h.record(99.0);
        let counts = h.counts();
        assert_eq!(counts[3], 1, "0.001 falls into le=0.001");
        assert_eq!(counts[4], 1);
        assert_eq!(counts[LATENCY_BUCKETS.len()], 1);
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
