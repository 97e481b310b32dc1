//! `/api/v1/audit/...`: the audit trail, read-only: every event and security record with the
//! real actor, where the request came from, and what happened (secrets redacted).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use services::audit_query::AuditTextQuery;
use services::error::ServiceError;
use services::read_models::audit::{self, AuditEntry};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::ApiError;
use crate::api::auth::Authorized;
use crate::api::auth::perm::ReadAudit;
use crate::api::pagination::PageResponse;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/logs", get(list))
        .route("/audit/logs/{position}", get(get_one))
        .route("/audit/export", get(crate::api::audit_export::export))
        .route("/audit/stream", get(crate::api::audit_export::stream))
        .route("/audit/verify", get(crate::api::audit_integrity::verify))
        .route("/audit/public-key", get(crate::api::audit_integrity::public_key))
}

/// Who caused an entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorResponse {
    /// `user`, `device` or `system`.
    #[serde(rename = "type")]
    pub actor_type: Option<String>,
    /// A user's or device's id, or the system component (`cli`, `proxy`, …).
    pub id: Option<String>,
}

/// What an entry is about: the aggregate (or security record) whose event it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateResponse {
    /// `device`, `api_key`, `policy`, `user` or `audit_record`.
    #[serde(rename = "type")]
    pub aggregate_type: String,
    pub id: String,
    /// The event's number within its aggregate.
    pub sequence: i64,
}

/// One audit log entry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryResponse {
    /// The event's position in the global log; the entry's id.
    pub position: i64,
    pub event_id: Uuid,
    /// e.g. `ApiKeyCreated`, `LoginFailed`.
    pub event_type: String,
    pub actor: ActorResponse,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub aggregate: AggregateResponse,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub summary: String,
    pub device_id: Option<String>,
    pub api_key_id: Option<String>,
    /// The event as stored, with secrets replaced by `"<redacted>"`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl From<AuditEntry> for AuditEntryResponse {
    fn from(e: AuditEntry) -> Self {
        Self {
            position: e.position,
            event_id: e.event_id,
            event_type: e.event_type,
            actor: ActorResponse { actor_type: e.actor_type, id: e.actor_id },
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            aggregate: AggregateResponse {
                aggregate_type: e.aggregate_type,
                id: e.aggregate_id,
                sequence: e.sequence,
            },
            outcome: e.outcome,
            summary: e.summary,
            device_id: e.device_id,
            api_key_id: e.api_key_id,
            payload: e.payload,
            at: e.at,
        }
    }
}

/// The filters, taken as text so that a bad value is answered with a 400 naming its parameter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct AuditQuery {
    /// Entries at or after this instant (RFC 3339).
    pub from: Option<String>,
    /// Entries before this instant (RFC 3339).
    pub to: Option<String>,
    /// `user:<id>`, `device:<id>`, `system:<component>`, a bare type (`user`) or a bare id.
    pub actor: Option<String>,
    pub device_id: Option<String>,
    pub api_key_id: Option<String>,
    /// One event type, or several separated by commas (`LoginFailed,LoginThrottled`).
    pub event_type: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// Case-insensitive text in the summary, event type, actor, IP, user agent, request id or
    /// aggregate id.
    pub q: Option<String>,
    /// 1 to 500 (default 50).
    pub limit: Option<String>,
    pub offset: Option<String>,
}

impl From<AuditQuery> for AuditTextQuery {
    fn from(q: AuditQuery) -> Self {
        Self {
            from: q.from,
            to: q.to,
            actor: q.actor,
            device_id: q.device_id,
            api_key_id: q.api_key_id,
            event_type: q.event_type,
            outcome: q.outcome,
            q: q.q,
            limit: q.limit,
            offset: q.offset,
        }
    }
}

/// List audit entries, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit/logs",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = PageResponse<AuditEntryResponse>),
        (status = 400, body = crate::api::error::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: Authorized<ReadAudit>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<PageResponse<AuditEntryResponse>>, ApiError> {
    let filter = AuditTextQuery::from(query).into_filter()?;
    let page = audit::list(&state.platform.db, &filter).await.map_err(ServiceError::from)?;
    Ok(Json(PageResponse::from_page(page, AuditEntryResponse::from)))
}

/// One audit entry, by its position.
#[utoipa::path(
    get,
    path = "/api/v1/audit/logs/{position}",
    tag = "audit",
    params(("position" = i64, Path, description = "The entry's position in the global log")),
    responses(
        (status = 200, body = AuditEntryResponse),
        (status = 400, body = crate::api::error::ErrorBody),
        (status = 404, body = crate::api::error::ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    _user: Authorized<ReadAudit>,
    Path(position): Path<String>,
) -> Result<Json<AuditEntryResponse>, ApiError> {
    let position: i64 = position.trim().parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
        ApiError::bad_field("position", format!("`{position}` is not a whole number of at least 1"))
    })?;
    audit::get(&state.platform.db, position)
        .await
        .map_err(ServiceError::from)?
        .map(|entry| Json(entry.into()))
        .ok_or_else(|| {
            ApiError::not_found("audit_entry_not_found", format!("there is no audit entry {position}"))
        })
}
