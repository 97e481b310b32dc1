//! `/api/v1/auth`: sign in, rotate the session, sign out, who am I, and the first-run setup; plus
//! the extractor that turns a request's token into the signed-in user, and the permission check.
//!
//! Tokens travel both in the JSON body (for API clients) and as HttpOnly, SameSite=Strict
//! cookies (for the dashboard, whose scripts never see them).

use crate::api::json::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::ErrorCode as _;
use domain::metadata::Actor;
use domain::user::{Permission, Role};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use services::auth::TokenPair;
use services::caller::Caller;
use services::login::{self, LoginError};
use services::read_models::users::{self as user_views, UserView};
use services::users::{self, NewUser};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::{ApiError, RequestContext};
use crate::startup::AppState;

use app::backend::cookies as session_cookies;
pub use app::backend::cookies::{ACCESS_COOKIE, REFRESH_COOKIE};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login_handler))
        .route("/auth/refresh", post(refresh_handler))
        .route("/auth/logout", post(logout_handler))
        .route("/auth/me", get(me))
        .route("/auth/setup", get(setup_status).post(setup))
}

/// The signed-in user of a request, checked against the read model on every request so that a
/// disabled account or a changed role takes effect immediately, not when the token expires.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: UserView,
    pub role: Role,
    pub context: RequestContext,
}

impl CurrentUser {
    pub fn caller(&self) -> Caller {
        Caller {
            actor: Actor::User { id: self.user.id },
            ip: Some(self.context.ip),
            user_agent: self.context.user_agent.clone(),
            request_id: Some(self.context.request_id.clone()).filter(|r| !r.is_empty()),
        }
    }

    /// Deny by default: every handler names the permission it needs.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) { Ok(()) } else { Err(ApiError::Forbidden) }
    }
}

impl CurrentUser {
    /// The user an access token names, if it is valid and the account is enabled.
    pub async fn from_token(
        state: &AppState,
        token: &str,
        context: RequestContext,
    ) -> Result<Self, ApiError> {
        let claims =
            state.platform.sessions.tokens().verify_access(token).map_err(|_| ApiError::Unauthorized)?;
        let user = user_views::get(&state.platform.db, claims.user_id)
            .await
            .map_err(ApiError::internal)?
            .filter(|u| !u.disabled)
            .ok_or(ApiError::Unauthorized)?;
        let role = user
            .role
            .parse()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("stored role is not a role")))?;
        Ok(Self { user, role, context })
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let context = RequestContext::from_request_parts(parts, state).await.expect("infallible");
        let token = bearer(&parts.headers)
            .or_else(|| cookie(&parts.headers, ACCESS_COOKIE))
            .ok_or(ApiError::Unauthorized)?;
        Self::from_token(state, &token, context).await
    }
}

/// A permission known at compile time, for [`Authorized`].
pub trait RequiredPermission {
    const PERMISSION: Permission;
}

macro_rules! permissions {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Requires [`Permission::", stringify!($name), "`].")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl RequiredPermission for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*
    };
}

/// Marker types naming each permission, e.g. `Authorized<ManageKeys>`.
pub mod perm {
    use super::{Permission, RequiredPermission};
    permissions!(
        ReadConfiguration,
        ManageDevices,
        ManageKeys,
        ManageEnrollmentCodes,
        ManagePolicies,
        ReadAudit,
        ReadUsers,
        ManageUsers,
    );
}

/// The signed-in user, already checked for permission `P`. Because it is an extractor that runs
/// before the body is read, a caller without the permission gets 403 whatever they send, and
/// learns nothing from validation errors.
#[derive(Debug, Clone)]
pub struct Authorized<P: RequiredPermission>(pub CurrentUser, std::marker::PhantomData<P>);

impl<P: RequiredPermission> std::ops::Deref for Authorized<P> {
    type Target = CurrentUser;
    fn deref(&self) -> &CurrentUser {
        &self.0
    }
}

impl<P: RequiredPermission + Send + Sync> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        user.require(P::PERMISSION)?;
        Ok(Self(user, std::marker::PhantomData))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    session_cookies::read(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()), name)
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
}

impl From<&UserView> for UserSummary {
    fn from(user: &UserView) -> Self {
        Self { id: user.id, email: user.email.clone(), name: user.name.clone(), role: user.role.clone() }
    }
}

