//! Replay and time travel: one aggregate's history from the event store, each event with the
//! state it left the aggregate in, and the state as it was at any instant.
//!
//! The states come from the domain itself: the events are applied with the aggregate's own
//! `apply`, exactly as a command would load it, so what an auditor sees is what the rules saw.
//! Credential material (password hashes, sealed provider secrets) is redacted from both the
//! payloads and the states; the store keeps the originals.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::api_key::ApiKey;
use domain::device::Device;
use domain::metadata::{EventMetadata, keys};
use domain::policy::{Policy, PolicyScope};
use domain::user::User;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ServiceError;
use crate::events::{EventLog, StoredEvent, redacted_everywhere};
use crate::platform::Platform;

/// The aggregates whose history can be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    Device,
    ApiKey,
    Policy,
    User,
}

impl AggregateKind {
    /// `device`, `api_key`, `policy` or `user` (the store's aggregate types).
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        match raw.trim() {
            t if t == Device::TYPE => Ok(Self::Device),
            t if t == ApiKey::TYPE => Ok(Self::ApiKey),
            t if t == Policy::TYPE => Ok(Self::Policy),
            t if t == User::TYPE => Ok(Self::User),
            other => Err(ServiceError::Invalid {
                field: "type",
                code: "invalid_aggregate_type",
                message: format!("`{other}` is not one of device, api_key, policy, user"),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => Device::TYPE,
            Self::ApiKey => ApiKey::TYPE,
            Self::Policy => Policy::TYPE,
            Self::User => User::TYPE,
        }
    }

    /// Checks that `id` is an id this kind of aggregate can have: a UUID, or a policy scope.
    fn check_id(self, raw: &str) -> Result<String, ServiceError> {
        let invalid = |expected: &str| ServiceError::Invalid {
            field: "id",
            code: "invalid_aggregate_id",
            message: format!("`{raw}` is not {expected}"),
        };
        match self {
            Self::Policy => PolicyScope::from_aggregate_id(raw)
                .map(|scope| scope.aggregate_id())
                .map_err(|_| invalid("a policy scope (`global`, `api_key:<uuid>` or `device:<uuid>`)")),
            _ => Uuid::try_parse(raw).map(|id| id.to_string()).map_err(|_| invalid("a UUID")),
        }
    }
}

/// One event of the history: what happened, who did it, from where and when.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// The event's position in the global log.
    pub position: i64,
    pub event_id: Uuid,
    /// The event's number within its aggregate, from 1; also the aggregate's version after it.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// When it happened (the metadata's time, or the store's when the metadata has none).
    pub at: DateTime<Utc>,
    /// When the store accepted it.
    pub recorded_at: DateTime<Utc>,
    /// `user`, `device` or `system`.
    pub actor_type: Option<String>,
    /// A user's or device's id, or the system component.
    pub actor_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The event as stored, with credential material replaced by `"<redacted>"`.
    pub payload: Value,
}

/// An event and the aggregate's state right after it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub event: HistoryEvent,
    /// The aggregate's state as its `apply` leaves it, secrets redacted.
    pub state: Value,
}

/// An aggregate's history, oldest first: all of it, or as far as an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateHistory {
    pub kind: AggregateKind,
    pub id: String,
    /// The instant the history was cut at, if one was asked for.
    pub at: Option<DateTime<Utc>>,
    /// Never empty.
    pub entries: Vec<HistoryEntry>,
}

impl AggregateHistory {
    /// The aggregate's version: how many events built the state.
    pub fn version(&self) -> i64 {
        self.entries.last().map_or(0, |e| e.event.sequence)
    }

    /// The state after the last entry: the current state, or the state as it was at `at`.
    pub fn state(&self) -> &Value {
        self.entries.last().map_or(&Value::Null, |e| &e.state)
    }
}

