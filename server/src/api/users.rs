//! `/api/v1/users`: dashboard accounts, for admins (auditors may read them). No response ever
//! carries a password hash.

use crate::api::json::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use domain::user::Role;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use services::read_models::PageRequest;
use services::read_models::users::{UserFilter, UserView};
use services::users::{self, NewUser};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::ApiError;
use crate::api::auth::Authorized;
use crate::api::auth::perm::*;
use crate::api::keys::parse_opt;
use crate::api::pagination::PageResponse;
use crate::startup::AppState;

/// A dashboard user as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// `admin`, `operator` or `auditor`.
    pub role: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserView> for UserResponse {
    fn from(u: UserView) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            disabled: u.disabled,
            disabled_reason: u.disabled_reason,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", get(get_one))
        .route("/users/{id}/role", post(change_role))
        .route("/users/{id}/disable", post(disable))
        .route("/users/{id}/enable", post(enable))
        .route("/users/{id}/password", post(reset_password))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// `admin`, `operator` or `auditor`.
    pub role: Option<String>,
    pub disabled: Option<bool>,
    /// Part of the email or name.
    pub search: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// List users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UserQuery), responses((status = 200, body = PageResponse<UserResponse>)))]
pub async fn list(
    State(state): State<AppState>,
    _user: Authorized<ReadUsers>,
    Query(query): Query<UserQuery>,
) -> Result<Json<PageResponse<UserResponse>>, ApiError> {
    let filter = UserFilter {
        role: parse_opt::<Role>("role", query.role.as_deref())?,
        disabled: query.disabled,
        search: query.search.filter(|s| !s.trim().is_empty()),
        page: PageRequest::new(query.limit.unwrap_or(PageRequest::DEFAULT_LIMIT), query.offset.unwrap_or(0)),
    };
    Ok(Json(PageResponse::from_page(users::list(&state.platform, &filter).await?, UserResponse::from)))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", responses((status = 200, body = UserResponse)))]
pub async fn get_one(
    State(state): State<AppState>,
    _user: Authorized<ReadUsers>,
    Path(id): Path<Uuid>,
) -> Result<Json<UserResponse>, ApiError> {
    Ok(Json(users::get(&state.platform, id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub name: String,
    /// `admin`, `operator` or `auditor`.
    pub role: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUserRequest, responses((status = 201, body = UserResponse), (status = 409, body = crate::api::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: Authorized<ManageUsers>,
    Json(body): Json<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    let input = NewUser { email: body.email, name: body.name, role: body.role, password: body.password };
    Ok((StatusCode::CREATED, Json(users::create(&state.platform, &user.caller(), input).await?.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    pub role: String,
}

/// Change a user's role (their sessions end, so the new role applies at once).
#[utoipa::path(post, path = "/api/v1/users/{id}/role", tag = "users", request_body = RoleRequest, responses((status = 200, body = UserResponse)))]
pub async fn change_role(
    State(state): State<AppState>,
    user: Authorized<ManageUsers>,
    Path(id): Path<Uuid>,
    Json(body): Json<RoleRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    Ok(Json(users::change_role(&state.platform, &user.caller(), id, &body.role).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    pub reason: String,
}

/// Disable a user and end their sessions.
#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users", request_body = DisableRequest, responses((status = 200, body = UserResponse)))]
pub async fn disable(
    State(state): State<AppState>,
    user: Authorized<ManageUsers>,
    Path(id): Path<Uuid>,
    Json(body): Json<DisableRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    Ok(Json(users::disable(&state.platform, &user.caller(), id, body.reason).await?.into()))
}

/// Enable a disabled user.
#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users", responses((status = 200, body = UserResponse)))]
pub async fn enable(
    State(state): State<AppState>,
    user: Authorized<ManageUsers>,
    Path(id): Path<Uuid>,
) -> Result<Json<UserResponse>, ApiError> {
    Ok(Json(users::enable(&state.platform, &user.caller(), id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// Reset a user's password (their sessions end).
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "users", request_body = PasswordRequest, responses((status = 200, body = UserResponse)))]
pub async fn reset_password(
    State(state): State<AppState>,
    user: Authorized<ManageUsers>,
    Path(id): Path<Uuid>,
    Json(body): Json<PasswordRequest>,
) -> Result<Json<UserResponse>, ApiError> {
    Ok(Json(users::set_password(&state.platform, &user.caller(), id, body.password).await?.into()))
}
