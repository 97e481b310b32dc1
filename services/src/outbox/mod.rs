//! The outbox relay: publishes every committed event, in store order, to NATS JetStream (subject
//! `<prefix>.<aggregate_type>.<aggregate_id>`, `Nats-Msg-Id` = event id) and then to this node's
//! in-process bus; without NATS, to the bus alone.
//!
//! The checkpoint is shared by every node that uses the same relay name (one row in the store),
//! so in a cluster the first node to read an event publishes it to NATS for all. The bus is
//! each node's own: every node hands every committed event to its bus from a position it keeps
//! in memory, whoever published it to NATS. Otherwise a node would learn of another node's
//! writes (a device suspended there, say) only from its caches' periodic refresh.
//!
//! The relay's checkpoint moves only after JetStream acknowledged every event up to it, so a
//! crash between a commit and its publication delays the event, never loses it; what was
//! published but not yet checkpointed is published again on restart and JetStream drops the
//! duplicate (within the stream's duplicate window). On a NATS failure the relay backs off and
//! starts again from its checkpoint, so nothing is skipped or reordered. Two nodes that publish
//! the same events at once are harmless for the same reason, and the checkpoint only moves
//! forward, whichever of them stores it last.
//!
//! On PostgreSQL every append notifies the channel [`EVENTS_CHANNEL`] when it commits (a trigger
//! of the event table), and every node's relay listens to it: a device revoked through one node
//! reaches the other nodes' buses, and so their proxy caches, within milliseconds instead of a
//! polling interval. The store stays the source of truth: a notification lost while the
//! listening connection was down is made up for by the polling, which never stops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Context};
use chrono::Utc;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::events::{EventBus, EventLog, EventLogError, StoredEvent};
use crate::read_models::sql::{self, args};
use crate::store::Database;

/// The PostgreSQL channel that announces committed events; the payload is the schema of the
/// event table, so that stores sharing one database do not wake each other's relays.
pub const EVENTS_CHANNEL: &str = "keyguard_events";

/// Where the relay publishes besides the in-process bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTarget {
    pub url: String,
    /// The JetStream stream, created if missing (idempotent).
    pub stream: String,
    /// Events go to `<subject_prefix>.<aggregate_type>.<aggregate_id>`.
    pub subject_prefix: String,
    /// How long JetStream remembers a `Nats-Msg-Id`: a re-publication after a crash must come
    /// within it to be dropped as a duplicate.
    pub duplicate_window: Duration,
}

impl NatsTarget {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "KEYGUARD_EVENTS".to_owned(),
            subject_prefix: "keyguard.events".to_owned(),
            duplicate_window: Duration::from_secs(2 * 60 * 60),
        }
    }

    /// The subject of one event. Characters NATS gives a meaning to in subjects become `_`.
    pub fn subject(&self, event: &StoredEvent) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix,
            subject_token(&event.aggregate_type),
            subject_token(&event.aggregate_id)
        )
    }
}

