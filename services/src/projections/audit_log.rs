//! The audit log read model: one row per event (aggregate commands and security records alike),
//! with the real actor, IP and user agent, a short summary, and the payload minus its secrets.

use domain::metadata::{EventMetadata, keys};
use serde_json::Value;

use super::ProjectionError;
use crate::audit::{AUDIT_RECORD_TYPE, AuditOutcome};
use crate::events::StoredEvent;
use crate::read_models::sql::{Arg, Tx, args};
use crate::usage::USAGE_BATCH_TYPE;

pub(super) const TABLES: &[&str] = &["audit_log"];

/// One row per event, in order; secrets in their payloads are redacted (the audit trail shows that
/// they changed, not what they are). A batch of events is one statement (or a few).
pub(super) async fn apply(tx: &mut Tx, events: &[&StoredEvent]) -> Result<(), ProjectionError> {
    tx.insert_rows(
        "INSERT INTO audit_log (position, event_id, aggregate_type, aggregate_id, sequence, event_type, \
         actor_type, actor_id, ip, user_agent, request_id, outcome, summary, device_id, api_key_id, payload, at) \
         VALUES",
        "($, $, $, $, $, $, $, $, $, $, $, $, $, $, $, $, $)",
        "",
        events.iter().map(|event| row(event)).collect(),
    )
    .await?;
    Ok(())
}

fn row(event: &StoredEvent) -> Vec<Arg> {
    // The typed form when it parses; the raw keys otherwise, so an odd record is still shown.
    let typed = EventMetadata::from_map(&event.metadata).ok();
    let raw = |key: &str| event.metadata.get(key).cloned();
    let (actor_type, actor_id) = match &typed {
        Some(m) => (Some(m.actor.actor_type().to_owned()), Some(m.actor.actor_id())),
        None => (raw(keys::ACTOR_TYPE), raw(keys::ACTOR_ID)),
    };
    let ip = typed.as_ref().and_then(|m| m.ip.map(|ip| ip.to_string())).or_else(|| raw(keys::IP));
    let at = typed.as_ref().map(|m| m.at).unwrap_or(event.recorded_at);
    let (device_id, api_key_id) = subjects(event);
    let outcome = if event.aggregate_type == AUDIT_RECORD_TYPE {
        event
            .payload
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or(AuditOutcome::Failure.as_str())
            .to_owned()
    } else {
        AuditOutcome::Success.as_str().to_owned()
    };
    args![
        event.position,
        event.event_id,
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
        &event.event_type,
        actor_type,
        actor_id,
        ip,
        raw(keys::USER_AGENT),
        raw(keys::REQUEST_ID),
        outcome,
        summary(event),
        device_id,
        api_key_id,
        crate::events::redacted(event.payload.clone()),
        at,
    ]
}

/// The device and API key an event concerns, for the audit log's filters.
fn subjects(event: &StoredEvent) -> (Option<String>, Option<String>) {
    let field = |name: &str| event.payload.get(name).and_then(Value::as_str).map(str::to_owned);
    let id = Some(event.aggregate_id.clone());
    match event.aggregate_type.as_str() {
        "device" => (id, field("api_key_id")),
        "api_key" => (field("device_id"), id),
        "policy" => match event.aggregate_id.split_once(':') {
            Some(("device", target)) => (Some(target.to_owned()), None),
            Some(("api_key", target)) => (None, Some(target.to_owned())),
            _ => (None, None),
        },
        AUDIT_RECORD_TYPE | USAGE_BATCH_TYPE => (field("device_id"), field("api_key_id")),
        _ => (None, None),
    }
}

/// One line for people scanning the log; the payload has the details.
fn summary(event: &StoredEvent) -> String {
    let text = |name: &str| event.payload.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    match event.event_type.as_str() {
        _ if event.aggregate_type == AUDIT_RECORD_TYPE => text("summary"),
        "DeviceEnrolled" => format!("Device \"{}\" enrolled as {}", text("label"), text("initial_status")),
        "DeviceApproved" => "Device approved".to_owned(),
        "DeviceSuspended" => format!("Device suspended: {}", text("reason")),
        "DeviceReactivated" => format!("Device reactivated ({})", text("status")),
        "DeviceRevoked" => format!("Device revoked: {}", text("reason")),
        "DeviceRenamed" => {
            format!("Device renamed from \"{}\" to \"{}\"", text("previous_label"), text("label"))
        }
        "DeviceKeyRotated" => format!("Device key rotated to {}", text("new_key_id")),
        "ApiKeyCreated" => format!("API key \"{}\" created for {}", text("name"), text("provider")),
        "ProviderSecretRotated" => "Provider secret rotated".to_owned(),
        "ProjectKeyRotated" => format!("Project key rotated to {}…", text("new_prefix")),
        "ApiKeyRevoked" => format!("API key revoked: {}", text("reason")),
        "EnrollmentCodeIssued" => "Enrollment code issued".to_owned(),
        "EnrollmentCodeRevoked" => "Enrollment code revoked".to_owned(),
        "EnrollmentCodeRedeemed" => format!("Enrollment code redeemed by device {}", text("device_id")),
        "UserCreated" => format!("User {} created as {}", text("email"), text("role")),
        "UserRoleChanged" => format!("Role changed from {} to {}", text("previous_role"), text("role")),
        "UserDisabled" => format!("User disabled: {}", text("reason")),
        "UserEnabled" => "User enabled".to_owned(),
        "UserPasswordChanged" => "Password changed".to_owned(),
        "PolicySet" => format!("Policy set for {}", event.aggregate_id),
        "PolicyCleared" => format!("Policy cleared for {}", event.aggregate_id),
        "RequestCompleted" => format!(
            "{} {} via {}: {}",
            text("method"),
            text("path"),
            text("provider"),
            event.payload.get("status").and_then(Value::as_u64).unwrap_or_default()
        ),
        "UsageRecordsDropped" => format!(
            "{} usage records lost before this point",
            event.payload.get("count").and_then(Value::as_u64).unwrap_or_default()
        ),
        "UsageRetentionApplied" => format!(
            "Retention policy removed {} usage records ({} batches) stored before {}",
            event.payload.get("events").and_then(Value::as_u64).unwrap_or_default(),
            event.payload.get("batches").and_then(Value::as_u64).unwrap_or_default(),
            text("cutoff")
        ),
        other => other.to_owned(),
    }
}
