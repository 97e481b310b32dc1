//! `/api/v1/audit/logs`: the audit trail, read-only: every event and security record with the
//! real actor, where the request came from, and what happened (secrets redacted).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use services::audit::AuditOutcome;
use services::error::ServiceError;
use services::read_models::PageRequest;
use services::read_models::audit::{self, AuditEntry, AuditFilter};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::ApiError;
use crate::api::auth::Authorized;
use crate::api::auth::perm::ReadAudit;
use crate::api::pagination::PageResponse;
use crate::startup::AppState;

/// Most event types one query may name.
const MAX_EVENT_TYPES: usize = 50;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit/logs", get(list)).route("/audit/logs/{position}", get(get_one))
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

impl AuditQuery {
    fn into_filter(self) -> Result<AuditFilter, ApiError> {
        let from = time("from", self.from.as_deref())?;
        let to = time("to", self.to.as_deref())?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(ApiError::bad_field("to", "must be later than `from`"));
        }
        let (actor_type, actor_id) = actor(self.actor.as_deref())?;
        let limit = integer("limit", self.limit.as_deref(), 1..=PageRequest::MAX_LIMIT)?;
        let offset = integer("offset", self.offset.as_deref(), 0..=i64::MAX)?;
        Ok(AuditFilter {
            from,
            to,
            actor_type,
            actor_id,
            device_id: uuid("deviceId", self.device_id.as_deref())?,
            api_key_id: uuid("apiKeyId", self.api_key_id.as_deref())?,
            event_types: event_types(self.event_type.as_deref())?,
            outcome: outcome(self.outcome.as_deref())?,
            search: non_empty(self.q.as_deref()).map(str::to_owned),
            page: PageRequest::new(limit.unwrap_or(PageRequest::DEFAULT_LIMIT), offset.unwrap_or(0)),
        })
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
    let filter = query.into_filter()?;
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
    let position = integer("position", Some(&position), 1..=i64::MAX)?.unwrap_or_default();
    audit::get(&state.platform.db, position)
        .await
        .map_err(ServiceError::from)?
        .map(|entry| Json(entry.into()))
        .ok_or_else(|| {
            ApiError::not_found("audit_entry_not_found", format!("there is no audit entry {position}"))
        })
}

fn non_empty(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|v| !v.is_empty())
}

fn time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    non_empty(raw)
        .map(|v| {
            DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                ApiError::bad_field(
                    field,
                    format!("`{v}` is not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)"),
                )
            })
        })
        .transpose()
}

fn uuid(field: &str, raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    non_empty(raw)
        .map(|v| Uuid::parse_str(v).map_err(|_| ApiError::bad_field(field, format!("`{v}` is not a UUID"))))
        .transpose()
}

fn integer(
    field: &str,
    raw: Option<&str>,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, ApiError> {
    let (low, high) = (*range.start(), *range.end());
    non_empty(raw)
        .map(|v| match v.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            Ok(_) if high == i64::MAX => Err(ApiError::bad_field(field, format!("must be at least {low}"))),
            Ok(_) => Err(ApiError::bad_field(field, format!("must be from {low} to {high}"))),
            Err(_) => Err(ApiError::bad_field(field, format!("`{v}` is not a whole number"))),
        })
        .transpose()
}

/// `type:id`, a bare type, or a bare id (of a user, a device or a system component).
fn actor(raw: Option<&str>) -> Result<(Option<String>, Option<String>), ApiError> {
    const TYPES: [&str; 3] = ["user", "device", "system"];
    let Some(raw) = non_empty(raw) else { return Ok((None, None)) };
    let bad = || {
        ApiError::bad_field(
            "actor",
            format!("`{raw}` is not `user:<id>`, `device:<id>`, `system:<component>`, a type or an id"),
        )
    };
    match raw.split_once(':') {
        Some((kind, id)) => {
            let kind = kind.trim().to_ascii_lowercase();
            let id = id.trim();
            if !TYPES.contains(&kind.as_str()) || id.is_empty() {
                return Err(bad());
            }
            if kind != "system" && Uuid::parse_str(id).is_err() {
                return Err(ApiError::bad_field("actor", format!("`{id}` is not a {kind} id (a UUID)")));
            }
            // Ids are stored in their hyphenated lowercase form.
            let id = Uuid::parse_str(id).map(|u| u.to_string()).unwrap_or_else(|_| id.to_owned());
            Ok((Some(kind), Some(id)))
        }
        None if TYPES.contains(&raw.to_ascii_lowercase().as_str()) => {
            Ok((Some(raw.to_ascii_lowercase()), None))
        }
        None if raw.len() <= 64 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
            Ok((None, Some(Uuid::parse_str(raw).map(|u| u.to_string()).unwrap_or_else(|_| raw.to_owned()))))
        }
        None => Err(bad()),
    }
}

