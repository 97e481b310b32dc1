//! Devices: list with filters and paging, counts by status, the most active, lookups by id and by
//! (key, keyId).

use chrono::{DateTime, Utc};
use domain::device::DeviceStatus;
use serde::Serialize;
use uuid::Uuid;

use super::sql::{self, Where, args};
use super::{Page, PageRequest, ReadModelError};
use crate::store::Database;

const COLUMNS: &str = "id, api_key_id, key_id, public_key, label, fingerprint, user_agent, metadata, \
                       enrolled_ip, enrollment_code_id, status, status_reason, enrolled_at, updated_at, \
                       last_seen_at, request_count, token_count, tokens_in, tokens_out, error_count";

/// A device as the API shows it. `status` is one of `pending`, `active`, `suspended`, `revoked`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    #[sqlx(try_from = "String")]
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub api_key_id: Uuid,
    pub key_id: String,
    /// The P-256 SubjectPublicKeyInfo, standard base64.
    pub public_key: String,
    pub label: String,
    pub fingerprint: String,
    pub user_agent: Option<String>,
    #[sqlx(json)]
    pub metadata: serde_json::Value,
    pub enrolled_ip: Option<String>,
    pub enrollment_code_id: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The time of the device's latest proxied request.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Proxied requests, whatever their outcome.
    pub request_count: i64,
    /// `tokens_in + tokens_out`.
    pub token_count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// Requests answered with status 400 or above, or not delivered in full.
    pub error_count: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub status: Option<DeviceStatus>,
    pub api_key_id: Option<Uuid>,
    /// Case-insensitive substring of the label, fingerprint, keyId, id or user agent.
    pub search: Option<String>,
    pub last_seen_after: Option<DateTime<Utc>>,
    pub last_seen_before: Option<DateTime<Utc>>,
    pub page: PageRequest,
}

/// How many devices are in each state, across all keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub pending: i64,
    pub active: i64,
    pub suspended: i64,
    pub revoked: i64,
    pub total: i64,
}

/// A device among the busiest, by its proxied requests since it enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TopDevice {
    #[sqlx(try_from = "String")]
    pub id: Uuid,
    pub label: String,
    /// One of `pending`, `active`, `suspended`, `revoked`.
    pub status: String,
    pub request_count: i64,
    /// `tokens_in + tokens_out`.
    pub token_count: i64,
    pub error_count: i64,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// Newest enrollments first.
pub async fn list(db: &Database, filter: &DeviceFilter) -> Result<Page<DeviceView>, ReadModelError> {
    let mut w = Where::default();
    if let Some(status) = filter.status {
        w.and("status = $", status.as_str());
    }
    if let Some(id) = filter.api_key_id {
        w.and("api_key_id = $", id);
    }
    if let Some(after) = filter.last_seen_after {
        w.and("last_seen_at >= $", after);
    }
    if let Some(before) = filter.last_seen_before {
        w.and("last_seen_at < $", before);
    }
    if let Some(needle) = filter.search.as_deref().filter(|s| !s.trim().is_empty()) {
        w.search(&["label", "fingerprint", "key_id", "id", "user_agent"], needle.trim());
    }
    super::page(db, COLUMNS, "devices", w, "enrolled_at DESC, id", filter.page).await
}

pub async fn get(db: &Database, id: Uuid) -> Result<Option<DeviceView>, ReadModelError> {
    let sql = format!("SELECT {COLUMNS} FROM devices WHERE id = $1");
    Ok(sql::fetch_optional(db, &sql, args![id]).await?)
}

/// The device of a project with this keyId (the proxy's lookup), whatever its status.
pub async fn find_by_key_id(
    db: &Database,
    api_key_id: Uuid,
    key_id: &str,
) -> Result<Option<DeviceView>, ReadModelError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM devices WHERE api_key_id = $1 AND key_id = $2 \
         ORDER BY enrolled_at DESC LIMIT 1"
    );
    Ok(sql::fetch_optional(db, &sql, args![api_key_id, key_id]).await?)
}

pub async fn counts_by_status(db: &Database) -> Result<StatusCounts, ReadModelError> {
    let rows: Vec<(String, i64)> =
        sql::fetch_all(db, "SELECT status, COUNT(*) FROM devices GROUP BY status", vec![]).await?;
    let mut counts = StatusCounts::default();
    for (status, n) in rows {
        match status.as_str() {
            "pending" => counts.pending = n,
            "active" => counts.active = n,
            "suspended" => counts.suspended = n,
            "revoked" => counts.revoked = n,
            _ => {}
        }
        counts.total += n;
    }
    Ok(counts)
}

/// The `limit` devices with the most proxied requests, busiest first; devices that never made one
/// are left out.
pub async fn most_active(db: &Database, limit: i64) -> Result<Vec<TopDevice>, ReadModelError> {
    Ok(sql::fetch_all(
        db,
        "SELECT id, label, status, request_count, token_count, error_count, last_seen_at FROM devices \
         WHERE request_count > 0 ORDER BY request_count DESC, token_count DESC, id LIMIT $1",
        args![limit.max(0)],
    )
    .await?)
}
