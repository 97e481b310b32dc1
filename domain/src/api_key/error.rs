//! Why an API key command was refused.

use crate::error::ErrorCode;
use crate::provider::Provider;
use crate::text::TextError;

use super::{AzureError, BaseUrlError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("The API key does not exist.")]
    NotFound,
    #[error("The API key already exists.")]
    AlreadyExists,
    #[error("The API key is revoked.")]
    Revoked,
    #[error("The API key has expired.")]
    Expired,
    #[error("The name {0}.")]
    InvalidName(TextError),
    #[error("The description {0}.")]
    InvalidDescription(TextError),
    #[error("The reason {0}.")]
    InvalidReason(TextError),
    #[error(
        "The project key prefix must be 1 to 16 printable ASCII characters without spaces; it is for display and must not reveal the key."
    )]
    InvalidProjectKeyPrefix,
    #[error("{0}")]
    InvalidBaseUrl(BaseUrlError),
    #[error("{0}")]
    InvalidAzureSettings(AzureError),
    #[error("An Azure key needs {field}.")]
    AzureSettingRequired { field: &'static str },
    #[error("The {field} setting only applies to Azure keys, not to {provider}.")]
    AzureSettingNotAllowed { field: &'static str, provider: Provider },
    #[error("The expiry must be in the future.")]
    ExpiryNotInFuture,
    #[error("The new sealed secret reuses the current one's nonce under the same data key.")]
    SealedSecretNonceReused,
    #[error("The new project key was used by this API key before.")]
    ProjectKeyReused,
    #[error("The grace period must end after the rotation and at most 30 days after it.")]
    InvalidGracePeriod,
    #[error("An enrollment code with this id already exists.")]
    EnrollmentCodeAlreadyExists,
    #[error("An enrollment code with this hash already exists.")]
    EnrollmentCodeDuplicate,
    #[error("An enrollment code must expire after it is issued and at most 30 days after it.")]
    InvalidEnrollmentCodeExpiry,
    #[error("An enrollment code allows 1 to 1000 uses (got {0}).")]
    InvalidMaxUses(u32),
    #[error("No enrollment code with this id exists.")]
    EnrollmentCodeNotFound,
    #[error("The enrollment code is not valid for this API key.")]
    EnrollmentCodeInvalid,
    #[error("The enrollment code has expired.")]
    EnrollmentCodeExpired,
    #[error("The enrollment code has been used as many times as it allows.")]
    EnrollmentCodeExhausted,
    #[error("The enrollment code has been revoked.")]
    EnrollmentCodeRevoked,
    #[error("This device already redeemed the enrollment code.")]
    EnrollmentCodeAlreadyRedeemed,
}

impl ErrorCode for ApiKeyError {
    fn code(&self) -> &'static str {
        match self {
            ApiKeyError::NotFound => "api_key_not_found",
            ApiKeyError::AlreadyExists => "api_key_already_exists",
            ApiKeyError::Revoked => "api_key_revoked",
            ApiKeyError::Expired => "api_key_expired",
            ApiKeyError::InvalidName(_) => "invalid_name",
            ApiKeyError::InvalidDescription(_) => "invalid_description",
            ApiKeyError::InvalidReason(_) => "invalid_reason",
            ApiKeyError::InvalidProjectKeyPrefix => "invalid_project_key_prefix",
            ApiKeyError::InvalidBaseUrl(_) => "invalid_base_url",
            ApiKeyError::InvalidAzureSettings(_) => "invalid_azure_settings",
            ApiKeyError::AzureSettingRequired { .. } => "azure_setting_required",
            ApiKeyError::AzureSettingNotAllowed { .. } => "azure_setting_not_allowed",
            ApiKeyError::ExpiryNotInFuture => "expiry_not_in_future",
            ApiKeyError::SealedSecretNonceReused => "sealed_secret_nonce_reused",
            ApiKeyError::ProjectKeyReused => "project_key_reused",
            ApiKeyError::InvalidGracePeriod => "invalid_grace_period",
            ApiKeyError::EnrollmentCodeAlreadyExists => "enrollment_code_already_exists",
            ApiKeyError::EnrollmentCodeDuplicate => "enrollment_code_duplicate",
            ApiKeyError::InvalidEnrollmentCodeExpiry => "invalid_enrollment_code_expiry",
            ApiKeyError::InvalidMaxUses(_) => "invalid_max_uses",
            ApiKeyError::EnrollmentCodeNotFound => "enrollment_code_not_found",
            ApiKeyError::EnrollmentCodeInvalid => "enrollment_code_invalid",
            ApiKeyError::EnrollmentCodeExpired => "enrollment_code_expired",
            ApiKeyError::EnrollmentCodeExhausted => "enrollment_code_exhausted",
            ApiKeyError::EnrollmentCodeRevoked => "enrollment_code_revoked",
            ApiKeyError::EnrollmentCodeAlreadyRedeemed => "enrollment_code_already_redeemed",
        }
    }
}
