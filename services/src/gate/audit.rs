//! Auditing the gate's refusals without letting them flood the trail or slow the request.
//!
//! A refusal is handed to a bounded queue (`try_send`, never waiting) and a single writer task
//! stores the records in batches, one `record_all` per client IP every flush interval (50 ms),
//! so each stored record carries the IP in its metadata.
//!
//! Flood control, in the writer:
//! - **Coalescing.** Identical refusals (same reason code, project key, device and IP) within
//!   the coalescing window (60 s) are stored once; the repeats are counted and stored as one
//!   `ProxyRequestRejected` record with `details.repeated = n` when the window closes. Someone
//!   replaying junk from one address therefore costs one record a minute per reason.
//! - **A ceiling.** At most `max_records_per_second` records are stored per second (junk from
//!   many addresses); beyond that, refusals are only counted, and the count is stored as one
//!   `ProxyRejectionsSuppressed` record per second.
//! - **A bounded queue.** When the queue is full the refusal is counted the same way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::metadata::{Actor, EventMetadata};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::audit::{AuditOutcome, AuditRecord, AuditRecorder};

/// The audit record type of a refused proxy request.
pub const REJECTED_KIND: &str = "ProxyRequestRejected";
/// The audit record type of a refused device enrollment.
pub const ENROLLMENT_REJECTED_KIND: &str = "EnrollmentRejected";
/// The audit record type counting refusals that were not stored one by one.
pub const SUPPRESSED_KIND: &str = "ProxyRejectionsSuppressed";

#[derive(Debug, Clone)]
pub(crate) struct RejectionEvent {
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub outcome: AuditOutcome,
    pub api_key_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub key_id: Option<String>,
    pub ip: IpAddr,
    pub method: String,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct AuditSinkConfig {
    pub queue: usize,
    pub flush_interval: Duration,
    pub coalesce_window: Duration,
    pub max_records_per_second: u32,
    /// Distinct (reason, key, device, IP) windows remembered at once.
    pub max_windows: usize,
}

impl Default for AuditSinkConfig {
    fn default() -> Self {
        Self {
            queue: 4096,
            flush_interval: Duration::from_millis(50),
            coalesce_window: Duration::from_secs(60),
            max_records_per_second: 500,
            max_windows: 10_000,
        }
    }
}

pub(crate) struct AuditSink {
    sender: mpsc::Sender<RejectionEvent>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// Starts the writer task (needs a Tokio runtime); it stops, after a last flush, when the
    /// sink is dropped.
    pub fn spawn(recorder: AuditRecorder, config: AuditSinkConfig) -> Self {
        let (sender, receiver) = mpsc::channel(config.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            recorder,
            windows: HashMap::new(),
            buffer: Vec::new(),
            second_started: Instant::now(),
            stored_this_second: 0,
            suppressed: 0,
            dropped: dropped.clone(),
            config,
        };
        tokio::spawn(writer.run(receiver));
        Self { sender, dropped }
    }

