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
    sender: broadcast::Sender<BusEvent>,
}

/// An event as the bus carries it: each receiver gets its own `Arc` of the event, not its own
/// copy of the payload, and the position of the event handed over just before it.
#[derive(Clone, Debug)]
pub struct BusEvent {
    /// The position of the previous event on this bus: the events between `after` and
    /// `event.position` are none, so a receiver that has everything up to `after` can take this
    /// one without reading the log.
    pub after: i64,
    pub event: Arc<StoredEvent>,
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

    /// Hands an event to every current subscriber. `after` is the position of the event
    /// published before it (the publisher hands over the log in order, without gaps). Having no
    /// subscriber is not an error.
    pub fn publish(&self, after: i64, event: StoredEvent) {
        let _ = self.sender.send(BusEvent { after, event: Arc::new(event) });
    }

    /// The raw channel: a lagging receiver misses events, which shows as an `after` that is not
    /// the position of the last event it got (or as a `Lagged` error). For subscribers that
    /// need only a wake-up, or that fill gaps from the log themselves.
    pub fn receiver(&self) -> broadcast::Receiver<BusEvent> {
        self.sender.subscribe()
    }

    /// A subscription that yields every event after `position` exactly once, in order, reading
    /// from `log` whatever the channel could not deliver.
    pub fn subscribe_from(&self, log: EventLog, position: i64) -> BusSubscription {
        BusSubscription { receiver: self.sender.subscribe(), log, last: position, backlog: VecDeque::new() }
    }
}

pub struct BusSubscription {
    receiver: broadcast::Receiver<BusEvent>,
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
                Ok(BusEvent { event, .. }) if event.position <= self.last => continue,
                Ok(BusEvent { event, .. }) => {
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
