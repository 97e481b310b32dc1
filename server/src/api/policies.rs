//! `/api/v1/policies`: the global policy, the overrides per API key and per device, and the
//! effective policy where the most specific level that names a field wins.
//!
//! Settings are camelCase here like the rest of the API; a field left out (or `null`) is not set
//! at that level and falls back to the less specific ones.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use domain::policy::{EffectivePolicy, PolicyScope, PolicySettings};
use serde::{Deserialize, Serialize};
use services::policies::{self, Effective, SettingsInput};
use services::read_models::policies::PolicyView;
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
        .route("/policies", get(list))
        .route("/policies/effective", get(effective))
        .route("/policies/global", get(get_global).put(set_global))
        .route("/policies/keys/{api_key_id}", get(get_key).put(set_key).delete(clear_key))
        .route("/policies/devices/{device_id}", get(get_device).put(set_device).delete(clear_device))
}

/// One level's settings. Every field is optional: what a level leaves out, a less specific
/// level (or the default) decides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// How far a request's timestamp may be from the server's clock, 1 to 900 seconds (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_window_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// IPv4 and IPv6 networks in CIDR form (`10.0.0.0/8`, `2001:db8::/32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allow_list: Option<Vec<String>>,
    /// `openai`, `anthropic`, `google` or `azure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_providers: Option<Vec<String>>,
    /// Exact model names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    /// Whether new devices wait for approval (global and per key only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<bool>,
}

impl From<PolicySettings> for Settings {
    fn from(s: PolicySettings) -> Self {
        Self {
            timestamp_window_seconds: s.timestamp_window_seconds,
            requests_per_minute: s.requests_per_minute,
            tokens_per_day: s.tokens_per_day,
            ip_allow_list: s.ip_allow_list.map(|nets| nets.iter().map(ToString::to_string).collect()),
            allowed_providers: s
                .allowed_providers
                .map(|ps| ps.iter().map(|p| p.as_str().to_owned()).collect()),
            allowed_models: s.allowed_models,
            require_approval: s.require_approval,
        }
    }
}

impl From<Settings> for SettingsInput {
    fn from(s: Settings) -> Self {
        Self {
            timestamp_window_seconds: s.timestamp_window_seconds,
            requests_per_minute: s.requests_per_minute,
            tokens_per_day: s.tokens_per_day,
            ip_allow_list: s.ip_allow_list,
            allowed_providers: s.allowed_providers,
            allowed_models: s.allowed_models,
            require_approval: s.require_approval,
        }
    }
}

/// The settings stored at one level.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResponse {
    /// `global`, `api_key` or `device`.
    pub scope: String,
    pub api_key_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub settings: Settings,
    /// Who set them last (`user:<uuid>`); absent for a global policy never set.
    pub updated_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<PolicyView> for PolicyResponse {
    fn from(view: PolicyView) -> Self {
        Self {
            updated_by: Some(view.updated_by),
            updated_at: Some(view.updated_at),
            settings: view.settings.into(),
            ..Self::empty(view.scope)
        }
    }
}

impl PolicyResponse {
    fn empty(scope: PolicyScope) -> Self {
        let (kind, api_key_id, device_id) = match scope {
            PolicyScope::Global => ("global", None, None),
            PolicyScope::ApiKey(id) => ("api_key", Some(id), None),
            PolicyScope::Device(id) => ("device", None, Some(id)),
        };
        Self {
            scope: kind.to_owned(),
            api_key_id,
            device_id,
            settings: Settings::default(),
            updated_by: None,
            updated_at: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetPolicyRequest {
    pub settings: Settings,
}

/// Every stored policy: global first, then per key, then per device.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies", responses((status = 200, body = Vec<PolicyResponse>)))]
pub async fn list(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
) -> Result<Json<Vec<PolicyResponse>>, ApiError> {
    Ok(Json(policies::all(&state.platform).await?.into_iter().map(PolicyResponse::from).collect()))
}

/// The global policy (empty settings when never set: the defaults apply).
#[utoipa::path(get, path = "/api/v1/policies/global", tag = "policies", responses((status = 200, body = PolicyResponse)))]
pub async fn get_global(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
) -> Result<Json<PolicyResponse>, ApiError> {
    let view = policies::get(&state.platform, PolicyScope::Global).await?;
    Ok(Json(view.map_or_else(|| PolicyResponse::empty(PolicyScope::Global), PolicyResponse::from)))
}

/// Replace the global policy.
#[utoipa::path(put, path = "/api/v1/policies/global", tag = "policies", request_body = SetPolicyRequest, responses((status = 200, body = PolicyResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn set_global(
    State(state): State<AppState>,
    user: Authorized<ManagePolicies>,
    Json(body): Json<SetPolicyRequest>,
) -> Result<Json<PolicyResponse>, ApiError> {
    set(&state, &user, PolicyScope::Global, body).await
}

/// An API key's override; 404 `policy_not_set` when it has none.
#[utoipa::path(get, path = "/api/v1/policies/keys/{api_key_id}", tag = "policies", responses((status = 200, body = PolicyResponse), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn get_key(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Path(api_key_id): Path<Uuid>,
) -> Result<Json<PolicyResponse>, ApiError> {
    get_override(&state, PolicyScope::ApiKey(api_key_id)).await
}

/// Replace an API key's override.
#[utoipa::path(put, path = "/api/v1/policies/keys/{api_key_id}", tag = "policies", request_body = SetPolicyRequest, responses((status = 200, body = PolicyResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn set_key(
    State(state): State<AppState>,
    user: Authorized<ManagePolicies>,
    Path(api_key_id): Path<Uuid>,
    Json(body): Json<SetPolicyRequest>,
) -> Result<Json<PolicyResponse>, ApiError> {
    set(&state, &user, PolicyScope::ApiKey(api_key_id), body).await
}

