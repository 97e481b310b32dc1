//! `/api/v1/keys`: project keys and the provider credentials behind them. Responses never carry a
//! provider secret or a project key hash; a new project key is returned once, at creation or
//! rotation.

use crate::api::json::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use services::keys::{self, IssuedKey, NewKey};
use services::read_models::PageRequest;
use services::read_models::api_keys::{ApiKeyFilter, ApiKeyView};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::ApiError;
use crate::api::auth::Authorized;
use crate::api::auth::perm::*;
use crate::api::pagination::PageResponse;
use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/keys", get(list).post(create))
        .route("/keys/{id}", get(get_one).delete(revoke))
        .route("/keys/{id}/rotate-secret", post(rotate_secret))
        .route("/keys/{id}/rotate", post(rotate_project_key))
}

/// An API key as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyResponse {
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub environment: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// The first characters of the current project key, to recognise it.
    pub key_prefix: String,
    /// The previous project key's prefix while its grace period runs.
    pub previous_key_prefix: Option<String>,
    pub grace_until: Option<DateTime<Utc>>,
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub revoked_reason: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Proxied requests through this key, whatever their outcome.
    pub request_count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// Requests answered with status 400 or above, or not delivered in full.
    pub error_count: i64,
    /// The time of the latest proxied request through this key.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyView> for KeyResponse {
    fn from(view: ApiKeyView) -> Self {
        let now = Utc::now();
        let in_grace = view.grace_until.is_some_and(|until| now < until);
        Self {
            status: format!("{:?}", view.status_at(now)).to_lowercase(),
            id: view.id,
            name: view.name,
            provider: view.provider,
            environment: view.environment,
            key_prefix: view.project_key_prefix,
            previous_key_prefix: view.previous_key_prefix.filter(|_| in_grace),
            grace_until: view.grace_until.filter(|_| in_grace),
            base_url: view.base_url,
            azure_deployment: view.azure_deployment,
            azure_api_version: view.azure_api_version,
            expires_at: view.expires_at,
            description: view.description,
            revoked_reason: view.revoked_reason,
            created_by: view.created_by,
            created_at: view.created_at,
            updated_at: view.updated_at,
            request_count: view.request_count,
            tokens_in: view.tokens_in,
            tokens_out: view.tokens_out,
            error_count: view.error_count,
            last_used_at: view.last_used_at,
        }
    }
}

/// A key with its new project key, shown this one time.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedKeyResponse {
    pub key: KeyResponse,
    /// The project key (`kg_…`). Store it now: KeyGuard keeps only its hash.
    pub raw_key: String,
}

