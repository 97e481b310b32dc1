//! Why a policy command was refused. Validation errors name the field they are about.

use super::{ListError, MAX_MODEL_NAME_CHARS, MAX_TIMESTAMP_WINDOW_SECONDS, PolicyScope};
use crate::error::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("This policy belongs to {expected}, not to {requested}.")]
    ScopeMismatch { expected: PolicyScope, requested: PolicyScope },
    #[error("The policy already has exactly these settings.")]
    Unchanged,
    #[error("No policy is set for this scope.")]
    NotSet,
    #[error("The global policy cannot be cleared; set the values you want instead.")]
    GlobalCannotBeCleared,
    #[error("An override must set at least one field; clear it to remove it.")]
    EmptyOverride,
    #[error(
        "The timestamp_window_seconds must be between 1 and {MAX_TIMESTAMP_WINDOW_SECONDS} (got {value})."
    )]
    InvalidTimestampWindow { value: u32 },
    #[error("The requests_per_minute must be at least 1.")]
    InvalidRequestsPerMinute,
    #[error("The tokens_per_day must be at least 1.")]
    InvalidTokensPerDay,
    #[error("The ip_allow_list {0}.")]
    InvalidIpAllowList(ListError),
    #[error("The allowed_providers {0}.")]
    InvalidAllowedProviders(ListError),
    #[error("The allowed_models {0}.")]
    InvalidAllowedModels(ListError),
    #[error(
        "Entry {index} of allowed_models must be 1 to {MAX_MODEL_NAME_CHARS} printable ASCII characters without spaces."
    )]
    InvalidModelName { index: usize },
    #[error(
        "The require_approval setting cannot be set on a device policy: approval is decided before the device exists."
    )]
    RequireApprovalOnDevice,
}

impl ErrorCode for PolicyError {
    fn code(&self) -> &'static str {
        match self {
            PolicyError::ScopeMismatch { .. } => "policy_scope_mismatch",
            PolicyError::Unchanged => "policy_unchanged",
            PolicyError::NotSet => "policy_not_set",
            PolicyError::GlobalCannotBeCleared => "global_policy_cannot_be_cleared",
            PolicyError::EmptyOverride => "empty_policy_override",
            PolicyError::InvalidTimestampWindow { .. } => "invalid_timestamp_window_seconds",
            PolicyError::InvalidRequestsPerMinute => "invalid_requests_per_minute",
            PolicyError::InvalidTokensPerDay => "invalid_tokens_per_day",
            PolicyError::InvalidIpAllowList(_) => "invalid_ip_allow_list",
            PolicyError::InvalidAllowedProviders(_) => "invalid_allowed_providers",
            PolicyError::InvalidAllowedModels(_) => "invalid_allowed_models",
            PolicyError::InvalidModelName { .. } => "invalid_model_name",
            PolicyError::RequireApprovalOnDevice => "require_approval_not_applicable",
        }
    }
}