/// Remove an API key's override.
#[utoipa::path(delete, path = "/api/v1/policies/keys/{api_key_id}", tag = "policies", responses((status = 204), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn clear_key(
    State(state): State<AppState>,
    user: Authorized<ManagePolicies>,
    Path(api_key_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    policies::clear(&state.platform, &user.caller(), PolicyScope::ApiKey(api_key_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A device's override; 404 `policy_not_set` when it has none.
#[utoipa::path(get, path = "/api/v1/policies/devices/{device_id}", tag = "policies", responses((status = 200, body = PolicyResponse), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn get_device(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Path(device_id): Path<Uuid>,
) -> Result<Json<PolicyResponse>, ApiError> {
    get_override(&state, PolicyScope::Device(device_id)).await
}

/// Replace a device's override.
#[utoipa::path(put, path = "/api/v1/policies/devices/{device_id}", tag = "policies", request_body = SetPolicyRequest, responses((status = 200, body = PolicyResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn set_device(
    State(state): State<AppState>,
    user: Authorized<ManagePolicies>,
    Path(device_id): Path<Uuid>,
    Json(body): Json<SetPolicyRequest>,
) -> Result<Json<PolicyResponse>, ApiError> {
    set(&state, &user, PolicyScope::Device(device_id), body).await
}

/// Remove a device's override.
#[utoipa::path(delete, path = "/api/v1/policies/devices/{device_id}", tag = "policies", responses((status = 204), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn clear_device(
    State(state): State<AppState>,
    user: Authorized<ManagePolicies>,
    Path(device_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    policies::clear(&state.platform, &user.caller(), PolicyScope::Device(device_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_override(state: &AppState, scope: PolicyScope) -> Result<Json<PolicyResponse>, ApiError> {
    let view = policies::get(&state.platform, scope).await?.ok_or_else(|| {
        ApiError::not_found(
            "policy_not_set",
            format!("{scope} has no policy of its own; it inherits every field"),
        )
    })?;
    Ok(Json(view.into()))
}

async fn set(
    state: &AppState,
    user: &CurrentUser,
    scope: PolicyScope,
    body: SetPolicyRequest,
) -> Result<Json<PolicyResponse>, ApiError> {
    let view = policies::set(&state.platform, &user.caller(), scope, body.settings.into()).await?;
    Ok(Json(view.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct EffectiveQuery {
    pub api_key_id: Option<String>,
    /// The device's own key is used when `apiKeyId` is left out.
    pub device_id: Option<String>,
}

/// The policy in force, every field decided, and the levels it was merged from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectivePolicyResponse {
    pub api_key_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub timestamp_window_seconds: u32,
    /// No limit when absent.
    pub requests_per_minute: Option<u32>,
    pub tokens_per_day: Option<u64>,
    /// Any address when absent.
    pub ip_allow_list: Option<Vec<String>>,
    pub allowed_providers: Option<Vec<String>>,
    pub allowed_models: Option<Vec<String>>,
    pub require_approval: bool,
    /// The settings of each level that has any.
    pub levels: EffectiveLevels,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveLevels {
    pub global: Option<Settings>,
    pub api_key: Option<Settings>,
    pub device: Option<Settings>,
}

impl From<Effective> for EffectivePolicyResponse {
    fn from(e: Effective) -> Self {
        let EffectivePolicy {
            timestamp_window_seconds,
            requests_per_minute,
            tokens_per_day,
            ip_allow_list,
            allowed_providers,
            allowed_models,
            require_approval,
        } = e.policy;
        let level = |v: Option<PolicyView>| v.map(|v| Settings::from(v.settings));
        Self {
            api_key_id: e.api_key_id,
            device_id: e.device_id,
            timestamp_window_seconds,
            requests_per_minute,
            tokens_per_day,
            ip_allow_list: ip_allow_list.map(|nets| nets.iter().map(ToString::to_string).collect()),
            allowed_providers: allowed_providers.map(|ps| ps.iter().map(|p| p.as_str().to_owned()).collect()),
            allowed_models,
            require_approval,
            levels: EffectiveLevels {
                global: level(e.global),
                api_key: level(e.api_key),
                device: level(e.device),
            },
        }
    }
}

/// The effective policy for a device, an API key, or (naming neither) the global level.
#[utoipa::path(get, path = "/api/v1/policies/effective", tag = "policies", params(EffectiveQuery), responses((status = 200, body = EffectivePolicyResponse), (status = 400, body = crate::api::error::ErrorBody), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn effective(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Query(query): Query<EffectiveQuery>,
) -> Result<Json<EffectivePolicyResponse>, ApiError> {
    let api_key_id = parse_opt("apiKeyId", query.api_key_id.as_deref())?;
    let device_id = parse_opt("deviceId", query.device_id.as_deref())?;
    Ok(Json(policies::effective(&state.platform, api_key_id, device_id).await?.into()))
}
