//! Projections: keep the read models (devices, API keys, enrollment codes, users, policies, audit
//! log, hourly traffic) up to date from the event log, each with a checkpoint written in the same transaction
//! as its read-model change, so a crash at any point neither loses nor repeats an event.
//!
//! [`Projections::catch_up`] applies everything committed so far (commands call it for
//! read-your-writes), [`Projections::spawn`] keeps doing so in the background whenever the bus
//! announces an event and periodically as a safety net, and [`Projections::rebuild`] replays
//! the whole store into empty tables (`keyguard projections rebuild`).

mod api_keys;
mod audit_log;
mod devices;
mod policies;
pub(crate) mod retained;
mod traffic;
mod users;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::retained::UsageTotals;
use crate::events::{BusEvent, EventBus, EventLog, EventLogError, StoredEvent};
use crate::read_models::sql::{self, Tx, args};
use crate::store::Database;

/// The read models, each with a checkpoint of its own: a batch usually moves them all in one
/// transaction, and one by one when they are at different points or one of them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    Devices,
    ApiKeys,
    EnrollmentCodes,
    Users,
    Policies,
    AuditLog,
    Traffic,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Projection::Devices,
        Projection::ApiKeys,
        Projection::EnrollmentCodes,
        Projection::Users,
        Projection::Policies,
        Projection::AuditLog,
        Projection::Traffic,
    ];

    /// The checkpoint's name. Stored: never rename one.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Devices => "devices",
            Projection::ApiKeys => "api_keys",
            Projection::EnrollmentCodes => "enrollment_codes",
            Projection::Users => "users",
            Projection::Policies => "policies",
            Projection::AuditLog => "audit_log",
            Projection::Traffic => "traffic",
        }
    }

    /// The tables this projection owns, emptied by a rebuild.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Projection::Devices => devices::TABLES,
            Projection::ApiKeys => api_keys::KEY_TABLES,
            Projection::EnrollmentCodes => api_keys::CODE_TABLES,
            Projection::Users => users::TABLES,
            Projection::Policies => policies::TABLES,
            Projection::AuditLog => audit_log::TABLES,
            Projection::Traffic => traffic::TABLES,
        }
    }

    /// Whether this projection keeps usage counters (requests, tokens, errors, last use).
    fn counts_usage(self) -> bool {
        matches!(self, Projection::Devices | Projection::ApiKeys | Projection::Traffic)
    }

    /// Applies `events` in order. Usage records come in runs (a batch is hundreds of them): the
    /// counting projections write each subject's sums once per run, which ends with the same rows
    /// as one write per record since those writes only add and move times forward, and the audit
    /// log inserts its rows together.
    async fn apply_all(self, tx: &mut Tx, events: &[&StoredEvent]) -> Result<(), ProjectionError> {
        if self == Projection::AuditLog {
            return audit_log::apply(tx, events).await;
        }
        if !self.counts_usage() {
            for event in events {
                self.apply(tx, event).await?;
            }
            return Ok(());
        }
        let mut run = UsageTotals::default();
        for event in events {
            if devices::Usage::is_usage(event) {
                if let Some(usage) = devices::Usage::of(self.name(), event) {
                    run.count(&usage);
                }
                continue;
            }
            run.add_to(self, tx).await?;
            self.apply(tx, event).await?;
        }
        run.add_to(self, tx).await?;
        Ok(())
    }

    async fn apply(self, tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
        if retained::apply(self, tx, event).await? {
            return Ok(());
        }
        match self {
            Projection::Devices => devices::apply(tx, event).await,
            Projection::ApiKeys => api_keys::apply_keys(tx, event).await,
            Projection::EnrollmentCodes => api_keys::apply_codes(tx, event).await,
            Projection::Users => users::apply(tx, event).await,
            Projection::Policies => policies::apply(tx, event).await,
            Projection::AuditLog => audit_log::apply(tx, &[event]).await,
            Projection::Traffic => traffic::apply(tx, event).await,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projection database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("projection {projection} cannot apply the event at position {position}: {reason}")]
    Apply { projection: &'static str, position: i64, reason: String },
    #[error("the projections did not reach position {target} within {waited:?} (at {reached})")]
    Timeout { target: i64, reached: i64, waited: Duration },
}

/// Reads an event's payload as its aggregate's domain event.
pub(crate) fn decode<E: DeserializeOwned>(
    projection: &'static str,
    event: &StoredEvent,
) -> Result<E, ProjectionError> {
    E::deserialize(&event.payload).map_err(|e| ProjectionError::Apply {
        projection,
        position: event.position,
        reason: format!("{} payload: {e}", event.event_type),
    })
}

#[derive(Debug, Clone)]
pub struct ProjectionsConfig {
    /// Events read and applied per transaction.
    pub batch_size: i64,
    /// How often the background task catches up even if the bus said nothing.
    pub poll_interval: Duration,
    /// How long [`Projections::catch_up`] waits for events that are committed but not readable
    /// yet (an older PostgreSQL transaction still in flight) before giving up.
    pub catch_up_timeout: Duration,
}

impl Default for ProjectionsConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            catch_up_timeout: Duration::from_secs(10),
        }
    }
}

