//! The live migration console: one page embedded in the binary (inline CSS
//! and JS, no CDN, no build step), the JSON it polls (`GET
//! /api/v1/dashboard`), and the sampler that turns the live metric mirror
//! ([`crate::metrics::live`]) into per-second rates with two minutes of
//! history for the page's sparklines.
//!
//! Rates are computed here, once a second, rather than in the browser, so
//! every open page shows the same numbers and a page opened late still has
//! the last two minutes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State as Extract;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::AdminState;
use crate::metrics::{self, SeriesKey};
use crate::migration::{Driver, TopicHandle};

/// The console page.
pub const PAGE: &str = include_str!("console.html");

/// Confines the page to the proxy: inline script and style only, requests
/// only to the origin that served it, never framed.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                        connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                        base-uri 'none'; form-action 'none'";

/// One sample a second: operators watch at human speed, and the page polls
/// every second, so a finer grain would only add noise.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Samples kept per series: two minutes, enough to see a transition's effect.
pub const SAMPLES: usize = 120;

/// Latency quantiles are computed over the last ten samples, so one quiet
/// second does not blank them and a spike fades after ten seconds.
pub const LATENCY_WINDOW: usize = 10;

/// History entries the dashboard returns, newest first.
const HISTORY_ROWS: usize = 50;

/// Rates and gauge values per series, one sample per [`SAMPLE_INTERVAL`].
#[derive(Debug, Default)]
pub struct Sampler {
    inner: Mutex<Samples>,
}

#[derive(Debug, Default)]
struct Samples {
    /// Samples taken, capped at [`SAMPLES`]: the length of every ring.
    filled: usize,
    taken: u64,
    prev_counters: HashMap<SeriesKey, u64>,
    prev_histograms: HashMap<SeriesKey, Vec<u64>>,
    /// Counter increase per second.
    rates: HashMap<SeriesKey, VecDeque<f64>>,
    /// Gauge values.
    gauges: HashMap<SeriesKey, VecDeque<f64>>,
    /// Recent bucket increases per histogram (latest last).
    latency_windows: HashMap<SeriesKey, VecDeque<Vec<u64>>>,
    /// p99 in milliseconds per histogram (0 when idle), for the sparkline.
    p99_ms: HashMap<SeriesKey, VecDeque<f64>>,
}

fn push(ring: &mut VecDeque<f64>, filled: usize, value: f64) {
    // A series first seen now is padded with zeros so every ring stays
    // aligned on the same seconds.
    while ring.len() < filled.saturating_sub(1) {
        ring.push_front(0.0);
    }
    if ring.len() >= SAMPLES {
        ring.pop_front();
    }
    ring.push_back(value);
}

