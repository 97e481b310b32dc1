//! Dashboard users: creating them (including the very first admin), changing roles, disabling,
//! enabling and resetting passwords. Responses never carry password hashes.

use chrono::Utc;
use domain::user::{CreateUser, Email, Role, UserCommand};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::auth::{check_password_policy, hash_password, verify_password};
use crate::caller::Caller;
use crate::error::ServiceError;
use crate::platform::Platform;
use crate::read_models::Page;
use crate::read_models::users::{self, UserFilter, UserView};

/// What an admin (or the first-run setup) provides to create a user.
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: String,
    pub password: SecretString,
}

pub async fn create(platform: &Platform, caller: &Caller, input: NewUser) -> Result<UserView, ServiceError> {
    let email = Email::parse(&input.email).map_err(|e| ServiceError::invalid("email", &e))?;
    let role: Role = input.role.parse().map_err(|e| ServiceError::invalid("role", &e))?;
    check_password_policy(&input.password).map_err(|e| ServiceError::invalid("password", &e))?;
    // Emails identify users at login, so they are unique. The read model is current for this
    // node's writes; two admins racing to create the same email on two nodes is the remaining gap.
    if users::find_by_email(&platform.db, &email).await?.is_some() {
        return Err(ServiceError::Refused {
            code: "email_taken",
            message: format!("a user with the email {email} already exists"),
        });
    }
    let password_hash =
        hash_password(&input.password).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
    let id = Uuid::new_v4();
    let command = UserCommand::Create(CreateUser {
        user_id: id,
        email,
        name: input.name,
        role,
        password_hash,
        by: caller.actor.clone(),
        at: Utc::now(),
    });
    platform.execute(&platform.users, &id.to_string(), command, caller).await?;
    require(platform, id).await
}

/// Creates the first admin, and only while no user exists: the dashboard's setup page calls this.
pub async fn create_first_admin(
    platform: &Platform,
    caller: &Caller,
    input: NewUser,
) -> Result<UserView, ServiceError> {
    // Serialized in this process so two setup submissions cannot both pass the check.
    let _turn = platform.setup_lock.lock().await;
    if users::count(&platform.db).await? > 0 {
        return Err(ServiceError::Refused {
            code: "setup_complete",
            message: "KeyGuard already has users; sign in instead".into(),
        });
    }
    create(platform, caller, NewUser { role: "admin".into(), ..input }).await
}

pub async fn change_role(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    role: &str,
) -> Result<UserView, ServiceError> {
    let role: Role = role.parse().map_err(|e| ServiceError::invalid("role", &e))?;
    let command = UserCommand::ChangeRole { role, by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.users, &id.to_string(), command, caller).await?;
    // Tokens carry the role; make the user sign in again to pick up the new one.
    platform.sessions.revoke_all_for_user(id).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
    require(platform, id).await
}

pub async fn disable(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    reason: String,
) -> Result<UserView, ServiceError> {
    let command = UserCommand::Disable { reason, by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.users, &id.to_string(), command, caller).await?;
    platform.sessions.revoke_all_for_user(id).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
    require(platform, id).await
}

pub async fn enable(platform: &Platform, caller: &Caller, id: Uuid) -> Result<UserView, ServiceError> {
    let command = UserCommand::Enable { by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.users, &id.to_string(), command, caller).await?;
    require(platform, id).await
}

/// Sets a new password (an admin's reset, or the user's own change) and ends every session.
pub async fn set_password(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    password: SecretString,
) -> Result<UserView, ServiceError> {
    check_password_policy(&password).map_err(|e| ServiceError::invalid("password", &e))?;
    let password_hash = hash_password(&password).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
    let command = UserCommand::ChangePassword { password_hash, by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.users, &id.to_string(), command, caller).await?;
    platform.sessions.revoke_all_for_user(id).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
    require(platform, id).await
}

/// A user changing their own password: the current one must be right (a stolen session alone
/// cannot take over the account). Like an admin's reset, it ends every session of the user.
pub async fn change_own_password(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    current: &SecretString,
    new_password: SecretString,
) -> Result<UserView, ServiceError> {
    let user = require(platform, id).await?;
    let email = Email::parse(&user.email).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let credentials = users::credentials_by_email(&platform.db, &email).await?;
    let verified = match &credentials {
        Some(credentials) if credentials.user_id == id => {
            verify_password(current, &credentials.password_hash).await
        }
        _ => false,
    };
    if !verified {
        return Err(ServiceError::Invalid {
            field: "current",
            code: "invalid_credentials",
            message: "the current password is not right".to_owned(),
        });
    }
    if current.expose_secret() == new_password.expose_secret() {
        return Err(ServiceError::Invalid {
            field: "new_password",
            code: "password_unchanged",
            message: "the new password is the current one".to_owned(),
        });
    }
    set_password(platform, caller, id, new_password).await
}

pub async fn list(platform: &Platform, filter: &UserFilter) -> Result<Page<UserView>, ServiceError> {
    Ok(users::list(&platform.db, filter).await?)
}

pub async fn get(platform: &Platform, id: Uuid) -> Result<UserView, ServiceError> {
    require(platform, id).await
}

pub async fn exists_any(platform: &Platform) -> Result<bool, ServiceError> {
    Ok(users::count(&platform.db).await? > 0)
}

async fn require(platform: &Platform, id: Uuid) -> Result<UserView, ServiceError> {
    users::get(&platform.db, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("user_not_found", format!("there is no user {id}")))
}