fn subject_token(s: &str) -> String {
    let token: String = s
        .chars()
        .map(|c| if c == '.' || c == '*' || c == '>' || c.is_whitespace() { '_' } else { c })
        .collect();
    if token.is_empty() { "_".to_owned() } else { token }
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// The relay's checkpoint row; relays with different names publish independently.
    pub relay_name: String,
    /// `None`: publish to the in-process bus only (the embedded deployment).
    pub nats: Option<NatsTarget>,
    /// Events read per pass.
    pub batch_size: i64,
    /// Publications in flight before the relay waits for the oldest ack. 1 keeps the strictest
    /// order: with more, a publication lost in a broken connection may be retried after a later
    /// one already landed.
    pub ack_window: usize,
    /// How often the relay looks for new events when nobody woke it.
    pub poll_interval: Duration,
    /// The longest pause between attempts while NATS is failing.
    pub max_backoff: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            relay_name: "nats".to_owned(),
            nats: None,
            batch_size: 500,
            ack_window: 1,
            poll_interval: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("cannot keep the outbox checkpoint: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot create or open the JetStream stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("NATS did not acknowledge the event at position {position}: {reason}")]
    Publish { position: i64, reason: String },
}

struct Nats {
    target: NatsTarget,
    jetstream: Context,
}

impl Nats {
    async fn ensure_stream(&self) -> Result<(), OutboxError> {
        let config = jetstream::stream::Config {
            name: self.target.stream.clone(),
            subjects: vec![format!("{}.>", self.target.subject_prefix)],
            duplicate_window: self.target.duplicate_window,
            ..Default::default()
        };
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| OutboxError::Stream { stream: self.target.stream.clone(), reason: e.to_string() })
    }

    /// Publishes `events` in order, keeping at most `window` acks outstanding, and returns once
    /// every one is acknowledged.
    async fn publish(&self, events: &[StoredEvent], window: usize) -> Result<(), OutboxError> {
        let mut in_flight = VecDeque::with_capacity(window);
        for event in events {
            let failed = |e: &dyn std::fmt::Display| OutboxError::Publish {
                position: event.position,
                reason: e.to_string(),
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
            headers.insert("KeyGuard-Position", event.position.to_string().as_str());
            headers.insert("KeyGuard-Sequence", event.sequence.to_string().as_str());
            headers.insert("KeyGuard-Event-Type", event.event_type.as_str());
            let published =
                StoredEvent { payload: crate::events::redacted(event.payload.clone()), ..event.clone() };
            let payload = serde_json::to_vec(&published).map_err(|e| failed(&e))?;
            let ack = self
                .jetstream
                .publish_with_headers(self.target.subject(event), headers, payload.into())
                .await
                .map_err(|e| failed(&e))?;
            in_flight.push_back((event.position, ack));
            if in_flight.len() >= window.max(1) {
                let (position, ack) = in_flight.pop_front().expect("just pushed");
                ack.await.map_err(|e| OutboxError::Publish { position, reason: e.to_string() })?;
            }
        }
        for (position, ack) in in_flight {
            ack.await.map_err(|e| OutboxError::Publish { position, reason: e.to_string() })?;
        }
        Ok(())
    }
}

/// Publishes committed events; see the module documentation.
pub struct OutboxRelay {
    db: Database,
    log: EventLog,
    bus: EventBus,
    config: OutboxConfig,
    nats: Option<Nats>,
    wake: Arc<Notify>,
    /// The last event handed to this node's bus; starts at the checkpoint found on connecting.
    bus_position: AtomicI64,
}

impl OutboxRelay {
    /// Connects to NATS (if configured) and makes sure the stream exists. Fails if NATS cannot be
    /// reached now; later outages are retried by [`OutboxRelay::spawn`].
    pub async fn connect(db: Database, bus: EventBus, config: OutboxConfig) -> Result<Self, OutboxError> {
        let nats = match &config.nats {
            None => None,
            Some(target) => {
                let client = async_nats::connect(target.url.as_str())
                    .await
                    .map_err(|e| OutboxError::Connect { url: target.url.clone(), reason: e.to_string() })?;
                let nats = Nats { target: target.clone(), jetstream: jetstream::new(client) };
                nats.ensure_stream().await?;
                Some(nats)
            }
        };
        let mut relay = Self {
            log: EventLog::new(db.clone()),
            db,
            bus,
            config,
            nats,
            wake: Arc::new(Notify::new()),
            bus_position: AtomicI64::new(0),
        };
        *relay.bus_position.get_mut() = relay.checkpoint().await?;
        Ok(relay)
    }

    /// Wakes the running relay at once (call after a commit); it also polls on its own.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The position up to which every event has been published and acknowledged.
    pub async fn checkpoint(&self) -> Result<i64, OutboxError> {
        Ok(sql::fetch_i64(
            &self.db,
            "SELECT MAX(position) FROM outbox_checkpoints WHERE relay = $1",
            args![&self.config.relay_name],
        )
        .await?)
    }

    /// Publishes everything readable now, batch by batch, and returns the new checkpoint.
    /// Not to be called again before it returns (the relay's task calls it in turn).
    pub async fn publish_pending(&self) -> Result<i64, OutboxError> {
        let checkpoint = self.publish_to_nats().await?;
        self.publish_to_bus().await?;
        Ok(checkpoint)
    }

    /// Hands this node's bus every event after the last one it got, up to what is readable now
    /// and no further than the checkpoint (with NATS, nothing reaches a bus before JetStream).
    async fn publish_to_bus(&self) -> Result<(), OutboxError> {
        let checkpoint = self.checkpoint().await?;
        loop {
            let position = self.bus_position.load(Ordering::Acquire);
            if position >= checkpoint {
                return Ok(());
            }
            let limit = self.config.batch_size.min(checkpoint - position);
            let batch = self.log.read_after(position, limit).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                return Ok(());
            };
            self.hand_to_bus(position, batch.into_iter().filter(|e| e.position <= checkpoint));
            self.bus_position.store(last.min(checkpoint), Ordering::Release);
        }
    }

    /// Publishes to NATS (when configured) everything after the shared checkpoint and moves it.
    async fn publish_to_nats(&self) -> Result<i64, OutboxError> {
        let mut checkpoint = self.checkpoint().await?;
        loop {
            let batch = self.log.read_after(checkpoint, self.config.batch_size).await?;
            let Some(last) = batch.last().map(|e| e.position) else {
                return Ok(checkpoint);
            };
            if let Some(nats) = &self.nats {
                nats.publish(&batch, self.config.ack_window).await?;
            }
            // Only now is every event of the batch safely in JetStream. Another node may have
            // published further meanwhile: never move its checkpoint back.
            sql::execute(
                &self.db,
                "INSERT INTO outbox_checkpoints (relay, position, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (relay) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
                 WHERE outbox_checkpoints.position < excluded.position",
                args![&self.config.relay_name, last, Utc::now()],
            )
            .await?;
            // Usually this node's bus stands exactly where the batch starts: it gets the events
            // just read rather than [`Self::publish_to_bus`] reading them a second time.
            if self.bus_position.load(Ordering::Acquire) == checkpoint {
                self.hand_to_bus(checkpoint, batch);
                self.bus_position.store(last, Ordering::Release);
            }
            checkpoint = last;
        }
    }

    /// Publishes `events`, the log's next ones after position `after`, to this node's bus.
    fn hand_to_bus(&self, mut after: i64, events: impl IntoIterator<Item = StoredEvent>) {
        for event in events {
            let position = event.position;
            self.bus.publish(after, event);
            after = position;
        }
    }

    /// Runs the relay until the task is shut down or dropped: publishes whenever woken or every
    /// `poll_interval`, and after a failure backs off (doubling up to `max_backoff`) and resumes
    /// from the checkpoint.
    pub fn spawn(self) -> OutboxTask {
        let (stop, mut stopped) = watch::channel(false);
        let listener = match &self.db {
            Database::Postgres(pool) => Some(tokio::spawn(wake_on_commit(pool.clone(), self.wake.clone()))),
            Database::Sqlite(_) => None,
        };
        let handle = tokio::spawn(async move {
            // Ends with this task, however it ends.
            let _listener = listener.map(AbortOnDrop);
            let mut backoff = Duration::from_millis(50);
            loop {
                let pause = match self.publish_pending().await {
                    Ok(_) => {
                        backoff = Duration::from_millis(50);
                        self.config.poll_interval
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "outbox relay failed; retrying");
                        let pause = backoff;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                        if let Some(nats) = &self.nats
                            && let Err(e) = nats.ensure_stream().await
                        {
                            tracing::warn!(error = %e, "cannot reopen the JetStream stream");
                        }
                        pause
                    }
                };
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        });
        OutboxTask { stop, handle: Some(handle) }
    }
}