impl Sampler {
    /// Takes one sample: counter values become rates over `elapsed`.
    pub fn record(
        &self,
        counters: Vec<(SeriesKey, u64)>,
        gauges: Vec<(SeriesKey, f64)>,
        histograms: Vec<(SeriesKey, Vec<u64>)>,
        elapsed: Duration,
    ) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let first = s.taken == 0;
        s.taken += 1;
        s.filled = (s.filled + 1).min(SAMPLES);
        let filled = s.filled;
        let seconds = elapsed.as_secs_f64().max(1e-3);
        for (key, value) in counters {
            // On the first sample everything already counted is history, not
            // rate; a series registered later started from zero.
            let prev = match s.prev_counters.insert(key.clone(), value) {
                Some(prev) => prev,
                None if first => value,
                None => 0,
            };
            #[allow(clippy::cast_precision_loss)] // per-second deltas stay far below 2^52
            let rate = value.saturating_sub(prev) as f64 / seconds;
            push(s.rates.entry(key).or_default(), filled, rate);
        }
        for (key, value) in gauges {
            push(s.gauges.entry(key).or_default(), filled, value);
        }
        for (key, counts) in histograms {
            let prev = match s.prev_histograms.insert(key.clone(), counts.clone()) {
                Some(prev) => prev,
                None if first => counts.clone(),
                None => vec![0; counts.len()],
            };
            let delta: Vec<u64> = counts
                .iter()
                .zip(prev.iter().chain(std::iter::repeat(&0)))
                .map(|(now, before)| now.saturating_sub(*before))
                .collect();
            let window = s.latency_windows.entry(key.clone()).or_default();
            if window.len() >= LATENCY_WINDOW {
                window.pop_front();
            }
            window.push_back(delta);
            let p99 = metrics::bucket_quantile(&sum_window(window), 0.99).map_or(0.0, to_ms);
            push(s.p99_ms.entry(key).or_default(), filled, p99);
        }
    }

    /// The dashboard's view of one series set: current value and history,
    /// summed over every series of `name` whose labels include `filter`.
    fn sum(&self, s: &Samples, name: &str, filter: &[(&str, &str)]) -> (f64, Vec<f64>) {
        let rings = if name == crate::metrics::CONNECTIONS_OPEN {
            &s.gauges
        } else {
            &s.rates
        };
        let mut total = vec![0.0; s.filled];
        for ((series, labels), ring) in rings {
            if *series != name || !matches(labels, filter) {
                continue;
            }
            let offset = total.len().saturating_sub(ring.len());
            for (slot, value) in total[offset..].iter_mut().zip(ring) {
                *slot += value;
            }
        }
        (total.last().copied().unwrap_or(0.0), total)
    }

    /// Latency p50/p99 (ms) over the window and the p99 history.
    fn latency(
        &self,
        s: &Samples,
        filter: &[(&str, &str)],
    ) -> (Option<f64>, Option<f64>, Vec<f64>) {
        let mut counts = vec![0; metrics::LATENCY_BUCKETS.len() + 1];
        let mut series = vec![0.0; s.filled];
        for ((name, labels), window) in &s.latency_windows {
            if *name != metrics::REQUEST_DURATION || !matches(labels, filter) {
                continue;
            }
            for (slot, value) in counts.iter_mut().zip(sum_window(window)) {
                *slot += value;
            }
            if let Some(ring) = s.p99_ms.get(&(*name, labels.clone())) {
                let offset = series.len().saturating_sub(ring.len());
                for (slot, value) in series[offset..].iter_mut().zip(ring) {
                    *slot = f64::max(*slot, *value);
                }
            }
        }
        let p50 = metrics::bucket_quantile(&counts, 0.5).map(to_ms);
        let p99 = metrics::bucket_quantile(&counts, 0.99).map(to_ms);
        (p50, p99, series)
    }

    /// Error rates of a migration by kind (over every cluster label).
    fn errors_by_kind(&self, s: &Samples, migration: &str) -> BTreeMap<String, f64> {
        let mut kinds = BTreeMap::new();
        for ((name, labels), ring) in &s.rates {
            if *name != metrics::REQUEST_ERRORS || !matches(labels, &[("migration", migration)]) {
                continue;
            }
            if let Some((_, kind)) = labels.iter().find(|(k, _)| k == "kind") {
                *kinds.entry(kind.clone()).or_insert(0.0) += ring.back().copied().unwrap_or(0.0);
            }
        }
        kinds
    }
}

fn to_ms(seconds: f64) -> f64 {
    (seconds * 1000.0 * 1000.0).round() / 1000.0
}

fn sum_window(window: &VecDeque<Vec<u64>>) -> Vec<u64> {
    let mut total = vec![0; metrics::LATENCY_BUCKETS.len() + 1];
    for delta in window {
        for (slot, value) in total.iter_mut().zip(delta) {
            *slot += value;
        }
    }
    total
}

fn matches(labels: &[(String, String)], filter: &[(&str, &str)]) -> bool {
    filter
        .iter()
        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
}

/// Samples the live mirror every [`SAMPLE_INTERVAL`] and exports the Redis
/// progress gauges from each driver's status, until `shutdown`.
pub fn spawn_sampler(
    state: AdminState,
    sampler: Arc<Sampler>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            publish_progress(&state);
            let live = metrics::live();
            sampler.record(
                live.counter_values(),
                live.gauge_values(),
                live.histogram_values(),
                last.elapsed(),
            );
            last = Instant::now();
        }
    })
}

/// Copies each Redis keyspace's copy backlog, repair set and backfill
/// progress from its driver's status into the catalogued gauges.
fn publish_progress(state: &AdminState) {
    for migration in state.controller.migrations() {
        let Some(driver) = migration.driver() else {
            continue;
        };
        for topic in migration.topics() {
            let Some(details) = driver.status(&topic.name) else {
                continue;
            };
            let (Some(backlog), Some(repair)) = (
                details["copy_backlog"].as_f64(),
                details["repair_set"].as_f64(),
            ) else {
                continue;
            };
            metrics::publish_redis_progress(
                &migration.name,
                &topic.name,
                backlog,
                repair,
                details["backfill"]["percent"].as_f64(),
            );
        }
    }
}