/// Runs the projections. One per process; share it behind an `Arc`.
pub struct Projections {
    db: Database,
    log: EventLog,
    config: ProjectionsConfig,
    // Runs in this process take turns; across processes the checkpoint claim below decides.
    running: Mutex<()>,
    /// Told about each batch this process committed (the proxy gate's caches).
    listener: std::sync::OnceLock<Arc<dyn AppliedListener>>,
    /// The position every read model has reached, as of this process's latest catch-up.
    reached: watch::Sender<i64>,
    /// What the bus delivered and the read models have not applied yet.
    feed: Feed,
}

/// The events the bus delivered, kept so that the read models apply them as the relay read
/// them from the log instead of reading and parsing each one a second time. Only a run that
/// continues exactly where the read models stand is taken (each bus event names the one before
/// it); anything else (a gap left by a lagging receiver, events from before this process
/// subscribed, a batch a command needs before the relay has read it) comes from the log.
#[derive(Default)]
struct Feed(std::sync::Mutex<VecDeque<BusEvent>>);

impl Feed {
    /// Events kept at most; the oldest go first (the log still has them).
    const CAPACITY: usize = 4096;

    fn extend(&self, events: Vec<BusEvent>) {
        let mut feed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        feed.extend(events);
        let excess = feed.len().saturating_sub(Self::CAPACITY);
        feed.drain(..excess);
    }

    /// Up to `limit` events that follow position `from` without a gap; none if the feed does not
    /// continue from there. Events at or before `from` are applied already and are dropped.
    fn take_after(&self, from: i64, limit: i64) -> Vec<Arc<StoredEvent>> {
        let mut feed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while feed.front().is_some_and(|next| next.event.position <= from) {
            feed.pop_front();
        }
        let mut batch = Vec::new();
        let mut last = from;
        while (batch.len() as i64) < limit
            && let Some(next) = feed.front()
            && next.after == last
        {
            last = next.event.position;
            batch.extend(feed.pop_front().map(|next| next.event));
        }
        batch
    }
}

/// Something that must see events as soon as the read models hold them, before the
/// [`Projections::catch_up`] that applied them returns (so an admin's change is in force when
/// the admin's request answers). Called with the projections' turn held: it must not call
/// `catch_up` itself.
pub trait AppliedListener: Send + Sync {
    fn applied<'a>(&'a self, events: &'a [Arc<StoredEvent>]) -> futures::future::BoxFuture<'a, ()>;
}

impl Projections {
    pub fn new(db: Database, config: ProjectionsConfig) -> Self {
        Self {
            log: EventLog::new(db.clone()),
            db,
            config,
            running: Mutex::new(()),
            listener: std::sync::OnceLock::new(),
            reached: watch::Sender::new(0),
            feed: Feed::default(),
        }
    }

    /// Follows the position the read models have reached (the audit log's live stream waits on
    /// it instead of polling).
    pub fn watch_reached(&self) -> watch::Receiver<i64> {
        self.reached.subscribe()
    }

    /// Registers the one listener; returns `false` if one was already registered.
    pub fn set_listener(&self, listener: Arc<dyn AppliedListener>) -> bool {
        self.listener.set(listener).is_ok()
    }

    /// Applies every event committed before the call and returns the position all read models
    /// have reached. Safe to call concurrently (callers take turns).
    pub async fn catch_up(&self) -> Result<i64, ProjectionError> {
        let _turn = self.running.lock().await;
        self.catch_up_locked().await
    }

    /// Empties every read model and checkpoint, then replays the whole store.
    pub async fn rebuild(&self) -> Result<i64, ProjectionError> {
        let _turn = self.running.lock().await;
        let mut tx = Tx::begin(&self.db).await?;
        for projection in Projection::ALL {
            for table in projection.tables() {
                tx.execute(&format!("DELETE FROM {table}"), vec![]).await?;
            }
        }
        tx.execute("DELETE FROM projection_checkpoints", vec![]).await?;
        tx.commit().await?;
        self.catch_up_locked().await
    }