/// Wakes the relay whenever an append to this store's event table commits, on any node. When the
/// listening connection fails, the relay still polls; the listener reconnects with a pause.
async fn wake_on_commit(pool: sqlx::PgPool, wake: Arc<Notify>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let Err(e) = listen(&pool, &wake).await;
        tracing::debug!(error = %e, retry_in = ?pause, "cannot listen for committed events");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn listen(pool: &sqlx::PgPool, wake: &Notify) -> Result<std::convert::Infallible, sqlx::Error> {
    // The listener holds its connection until the relay stops, and is aborted then: it works on
    // a pool of its own, so an abort in mid-exchange never touches the relay's connections.
    let own = Database::dedicated_postgres(pool).await?;
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text").fetch_one(&own).await?;
    let mut listener = PgListener::connect_with(&own).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    // Whatever committed before the listener was in place is found by this pass.
    wake.notify_one();
    loop {
        // `None`: the connection dropped and notifications may have been missed.
        match listener.try_recv().await? {
            Some(notification) if notification.payload() == schema => wake.notify_one(),
            Some(_) => {}
            None => wake.notify_one(),
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running relay; aborted when dropped.
pub struct OutboxTask {
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<()>>,
}

impl OutboxTask {
    /// Stops the relay between passes and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for OutboxTask {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
