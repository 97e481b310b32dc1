//! Signing in and out of the dashboard: password check behind the throttle, sessions of rotating
//! refresh tokens, and an audit record for every attempt, successful or not.

use std::net::IpAddr;

use domain::metadata::{Actor, EventMetadata};
use domain::user::{Email, Role};
use secrecy::SecretString;
use uuid::Uuid;

use crate::audit::{AuditOutcome, AuditRecord};
use crate::auth::{SessionError, TokenPair, verify_password_or_dummy};
use crate::caller::Caller;
use crate::platform::Platform;
use crate::read_models::users::{self, UserView};

/// Why a sign-in did not happen. The client sees the same answer for an unknown email, a wrong
/// password and a disabled account; the audit trail records which it was.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("too many failed sign-ins; try again in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: i64 },
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("sign-in is unavailable: {0}")]
    Internal(String),
}

impl domain::ErrorCode for LoginError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::Throttled { .. } => "login_throttled",
            Self::Session(e) => e.code(),
            Self::Internal(_) => "internal",
        }
    }
}

pub struct SignedIn {
    pub user: UserView,
    pub tokens: TokenPair,
}

pub async fn login(
    platform: &Platform,
    caller: &Caller,
    email: &str,
    password: &SecretString,
) -> Result<SignedIn, LoginError> {
    let ip = caller.ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if let Err(throttled) = platform.throttle.check(email, ip) {
        audit(platform, caller, None, "LoginThrottled", AuditOutcome::Denied, email, "throttled").await;
        return Err(LoginError::Throttled { retry_after_seconds: throttled.retry_after_seconds() });
    }
    let credentials = match Email::parse(email) {
        Ok(email) => users::credentials_by_email(&platform.db, &email).await.map_err(internal)?,
        Err(_) => None,
    };
    // Always verify against something, so the time taken does not tell whether the email exists.
    let password_ok =
        verify_password_or_dummy(password, credentials.as_ref().map(|c| &c.password_hash)).await;
    let refusal = match &credentials {
        None => Some("unknown_email"),
        Some(_) if !password_ok => Some("wrong_password"),
        Some(c) if c.disabled => Some("account_disabled"),
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        let user_id = credentials.as_ref().map(|c| c.user_id);
        let throttled = platform.throttle.record_failure(email, ip);
        audit(platform, caller, user_id, "LoginFailed", AuditOutcome::Failure, email, reason).await;
        return Err(match throttled {
            Some(t) => LoginError::Throttled { retry_after_seconds: t.retry_after_seconds() },
            None => LoginError::InvalidCredentials,
        });
    }
    let credentials = credentials.expect("refusal covers the missing user");
    platform.throttle.record_success(email);
    let role: Role = credentials.role.parse().map_err(|_| internal("stored role is not a role"))?;
    let tokens = platform.sessions.start(credentials.user_id, role).await?;
    let user = users::get(&platform.db, credentials.user_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal("the user vanished during sign-in"))?;
    let signed_in = Caller { actor: Actor::User { id: user.id }, ..caller.clone() };
    audit(platform, &signed_in, Some(user.id), "LoginSucceeded", AuditOutcome::Success, email, "ok").await;
    Ok(SignedIn { user, tokens })
}

/// Rotates a refresh token. The role is read fresh, and a disabled user's session ends here.
pub async fn refresh(platform: &Platform, refresh_token: &str) -> Result<TokenPair, LoginError> {
    let db = platform.db.clone();
    let pair = platform
        .sessions
        .refresh(refresh_token, |user_id| async move {
            match users::get(&db, user_id).await {
                Ok(Some(user)) if !user.disabled => user.role.parse().ok(),
                _ => None,
            }
        })
        .await?;
    Ok(pair)
}

pub async fn logout(platform: &Platform, refresh_token: &str) -> Result<(), LoginError> {
    Ok(platform.sessions.logout(refresh_token).await?)
}

async fn audit(
    platform: &Platform,
    caller: &Caller,
    user_id: Option<Uuid>,
    kind: &str,
    outcome: AuditOutcome,
    email: &str,
    reason: &str,
) {
    let mut record = AuditRecord::new(kind, outcome, format!("sign-in as {email}: {reason}"));
    record.user_id = user_id;
    record.details = serde_json::json!({ "email": email, "reason": reason });
    let mut metadata = EventMetadata::new(caller.actor.clone(), chrono::Utc::now());
    metadata.ip = caller.ip;
    metadata.user_agent = caller.user_agent.clone();
    metadata.request_id = caller.request_id.clone();
    if let Err(err) = platform.audit.record(record, &metadata).await {
        // The answer to the client does not depend on it, but a lost security record must be loud.
        tracing::error!(error = %err, kind, "could not record a sign-in attempt");
    }
    let _ = platform.projections.catch_up().await;
}

fn internal(err: impl std::fmt::Display) -> LoginError {
    LoginError::Internal(err.to_string())
}
