//! `GET /metrics`: Prometheus text exposition (not under `/api`, no auth).
//!
//! Each [`app`](super::app) builds its own recorder (`PrometheusBuilder::build_recorder`)
//! and records through it with `metrics::with_local_recorder`; nothing is installed
//! globally, so several apps in one process (the tests) never share or fight over a
//! recorder, and there is no HTTP listener besides the app's own.
//!
//! Recorded as they happen (by the request middleware):
//! - `http_requests_total{method,route,status}`: `route` is the matched route template
//!   (`/api/predictions/{productId}`), `unmatched` otherwise; `method` is one of the
//!   methods HTTP defines ([`method_label`]), `other` otherwise.
//! - `http_request_duration_seconds{method,route}`: histogram.
//!
//! # Bounded
//! Every label comes from a fixed set: clients choose the method and the path, and a
//! series per made-up method once grew `/metrics` to 107 MiB over 3,000 requests (the
//! recorder never forgets a series). Series not updated for [`SERIES_IDLE_TIMEOUT`] are
//! dropped from the recorder as well, so even the bounded set only holds what is in use.
//! The middleware keeps handles of the series it records into (a lookup instead of a
//! registry key per request); a handle outlives an eviction unnoticed, so they are all
//! forgotten every half timeout and looked up again (see [`Metrics::record_request`]).
//! - `http_rate_limited_total{scope}`: 429s, `scope` = `ip` or `user`.
//! - `auto_order_sync_{pull,apply,resync}_duration_seconds`: histograms of the sync engine's
//!   work, from its timings ([`run_sync_timings`]).
//!
//! Computed at scrape time from the sync engine, the authenticator and the primary pool:
//! `auto_order_replica_*` (including `auto_order_replica_staleness_seconds`),
//! `auto_order_sync_*` (including `auto_order_sync_forks_total`, `_resync_failures`,
//! `_horizon_held`, `_horizon_holder_age_seconds`, `_primary_schema_newer`, `_upstream_standby`), `auto_order_primary_*`,
//! `auto_order_jwks_*`
//! (see [`Metrics::record_state`]), and the read cache through [`Metrics::record_cache_stats`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;

use auto_order_sync::handle::Timing;

use super::AppState;

/// Latency buckets, in seconds: 1 ms … 15 s (the request timeout).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

/// The sync engine's pulls and applies, in seconds: 0.5 ms … 30 s.
const SYNC_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Resyncs, in seconds: 10 ms (an empty table) … 30 min (millions of rows from far away).
const RESYNC_BUCKETS: &[f64] = &[
    0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// A series not updated for this long is dropped from `/metrics` (it reappears, from zero,
/// with its next update; Prometheus reads that as a counter reset).
pub const SERIES_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The `method` label: the methods of RFC 9110 and PATCH as they are, anything else
/// `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Histograms are folded into their buckets every this many requests (and at each scrape),
/// so memory stays flat even if nothing scrapes.
const UPKEEP_EVERY: u64 = 1024;

/// One app's metrics: its recorder and the handle that renders it. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: AtomicU64,
    /// Per route template, the handles of each `(method, status)` seen: recording a request
    /// is then a lookup, not a registry key built from three freshly allocated labels.
    by_route: RwLock<HashMap<String, Vec<RequestHandles>>>,
    /// When `by_route` was last emptied (see [`Metrics::record_request`]).
    handles_since: std::sync::Mutex<Instant>,
    /// The recorder's idle timeout ([`SERIES_IDLE_TIMEOUT`] outside tests).
    idle: Duration,
}

