//! `/api/v1/devices`: enrolled devices (list with counts by status, one device, its history, and
//! the operator's transitions) and the enrollment codes that let new devices in.
//!
//! A single device comes with an `ETag` (its version); a change sent with `If-Match` applies only
//! to that version, so two operators acting on the same device cannot both win. A code's text is
//! answered once, when it is issued; listings show only its id, status, uses and expiry.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, patch, post};
use chrono::{DateTime, Utc};
use domain::device::DeviceStatus;
use domain::user::Permission;
use serde::{Deserialize, Serialize};
use services::devices::{self, DeviceHistoryEntry, VersionedDevice};
use services::enrollment_codes::{self, IssuedCode, NewCode};
use services::read_models::PageRequest;
use services::read_models::devices::{DeviceFilter, DeviceView, StatusCounts};
use services::read_models::enrollment_codes::EnrollmentCodeView;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::ApiError;
use crate::api::auth::perm::*;
use crate::api::auth::{Authorized, CurrentUser};
use crate::api::json::Json;
use crate::api::keys::parse_opt;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/enrollment-code", post(issue_code))
        .route("/devices/enrollment-codes", get(list_codes))
        .route("/devices/enrollment-codes/{code_id}", axum::routing::delete(revoke_code))
        .route("/devices/{id}", get(get_one).patch(rename).delete(revoke))
        .route("/devices/{id}/approve", patch(approve))
        .route("/devices/{id}/suspend", patch(suspend))
        .route("/devices/{id}/reactivate", patch(reactivate))
        .route("/devices/{id}/events", get(events))
}

/// A device as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceResponse {
    pub id: Uuid,
    pub api_key_id: Uuid,
    /// The kg-v1 keyId derived from the public key.
    pub key_id: String,
    /// The P-256 SubjectPublicKeyInfo, standard base64.
    pub public_key: String,
    pub label: String,
    pub fingerprint: String,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub enrolled_ip: Option<String>,
    pub enrollment_code_id: Option<String>,
    /// `pending`, `active`, `suspended` or `revoked`.
    pub status: String,
    /// Why the device is suspended or revoked.
    pub status_reason: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The time of the device's latest proxied request.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Proxied requests, whatever their outcome.
    pub request_count: i64,
    /// `tokensIn + tokensOut`.
    pub token_count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// Requests answered with status 400 or above, or not delivered in full.
    pub error_count: i64,
}

impl From<DeviceView> for DeviceResponse {
    fn from(d: DeviceView) -> Self {
        Self {
            id: d.id,
            api_key_id: d.api_key_id,
            key_id: d.key_id,
            public_key: d.public_key,
            label: d.label,
            fingerprint: d.fingerprint,
            user_agent: d.user_agent,
            metadata: d.metadata,
            enrolled_ip: d.enrolled_ip,
            enrollment_code_id: d.enrollment_code_id,
            status: d.status,
            status_reason: d.status_reason,
            enrolled_at: d.enrolled_at,
            updated_at: d.updated_at,
            last_seen_at: d.last_seen_at,
            request_count: d.request_count,
            token_count: d.token_count,
            tokens_in: d.tokens_in,
            tokens_out: d.tokens_out,
            error_count: d.error_count,
        }
    }
}

/// How many devices are in each state, across all keys (not only the page's filter).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCounts {
    pub pending: i64,
    pub active: i64,
    pub suspended: i64,
    pub revoked: i64,
    pub total: i64,
}

impl From<StatusCounts> for DeviceCounts {
    fn from(c: StatusCounts) -> Self {
        Self {
            pending: c.pending,
            active: c.active,
            suspended: c.suspended,
            revoked: c.revoked,
            total: c.total,
        }
    }
}

/// A page of devices and the global counts by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceListResponse {
    pub items: Vec<DeviceResponse>,
    /// Devices matching the filter across all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub counts: DeviceCounts,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct DeviceQuery {
    /// `pending`, `active`, `suspended` or `revoked`.
    pub status: Option<String>,
    /// Part of the label, fingerprint, keyId, id or user agent.
    pub search: Option<String>,
    pub api_key_id: Option<String>,
    /// RFC 3339; devices last seen at or after it.
    pub last_seen_after: Option<String>,
    /// RFC 3339; devices last seen before it.
    pub last_seen_before: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// List devices, newest enrollments first, with the counts by status.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(DeviceQuery), responses((status = 200, body = DeviceListResponse), (status = 400, body = crate::api::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Query(query): Query<DeviceQuery>,
) -> Result<Json<DeviceListResponse>, ApiError> {
    let filter = DeviceFilter {
        status: match query.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some("pending") => Some(DeviceStatus::Pending),
            Some("active") => Some(DeviceStatus::Active),
            Some("suspended") => Some(DeviceStatus::Suspended),
            Some("revoked") => Some(DeviceStatus::Revoked),
            Some(other) => {
                return Err(ApiError::bad_field(
                    "status",
                    format!("`{other}` is not one of pending, active, suspended, revoked"),
                ));
            }
        },
        api_key_id: parse_opt("apiKeyId", query.api_key_id.as_deref())?,
        search: query.search.filter(|s| !s.trim().is_empty()),
        last_seen_after: parse_opt("lastSeenAfter", query.last_seen_after.as_deref())?,
        last_seen_before: parse_opt("lastSeenBefore", query.last_seen_before.as_deref())?,
        page: PageRequest::new(query.limit.unwrap_or(PageRequest::DEFAULT_LIMIT), query.offset.unwrap_or(0)),
    };
    let list = devices::list(&state.platform, &filter).await?;
    Ok(Json(DeviceListResponse {
        total: list.page.total,
        limit: list.page.limit,
        offset: list.page.offset,
        items: list.page.items.into_iter().map(DeviceResponse::from).collect(),
        counts: list.counts.into(),
    }))
}

