//! Devices: the filtered list, one device with its history, the status changes and renaming,
//! and enrollment codes.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use leptos::server_fn::codec::Json;

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRow {
    pub id: String,
    pub api_key_id: String,
    pub key_id: String,
    pub label: String,
    pub fingerprint: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub user_agent: Option<String>,
    pub enrolled_ip: Option<String>,
    pub metadata: String,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub request_count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub error_count: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounts {
    pub pending: i64,
    pub active: i64,
    pub suspended: i64,
    pub revoked: i64,
    pub total: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePage {
    pub items: Vec<DeviceRow>,
    pub total: i64,
    pub counts: DeviceCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub sequence: u64,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub ip: Option<String>,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDetail {
    pub device: DeviceRow,
    /// The version the next change must name (so two admins cannot both win).
    pub version: u64,
    pub history: Vec<HistoryRow>,
}

/// Page size of the device table.
pub const DEVICE_PAGE: i64 = 20;

#[cfg(feature = "ssr")]
impl From<services::read_models::devices::DeviceView> for DeviceRow {
    fn from(d: services::read_models::devices::DeviceView) -> Self {
        Self {
            id: d.id.to_string(),
            api_key_id: d.api_key_id.to_string(),
            key_id: d.key_id,
            label: d.label,
            fingerprint: d.fingerprint,
            status: d.status,
            status_reason: d.status_reason,
            user_agent: d.user_agent,
            enrolled_ip: d.enrolled_ip,
            metadata: serde_json::to_string_pretty(&d.metadata).unwrap_or_default(),
            enrolled_at: d.enrolled_at,
            last_seen_at: d.last_seen_at,
            request_count: d.request_count,
            tokens_in: d.tokens_in,
            tokens_out: d.tokens_out,
            error_count: d.error_count,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<services::read_models::devices::StatusCounts> for DeviceCounts {
    fn from(c: services::read_models::devices::StatusCounts) -> Self {
        Self {
            pending: c.pending,
            active: c.active,
            suspended: c.suspended,
            revoked: c.revoked,
            total: c.total,
        }
    }
}

/// Devices matching the filters, newest enrollments first. `status` and `api_key_id` may be empty.
#[server(endpoint = "devices/list")]
pub async fn list_devices(
    status: String,
    search: String,
    api_key_id: String,
    offset: i64,
) -> Result<DevicePage, AppError> {
    use crate::backend::{authorize, fail, parse_id};
    use domain::user::Permission;
    use services::read_models::PageRequest;
    use services::read_models::devices::DeviceFilter;

    let allowed = authorize(Permission::ReadConfiguration)?;
    let status = match status.trim() {
        "" => None,
        other => Some(other.parse().map_err(|e: domain::device::UnknownStatus| {
            fail(AppError::invalid_field("status", "invalid_input", e.to_string()))
        })?),
    };
    let api_key_id = match api_key_id.trim() {
        "" => None,
        raw => Some(parse_id("api_key_id", raw)?),
    };
    let filter = DeviceFilter {
        status,
        api_key_id,
        search: Some(search).filter(|s| !s.trim().is_empty()),
        page: PageRequest::new(DEVICE_PAGE, offset.max(0)),
        ..DeviceFilter::default()
    };
    let list = services::devices::list(&allowed.platform, &filter).await?;
    Ok(DevicePage {
        total: list.page.total,
        items: list.page.items.into_iter().map(DeviceRow::from).collect(),
        counts: list.counts.into(),
    })
}

/// One device, its version and its whole event history.
#[server(endpoint = "devices/get")]
pub async fn get_device(id: String) -> Result<DeviceDetail, AppError> {
    use crate::backend::{authorize, parse_id};
    use domain::user::Permission;

    let allowed = authorize(Permission::ReadConfiguration)?;
    let id = parse_id("id", &id)?;
    let versioned = services::devices::get(&allowed.platform, id).await?;
    let history = services::devices::history(&allowed.platform, id).await?;
    Ok(DeviceDetail {
        device: versioned.device.into(),
        version: versioned.version,
        history: history
            .into_iter()
            .map(|h| HistoryRow {
                sequence: h.sequence,
                event_type: h.event_type,
                at: h.at,
                actor: h.actor,
                ip: h.ip,
                payload: serde_json::to_string_pretty(&h.payload).unwrap_or_default(),
            })
            .collect(),
    })
}

/// What an admin can do to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChange {
    Approve,
    Suspend,
    Reactivate,
    Rename,
    Revoke,
}

/// Applies `change` to the device at `version`; `text` is the reason (suspend, revoke) or the
/// new label (rename). A change made by someone else in between is refused, not overwritten.
#[server(endpoint = "devices/change", input = Json)]
pub async fn change_device(
    id: String,
    change: DeviceChange,
    text: String,
    version: u64,
) -> Result<DeviceRow, AppError> {
    use crate::backend::{authorize, parse_id};
    use domain::user::Permission;
    use services::devices;

    let allowed = authorize(Permission::ManageDevices)?;
    let id = parse_id("id", &id)?;
    let (platform, caller, version) = (&allowed.platform, &allowed.caller, Some(version));
    let text = text.trim().to_owned();
    let changed = match change {
        DeviceChange::Approve => devices::approve(platform, caller, id, version).await?,
        DeviceChange::Suspend => devices::suspend(platform, caller, id, text, version).await?,
        DeviceChange::Reactivate => devices::reactivate(platform, caller, id, version).await?,
        DeviceChange::Rename => devices::rename(platform, caller, id, text, version).await?,
        DeviceChange::Revoke => devices::revoke(platform, caller, id, text, version).await?,
    };
    Ok(changed.device.into())
}

/// A freshly issued enrollment code: its text is shown once and never again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedCode {
    pub id: String,
    pub code: String,
    pub api_key_id: String,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i64,
    pub auto_approve: bool,
}

/// Issues an enrollment code for a key (empty: the only active key).
#[server(endpoint = "devices/issue_code")]
pub async fn issue_code(
    api_key_id: String,
    expires_in_minutes: i64,
    max_uses: i64,
    auto_approve: bool,
) -> Result<IssuedCode, AppError> {
    use crate::backend::{authorize, parse_id};
    use domain::user::Permission;
    use services::enrollment_codes::{self, NewCode};

    let allowed = authorize(Permission::ManageEnrollmentCodes)?;
    let api_key_id = match api_key_id.trim() {
        "" => None,
        raw => Some(parse_id("api_key_id", raw)?),
    };
    let input = NewCode {
        api_key_id,
        expires_in_seconds: Some(expires_in_minutes.saturating_mul(60)),
        max_uses: Some(max_uses),
        auto_approve,
        description: None,
    };
    let issued = enrollment_codes::issue(&allowed.platform, &allowed.caller, input).await?;
    Ok(IssuedCode {
        id: issued.view.id.to_string(),
        code: issued.code.expose().to_owned(),
        api_key_id: issued.view.api_key_id.to_string(),
        expires_at: issued.view.expires_at,
        max_uses: issued.view.max_uses,
        auto_approve: issued.view.auto_approve,
    })
}