/// The two series one `(method, route, status)` records into.
struct RequestHandles {
    method: &'static str,
    status: u16,
    count: Counter,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Self::with_idle_timeout(SERIES_IDLE_TIMEOUT)
    }

    /// Metrics whose series are dropped after `idle` without an update (tests use a short
    /// one).
    pub fn with_idle_timeout(idle: Duration) -> Metrics {
        let full = |name: &str| Matcher::Full(name.to_owned());
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    full("auto_order_sync_pull_duration_seconds"),
                    SYNC_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    full("auto_order_sync_apply_duration_seconds"),
                    SYNC_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    full("auto_order_sync_resync_duration_seconds"),
                    RESYNC_BUCKETS,
                )
            })
            .expect("buckets are not empty")
            .idle_timeout(MetricKindMask::ALL, Some(idle))
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, super::metric_descriptions::describe);
        Metrics {
            inner: Arc::new(Inner {
                recorder,
                handle,
                requests: AtomicU64::new(0),
                by_route: RwLock::default(),
                handles_since: std::sync::Mutex::new(Instant::now()),
                idle,
            }),
        }
    }

    /// Runs `f` with this app's recorder as the current one (`counter!` etc. record here).
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.inner.recorder, f)
    }

    /// One finished request. `method` comes from [`method_label`], `route` is a matched
    /// route template or a fixed word: both from bounded sets.
    ///
    /// The recorder drops a series idle for [`SERIES_IDLE_TIMEOUT`] when it renders; a
    /// handle kept across that would record into the dropped series, and nothing would
    /// show. So [`Metrics::render`] forgets every kept handle once they are half a timeout
    /// old, before rendering: a kept handle was looked up (and recorded into) less than
    /// half a timeout ago, and its series cannot have been idle for a whole one.
    pub fn record_request(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        latency: Duration,
    ) {
        let record = |h: &RequestHandles| {
            h.count.increment(1);
            h.duration.record(latency.as_secs_f64());
        };
        let known = {
            let by_route = self
                .inner
                .by_route
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let handles = by_route.get(route).and_then(|all| {
                all.iter()
                    .find(|h| h.status == status && h.method == method)
            });
            handles.map(record).is_some()
        };

        if !known {
            let handles = self.with(|| RequestHandles {
                method,
                status,
                count: counter!("http_requests_total", "method" => method,
                    "route" => route.to_owned(), "status" => status.to_string()),
                duration: histogram!("http_request_duration_seconds",
                    "method" => method, "route" => route.to_owned()),
            });
            record(&handles);
            let mut by_route = self
                .inner
                .by_route
                .write()
                .unwrap_or_else(|p| p.into_inner());
            by_route.entry(route.to_owned()).or_default().push(handles);
        }
        if self.inner.requests.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.inner.handle.run_upkeep();
        }
    }

    /// Forgets the kept handles once they are half a [`SERIES_IDLE_TIMEOUT`] old.
    fn expire_handles(&self) {
        let mut since = self
            .inner
            .handles_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if since.elapsed() >= self.inner.idle / 2 {
            *since = Instant::now();
            self.inner
                .by_route
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// A request refused by the rate limiter; `scope` is `ip` or `user`.
    pub fn record_rate_limited(&self, scope: &'static str) {
        self.with(|| counter!("http_rate_limited_total", "scope" => scope).increment(1));
    }

    /// The read cache's running totals (at scrape time), exported as counters.
    pub fn record_cache_stats(&self, hits: u64, misses: u64) {
        self.with(|| {
            counter!("auto_order_cache_hits_total").absolute(hits);
            counter!("auto_order_cache_misses_total").absolute(misses);
        });
    }

    /// Gauges and counters read from the sync engine, the authenticator and the primary
    /// pool at scrape time.
    pub fn record_state(&self, state: &AppState) {
        let s = state.sync.status();
        let auth = state.auth.status();
        let (pool_size, pool_available) = state.store.primary().pool_status();
        self.with(|| {
            gauge!("auto_order_replica_ready").set(f64::from(u8::from(s.ready)));
            // Replication lag: age of the newest applied change, and of the last pull.
            if let Some(age) = s.last_change_age() {
                gauge!("auto_order_replica_lag_seconds").set(age.as_secs_f64());
            }
            if let Some(age) = s.since_last_pull() {
                gauge!("auto_order_replica_last_pull_age_seconds").set(age.as_secs_f64());
            }
            gauge!("auto_order_replica_watermark").set(s.watermark as f64);
            if let Some(h) = s.primary_horizon {
                gauge!("auto_order_primary_horizon").set(h as f64);
            }
            gauge!("auto_order_sync_backlog").set(s.backlog.unwrap_or(0) as f64);
            counter!("auto_order_sync_applied_batches_total").absolute(s.applied_batches);
            counter!("auto_order_sync_applied_changes_total").absolute(s.applied_changes);
            counter!("auto_order_sync_resyncs_total").absolute(s.resyncs);
            // The primary's lifecycle (docs/SYNC.md): forks converged to, failing resyncs,
            // staleness, a held horizon, a newer primary schema, where pulls come from.
            counter!("auto_order_sync_forks_total").absolute(s.forks);
            let fatal = s.phase == auto_order_sync::handle::Phase::Retrying && s.last_error_fatal;
            gauge!("auto_order_sync_fatal_error").set(f64::from(u8::from(fatal)));
            gauge!("auto_order_sync_resync_failures").set(f64::from(s.resync_failures));
            if let Some(staleness) = s.staleness() {
                gauge!("auto_order_replica_staleness_seconds").set(staleness.as_secs_f64());
            }
            gauge!("auto_order_sync_horizon_held").set(f64::from(u8::from(s.horizon_held)));
            let holder_age = (s.horizon_held)
                .then(|| s.horizon_holder.as_ref()?.transaction_age_s)
                .flatten()
                .unwrap_or(0.0);
            gauge!("auto_order_sync_horizon_holder_age_seconds").set(holder_age);
            gauge!("auto_order_sync_primary_schema_newer")
                .set(f64::from(u8::from(!s.primary_schema_newer.is_empty())));
            counter!("auto_order_sync_ignored_changes_total").absolute(s.ignored_changes);
            let on_standby = s.upstream == auto_order_sync::source::Upstream::Standby;
            gauge!("auto_order_sync_upstream_standby").set(f64::from(u8::from(on_standby)));
            gauge!("auto_order_primary_reachable").set(f64::from(u8::from(s.primary_reachable)));
            gauge!("auto_order_primary_pool_size").set(pool_size as f64);
            gauge!("auto_order_primary_pool_available").set(pool_available as f64);
            if let Some(age) = auth.jwks_age_seconds {
                gauge!("auto_order_jwks_age_seconds").set(age as f64);
            }
            gauge!("auto_order_jwks_keys").set(auth.key_count as f64);
            counter!("auto_order_jwks_refreshes_total").absolute(auth.fetches);
            counter!("auto_order_jwks_refresh_failures_total").absolute(auth.fetch_failures);
        });
    }

    /// One of the sync engine's durations (see [`run_sync_timings`]).
    pub fn record_sync_timing(&self, timing: Timing) {
        self.with(|| match timing {
            Timing::Pull(took) => {
                histogram!("auto_order_sync_pull_duration_seconds").record(took.as_secs_f64())
            }
            Timing::Apply(took) => {
                histogram!("auto_order_sync_apply_duration_seconds").record(took.as_secs_f64())
            }
            Timing::Resync(took) => {
                histogram!("auto_order_sync_resync_duration_seconds").record(took.as_secs_f64())
            }
        });
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.expire_handles();
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }
}

/// Records the sync engine's durations as they come, until `stop`. Subscribe before the
/// engine starts so that none is missed; a lagging receiver skips what it lost.
pub async fn run_sync_timings(
    metrics: Metrics,
    mut timings: tokio::sync::broadcast::Receiver<Timing>,
    stop: tokio_util::sync::CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            timing = timings.recv() => match timing {
                Ok(timing) => metrics.record_sync_timing(timing),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

#[derive(Clone)]
struct Scrape {
    state: AppState,
    metrics: Metrics,
}

/// `GET /metrics`, with its own state; merge it outside `/api`.
pub fn router(state: AppState, metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { state, metrics })
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    s.metrics.record_state(&s.state);
    s.metrics
        .record_cache_stats(s.state.cache.hits(), s.state.cache.misses());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_known_methods_are_labels() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"X0001MADEUP").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }

    /// Polls `render` until `done` holds (at most 5 s).
    fn render_until(metrics: &Metrics, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = metrics.render();
            if done(&text) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_idle_series_is_dropped_and_counts_again_from_its_next_request() {
        let metrics = Metrics::with_idle_timeout(Duration::from_millis(200));
        let series = r#"http_requests_total{method="GET",route="/a",status="200"}"#;
        metrics.record_request("GET", "/a", 200, Duration::from_millis(1));
        metrics.record_request("GET", "/a", 200, Duration::from_millis(1));
        assert!(metrics.render().contains(&format!("{series} 2")));

        let idle = render_until(&metrics, |text| !text.contains(series));
        metrics.record_request("GET", "/a", 200, Duration::from_millis(1));
        let back = metrics.render();

        assert!(!idle.contains(series), "never dropped:\n{idle}");
        assert!(
            back.contains(&format!("{series} 1")),
            "the next request is counted in a live series:\n{back}"
        );
    }
}
