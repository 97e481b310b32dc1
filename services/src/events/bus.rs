//! The in-process event bus: published events fan out to this node's subscribers (projections,
//! proxy caches) within microseconds.
//!
//! It is a notification path, not a durable one: a broadcast channel drops the oldest events
//! for a subscriber that falls behind. A [`BusSubscription`] notices that and re-reads what it
//! missed from the [`EventLog`], so its consumer still sees every event once, in order.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::{EventLog, EventLogError, StoredEvent};

/// How many events a slow subscriber may fall behind before it re-reads from the log.
const DEFAULT_CAPACITY: usize = 1024;
/// How many events a lagging subscriber re-reads per query.
const REREAD_BATCH: i64 = 500;

#[derive(Clone, Debug)]
pub struct EventBus {
    /// Each receiver gets its own `Arc` of an event, not its own copy of the payload.
    sender: broadcast::Sender<Arc<StoredEvent>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl EventBus {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0 }
    }

    /// Hands an event to every current subscriber. Having none is not an error.
    pub fn publish(&self, event: StoredEvent) {
        let _ = self.sender.send(Arc::new(event));
    }

    /// The raw channel, for subscribers that only need a wake-up (lag is then harmless).
    pub fn receiver(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }

    /// A subscription that yields every event after `position` exactly once, in order, reading
    /// from `log` whatever the channel could not deliver.
    pub fn subscribe_from(&self, log: EventLog, position: i64) -> BusSubscription {
        BusSubscription { receiver: self.sender.subscribe(), log, last: position, backlog: VecDeque::new() }
    }
}

pub struct BusSubscription {
    receiver: broadcast::Receiver<Arc<StoredEvent>>,
    log: EventLog,
    last: i64,
    backlog: VecDeque<StoredEvent>,
}

impl BusSubscription {
    /// The position of the last event this subscription returned.
    pub fn position(&self) -> i64 {
        self.last
    }

    /// The next event, or `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Result<StoredEvent, EventLogError>> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.position;
                return Some(Ok(event));
            }
            match self.receiver.recv().await {
                // Already seen, from the log while catching up.
                Ok(event) if event.position <= self.last => continue,
                Ok(event) => {
                    self.last = event.position;
                    return Some(Ok(Arc::unwrap_or_clone(event)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match self.log.read_after(self.last, REREAD_BATCH).await {
                        Ok(events) => self.backlog.extend(events),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
