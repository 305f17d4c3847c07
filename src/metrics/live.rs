//! The live mirror: the handful of series the console plots, counted in
//! plain atomics next to the Prometheus recorder, so the console reads
//! current values without parsing exposition text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use ::metrics::{
    CounterFn, GaugeFn, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusRecorder;

use super::{LATENCY_BUCKETS, MIRRORED};

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
pub(super) struct Mirrored {
    pub(super) inner: PrometheusRecorder,
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
}
