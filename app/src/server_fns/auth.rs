//! Signing in and out, the first-run setup, and what the signed-in user may do.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What each page needs to know about the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub can: Capabilities,
}

/// The role's permissions, so that the pages show only what the user may do. The server
/// functions check again: hiding a button is a courtesy, not the control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub read_configuration: bool,
    pub manage_devices: bool,
    pub manage_keys: bool,
    pub manage_codes: bool,
    pub manage_policies: bool,
    pub read_audit: bool,
    pub read_users: bool,
    pub manage_users: bool,
}

/// The signed-in user, or `None` (the pages then send the visitor to sign in, or to the setup).
#[server(endpoint = "auth/session")]
pub async fn get_session() -> Result<Option<SessionInfo>, AppError> {
    Ok(current_session())
}

/// The signed-in user of the request being served, which the request's middleware has already
/// resolved from its cookies: known without waiting, so a page can render its frame at once.
#[cfg(feature = "ssr")]
pub fn current_session() -> Option<SessionInfo> {
    use domain::user::Permission;
    let signed_in = crate::backend::scope().user?;
    let can = |permission| signed_in.role.allows(permission);
    Some(SessionInfo {
        id: signed_in.user.id.to_string(),
        email: signed_in.user.email.clone(),
        name: signed_in.user.name.clone(),
        role: signed_in.user.role.clone(),
        can: Capabilities {
            read_configuration: can(Permission::ReadConfiguration),
            manage_devices: can(Permission::ManageDevices),
            manage_keys: can(Permission::ManageKeys),
            manage_codes: can(Permission::ManageEnrollmentCodes),
            manage_policies: can(Permission::ManagePolicies),
            read_audit: can(Permission::ReadAudit),
            read_users: can(Permission::ReadUsers),
            manage_users: can(Permission::ManageUsers),
        },
    })
}

/// True while no user exists: only then may the setup page create the first admin.
#[server(endpoint = "auth/setup_needed")]
pub async fn setup_needed() -> Result<bool, AppError> {
    let backend = crate::backend::backend()?;
    Ok(!services::users::exists_any(&backend.platform).await?)
}

/// Signs in: sets the HttpOnly session cookies. A wrong email and a wrong password look alike.
#[server(endpoint = "auth/login")]
pub async fn login(email: String, password: String) -> Result<(), AppError> {
    use crate::backend::{append_header, cookies, fail};
    use services::login::{self, LoginError};

    let backend = crate::backend::backend()?;
    let caller = crate::backend::scope().caller;
    let password = secrecy::SecretString::from(password);
    match login::login(&backend.platform, &caller, email.trim(), &password).await {
        Ok(signed_in) => {
            for cookie in cookies::session(&signed_in.tokens, backend.secure_cookies) {
                append_header(http::header::SET_COOKIE, &cookie);
            }
            append_header(http::header::CACHE_CONTROL, "no-store");
            Ok(())
        }
        Err(LoginError::InvalidCredentials) => {
            Err(fail(AppError::refused("invalid_credentials", LoginError::InvalidCredentials.to_string())))
        }
        Err(LoginError::Throttled { retry_after_seconds }) => Err(fail(AppError::Throttled {
            retry_after_seconds: u64::try_from(retry_after_seconds).unwrap_or(1).max(1),
        })),
        Err(err) => {
            tracing::error!(error = %err, "dashboard sign-in failed");
            Err(fail(AppError::Internal))
        }
    }
}

/// Signs out: ends the session (its refresh token family) and clears the cookies.
#[server(endpoint = "auth/logout")]
pub async fn logout() -> Result<(), AppError> {
    use crate::backend::{append_header, cookies};

    let backend = crate::backend::backend()?;
    let refresh = use_context::<http::request::Parts>().and_then(|parts| {
        let values = parts.headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok());
        cookies::read(values, cookies::REFRESH_COOKIE)
    });
    if let Some(token) = refresh {
        // An unknown or already-ended session still gets its cookies cleared.
        let _ = services::login::logout(&backend.platform, &token).await;
    }
    for cookie in cookies::cleared(backend.secure_cookies) {
        append_header(http::header::SET_COOKIE, &cookie);
    }
    Ok(())
}

/// Creates the first admin; refused once any user exists.
#[server(endpoint = "auth/setup")]
pub async fn create_first_admin(email: String, name: String, password: String) -> Result<(), AppError> {
    use domain::metadata::Actor;
    use services::caller::Caller;
    use services::users::{self, NewUser};

    let backend = crate::backend::backend()?;
    let caller = Caller { actor: Actor::system("setup"), ..crate::backend::scope().caller };
    let input = NewUser {
        email: email.trim().to_owned(),
        name: name.trim().to_owned(),
        role: "admin".into(),
        password: secrecy::SecretString::from(password),
    };
    users::create_first_admin(&backend.platform, &caller, input).await?;
    Ok(())
}

/// Changes the signed-in user's own password, which requires the current one. Every session of
/// the user ends, this one included: the page then asks to sign in again.
#[server(endpoint = "auth/change_password")]
pub async fn change_password(current: String, new_password: String) -> Result<(), AppError> {
    let allowed = crate::backend::signed_in()?;
    services::users::change_own_password(
        &allowed.platform,
        &allowed.caller,
        allowed.user.user.id,
        &secrecy::SecretString::from(current),
        secrecy::SecretString::from(new_password),
    )
    .await?;
    Ok(())
}
