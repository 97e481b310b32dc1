//! `/api/v1/audit/aggregates/{type}/{id}/history`: one aggregate's history replayed, each event
//! with the state it left the aggregate in, or the state as it was at an instant (`?at=`).
//! The replay itself is `services::history`; this module only translates HTTP.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use services::history::{self, AggregateHistory, AggregateKind, HistoryEntry};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::ApiError;
use crate::api::audit::ActorResponse;
use crate::api::auth::Authorized;
use crate::api::auth::perm::ReadAudit;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit/aggregates/{type}/{id}/history", get(aggregate_history))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// An instant (RFC 3339): the history as far as it, and the state as it was then.
    pub at: Option<String>,
}

/// Which aggregate a history is of.
#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateRef {
    /// `device`, `api_key`, `policy` or `user`.
    #[serde(rename = "type")]
    pub aggregate_type: String,
    pub id: String,
}

/// One event and the aggregate's state right after it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntryResponse {
    /// The event's position in the global log.
    pub position: i64,
    pub event_id: Uuid,
    /// The event's number within the aggregate; the aggregate's version after it.
    pub sequence: i64,
    /// e.g. `DeviceEnrolled`, `DeviceSuspended`.
    pub event_type: String,
    pub event_version: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// When the store accepted it.
    pub recorded_at: DateTime<Utc>,
    pub actor: ActorResponse,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The event as stored, with secrets replaced by `"<redacted>"`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The aggregate's state after this event, with secrets replaced by `"<redacted>"`.
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

impl From<HistoryEntry> for HistoryEntryResponse {
    fn from(HistoryEntry { event: e, state }: HistoryEntry) -> Self {
        Self {
            position: e.position,
            event_id: e.event_id,
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            at: e.at,
            recorded_at: e.recorded_at,
            actor: ActorResponse { actor_type: e.actor_type, id: e.actor_id },
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            payload: e.payload,
            state,
        }
    }
}

/// An aggregate's history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    pub aggregate: AggregateRef,
    /// The instant asked for with `?at=`, if any.
    pub at: Option<DateTime<Utc>>,
    /// How many events built `state`.
    pub version: i64,
    /// The current state, or with `?at=` the state as it was then (secrets redacted).
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    /// Every event (with `?at=`, every event up to that instant), each with the state after it.
    pub entries: Vec<HistoryEntryResponse>,
}

impl From<AggregateHistory> for HistoryResponse {
    fn from(history: AggregateHistory) -> Self {
        Self {
            version: history.version(),
            state: history.state().clone(),
            aggregate: AggregateRef { aggregate_type: history.kind.as_str().to_owned(), id: history.id },
            at: history.at,
            entries: history.entries.into_iter().map(HistoryEntryResponse::from).collect(),
        }
    }
}

/// Replay an aggregate: every event with the state after it, or the state at an instant.
#[utoipa::path(
    get,
    path = "/api/v1/audit/aggregates/{type}/{id}/history",
    tag = "audit",
    params(
        ("type" = String, Path, description = "`device`, `api_key`, `policy` or `user`"),
        ("id" = String, Path, description = "A UUID, or a policy scope (`global`, `api_key:<uuid>`, `device:<uuid>`)"),
        HistoryQuery,
    ),
    responses(
        (status = 200, body = HistoryResponse),
        (status = 400, body = crate::api::error::ErrorBody),
        (status = 404, description = "`aggregate_not_found`, or `aggregate_not_yet_created` before its first event", body = crate::api::error::ErrorBody),
    )
)]
pub async fn aggregate_history(
    State(state): State<AppState>,
    _user: Authorized<ReadAudit>,
    Path((aggregate_type, id)): Path<(String, String)>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let kind = AggregateKind::parse(&aggregate_type)?;
    let at = match query.at.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(raw) => {
            Some(DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                ApiError::bad_field(
                    "at",
                    format!("`{raw}` is not an RFC 3339 instant (e.g. 2025-01-31T12:00:00Z)"),
                )
            })?)
        }
    };
    let history = history::history(&state.platform, kind, &id, at).await?;
    Ok(Json(history.into()))
}