impl From<IssuedKey> for IssuedKeyResponse {
    fn from(issued: IssuedKey) -> Self {
        Self { raw_key: issued.raw_key.expose_secret().to_owned(), key: issued.key.into() }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// `active`, `expired` or `revoked`.
    pub status: Option<String>,
    /// `openai`, `anthropic`, `google` or `azure`.
    pub provider: Option<String>,
    /// `development`, `staging` or `production`.
    pub environment: Option<String>,
    /// Part of the name, description, key prefix or id.
    pub search: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// List keys, newest first.
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(KeyQuery), responses((status = 200, body = PageResponse<KeyResponse>)))]
pub async fn list(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<PageResponse<KeyResponse>>, ApiError> {
    let filter = ApiKeyFilter {
        status: parse_opt("status", query.status.as_deref())?,
        provider: parse_opt("provider", query.provider.as_deref())?,
        environment: parse_opt("environment", query.environment.as_deref())?,
        search: query.search.filter(|s| !s.trim().is_empty()),
        page: PageRequest::new(query.limit.unwrap_or(PageRequest::DEFAULT_LIMIT), query.offset.unwrap_or(0)),
    };
    let page = keys::list(&state.platform, &filter).await?;
    Ok(Json(PageResponse::from_page(page, KeyResponse::from)))
}

/// One key.
#[utoipa::path(get, path = "/api/v1/keys/{id}", tag = "keys", responses((status = 200, body = KeyResponse), (status = 404, body = crate::api::error::ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    _user: Authorized<ReadConfiguration>,
    Path(id): Path<Uuid>,
) -> Result<Json<KeyResponse>, ApiError> {
    Ok(Json(keys::get(&state.platform, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    pub provider: String,
    pub environment: String,
    /// The provider's API key. May instead come in the `x-api-key` header.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub provider_key: Option<SecretString>,
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

/// Create a key. The answer holds the new project key, once.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    request_body = CreateKeyRequest,
    responses((status = 201, body = IssuedKeyResponse), (status = 400, body = crate::api::error::ErrorBody))
)]
pub async fn create(
    State(state): State<AppState>,
    user: Authorized<ManageKeys>,
    headers: HeaderMap,
    Json(body): Json<CreateKeyRequest>,
) -> Result<(StatusCode, Json<IssuedKeyResponse>), ApiError> {
    let provider_key = body
        .provider_key
        .or_else(|| {
            headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| SecretString::from(v.to_owned()))
        })
        .unwrap_or_else(|| SecretString::from(String::new()));
    let input = NewKey {
        name: body.name,
        provider: body.provider,
        environment: body.environment,
        provider_key,
        base_url: body.base_url,
        azure_deployment: body.azure_deployment,
        azure_api_version: body.azure_api_version,
        expires_at: body.expires_at,
        description: body.description,
    };
    let issued = keys::create(&state.platform, &user.caller(), input).await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateSecretRequest {
    #[schema(value_type = String, format = Password)]
    pub provider_key: SecretString,
}

/// Replace the provider credential.
#[utoipa::path(post, path = "/api/v1/keys/{id}/rotate-secret", tag = "keys", request_body = RotateSecretRequest, responses((status = 200, body = KeyResponse)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    user: Authorized<ManageKeys>,
    Path(id): Path<Uuid>,
    Json(body): Json<RotateSecretRequest>,
) -> Result<Json<KeyResponse>, ApiError> {
    if body.provider_key.expose_secret().trim().is_empty() {
        return Err(ApiError::bad_field("providerKey", "must not be empty"));
    }
    Ok(Json(
        keys::rotate_provider_secret(&state.platform, &user.caller(), id, body.provider_key).await?.into(),
    ))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the previous project key keeps working, in seconds (0 = stops at once; at most 30 days).
    #[serde(default)]
    pub grace_period_seconds: Option<i64>,
}

/// Issue a new project key; the previous one works on during the grace period.
#[utoipa::path(post, path = "/api/v1/keys/{id}/rotate", tag = "keys", request_body = RotateKeyRequest, responses((status = 200, body = IssuedKeyResponse)))]
pub async fn rotate_project_key(
    State(state): State<AppState>,
    user: Authorized<ManageKeys>,
    Path(id): Path<Uuid>,
    body: Option<Json<RotateKeyRequest>>,
) -> Result<Json<IssuedKeyResponse>, ApiError> {
    let seconds = body.and_then(|Json(b)| b.grace_period_seconds).unwrap_or(0);
    if seconds < 0 {
        return Err(ApiError::bad_field("gracePeriodSeconds", "must not be negative"));
    }
    let grace = TimeDelta::try_seconds(seconds)
        .ok_or_else(|| ApiError::bad_field("gracePeriodSeconds", "is too large"))?;
    Ok(Json(keys::rotate_project_key(&state.platform, &user.caller(), id, Some(grace)).await?.into()))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub reason: Option<String>,
}

/// Revoke a key for good; its provider secret becomes unreadable.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "keys", request_body = RevokeRequest, responses((status = 200, body = KeyResponse)))]
pub async fn revoke(
    State(state): State<AppState>,
    user: Authorized<ManageKeys>,
    Path(id): Path<Uuid>,
    body: Option<Json<RevokeRequest>>,
) -> Result<Json<KeyResponse>, ApiError> {
    let reason = body.and_then(|Json(b)| b.reason).unwrap_or_else(|| "revoked by an operator".into());
    Ok(Json(keys::revoke(&state.platform, &user.caller(), id, reason).await?.into()))
}

/// Parses an optional query parameter into a domain value, naming the parameter when it is wrong.
pub fn parse_opt<T>(field: &str, raw: Option<&str>) -> Result<Option<T>, ApiError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    raw.filter(|v| !v.is_empty())
        .map(|v| v.parse::<T>().map_err(|e| ApiError::bad_field(field, e.to_string())))
        .transpose()
}