/// A device with its version in the `ETag` header.
type Versioned = ([(header::HeaderName, HeaderValue); 1], Json<DeviceResponse>);

fn versioned(v: VersionedDevice) -> Versioned {
    let etag = HeaderValue::from_str(&format!("\"{}\"", v.version)).expect("digits are a valid header value");
    ([(header::ETAG, etag)], Json(v.device.into()))
}

/// The version a change is meant for, from `If-Match` (`"3"` or `3`); none (or `*`) means
/// "whatever it is now".
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH).filter(|v| v.as_bytes() != b"*") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_field("If-Match", "must be a device version as sent in its ETag"))
}

/// One device; its version is in the `ETag` header.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", responses((status = 200, body = DeviceResponse), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Path(id): Path<Uuid>,
) -> Result<Versioned, ApiError> {
    Ok(versioned(devices::get(&state.platform, id).await?))
}

/// Let a pending device sign requests.
#[utoipa::path(patch, path = "/api/v1/devices/{id}/approve", tag = "devices", params(("If-Match" = Option<String>, Header, description = "The version from the ETag")), responses((status = 200, body = DeviceResponse), (status = 404, body = crate::api::error::ErrorBody), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    user: Authorized<ManageDevices>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Versioned, ApiError> {
    let expected = if_match(&headers)?;
    Ok(versioned(devices::approve(&state.platform, &user.caller(), id, expected).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReasonRequest {
    /// One line, at most 500 characters.
    pub reason: Option<String>,
}

/// Stop a device from signing until it is reactivated.
#[utoipa::path(patch, path = "/api/v1/devices/{id}/suspend", tag = "devices", request_body = ReasonRequest, params(("If-Match" = Option<String>, Header, description = "The version from the ETag")), responses((status = 200, body = DeviceResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn suspend(
    State(state): State<AppState>,
    user: Authorized<ManageDevices>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Option<Json<ReasonRequest>>,
) -> Result<Versioned, ApiError> {
    let expected = if_match(&headers)?;
    let reason = body.and_then(|Json(b)| b.reason).unwrap_or_default();
    Ok(versioned(devices::suspend(&state.platform, &user.caller(), id, reason, expected).await?))
}

/// Lift a suspension: the device is active again, or pending if it was never approved.
#[utoipa::path(patch, path = "/api/v1/devices/{id}/reactivate", tag = "devices", params(("If-Match" = Option<String>, Header, description = "The version from the ETag")), responses((status = 200, body = DeviceResponse), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn reactivate(
    State(state): State<AppState>,
    user: Authorized<ManageDevices>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Versioned, ApiError> {
    let expected = if_match(&headers)?;
    Ok(versioned(devices::reactivate(&state.platform, &user.caller(), id, expected).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenameRequest {
    /// One line, at most 255 characters.
    pub label: String,
}

/// Rename a device.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", request_body = RenameRequest, params(("If-Match" = Option<String>, Header, description = "The version from the ETag")), responses((status = 200, body = DeviceResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn rename(
    State(state): State<AppState>,
    user: Authorized<ManageDevices>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<RenameRequest>,
) -> Result<Versioned, ApiError> {
    let expected = if_match(&headers)?;
    Ok(versioned(devices::rename(&state.platform, &user.caller(), id, body.label, expected).await?))
}

/// Revoke a device for good.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", request_body = ReasonRequest, params(("If-Match" = Option<String>, Header, description = "The version from the ETag")), responses((status = 200, body = DeviceResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    user: Authorized<ManageDevices>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Option<Json<ReasonRequest>>,
) -> Result<Versioned, ApiError> {
    let expected = if_match(&headers)?;
    let reason = body.and_then(|Json(b)| b.reason).unwrap_or_default();
    Ok(versioned(devices::revoke(&state.platform, &user.caller(), id, reason, expected).await?))
}

/// One event of a device's history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceEventResponse {
    pub sequence: u64,
    /// e.g. `DeviceEnrolled`, `DeviceApproved`.
    pub event_type: String,
    pub event_version: String,
    pub at: DateTime<Utc>,
    /// `user:<uuid>`, `device:<uuid>` or `system:<component>`.
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<DeviceHistoryEntry> for DeviceEventResponse {
    fn from(e: DeviceHistoryEntry) -> Self {
        Self {
            sequence: e.sequence,
            event_type: e.event_type,
            event_version: e.event_version,
            at: e.at,
            actor: e.actor,
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            payload: e.payload,
        }
    }
}

/// A device's full history, oldest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/events", tag = "devices", responses((status = 200, body = Vec<DeviceEventResponse>), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Vec<DeviceEventResponse>>, ApiError> {
    // The history is configuration and audit trail alike: either permission reads it.
    user.require(Permission::ReadConfiguration).or_else(|_| user.require(Permission::ReadAudit))?;
    let history = devices::history(&state.platform, id).await?;
    Ok(Json(history.into_iter().map(DeviceEventResponse::from).collect()))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssueCodeRequest {
    /// May be left out when exactly one active API key exists.
    pub api_key_id: Option<Uuid>,
    /// Defaults to 900 (15 minutes); at most 30 days.
    pub expires_in_seconds: Option<i64>,
    /// Defaults to 1; at most 1000.
    pub max_uses: Option<i64>,
    /// Devices enrolling with this code start active instead of pending.
    #[serde(default)]
    pub auto_approve: bool,
    pub description: Option<String>,
}

/// A new code, shown this one time.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCodeResponse {
    /// The code (`kgc_…`). Hand it over now: KeyGuard keeps only its hash.
    pub code: String,
    pub code_id: Uuid,
    pub api_key_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i64,
    pub auto_approve: bool,
    pub description: Option<String>,
}

impl From<IssuedCode> for IssuedCodeResponse {
    fn from(issued: IssuedCode) -> Self {
        Self {
            code: issued.code.expose().to_owned(),
            code_id: issued.view.id,
            api_key_id: issued.view.api_key_id,
            expires_at: issued.view.expires_at,
            max_uses: issued.view.max_uses,
            auto_approve: issued.view.auto_approve,
            description: issued.view.description,
        }
    }
}

/// Issue an enrollment code for an API key.
#[utoipa::path(post, path = "/api/v1/devices/enrollment-code", tag = "enrollment codes", request_body = IssueCodeRequest, responses((status = 201, body = IssuedCodeResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn issue_code(
    State(state): State<AppState>,
    user: Authorized<ManageEnrollmentCodes>,
    body: Option<Json<IssueCodeRequest>>,
) -> Result<(StatusCode, Json<IssuedCodeResponse>), ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let input = NewCode {
        api_key_id: body.api_key_id,
        expires_in_seconds: body.expires_in_seconds,
        max_uses: body.max_uses,
        auto_approve: body.auto_approve,
        description: body.description,
    };
    let issued = enrollment_codes::issue(&state.platform, &user.caller(), input).await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// An issued code, without the code itself.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentCodeResponse {
    pub id: Uuid,
    pub api_key_id: Uuid,
    /// `active`, `expired`, `exhausted` or `revoked`.
    pub status: String,
    pub uses: i64,
    pub max_uses: i64,
    pub expires_at: DateTime<Utc>,
    pub auto_approve: bool,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<EnrollmentCodeView> for EnrollmentCodeResponse {
    fn from(c: EnrollmentCodeView) -> Self {
        Self {
            status: format!("{:?}", c.status_at(Utc::now())).to_lowercase(),
            id: c.id,
            api_key_id: c.api_key_id,
            uses: c.uses,
            max_uses: c.max_uses,
            expires_at: c.expires_at,
            auto_approve: c.auto_approve,
            description: c.description,
            created_by: c.created_by,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct CodeQuery {
    /// May be left out when exactly one active API key exists.
    pub api_key_id: Option<String>,
}

/// The codes issued for an API key, newest first.
#[utoipa::path(get, path = "/api/v1/devices/enrollment-codes", tag = "enrollment codes", params(CodeQuery), responses((status = 200, body = Vec<EnrollmentCodeResponse>), (status = 400, body = crate::api::error::ErrorBody), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn list_codes(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Query(query): Query<CodeQuery>,
) -> Result<Json<Vec<EnrollmentCodeResponse>>, ApiError> {
    let api_key_id = parse_opt("apiKeyId", query.api_key_id.as_deref())?;
    let codes = enrollment_codes::list(&state.platform, api_key_id).await?;
    Ok(Json(codes.into_iter().map(EnrollmentCodeResponse::from).collect()))
}

/// Revoke a code so that no more devices enroll with it.
#[utoipa::path(delete, path = "/api/v1/devices/enrollment-codes/{code_id}", tag = "enrollment codes", responses((status = 200, body = EnrollmentCodeResponse), (status = 404, body = crate::api::error::ErrorBody), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn revoke_code(
    State(state): State<AppState>,
    user: Authorized<ManageEnrollmentCodes>,
    Path(code_id): Path<Uuid>,
) -> Result<Json<EnrollmentCodeResponse>, ApiError> {
    Ok(Json(enrollment_codes::revoke(&state.platform, &user.caller(), code_id).await?.into()))
}
