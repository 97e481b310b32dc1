//! The devices read model: one row per enrolled device with its current standing.

use chrono::{DateTime, Utc};
use domain::device::{DeviceEvent, DeviceStatus};

use super::{ProjectionError, decode};
use crate::events::StoredEvent;
use crate::read_models::sql::{Tx, args};

pub(super) const TABLES: &[&str] = &["devices"];

pub(super) async fn apply(tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
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