#[derive(Clone)]
struct ConsoleState {
    admin: AdminState,
    sampler: Arc<Sampler>,
}

/// `/`, `/console` and `GET /api/v1/dashboard`.
pub fn router(admin: AdminState, sampler: Arc<Sampler>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/console", get(page))
        .route("/api/v1/dashboard", get(dashboard))
        .with_state(ConsoleState { admin, sampler })
}

/// The page with its headers; also sent (with 401) to browsers without a
/// token on TCP, where it shows only the login form: it holds no data.
pub fn page_response() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

async fn page() -> Response {
    page_response()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn dashboard(Extract(state): Extract<ConsoleState>) -> Response {
    let mut history = state
        .admin
        .controller
        .history(None, None)
        .await
        .unwrap_or_default();
    history.reverse();
    history.truncate(HISTORY_ROWS);
    let mut view = json!({
        "now_ms": now_ms(),
        "interval_ms": u64::try_from(SAMPLE_INTERVAL.as_millis()).unwrap_or(1000),
        "samples": SAMPLES,
        "migrations": migrations_view(&state),
        "history": history,
    });
    if let Some(obj) = view.as_object_mut() {
        obj.insert(
            "sampled".to_owned(),
            json!(
                state
                    .sampler
                    .inner
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .taken
            ),
        );
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(view)).into_response()
}

fn migrations_view(state: &ConsoleState) -> Vec<Value> {
    let sampler = &state.sampler;
    let s = sampler.inner.lock().unwrap_or_else(PoisonError::into_inner);
    state
        .admin
        .controller
        .migrations()
        .iter()
        // The controller keeps the config's order.
        .zip(&state.admin.config.migrations)
        .map(|(m, mc)| {
            let name = &*m.name;
            let clusters = [
                ("source", mc.source.as_str()),
                ("target", mc.target.as_str()),
            ];
            let cluster_views: Vec<Value> = clusters
                .iter()
                .map(|(role, cluster)| cluster_view(sampler, &s, name, role, cluster))
                .collect();
            let (clients, clients_series) =
                sampler.sum(&s, metrics::CONNECTIONS_OPEN, &[("migration", name)]);
            let driver = m.driver();
            let topics: Vec<Value> = m
                .topics()
                .iter()
                .map(|t| topic_view(sampler, &s, name, &clusters, t, driver))
                .collect();
            json!({
                "name": name,
                "protocol": mc.protocol,
                "source": mc.source,
                "target": mc.target,
                "listen": mc.listen.to_string(),
                "served": driver.is_some(),
                "clients": {"now": clients, "series": clients_series},
                "errors_by_kind": sampler.errors_by_kind(&s, name),
                "clusters": cluster_views,
                "topics": topics,
            })
        })
        .collect()
}

/// One cluster of a migration as the page draws it: rates now and their
/// series over the window.
fn cluster_view(sampler: &Sampler, s: &Samples, name: &str, role: &str, cluster: &str) -> Value {
    let f = [("migration", name), ("cluster", cluster)];
    let (requests, requests_series) = sampler.sum(s, metrics::REQUESTS, &f);
    let (bytes_out, out_series) = sampler.sum(
        s,
        metrics::BYTES,
        &[f[0], f[1], ("direction", "to_upstream")],
    );
    let (bytes_in, in_series) =
        sampler.sum(s, metrics::BYTES, &[f[0], f[1], ("direction", "to_client")]);
    let (errors, errors_series) = sampler.sum(s, metrics::REQUEST_ERRORS, &f);
    let (p50, p99, p99_series) = sampler.latency(s, &f);
    let bytes_series: Vec<f64> = out_series
        .iter()
        .zip(&in_series)
        .map(|(a, b)| a + b)
        .collect();
    json!({
        "name": cluster,
        "role": role,
        "requests_per_s": requests,
        "bytes_per_s": bytes_in + bytes_out,
        "bytes_to_upstream_per_s": bytes_out,
        "bytes_to_client_per_s": bytes_in,
        "errors_per_s": errors,
        "p50_ms": p50,
        "p99_ms": p99,
        "series": {
            "requests": requests_series,
            "bytes": bytes_series,
            "errors": errors_series,
            "p99_ms": p99_series,
        },
    })
}

/// One topic of a migration: its state, the driver's details, and how its
/// requests split between the two clusters.
fn topic_view(
    sampler: &Sampler,
    s: &Samples,
    name: &str,
    clusters: &[(&str, &str); 2],
    t: &TopicHandle,
    driver: Option<&Arc<dyn Driver>>,
) -> Value {
    let (topic_state, epoch) = t.snapshot();
    let split: Vec<Value> = clusters
        .iter()
        .map(|(role, cluster)| {
            let (rate, series) = sampler.sum(
                s,
                metrics::REQUESTS,
                &[
                    ("migration", name),
                    ("topic", &t.name),
                    ("cluster", cluster),
                ],
            );
            json!({"cluster": cluster, "role": role, "requests_per_s": rate, "series": series})
        })
        .collect();
    json!({
        "name": &*t.name,
        "state": topic_state,
        "epoch": epoch,
        "details": driver.and_then(|d| d.status(&t.name)),
        "split": split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &'static str, labels: &[(&str, &str)]) -> SeriesKey {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        (name, labels)
    }

    #[test]
    fn counters_become_aligned_per_second_rates() {
        let sampler = Sampler::default();
        let a = key(
            metrics::REQUESTS,
            &[("migration", "m"), ("topic", "t"), ("cluster", "old")],
        );
        let b = key(
            metrics::REQUESTS,
            &[("migration", "m"), ("topic", "u"), ("cluster", "old")],
        );
        let second = Duration::from_secs(1);
        // Counts before the first sample are not a rate.
        sampler.record(vec![(a.clone(), 500)], vec![], vec![], second);
        sampler.record(vec![(a.clone(), 510)], vec![], vec![], second);
        // `b` appears later, from zero: its first increase counts.
        sampler.record(
            vec![(a.clone(), 530), (b.clone(), 4)],
            vec![],
            vec![],
            second,
        );
        let s = sampler.inner.lock().unwrap();
        let (now, series) = sampler.sum(&s, metrics::REQUESTS, &[("cluster", "old")]);
        assert_eq!(series, vec![0.0, 10.0, 24.0]);
        assert!((now - 24.0).abs() < f64::EPSILON);
        let (_, only_u) = sampler.sum(&s, metrics::REQUESTS, &[("topic", "u")]);
        assert_eq!(only_u, vec![0.0, 0.0, 4.0]);
    }

    #[test]
    fn rings_keep_two_minutes() {
        let sampler = Sampler::default();
        let a = key(metrics::CONNECTIONS_OPEN, &[("migration", "m")]);
        for i in 0..(SAMPLES + 30) {
            #[allow(clippy::cast_precision_loss)]
            sampler.record(vec![], vec![(a.clone(), i as f64)], vec![], SAMPLE_INTERVAL);
        }
        let s = sampler.inner.lock().unwrap();
        let (now, series) = sampler.sum(&s, metrics::CONNECTIONS_OPEN, &[("migration", "m")]);
        assert_eq!(series.len(), SAMPLES);
        #[allow(clippy::cast_precision_loss)]
        let last = (SAMPLES + 29) as f64;
        assert!((now - last).abs() < f64::EPSILON);
    }

    #[test]
    fn latency_quantiles_come_from_the_window() {
        let sampler = Sampler::default();
        let h = key(
            metrics::REQUEST_DURATION,
            &[("migration", "m"), ("cluster", "old")],
        );
        let mut counts = vec![0; metrics::LATENCY_BUCKETS.len() + 1];
        sampler.record(
            vec![],
            vec![],
            vec![(h.clone(), counts.clone())],
            SAMPLE_INTERVAL,
        );
        counts[4] += 100; // (1 ms, 2.5 ms]
        sampler.record(
            vec![],
            vec![],
            vec![(h.clone(), counts.clone())],
            SAMPLE_INTERVAL,
        );
        let s = sampler.inner.lock().unwrap();
        let (p50, p99, series) = sampler.latency(&s, &[("cluster", "old")]);
        assert_eq!(p50, Some(1.75));
        assert!(p99.unwrap() > 2.4 && p99.unwrap() <= 2.5);
        assert_eq!(series.len(), 2);
        let (none, _, _) = sampler.latency(&s, &[("cluster", "new")]);
        assert_eq!(none, None);
    }
}