    /// Each projection's checkpoint (0 before its first event).
    pub async fn checkpoints(&self) -> Result<HashMap<Projection, i64>, ProjectionError> {
        let stored = self.stored_checkpoints().await?;
        Ok(Projection::ALL.into_iter().map(|p| (p, stored.get(p.name()).copied().unwrap_or(0))).collect())
    }

    async fn stored_checkpoints(&self) -> Result<HashMap<String, i64>, ProjectionError> {
        let rows: Vec<(String, i64)> =
            sql::fetch_all(&self.db, "SELECT name, position FROM projection_checkpoints", vec![]).await?;
        Ok(rows.into_iter().collect())
    }

    /// Applies what is readable now and keeps polling until everything committed at the start is
    /// applied, so the caller sees its own writes.
    async fn catch_up_locked(&self) -> Result<i64, ProjectionError> {
        let target = self.log.head().await?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let reached = self.apply_available().await?;
            if reached >= target {
                self.reached.send_if_modified(|known| {
                    let moved = reached > *known;
                    *known = (*known).max(reached);
                    moved
                });
                return Ok(reached);
            }
            if started.elapsed() >= self.config.catch_up_timeout {
                return Err(ProjectionError::Timeout { target, reached, waited: started.elapsed() });
            }
            // Some older transaction is still in flight on PostgreSQL; it ends in milliseconds.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Applies batches until the log has nothing more readable; returns the lowest checkpoint.
    async fn apply_available(&self) -> Result<i64, ProjectionError> {
        loop {
            let stored = self.stored_checkpoints().await?;
            if Projection::ALL.iter().any(|p| !stored.contains_key(p.name())) {
                // Not created yet (a new store), or gone since (a projection reset by hand, a
                // restore): its claim could never succeed, so put it back (at 0: replay) first.
                self.ensure_checkpoints().await?;
                continue;
            }
            let checkpoints: HashMap<Projection, i64> =
                Projection::ALL.into_iter().map(|p| (p, stored[p.name()])).collect();
            let from = checkpoints.values().copied().min().unwrap_or(0);
            let mut batch = self.feed.take_after(from, self.config.batch_size);
            if batch.is_empty() {
                batch = self
                    .log
                    .read_after(from, self.config.batch_size)
                    .await?
                    .into_iter()
                    .map(Arc::new)
                    .collect();
            }
            let Some(last) = batch.last().map(|e| e.position) else {
                return Ok(from);
            };
            // Usually every read model is at the same point: one transaction moves them all, one
            // commit (and one sync to disk) instead of one per read model. Otherwise, or when one
            // of them cannot apply an event, they go one by one, so the others go on without it.
            let together = checkpoints.values().all(|done| *done == from)
                && self
                    .apply_batch(
                        &Projection::ALL,
                        from,
                        last,
                        &batch.iter().map(|e| &**e).collect::<Vec<_>>(),
                    )
                    .await
                    .unwrap_or_else(|e| {
                        tracing::debug!(error = %e, "the batch did not apply to every read model at once");
                        false
                    });
            let mut first_error = None;
            for projection in Projection::ALL.into_iter().filter(|_| !together) {
                let done = checkpoints[&projection];
                let pending: Vec<&StoredEvent> =
                    batch.iter().map(|e| &**e).filter(|e| e.position > done).collect();
                if pending.is_empty() {
                    continue;
                }
                if let Err(e) = self.apply_batch(&[projection], done, last, &pending).await {
                    tracing::error!(projection = projection.name(), error = %e, "projection halted");
                    first_error.get_or_insert(e);
                }
            }
            // The others have moved on; the failed one keeps its checkpoint and retries next time.
            if let Some(listener) = self.listener.get() {
                listener.applied(&batch).await;
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
    }

    /// One transaction: claim the move of `projections`' checkpoints from `done` to `last`, apply
    /// the events to each, commit; `false` (nothing changed) when a checkpoint was not at `done`.
    /// Claiming first makes a concurrent runner on another node wait, then find the checkpoint
    /// moved and back off, instead of applying the same events twice.
    async fn apply_batch(
        &self,
        projections: &[Projection],
        done: i64,
        last: i64,
        events: &[&StoredEvent],
    ) -> Result<bool, ProjectionError> {
        let names = (4..4 + projections.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
        let mut claim = args![last, Utc::now(), done];
        claim.extend(projections.iter().map(|p| p.name().into()));
        let mut tx = Tx::begin(&self.db).await?;
        let claimed = tx
            .execute(
                &format!(
                    "UPDATE projection_checkpoints SET position = $1, updated_at = $2 \
                     WHERE position = $3 AND name IN ({names})"
                ),
                claim,
            )
            .await?;
        if claimed != projections.len() as u64 {
            // Someone else applied these (some of them, when several).
            tx.rollback().await?;
            return Ok(false);
        }
        for projection in projections {
            if let Err(e) = projection.apply_all(&mut tx, events).await {
                tx.rollback().await?;
                return Err(e);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn ensure_checkpoints(&self) -> Result<(), ProjectionError> {
        for projection in Projection::ALL {
            sql::execute(
                &self.db,
                "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, 0, $2) \
                 ON CONFLICT (name) DO NOTHING",
                args![projection.name(), Utc::now()],
            )
            .await?;
        }
        Ok(())
    }

    /// Catches up in the background: whenever `bus` carries an event, and every
    /// `poll_interval` in case a wake-up was missed. Stops when the handle is dropped or shut down.
    pub fn spawn(self: Arc<Self>, bus: &EventBus) -> ProjectionsTask {
        let mut events = bus.receiver();
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.config.poll_interval);
            let mut bus_open = true;
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    received = events.recv(), if bus_open => {
                        // One catch-up covers this event and whatever else is waiting already
                        // (the relay hands over a batch). Lagging only leaves a gap in the feed,
                        // which the log fills.
                        let mut feed = Vec::new();
                        match received {
                            Ok(published) => feed.push(published),
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => bus_open = false,
                        }
                        while bus_open {
                            match events.try_recv() {
                                Ok(published) => feed.push(published),
                                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                                Err(broadcast::error::TryRecvError::Empty) => break,
                                Err(broadcast::error::TryRecvError::Closed) => bus_open = false,
                            }
                        }
                        self.feed.extend(feed);
                    }
                    _ = ticker.tick() => {}
                }
                let _turn = self.running.lock().await;
                if let Err(e) = self.apply_available().await {
                    tracing::warn!(error = %e, "background projection catch-up failed; retrying later");
                }
            }
        });
        ProjectionsTask { stop, handle: Some(handle) }
    }
}

/// The background catch-up task; aborted when dropped.
pub struct ProjectionsTask {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

impl ProjectionsTask {
    /// Asks the task to stop after the batch it is applying, and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for ProjectionsTask {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(after: i64, position: i64) -> BusEvent {
        BusEvent {
            after,
            event: Arc::new(StoredEvent {
                position,
                event_id: uuid::Uuid::now_v7(),
                aggregate_type: "device".to_owned(),
                aggregate_id: "d".to_owned(),
                sequence: position,
                event_type: "DeviceApproved".to_owned(),
                event_version: "1.0".to_owned(),
                payload: serde_json::json!({ "type": "DeviceApproved" }),
                metadata: HashMap::new(),
                recorded_at: Utc::now(),
            }),
        }
    }

    fn positions(events: &[Arc<StoredEvent>]) -> Vec<i64> {
        events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn the_feed_hands_over_only_a_run_that_continues_where_the_read_models_stand() {
        let feed = Feed::default();
        // Positions have gaps (rolled-back appends); the links say that nothing is missing.
        feed.extend(vec![published(3, 5), published(5, 6), published(6, 9), published(9, 10)]);
        assert!(feed.take_after(2, 10).is_empty(), "3 is not in the feed: the log must give it");
        assert_eq!(positions(&feed.take_after(3, 2)), [5, 6], "at most the limit");
        assert_eq!(positions(&feed.take_after(6, 10)), [9, 10]);
        assert!(feed.take_after(10, 10).is_empty());
    }

    #[test]
    fn the_feed_stops_at_a_gap_and_drops_what_was_applied_from_the_log() {
        let feed = Feed::default();
        // A lagging receiver missed the event at 3.
        feed.extend(vec![published(1, 2), published(3, 4), published(4, 5)]);
        assert_eq!(positions(&feed.take_after(1, 10)), [2], "not past the gap");
        assert!(feed.take_after(2, 10).is_empty());
        // The log gave 3 and 4; the feed goes on from there.
        assert_eq!(positions(&feed.take_after(4, 10)), [5]);
        assert!(feed.0.lock().unwrap().is_empty());
    }

    #[test]
    fn the_feed_keeps_only_the_newest_events() {
        let feed = Feed::default();
        let count = Feed::CAPACITY as i64 + 10;
        feed.extend((1..=count).map(|p| published(p - 1, p)).collect());
        assert!(feed.take_after(0, 10).is_empty(), "the oldest were let go");
        assert_eq!(positions(&feed.take_after(10, 2)), [11, 12]);
    }
}
