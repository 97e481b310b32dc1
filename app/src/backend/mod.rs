//! The dashboard's side of the server: how a server function reaches the application services
//! and learns who is calling. Only compiled into the server (`ssr`).
//!
//! The server provides two things. [`Backend`] is put in the Leptos context of every page and
//! server-function request; [`RequestScope`] is attached to each request by a middleware that has
//! already resolved the caller's address and session (with the same code as the REST API).

pub mod cookies;

use std::sync::Arc;

use domain::metadata::Actor;
use domain::user::{Permission, Role};
use leptos::prelude::*;
use services::caller::Caller;
use services::error::ServiceError;
use services::platform::Platform;
use services::read_models::users::UserView;

use crate::error::AppError;

/// The application services and the deployment facts a server function needs.
#[derive(Clone, Debug)]
pub struct Backend {
    pub platform: Arc<Platform>,
    /// Whether session cookies carry `Secure` (off only when serving on a loopback address).
    pub secure_cookies: bool,
}

/// Who is asking: the request's address, user agent and id, and the signed-in user if any.
#[derive(Clone, Debug)]
pub struct RequestScope {
    /// The request as an anonymous caller; [`Allowed::caller`] names the user instead.
    pub caller: Caller,
    pub user: Option<SignedInUser>,
}

#[derive(Clone, Debug)]
pub struct SignedInUser {
    pub user: UserView,
    pub role: Role,
}

/// A caller that passed the permission check, with what it needs to act.
pub struct Allowed {
    pub platform: Arc<Platform>,
    pub caller: Caller,
    pub user: SignedInUser,
}

pub fn backend() -> Result<Backend, AppError> {
    use_context::<Backend>().ok_or_else(|| {
        tracing::error!("the dashboard backend is not in the request's context");
        fail(AppError::Internal)
    })
}

/// The current request's scope; an anonymous one when the middleware did not run.
pub fn scope() -> RequestScope {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<RequestScope>().cloned())
        .unwrap_or_else(|| RequestScope {
            caller: Caller {
                actor: Actor::system("dashboard"),
                ip: None,
                user_agent: None,
                request_id: None,
            },
            user: None,
        })
}

/// The signed-in user, if the role allows `permission`; otherwise the server function answers 401
/// or 403. Deny by default: every server function that reads or changes data names a permission.
pub fn authorize(permission: Permission) -> Result<Allowed, AppError> {
    let allowed = signed_in()?;
    if allowed.user.role.allows(permission) { Ok(allowed) } else { Err(fail(AppError::Forbidden)) }
}

/// The signed-in user, whatever the role (for the user's own profile).
pub fn signed_in() -> Result<Allowed, AppError> {
    let platform = backend()?.platform;
    let scope = scope();
    let user = scope.user.ok_or_else(|| fail(AppError::Unauthorized))?;
    let caller = Caller { actor: Actor::User { id: user.user.id }, ..scope.caller };
    Ok(Allowed { platform, caller, user })
}

/// Sets the response status that goes with `err` and hands it back.
pub fn fail(err: AppError) -> AppError {
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::from_u16(err.status()).unwrap_or_default());
    }
    err
}

/// Appends a header to the response of the current server function or page.
pub fn append_header(name: http::HeaderName, value: &str) {
    if let (Some(response), Ok(value)) =
        (use_context::<leptos_axum::ResponseOptions>(), http::HeaderValue::from_str(value))
    {
        response.append_header(name, value);
    }
}

impl From<ServiceError> for AppError {
    fn from(err: ServiceError) -> Self {
        let code = err.code().to_owned();
        let text = err.to_string();
        let mapped = match err {
            ServiceError::Refused { .. } | ServiceError::Concurrent => {
                AppError::Refused { code, message: text, field: None }
            }
            ServiceError::Invalid { field, message, .. } => {
                AppError::Refused { code, message, field: Some(field.to_owned()) }
            }
            ServiceError::NotFound { .. } => AppError::NotFound { code, message: text },
            ServiceError::Unavailable(cause) => {
                tracing::warn!(%cause, "a dashboard request found a dependency unavailable");
                AppError::Unavailable
            }
            ServiceError::Internal(cause) => {
                tracing::error!(%cause, "a dashboard request failed");
                AppError::Internal
            }
        };
        fail(mapped)
    }
}

/// Parses an id sent by the page; a malformed one is the caller's mistake, not ours.
pub fn parse_id(field: &str, raw: &str) -> Result<uuid::Uuid, AppError> {
    raw.trim()
        .parse()
        .map_err(|_| fail(AppError::invalid_field(field, "invalid_id", format!("{field} is not an id"))))
}