/// Sign in with email and password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = SessionResponse, description = "Signed in; tokens also set as HttpOnly cookies"),
        (status = 401, body = crate::api::error::ErrorBody, description = "invalid_credentials"),
        (status = 429, body = crate::api::error::ErrorBody, description = "login_throttled, with Retry-After"),
    )
)]
pub async fn login_handler(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let caller = anonymous(&context);
    let signed_in =
        login::login(&state.platform, &caller, &body.email, &body.password).await.map_err(login_error)?;
    Ok(session_response(&state, &signed_in.tokens, Some(UserSummary::from(&signed_in.user))))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// Optional when the refresh cookie is sent.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// Exchange a refresh token for a new pair. Reusing a refresh token ends the whole session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = crate::api::error::ErrorBody))
)]
pub async fn refresh_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Option<Json<RefreshRequest>>,
) -> Result<Response, ApiError> {
    let token = refresh_token(&headers, body).ok_or(ApiError::Unauthorized)?;
    let tokens = login::refresh(&state.platform, &token).await.map_err(login_error)?;
    Ok(session_response(&state, &tokens, None))
}

/// Sign out: ends the session of the refresh token (body or cookie) and clears the cookies.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest, responses((status = 204)))]
pub async fn logout_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Option<Json<RefreshRequest>>,
) -> Result<Response, ApiError> {
    if let Some(token) = refresh_token(&headers, body) {
        // An invalid or already-ended session still gets its cookies cleared.
        let _ = login::logout(&state.platform, &token).await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    append_cookies(&mut response, session_cookies::cleared(state.secure_cookies));
    Ok(response)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, body = UserSummary), (status = 401, body = crate::api::error::ErrorBody)))]
pub async fn me(user: CurrentUser) -> Json<UserSummary> {
    Json(UserSummary::from(&user.user))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetupStatus {
    /// True while no user exists: the setup page may create the first admin.
    pub setup_needed: bool,
}

/// Whether the first admin still has to be created.
#[utoipa::path(get, path = "/api/v1/auth/setup", tag = "auth", responses((status = 200, body = SetupStatus)))]
pub async fn setup_status(State(state): State<AppState>) -> Result<Json<SetupStatus>, ApiError> {
    Ok(Json(SetupStatus { setup_needed: !users::exists_any(&state.platform).await? }))
}

#[derive(Deserialize, ToSchema)]
pub struct SetupRequest {
    pub email: String,
    pub name: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// Create the first admin. Only possible while KeyGuard has no user at all.
#[utoipa::path(
    post,
    path = "/api/v1/auth/setup",
    tag = "auth",
    request_body = SetupRequest,
    responses((status = 201, body = UserSummary), (status = 409, body = crate::api::error::ErrorBody, description = "setup_complete"))
)]
pub async fn setup(
    State(state): State<AppState>,
    context: RequestContext,
    Json(body): Json<SetupRequest>,
) -> Result<(StatusCode, Json<UserSummary>), ApiError> {
    let caller = Caller { actor: Actor::system("setup"), ..anonymous(&context) };
    let input = NewUser { email: body.email, name: body.name, role: "admin".into(), password: body.password };
    let user = users::create_first_admin(&state.platform, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(UserSummary::from(&user))))
}

fn anonymous(context: &RequestContext) -> Caller {
    Caller {
        actor: Actor::system("auth"),
        ip: Some(context.ip),
        user_agent: context.user_agent.clone(),
        request_id: Some(context.request_id.clone()).filter(|r| !r.is_empty()),
    }
}

fn refresh_token(headers: &HeaderMap, body: Option<Json<RefreshRequest>>) -> Option<String> {
    body.and_then(|Json(b)| b.refresh_token)
        .filter(|t| !t.is_empty())
        .or_else(|| cookie(headers, REFRESH_COOKIE))
}

fn session_response(state: &AppState, tokens: &TokenPair, user: Option<UserSummary>) -> Response {
    let mut response = Json(SessionResponse {
        access_token: tokens.access.token.expose_secret().to_owned(),
        refresh_token: tokens.refresh.token.expose_secret().to_owned(),
        user,
    })
    .into_response();
    append_cookies(&mut response, session_cookies::session(tokens, state.secure_cookies));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn append_cookies(response: &mut Response, cookies: impl IntoIterator<Item = String>) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

fn login_error(err: LoginError) -> ApiError {
    match err {
        LoginError::InvalidCredentials => {
            ApiError::Unauthenticated { code: "invalid_credentials", message: err.to_string() }
        }
        LoginError::Throttled { retry_after_seconds } => ApiError::TooManyRequests {
            code: "login_throttled",
            retry_after_secs: u64::try_from(retry_after_seconds).unwrap_or(1).max(1),
        },
        LoginError::Session(ref session) => {
            let code = session.code();
            if code == "session_store_unavailable" {
                ApiError::Unavailable
            } else {
                ApiError::Unauthenticated { code, message: err.to_string() }
            }
        }
        LoginError::Internal(cause) => ApiError::internal(anyhow::anyhow!(cause)),
    }
}
