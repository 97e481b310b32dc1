//! The audit log: filtered, paged listing (newest first), the latest security events, and single
//! entries by position.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::sql::{self, Where, args};
use super::{Page, PageRequest, ReadModelError};
use crate::audit::AuditOutcome;
use crate::store::Database;

const COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, sequence, event_type, actor_type, \
                       actor_id, ip, user_agent, request_id, outcome, summary, device_id, api_key_id, payload, at";

/// One audited event. The payload has its secrets replaced by `"<redacted>"`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The event's store position; the entry's id in the API.
    pub position: i64,
    #[sqlx(try_from = "String")]
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    /// `user`, `device` or `system`.
    pub actor_type: Option<String>,
    pub actor_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub summary: String,
    pub device_id: Option<String>,
    pub api_key_id: Option<String>,
    #[sqlx(json)]
    pub payload: serde_json::Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub actor_type: Option<String>,
    pub actor_id: Option<String>,
    pub device_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    /// Any of these event types (none: all).
    pub event_types: Vec<String>,
    pub outcome: Option<AuditOutcome>,
    /// Case-insensitive substring of the summary, event type, actor, IP, user agent, request id or
    /// aggregate id.
    pub search: Option<String>,
    pub page: PageRequest,
}

pub async fn list(db: &Database, filter: &AuditFilter) -> Result<Page<AuditEntry>, ReadModelError> {
    super::page(db, COLUMNS, "audit_log", conditions(filter), "position DESC", filter.page).await
}

/// Up to `limit` entries matching `filter` (its page is ignored) that come after `position`,
/// oldest first: the exports and the live stream walk the log with it, in bounded memory and
/// without counting or skipping rows.
pub async fn after(
    db: &Database,
    filter: &AuditFilter,
    position: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, ReadModelError> {
    let mut w = conditions(filter);
    w.and("position > $", position);
    let limit_placeholder = w.bind(limit.clamp(1, PageRequest::MAX_LIMIT));
    let sql =
        format!("SELECT {COLUMNS} FROM audit_log{} ORDER BY position ASC LIMIT {limit_placeholder}", w.sql());
    Ok(sql::fetch_all(db, &sql, w.args).await?)
}

/// The position of the newest entry (0 when the log is empty).
pub async fn last_position(db: &Database) -> Result<i64, ReadModelError> {
    Ok(sql::fetch_i64(db, "SELECT COALESCE(MAX(position), 0) FROM audit_log", args![]).await?)
}

fn conditions(filter: &AuditFilter) -> Where {
    let mut w = Where::default();
    if let Some(from) = filter.from {
        w.and("at >= $", from);
    }
    if let Some(to) = filter.to {
        w.and("at < $", to);
    }
    if let Some(actor_type) = &filter.actor_type {
        w.and("actor_type = $", actor_type);
    }
    if let Some(actor_id) = &filter.actor_id {
        w.and("actor_id = $", actor_id);
    }
    if let Some(device_id) = filter.device_id {
        w.and("device_id = $", device_id);
    }
    if let Some(api_key_id) = filter.api_key_id {
        w.and("api_key_id = $", api_key_id);
    }
    if !filter.event_types.is_empty() {
        let placeholders: Vec<String> = filter.event_types.iter().map(|t| w.bind(t)).collect();
        w.raw(format!("event_type IN ({})", placeholders.join(", ")));
    }
    if let Some(outcome) = filter.outcome {
        w.and("outcome = $", outcome.as_str());
    }
    if let Some(needle) = filter.search.as_deref().filter(|s| !s.trim().is_empty()) {
        w.search(
            &["summary", "event_type", "actor_id", "ip", "user_agent", "request_id", "aggregate_id"],
            needle.trim(),
        );
    }
    w
}

/// The newest `limit` entries whose outcome is not `success` (refused sign-ins, signatures,
/// enrollments, policy denials), newest first.
pub async fn recent_security(db: &Database, limit: i64) -> Result<Vec<AuditEntry>, ReadModelError> {
    // The literal matches the partial index `audit_log_security` (a bound value would not, for
    // PostgreSQL's generic plans), so this reads a few rows however many successes there are.
    let sql =
        format!("SELECT {COLUMNS} FROM audit_log WHERE outcome <> 'success' ORDER BY position DESC LIMIT $1");
    Ok(sql::fetch_all(db, &sql, args![limit.max(0)]).await?)
}

pub async fn get(db: &Database, position: i64) -> Result<Option<AuditEntry>, ReadModelError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE position = $1");
    Ok(sql::fetch_optional(db, &sql, args![position]).await?)
}
