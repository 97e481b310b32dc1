//! The batch writer: usage records wait in a bounded queue and are appended to the event store
//! together, at most one flush interval after the first of them arrived.
//!
//! When the queue is full, the two audit modes answer differently, on purpose:
//! - **async** (the default) never holds a request for the store: the record is dropped. The loss
//!   is never silent: it is logged, counted (`keyguard_usage_records_dropped_total` in
//!   `/metrics`), and written to the usage history itself as a `UsageRecordsDropped` event (how
//!   many since the last one) in the next batch that is stored, so that an auditor replaying the
//!   history sees the gap. A batch the store refuses after retries is counted the same way.
//!   Waiting instead would turn a slow database into slow (or failed) proxied requests for
//!   everyone, which the async mode exists to avoid.
//! - **strict** holds the request instead (back-pressure): it waits for room in the queue and
//!   then for its batch to be stored, and is failed if the store refuses it; nothing is dropped.
//!
//! Shutting down stores everything already queued before the writer stops.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use domain::metadata::{Actor, EventMetadata};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{REQUEST_COMPLETED, UsageRecord};
use crate::store::{BatchEvent, Database};

/// The aggregate type of a batch of usage records: a fresh UUID per batch, records at 1, 2, …
pub const USAGE_BATCH_TYPE: &str = "usage_batch";
/// The event type that notes records lost before this batch: `{ count, total }`, the records
/// dropped since the previous such event and since the process started.
pub const USAGE_RECORDS_DROPPED: &str = "UsageRecordsDropped";
const EVENT_VERSION: &str = "1.0";

/// When a request's usage record must be durable (`KEYGUARD_AUDIT_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditMode {
    /// Queued; stored within the flush interval. Never delays a response.
    #[default]
    Async,
    /// Stored before the response ends: a JSON answer's last bytes and an event stream's end wait
    /// for the record (the stream's events do not); an answer whose record cannot be stored is
    /// cut off instead of completed.
    Strict,
}

#[derive(Debug, Clone)]
pub struct UsageConfig {
    pub mode: AuditMode,
    /// Records that may wait for the writer; beyond that they are dropped (async mode, counted and
    /// audited) or the request waits for room (strict mode). In async mode the writer empties the
    /// queue once per flush interval, so it must hold an interval's traffic.
    pub capacity: usize,
    /// The longest a record waits before its batch is written.
    pub flush_interval: Duration,
    pub max_batch: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            mode: AuditMode::Async,
            capacity: 10_000,
            flush_interval: Duration::from_millis(50),
            max_batch: 500,
        }
    }
}

struct Queued {
    record: UsageRecord,
    /// Told whether the record was stored (strict mode).
    stored: Option<oneshot::Sender<bool>>,
}

struct Started {
    tx: mpsc::Sender<Queued>,
    mode: AuditMode,
}

struct Inner {
    db: Database,
    started: OnceLock<Started>,
    /// Records lost since the process started; the writer task reports them in the history.
    dropped: Arc<AtomicU64>,
    task: Mutex<Option<(tokio::task::JoinHandle<()>, oneshot::Sender<()>)>>,
}

/// The proxy's handle on the usage history. Cheap to clone.
#[derive(Clone)]
pub struct UsageWriter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UsageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageWriter")
            .field("mode", &self.mode())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl UsageWriter {
    /// A writer that keeps nothing until [`UsageWriter::start`] runs its batch task.
    pub fn new(db: Database) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                started: OnceLock::new(),
                dropped: Arc::default(),
                task: Mutex::new(None),
            }),
        }
    }

    /// Starts the batch writer on the current runtime. A second call changes nothing.
    pub fn start(&self, config: UsageConfig) {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        if self.inner.started.set(Started { tx, mode: config.mode }).is_err() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let drops = Drops { counter: self.inner.dropped.clone(), reported: 0 };
        let task = tokio::spawn(run(self.inner.db.clone(), rx, stop_rx, config, drops));
        *self.inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some((task, stop_tx));
    }

    pub fn mode(&self) -> AuditMode {
        self.inner.started.get().map(|s| s.mode).unwrap_or_default()
    }

    /// Records waiting for the writer, and how many may wait (`None` until the writer runs).
    pub fn backlog(&self) -> Option<(usize, usize)> {
        let tx = &self.inner.started.get()?.tx;
        Some((tx.max_capacity() - tx.capacity(), tx.max_capacity()))
    }

    /// Records lost since the process started: the queue was full, the writer not running, or
    /// the store refused their batch.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Queues a record. In strict mode, waits for room in the queue and then until the record is
    /// stored; returns whether it was (in async mode: whether it was queued).
    pub async fn record(&self, record: UsageRecord) -> bool {
        let Some(started) = self.inner.started.get() else {
            self.count_drop("the usage writer is not running");
            return false;
        };
        if started.mode == AuditMode::Async {
            return self.record_now(record);
        }
        let (stored, done) = oneshot::channel();
        if started.tx.send(Queued { record, stored: Some(stored) }).await.is_err() {
            self.count_drop("the usage writer has stopped");
            return false;
        }
        done.await.unwrap_or(false)
    }

    /// Queues a record without ever waiting (for paths that cannot wait, like a dropped stream);
    /// when the queue is full the record is dropped, counted and later audited.
    pub fn record_now(&self, record: UsageRecord) -> bool {
        let Some(started) = self.inner.started.get() else {
            self.count_drop("the usage writer is not running");
            return false;
        };
        match started.tx.try_send(Queued { record, stored: None }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.count_drop("the usage queue is full");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.count_drop("the usage writer has stopped");
                false
            }
        }
    }

    fn count_drop(&self, why: &str) {
        let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(dropped_total = dropped, "usage record dropped: {why}");
    }

    /// Writes what is queued and stops the batch task (graceful shutdown).
    pub async fn shutdown(&self) {
        let task = self.inner.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((task, stop)) = task {
            let _ = stop.send(());
            if let Err(err) = task.await {
                tracing::error!(error = %err, "the usage writer failed while stopping");
            }
        }
    }
}