/// Every event of the aggregate with the state after it, or with `at` only those up to that
/// instant (the last entry's state is then the state as it was at `at`).
///
/// `aggregate_not_found` if the aggregate has no history at all, `aggregate_not_yet_created` if
/// its first event came after `at`. The history is read in its own order and cut at the first
/// event later than `at`, so an event is never counted without the ones before it.
pub async fn history(
    platform: &Platform,
    kind: AggregateKind,
    id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<AggregateHistory, ServiceError> {
    let id = kind.check_id(id)?;
    let mut entries = replay(platform, kind, &id).await?;
    if entries.is_empty() {
        return Err(not_found(kind, &id));
    }
    if let Some(at) = at {
        let kept = entries.iter().take_while(|e| e.event.at <= at).count();
        if kept == 0 {
            return Err(ServiceError::not_found(
                "aggregate_not_yet_created",
                format!("{} {id} did not exist yet at {}", kind.as_str(), at.to_rfc3339()),
            ));
        }
        entries.truncate(kept);
    }
    Ok(AggregateHistory { kind, id, at, entries })
}

fn not_found(kind: AggregateKind, id: &str) -> ServiceError {
    ServiceError::not_found("aggregate_not_found", format!("there is no {} {id}", kind.as_str()))
}

async fn replay(
    platform: &Platform,
    kind: AggregateKind,
    id: &str,
) -> Result<Vec<HistoryEntry>, ServiceError> {
    let events = EventLog::new(platform.db.clone())
        .read_aggregate(kind.as_str(), id)
        .await
        .map_err(|e| ServiceError::Internal(format!("reading the history of {} {id}: {e}", kind.as_str())))?;
    match kind {
        AggregateKind::Device => fold::<Device>(events),
        AggregateKind::ApiKey => fold::<ApiKey>(events),
        AggregateKind::Policy => fold::<Policy>(events),
        AggregateKind::User => fold::<User>(events),
    }
}

/// How an aggregate's state is shown: the part its history built, without the empty wrapper
/// the aggregate keeps before its first event.
trait Replayable: Aggregate {
    fn state_view(&self) -> Result<Value, serde_json::Error>;
}

impl Replayable for Device {
    fn state_view(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self.enrolled())
    }
}

impl Replayable for ApiKey {
    fn state_view(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self.state())
    }
}

impl Replayable for User {
    fn state_view(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self.state())
    }
}

impl Replayable for Policy {
    fn state_view(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

fn fold<A: Replayable>(events: Vec<StoredEvent>) -> Result<Vec<HistoryEntry>, ServiceError> {
    let mut aggregate = A::default();
    let mut entries = Vec::with_capacity(events.len());
    for stored in events {
        let malformed = |what: &str, e: serde_json::Error| {
            ServiceError::Internal(format!("event at position {}: {what}: {e}", stored.position))
        };
        let event: A::Event =
            serde_json::from_value(stored.payload.clone()).map_err(|e| malformed("payload", e))?;
        aggregate.apply(event);
        let state = aggregate.state_view().map_err(|e| malformed("state", e))?;
        entries.push(HistoryEntry { event: describe(stored), state: redacted_everywhere(state) });
    }
    Ok(entries)
}

fn describe(stored: StoredEvent) -> HistoryEvent {
    // The typed form when it parses; the raw entries otherwise, so an odd event is still shown.
    let typed = EventMetadata::from_map(&stored.metadata).ok();
    let raw = |metadata: &HashMap<String, String>, key: &str| metadata.get(key).cloned();
    let (actor_type, actor_id) = match &typed {
        Some(m) => (Some(m.actor.actor_type().to_owned()), Some(m.actor.actor_id())),
        None => (raw(&stored.metadata, keys::ACTOR_TYPE), raw(&stored.metadata, keys::ACTOR_ID)),
    };
    let ip = typed
        .as_ref()
        .and_then(|m| m.ip.map(|ip| ip.to_string()))
        .or_else(|| raw(&stored.metadata, keys::IP));
    HistoryEvent {
        position: stored.position,
        event_id: stored.event_id,
        sequence: stored.sequence,
        at: typed.as_ref().map_or(stored.recorded_at, |m| m.at),
        recorded_at: stored.recorded_at,
        actor_type,
        actor_id,
        ip,
        user_agent: raw(&stored.metadata, keys::USER_AGENT),
        request_id: raw(&stored.metadata, keys::REQUEST_ID),
        payload: redacted_everywhere(stored.payload),
        event_type: stored.event_type,
        event_version: stored.event_version,
    }
}
