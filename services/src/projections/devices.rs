//! The devices read model: one row per enrolled device with its current standing and its usage
//! (requests, tokens, errors, last seen) counted from the proxy's `RequestCompleted` events.

use chrono::{DateTime, Utc};
use domain::device::{DeviceEvent, DeviceStatus};
use serde::Deserialize;
use uuid::Uuid;

use super::{ProjectionError, decode};
use crate::events::StoredEvent;
use crate::read_models::sql::{Tx, args};
use crate::usage::{REQUEST_COMPLETED, USAGE_BATCH_TYPE};

pub(super) const TABLES: &[&str] = &["devices"];

/// What the usage counters need from one `RequestCompleted` event.
#[derive(Debug, Deserialize)]
pub(super) struct Usage {
    pub api_key_id: Uuid,
    pub device_id: Uuid,
    /// As the key's provider is spelled in events (`openai`, `anthropic`, …).
    #[serde(default)]
    pub provider: String,
    pub status: u16,
    pub completed: bool,
    #[serde(default)]
    pub tokens_in: Option<u64>,
    #[serde(default)]
    pub tokens_out: Option<u64>,
    pub at: DateTime<Utc>,
}

impl Usage {
    /// The usage record this event carries, if it is one. A record that does not parse is
    /// logged and left uncounted rather than halting the projection: a halted devices projection
    /// would also stop suspensions and revocations from reaching the proxy.
    pub(super) fn of(projection: &'static str, event: &StoredEvent) -> Option<Self> {
        if !Self::is_usage(event) {
            return None;
        }
        Self::decode(projection, event)
    }

    /// Whether the event is a usage record (whether or not it parses).
    pub(super) fn is_usage(event: &StoredEvent) -> bool {
        event.aggregate_type == USAGE_BATCH_TYPE && event.event_type == REQUEST_COMPLETED
    }

    /// The usage record of an event removed by the retention policy, read from its parts.
    pub(super) fn from_payload(event_type: &str, payload: &serde_json::Value) -> Option<Self> {
        if event_type != REQUEST_COMPLETED {
            return None;
        }
        Self::deserialize(payload).ok()
    }

    fn decode(projection: &'static str, event: &StoredEvent) -> Option<Self> {
        match decode::<Usage>(projection, event) {
            Ok(usage) => Some(usage),
            Err(e) => {
                tracing::error!(error = %e, "usage record left out of the counters");
                None
            }
        }
    }

    pub(super) fn tokens_in(&self) -> i64 {
        saturating(self.tokens_in)
    }

    pub(super) fn tokens_out(&self) -> i64 {
        saturating(self.tokens_out)
    }

    /// Failed upstream or at KeyGuard (502/504), or broken off before the client had it all.
    pub(super) fn errors(&self) -> i64 {
        i64::from(self.status >= 400 || !self.completed)
    }
}

fn saturating(tokens: Option<u64>) -> i64 {
    tokens.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

pub(super) async fn apply(tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
    // Usage records are counted in runs by `Projection::apply_all`.
    if event.aggregate_type != "device" {
        return Ok(());
    }
    let id = event.aggregate_id.as_str();
    match decode::<DeviceEvent>("devices", event)? {
        DeviceEvent::DeviceEnrolled {
            device_id,
            api_key_id,
            key_id,
            public_key,
            label,
            fingerprint,
            user_agent,
            metadata,
            ip,
            initial_status,
            enrollment_code_id,
            at,
        } => {
            tx.execute(
                "INSERT INTO devices (id, api_key_id, key_id, public_key, label, fingerprint, user_agent, \
                 metadata, enrolled_ip, enrollment_code_id, status, status_reason, enrolled_at, updated_at, \
                 last_seen_at, request_count, token_count) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $12, NULL, 0, 0)",
                args![
                    device_id,
                    api_key_id,
                    key_id.as_str(),
                    public_key.as_str(),
                    label,
                    fingerprint,
                    user_agent,
                    metadata,
                    ip.map(|ip| ip.to_string()),
                    enrollment_code_id,
                    DeviceStatus::from(initial_status).as_str(),
                    at,
                ],
            )
            .await?;
        }
        DeviceEvent::DeviceApproved { at, .. } => {
            set_status(tx, id, DeviceStatus::Active, None, at).await?;
        }
        DeviceEvent::DeviceSuspended { reason, at, .. } => {
            set_status(tx, id, DeviceStatus::Suspended, Some(reason), at).await?;
        }
        DeviceEvent::DeviceReactivated { status: back_to, at, .. } => {
            set_status(tx, id, back_to, None, at).await?;
        }
        DeviceEvent::DeviceRevoked { reason, at, .. } => {
            set_status(tx, id, DeviceStatus::Revoked, Some(reason), at).await?;
        }
        DeviceEvent::DeviceRenamed { label, at, .. } => {
            tx.execute("UPDATE devices SET label = $1, updated_at = $2 WHERE id = $3", args![label, at, id])
                .await?;
        }
        DeviceEvent::DeviceKeyRotated { new_key_id, new_public_key, at, .. } => {
            tx.execute(
                "UPDATE devices SET key_id = $1, public_key = $2, updated_at = $3 WHERE id = $4",
                args![new_key_id.as_str(), new_public_key.as_str(), at, id],
            )
            .await?;
        }
    }
    Ok(())
}

async fn set_status(
    tx: &mut Tx,
    id: &str,
    status: DeviceStatus,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    tx.execute(
        "UPDATE devices SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4",
        args![status.as_str(), reason, at, id],
    )
    .await?;
    Ok(())
}
