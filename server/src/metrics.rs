//! Prometheus metrics: a registry the whole server shares, the HTTP request metrics, and the
//! `/metrics` endpoint in the Prometheus text format.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use services::usage::UsageWriter;

use crate::startup::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route pattern (`/api/v1/devices/{id}`), never the raw path: ids would explode the
    /// number of series.
    pub route: String,
    pub status: u16,
}

/// The metrics of one server process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    proxy_added: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The registry, reading the usage writer's loss count at each scrape.
    pub fn new(usage: UsageWriter) -> Self {
        let mut registry = Registry::with_prefix("keyguard");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", http_requests.clone());
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to ~26 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests",
            http_duration.clone(),
        );
        // 10 µs to ~850 ms in steps of 1.5×: fine enough to tell 100 µs from 300 µs.
        let proxy_added = Histogram::new(exponential_buckets(0.000_01, 1.5, 28));
        registry.register(
            "proxy_added_latency_seconds",
            "Time the proxy adds to a forwarded request: from receiving it to sending it upstream, plus \
             from the upstream's response headers to the start of the response",
            proxy_added.clone(),
        );
        registry.register_collector(Box::new(UsageMetrics(usage)));
        registry.register_collector(Box::new(RuntimeMetrics));
        registry.register_collector(Box::new(BookkeepingMetrics));
        Self { registry: Arc::new(registry), http_requests, http_duration, proxy_added }
    }

    /// Records what the proxy added to one forwarded request.
    pub fn observe_proxy_added(&self, added: Duration) {
        self.proxy_added.observe(added.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The usage writer's counters, read when scraped (the writer owns them).
#[derive(Debug)]
struct UsageMetrics(UsageWriter);

impl Collector for UsageMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let dropped = ConstCounter::new(self.0.dropped());
        let metric = encoder.encode_descriptor(
            "usage_records_dropped",
            "Usage records lost (queue full, writer stopped, or refused by the store)",
            None,
            dropped.metric_type(),
        )?;
        dropped.encode(metric)
    }
}

/// The async runtime's task count, read when scraped: it returns to its resting level once the
/// requests in flight are done, so a task leaked by some path shows as a rising floor.
#[derive(Debug)]
struct RuntimeMetrics;

impl Collector for RuntimeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return Ok(()) };
        let alive = ConstGauge::new(i64::try_from(runtime.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "runtime_alive_tasks",
            "Tasks alive in the server's async runtime (connections, requests, background work)",
            None,
            alive.metric_type(),
        )?;
        alive.encode(metric)
    }
}

/// Whether the bookkeeping yields the CPU to requests now, and how often it fell behind (see
/// [`crate::priority`]); nothing when it keeps normal priority.
#[derive(Debug)]
struct BookkeepingMetrics;

impl Collector for BookkeepingMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(status) = crate::priority::status() else { return Ok(()) };
        let yielding = ConstGauge::new(i64::from(status.yielding));
        let metric = encoder.encode_descriptor(
            "bookkeeping_yielding",
            "1 while the bookkeeping threads yield the CPU to requests (SCHED_IDLE), 0 while they have \
             normal priority",
            None,
            yielding.metric_type(),
        )?;
        yielding.encode(metric)?;
        let fell_behind = ConstCounter::new(status.fell_behind);
        let metric = encoder.encode_descriptor(
            "bookkeeping_fell_behind",
            "Times the bookkeeping fell behind (its heartbeat late or slow, or the usage queue filling) and \
             got normal priority back",
            None,
            fell_behind.metric_type(),
        )?;
        fell_behind.encode(metric)
    }
}

/// Records every request's count and duration.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let labels = HttpLabels { method, route, status: response.status().as_u16() };
    state.metrics.http_requests.get_or_create(&labels).inc();
    state.metrics.http_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn endpoint(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
}
