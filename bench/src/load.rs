//! Driving load: requests prepared before the clock starts, sent closed-loop (N workers, each
//! sending its next request when the previous answer has ended) or open-loop (at a fixed rate,
//! whatever the answers do), with every latency recorded in an HDR histogram.
//!
//! Open-loop latency is measured from when a request was *scheduled*, not from when it was
//! sent, so a stall (in the target or in this generator) counts against every request it held
//! back, instead of hiding them (coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::time::Instant;

/// One request, ready to send many times over (headers and body are shared).
#[derive(Clone)]
pub struct Prepared {
    path: Arc<str>,
    headers: HeaderMap,
    body: Bytes,
}

impl Prepared {
    pub fn new(path: &str, headers: &[(String, String)], body: Bytes) -> anyhow::Result<Self> {
        let mut map = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            map.append(HeaderName::from_bytes(name.as_bytes())?, HeaderValue::from_str(value)?);
        }
        Ok(Self { path: path.into(), headers: map, body })
    }
}

/// How the requests are sent.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Shape {
    /// `concurrency` workers, back to back; worker `i` starts `i × stagger` after the first, so
    /// that requests of equal length do not all arrive together (independent clients do not).
    Closed {
        concurrency: usize,
        #[serde(rename = "stagger_ms", serialize_with = "millis")]
        stagger: Duration,
    },
    /// `rate` requests per second on a fixed schedule.
    Open { rate: u32 },
}

/// A pooled HTTP/1.1 client towards one target.
#[derive(Clone)]
pub struct Target {
    client: Client<HttpConnector, Full<Bytes>>,
    base: Arc<str>,
}

impl Target {
    pub fn new(base: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4096)
            .build(connector);
        Self { client, base: base.trim_end_matches('/').into() }
    }

    /// Sends one request and reads the whole answer: (status, time to the first body bytes).
    async fn send(&self, prepared: &Prepared, started: Instant) -> Result<(u16, Duration), String> {
        let uri: Uri = format!("{}{}", self.base, prepared.path).parse().map_err(|e| format!("uri: {e}"))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Full::new(prepared.body.clone()))
            .map_err(|e| e.to_string())?;
        *request.headers_mut() = prepared.headers.clone();
        let response = self.client.request(request).await.map_err(|e| format!("transport: {e}"))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body: {e}"))?;
            if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                first = Some(started.elapsed());
            }
        }
        Ok((status, first.unwrap_or_else(|| started.elapsed())))
    }
}

/// What one scenario measured against one target.
#[derive(Clone)]
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub first_byte: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        // Microseconds, 1 µs to 10 min, three significant digits.
        let histogram = || Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
        Self { latency: histogram(), first_byte: histogram(), ok: 0, errors: BTreeMap::new() }
    }
}

impl Recorder {
    fn record(&mut self, outcome: Result<(u16, Duration), String>, total: Duration) {
        match outcome {
            Ok((status, first)) if (200..300).contains(&status) => {
                self.ok += 1;
                self.latency.saturating_record(micros(total));
                self.first_byte.saturating_record(micros(first));
            }
            Ok((status, _)) => *self.errors.entry(format!("status {status}")).or_default() += 1,
            Err(err) => {
                let kind = err.split(':').next().unwrap_or("error").to_owned();
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: &Recorder) {
        self.latency.add(&other.latency).expect("same bounds");
        self.first_byte.add(&other.first_byte).expect("same bounds");
        self.ok += other.ok;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn millis<S: serde::Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(d.as_secs_f64() * 1e3)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The outcome of one run: what was recorded and how long it took.
pub struct Run {
    pub recorder: Recorder,
    pub elapsed: Duration,
    /// Requests the schedule asked for (open loop) or that were available (closed loop).
    pub planned: usize,
}

/// Sends `requests` in the given shape for at most `duration` (or until they run out).
pub async fn drive(target: &Target, requests: Arc<Vec<Prepared>>, shape: Shape, duration: Duration) -> Run {
    match shape {
        Shape::Closed { concurrency, stagger } => {
            closed(target, requests, concurrency, stagger, duration).await
        }
        Shape::Open { rate } => open(target, requests, rate, duration).await,
    }
}

async fn closed(
    target: &Target,
    requests: Arc<Vec<Prepared>>,
    concurrency: usize,
    stagger: Duration,
    duration: Duration,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|worker| {
            let (target, requests, next) = (target.clone(), requests.clone(), next.clone());
            let start = started + stagger * u32::try_from(worker).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                let mut recorder = Recorder::default();
                tokio::time::sleep_until(start).await;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests.len() || Instant::now() >= deadline {
                        return recorder;
                    }
                    let sent = Instant::now();
                    let outcome = target.send(&requests[i], sent).await;
                    recorder.record(outcome, sent.elapsed());
                }
            })
        })
        .collect();
    let mut recorder = Recorder::default();
    for worker in workers {
        if let Ok(part) = worker.await {
            recorder.merge(&part);
        }
    }
    Run { recorder, elapsed: started.elapsed(), planned: requests.len() }
}

async fn open(target: &Target, requests: Arc<Vec<Prepared>>, rate: u32, duration: Duration) -> Run {
    let planned = ((f64::from(rate) * duration.as_secs_f64()) as usize).min(requests.len());
    let shared = Arc::new(Mutex::new(Recorder::default()));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = Instant::now() + Duration::from_millis(20);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..planned {
        let scheduled = started + interval.mul_f64(i as f64);
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled).await;
        }
        let (target, requests, shared) = (target.clone(), requests.clone(), shared.clone());
        tasks.spawn(async move {
            let outcome = target.send(&requests[i], scheduled).await;
            let total = scheduled.elapsed();
            shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(outcome, total);
        });
        // Reap finished tasks as we go, so the set stays as small as what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let recorder = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Run { recorder, elapsed: started.elapsed(), planned }
}