/// The loss counter and how much of it the history already tells.
struct Drops {
    counter: Arc<AtomicU64>,
    reported: u64,
}

async fn run(
    db: Database,
    mut rx: mpsc::Receiver<Queued>,
    mut stop: oneshot::Receiver<()>,
    config: UsageConfig,
    mut drops: Drops,
) {
    let max_batch = config.max_batch.max(1);
    let mut stopping = false;
    while !stopping {
        let first = tokio::select! {
            biased;
            _ = &mut stop => break,
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
        };
        let mut batch = vec![first];
        if config.mode == AuditMode::Async {
            // The records of the next interval gather in the queue meanwhile; not receiving them
            // one by one spares a wake-up per request (the queue is sized to hold an interval's worth).
            tokio::select! {
                biased;
                _ = &mut stop => stopping = true,
                () = tokio::time::sleep(config.flush_interval) => {}
            }
        }
        // Strict mode writes at once, with whatever else is already waiting.
        loop {
            while batch.len() < max_batch
                && let Ok(item) = rx.try_recv()
            {
                batch.push(item);
            }
            let full = batch.len() == max_batch;
            write(&db, std::mem::take(&mut batch), &mut drops).await;
            if !full {
                break;
            }
        }
    }
    // Shutting down: refuse new records, then store everything already queued (and the count of
    // those that were lost, even when nothing else is left to store).
    rx.close();
    let mut batch = Vec::new();
    while let Some(item) = rx.recv().await {
        batch.push(item);
        if batch.len() == max_batch {
            write(&db, std::mem::take(&mut batch), &mut drops).await;
        }
    }
    write(&db, batch, &mut drops).await;
}

/// Stores one batch, preceded by a `UsageRecordsDropped` event when records were lost since the
/// last one; retries a failed write a few times, and tells waiting requests.
async fn write(db: &Database, batch: Vec<Queued>, drops: &mut Drops) {
    let total = drops.counter.load(Ordering::Relaxed);
    let unreported = total - drops.reported;
    if batch.is_empty() && unreported == 0 {
        return;
    }
    let mut records = Vec::with_capacity(batch.len());
    let mut waiting = Vec::new();
    for queued in batch {
        records.push(queued.record);
        waiting.extend(queued.stored);
    }
    let lost = (unreported > 0).then_some(Dropped { count: unreported, total });
    let mut stored = false;
    for attempt in 0..3u32 {
        match append(db, lost.as_ref(), &records).await {
            Ok(id) => {
                tracing::debug!(aggregate_id = %id, records = records.len(), "usage batch stored");
                stored = true;
                break;
            }
            Err(err) => {
                tracing::error!(error = %err, attempt, records = records.len(), "cannot store a usage batch");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    if stored {
        drops.reported = total;
    } else {
        let count = records.len() as u64;
        let dropped = drops.counter.fetch_add(count, Ordering::Relaxed) + count;
        tracing::error!(records = count, dropped_total = dropped, "usage batch lost after retries");
    }
    for tx in waiting {
        let _ = tx.send(stored);
    }
}

/// The payload of a `UsageRecordsDropped` event.
#[derive(serde::Serialize)]
struct Dropped {
    count: u64,
    total: u64,
}

#[derive(Debug, thiserror::Error)]
enum AppendError {
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Serialize(#[from] serde_json::Error),
}

/// Appends the records (after the loss notice, if any) as one new `usage_batch` aggregate,
/// atomically. Same columns as cqrs-es and the audit recorder write; the store fills
/// `global_seq`, `event_id`, `tx_id`, `recorded_at`.
async fn append(db: &Database, lost: Option<&Dropped>, records: &[UsageRecord]) -> Result<Uuid, AppendError> {
    let aggregate_id = Uuid::new_v4();
    let id = aggregate_id.to_string();
    let metadata = serde_json::to_string(&EventMetadata::new(Actor::system("proxy"), Utc::now()).to_map())?;
    let notice = lost.map(|lost| {
        let payload =
            serde_json::json!({ "type": USAGE_RECORDS_DROPPED, "count": lost.count, "total": lost.total });
        (USAGE_RECORDS_DROPPED, Ok(payload.to_string()))
    });
    let events = notice
        .into_iter()
        .chain(records.iter().map(|record| (REQUEST_COMPLETED, record.to_payload())))
        .map(|(event_type, payload)| {
            Ok(BatchEvent {
                event_type: event_type.to_owned(),
                event_version: EVENT_VERSION.to_owned(),
                payload_json: payload?,
            })
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    db.append_batch(USAGE_BATCH_TYPE, &id, &events, &metadata).await?;
    Ok(aggregate_id)
}