    pub fn submit(&self, event: RejectionEvent) {
        if self.sender.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

type WindowKey = (&'static str, &'static str, Option<Uuid>, Option<Uuid>, IpAddr);

struct Window {
    started: Instant,
    repeated: u64,
    last: RejectionEvent,
}

struct Writer {
    recorder: AuditRecorder,
    windows: HashMap<WindowKey, Window>,
    buffer: Vec<(IpAddr, AuditRecord)>,
    second_started: Instant,
    stored_this_second: u32,
    suppressed: u64,
    dropped: Arc<AtomicU64>,
    config: AuditSinkConfig,
}

fn record_of(event: &RejectionEvent, repeated: Option<u64>) -> AuditRecord {
    let mut record = AuditRecord::new(
        event.kind,
        event.outcome,
        match repeated {
            None => format!("request refused: {}", event.code),
            Some(n) => format!("request refused: {} ({n} more times)", event.code),
        },
    );
    record.api_key_id = event.api_key_id;
    record.device_id = event.device_id;
    let mut details = serde_json::json!({
        "reason": event.code,
        "message": event.message,
        "ip": event.ip.to_string(),
        "method": event.method,
        "path": event.path,
    });
    if let Some(key_id) = &event.key_id {
        details["keyId"] = key_id.clone().into();
    }
    if let Some(n) = repeated {
        details["repeated"] = n.into();
    }
    record.details = details;
    record
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<RejectionEvent>) {
        let mut ticker = tokio::time::interval(self.config.flush_interval);
        loop {
            tokio::select! {
                received = receiver.recv() => match received {
                    Some(event) => self.accept(event),
                    None => {
                        self.close_windows(true);
                        self.flush().await;
                        return;
                    }
                },
                _ = ticker.tick() => {
                    self.close_windows(false);
                    self.flush().await;
                }
            }
        }
    }

    fn accept(&mut self, event: RejectionEvent) {
        let now = Instant::now();
        let key = (event.kind, event.code, event.api_key_id, event.device_id, event.ip);
        if let Some(window) = self.windows.get_mut(&key)
            && now.duration_since(window.started) < self.config.coalesce_window
        {
            window.repeated += 1;
            window.last = event;
            return;
        }
        if self.windows.len() >= self.config.max_windows {
            self.close_windows(true);
        }
        if let Some(old) = self.windows.remove(&key)
            && old.repeated > 0
        {
            self.push(old.last.ip, record_of(&old.last, Some(old.repeated)));
        }
        self.push(event.ip, record_of(&event, None));
        self.windows.insert(key, Window { started: now, repeated: 0, last: event });
    }

    fn push(&mut self, ip: IpAddr, record: AuditRecord) {
        let now = Instant::now();
        if now.duration_since(self.second_started) >= Duration::from_secs(1) {
            self.second_started = now;
            self.stored_this_second = 0;
        }
        if self.stored_this_second >= self.config.max_records_per_second {
            self.suppressed += 1;
            return;
        }
        self.stored_this_second += 1;
        self.buffer.push((ip, record));
    }

    /// Stores the repeat counts of windows that ended (or of all, when `all`).
    fn close_windows(&mut self, all: bool) {
        let now = Instant::now();
        let window = self.config.coalesce_window;
        let ended: Vec<WindowKey> = self
            .windows
            .iter()
            .filter(|(_, w)| all || now.duration_since(w.started) >= window)
            .map(|(k, _)| *k)
            .collect();
        for key in ended {
            if let Some(w) = self.windows.remove(&key)
                && w.repeated > 0
            {
                self.push(w.last.ip, record_of(&w.last, Some(w.repeated)));
            }
        }
    }

    async fn flush(&mut self) {
        let uncounted = self.suppressed + self.dropped.swap(0, Ordering::Relaxed);
        self.suppressed = 0;
        let mut by_ip: HashMap<Option<IpAddr>, Vec<AuditRecord>> = HashMap::new();
        for (ip, record) in self.buffer.drain(..) {
            by_ip.entry(Some(ip)).or_default().push(record);
        }
        if uncounted > 0 {
            let mut record = AuditRecord::new(
                SUPPRESSED_KIND,
                AuditOutcome::Failure,
                format!("{uncounted} proxy refusals were not recorded one by one (flood control)"),
            );
            record.details = serde_json::json!({ "count": uncounted });
            by_ip.entry(None).or_default().push(record);
        }
        for (ip, records) in by_ip {
            let mut metadata = EventMetadata::new(Actor::system("proxy"), Utc::now());
            if let Some(ip) = ip {
                metadata = metadata.with_ip(ip);
            }
            if let Err(e) = self.recorder.record_all(records, &metadata).await {
                tracing::error!(error = %e, "cannot store proxy rejection audit records");
            }
        }
    }
}
