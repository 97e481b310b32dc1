//! Reading the global event log: every committed event of every aggregate, in one store-wide
//! order that never lets a late-committing event slip behind a reader, and the in-process bus
//! that tells readers on this node something new was published.

mod bus;
mod log;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use bus::{BusEvent, BusSubscription, EventBus};
pub use log::EventLog;

/// One committed event as the store holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The store-wide position (`global_seq`): increasing in commit order, with gaps where an
    /// append rolled back.
    pub position: i64,
    /// Stable and unique across databases: the de-duplication key downstream (`Nats-Msg-Id`).
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's number within its aggregate, from 1.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The serialized domain event (internally tagged: `{"type": "<event_type>", ...}`).
    pub payload: serde_json::Value,
    /// cqrs-es metadata; `domain::metadata::EventMetadata::from_map` reads it.
    pub metadata: HashMap<String, String>,
    pub recorded_at: DateTime<Utc>,
}

/// A failure to read the event log.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("cannot read the event log: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event at position {position} is malformed: {reason}")]
    Malformed { position: i64, reason: String },
}

/// Payload fields that hold credential material (a password's hash, a provider secret's
/// ciphertext). They stay in the store, which the aggregates replay, but nothing that leaves it
/// for people or other systems (the audit log, NATS) carries them.
const REDACTED_FIELDS: &[&str] = &["password_hash", "sealed_secret"];

/// The payload with credential material replaced by `"<redacted>"`.
pub fn redacted(mut payload: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(map) = &mut payload {
        for field in REDACTED_FIELDS {
            if let Some(value) = map.get_mut(*field) {
                *value = serde_json::Value::String("<redacted>".to_owned());
            }
        }
    }
    payload
}

/// `value` with credential material replaced by `"<redacted>"` at any depth: for documents
/// that nest them, such as an aggregate's state (an API key's `sealed_secret` sits inside its
/// state, a user's `password_hash` likewise).
pub fn redacted_everywhere(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = if REDACTED_FIELDS.contains(&key.as_str()) {
                        serde_json::Value::String("<redacted>".to_owned())
                    } else {
                        redacted_everywhere(value)
                    };
                    (key, value)
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(redacted_everywhere).collect())
        }
        other => other,
    }
}
