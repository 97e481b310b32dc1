//! Enrollment codes: issuing the one-time secrets an admin hands to a device owner, listing them
//! (never the code itself) and revoking them.
//!
//! The code is generated here, shown to the caller once, and reaches the store only as its
//! SHA-256 hash; the ApiKey aggregate holds the issued codes, so every rule about them (lifetime,
//! uses, a revoked or expired key) is the domain's.

use chrono::{TimeDelta, Utc};
use domain::api_key::{ApiKeyCommand, ApiKeyStatus, EnrollmentCode, IssueEnrollmentCode};
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::ServiceError;
use crate::platform::Platform;
use crate::read_models::PageRequest;
use crate::read_models::api_keys::{self, ApiKeyFilter};
use crate::read_models::enrollment_codes::{self, EnrollmentCodeView};

/// What an operator asks for. Field names match the REST body; `None` takes the domain default
/// (15 minutes, one use, pending devices).
#[derive(Debug, Default)]
pub struct NewCode {
    /// May be left out when exactly one active API key exists.
    pub api_key_id: Option<Uuid>,
    pub expires_in_seconds: Option<i64>,
    pub max_uses: Option<i64>,
    pub auto_approve: bool,
    pub description: Option<String>,
}

/// An issued code with its text, which is never available again.
pub struct IssuedCode {
    pub code: EnrollmentCode,
    pub view: EnrollmentCodeView,
}

impl std::fmt::Debug for IssuedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCode").field("code", &self.code).field("id", &self.view.id).finish()
    }
}

pub async fn issue(platform: &Platform, caller: &Caller, input: NewCode) -> Result<IssuedCode, ServiceError> {
    let api_key_id = resolve_api_key(platform, input.api_key_id).await?;
    let at = Utc::now();
    let expires_at = input
        .expires_in_seconds
        .map(|secs| {
            TimeDelta::try_seconds(secs)
                .filter(|d| *d > TimeDelta::zero())
                .and_then(|d| at.checked_add_signed(d))
                .ok_or_else(|| ServiceError::Invalid {
                    field: "expiresInSeconds",
                    code: "invalid_enrollment_code_expiry",
                    message: "must be a positive number of seconds, at most 30 days".into(),
                })
        })
        .transpose()?;
    let max_uses = input
        .max_uses
        .map(|n| {
            u32::try_from(n).map_err(|_| ServiceError::Invalid {
                field: "maxUses",
                code: "invalid_max_uses",
                message: format!("an enrollment code allows 1 to 1000 uses (got {n})"),
            })
        })
        .transpose()?;
    let code = EnrollmentCode::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
    let code_id = Uuid::new_v4();
    let command = ApiKeyCommand::IssueEnrollmentCode(IssueEnrollmentCode {
        code_id,
        code_hash: code.hash(),
        expires_at,
        max_uses,
        auto_approve: input.auto_approve,
        description: input.description,
        by: caller.actor.clone(),
        at,
    });
    platform
        .execute(&platform.api_keys, &api_key_id.to_string(), command, caller)
        .await
        .map_err(name_field)?;
    Ok(IssuedCode { code, view: require(platform, code_id).await? })
}

/// Every code issued for the key (the only active key's when `api_key_id` is left out), newest
/// first.
pub async fn list(
    platform: &Platform,
    api_key_id: Option<Uuid>,
) -> Result<Vec<EnrollmentCodeView>, ServiceError> {
    let api_key_id = match api_key_id {
        Some(id) => {
            api_keys::get(&platform.db, id).await?.ok_or_else(|| api_key_not_found(id))?;
            id
        }
        None => resolve_api_key(platform, None).await?,
    };
    Ok(enrollment_codes::list(&platform.db, api_key_id).await?)
}

/// Revokes a code by its id; the key it belongs to comes from the read model.
pub async fn revoke(
    platform: &Platform,
    caller: &Caller,
    code_id: Uuid,
) -> Result<EnrollmentCodeView, ServiceError> {
    let code = require(platform, code_id).await?;
    let command = ApiKeyCommand::RevokeEnrollmentCode { code_id, by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.api_keys, &code.api_key_id.to_string(), command, caller).await?;
    require(platform, code_id).await
}

pub async fn get(platform: &Platform, code_id: Uuid) -> Result<EnrollmentCodeView, ServiceError> {
    require(platform, code_id).await
}

/// The key named, or the only active one.
async fn resolve_api_key(platform: &Platform, api_key_id: Option<Uuid>) -> Result<Uuid, ServiceError> {
    if let Some(id) = api_key_id {
        return Ok(id);
    }
    let filter = ApiKeyFilter {
        status: Some(ApiKeyStatus::Active),
        page: PageRequest::new(2, 0),
        ..Default::default()
    };
    let active = api_keys::list(&platform.db, &filter).await?;
    match active.items.as_slice() {
        [only] if active.total == 1 => Ok(only.id),
        [] => Err(ServiceError::Invalid {
            field: "apiKeyId",
            code: "api_key_id_required",
            message: "there is no active API key; create one first".into(),
        }),
        _ => Err(ServiceError::Invalid {
            field: "apiKeyId",
            code: "api_key_id_required",
            message: format!("{} API keys are active; name the one the code is for", active.total),
        }),
    }
}

/// Names the request field a domain validation error is about.
fn name_field(err: ServiceError) -> ServiceError {
    match err {
        ServiceError::Refused { code, message } => {
            let field = match code {
                "invalid_enrollment_code_expiry" => "expiresInSeconds",
                "invalid_max_uses" => "maxUses",
                "invalid_description" => "description",
                _ => return ServiceError::Refused { code, message },
            };
            ServiceError::Invalid { field, code, message }
        }
        other => other,
    }
}

fn api_key_not_found(id: Uuid) -> ServiceError {
    ServiceError::not_found("api_key_not_found", format!("there is no API key {id}"))
}

async fn require(platform: &Platform, id: Uuid) -> Result<EnrollmentCodeView, ServiceError> {
    enrollment_codes::get(&platform.db, id).await?.ok_or_else(|| {
        ServiceError::not_found("enrollment_code_not_found", format!("there is no enrollment code {id}"))
    })
}