fn event_types(raw: Option<&str>) -> Result<Vec<String>, ApiError> {
    let Some(raw) = non_empty(raw) else { return Ok(Vec::new()) };
    let types: Vec<String> =
        raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
    if types.len() > MAX_EVENT_TYPES {
        return Err(ApiError::bad_field(
            "eventType",
            format!("names more than {MAX_EVENT_TYPES} event types"),
        ));
    }
    match types.iter().find(|t| t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric())) {
        Some(bad) => Err(ApiError::bad_field(
            "eventType",
            format!("`{bad}` is not an event type (e.g. ApiKeyCreated)"),
        )),
        None => Ok(types),
    }
}

fn outcome(raw: Option<&str>) -> Result<Option<AuditOutcome>, ApiError> {
    match non_empty(raw) {
        None => Ok(None),
        Some("success") => Ok(Some(AuditOutcome::Success)),
        Some("failure") => Ok(Some(AuditOutcome::Failure)),
        Some("denied") => Ok(Some(AuditOutcome::Denied)),
        Some(other) => {
            Err(ApiError::bad_field("outcome", format!("`{other}` is not one of success, failure, denied")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::BadRequest { fields, .. } => fields.into_keys().next().unwrap_or_default(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn actor_takes_a_pair_a_type_or_an_id() {
        let id = Uuid::new_v4();
        assert_eq!(actor(Some(&format!("user:{id}"))).unwrap(), (Some("user".into()), Some(id.to_string())));
        assert_eq!(actor(Some("system:cli")).unwrap(), (Some("system".into()), Some("cli".into())));
        assert_eq!(actor(Some("device")).unwrap(), (Some("device".into()), None));
        assert_eq!(
            actor(Some(&id.simple().to_string())).unwrap(),
            (None, Some(id.to_string())),
            "a UUID in any spelling matches the stored form"
        );
        assert_eq!(actor(Some(" ")).unwrap(), (None, None));
        for bad in ["robot:1", "user:not-a-uuid", "user:", "a b", "'; drop"] {
            assert_eq!(field_of(actor(Some(bad)).unwrap_err()), "actor", "{bad}");
        }
    }

    #[test]
    fn each_bad_filter_names_its_parameter() {
        let cases: Vec<(&str, AuditQuery)> = vec![
            ("from", AuditQuery { from: Some("yesterday".into()), ..Default::default() }),
            ("to", AuditQuery { to: Some("2025-13-01T00:00:00Z".into()), ..Default::default() }),
            (
                "to",
                AuditQuery {
                    from: Some("2025-02-01T00:00:00Z".into()),
                    to: Some("2025-01-01T00:00:00Z".into()),
                    ..Default::default()
                },
            ),
            ("deviceId", AuditQuery { device_id: Some("d1".into()), ..Default::default() }),
            ("apiKeyId", AuditQuery { api_key_id: Some("k1".into()), ..Default::default() }),
            ("eventType", AuditQuery { event_type: Some("Login Failed".into()), ..Default::default() }),
            ("outcome", AuditQuery { outcome: Some("ok".into()), ..Default::default() }),
            ("limit", AuditQuery { limit: Some("0".into()), ..Default::default() }),
            ("limit", AuditQuery { limit: Some("many".into()), ..Default::default() }),
            ("offset", AuditQuery { offset: Some("-1".into()), ..Default::default() }),
        ];
        for (field, query) in cases {
            let debug = format!("{query:?}");
            assert_eq!(field_of(query.into_filter().unwrap_err()), field, "{debug}");
        }
    }

    #[test]
    fn good_filters_parse() {
        let filter = AuditQuery {
            from: Some("2025-01-01T00:00:00+01:00".into()),
            event_type: Some("LoginFailed, ApiKeyCreated".into()),
            outcome: Some("failure".into()),
            q: Some("  ".into()),
            limit: Some("10".into()),
            ..Default::default()
        }
        .into_filter()
        .unwrap();
        assert_eq!(filter.from.unwrap().to_rfc3339(), "2024-12-31T23:00:00+00:00");
        assert_eq!(filter.event_types, ["LoginFailed", "ApiKeyCreated"]);
        assert_eq!(filter.outcome, Some(AuditOutcome::Failure));
        assert_eq!(filter.search, None);
        assert_eq!(filter.page, PageRequest::new(10, 0));
    }
}
