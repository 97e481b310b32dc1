//! Why a user command was refused.

use super::Role;
use crate::error::ErrorCode;
use crate::text::TextError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("The user does not exist.")]
    NotFound,
    #[error("The user already exists.")]
    AlreadyExists,
    #[error("The user is disabled; enable the account before changing it.")]
    Disabled,
    #[error("The user is not disabled.")]
    NotDisabled,
    #[error("The user already has the {0} role.")]
    RoleUnchanged(Role),
    #[error("The new password hash is the current one.")]
    PasswordUnchanged,
    #[error("Users cannot change their own role or disable themselves; ask another administrator.")]
    SelfModification,
    #[error("The name {0}.")]
    InvalidName(TextError),
    #[error("The reason {0}.")]
    InvalidReason(TextError),
}

impl ErrorCode for UserError {
    fn code(&self) -> &'static str {
        match self {
            UserError::NotFound => "user_not_found",
            UserError::AlreadyExists => "user_already_exists",
            UserError::Disabled => "user_disabled",
            UserError::NotDisabled => "user_not_disabled",
            UserError::RoleUnchanged(_) => "role_unchanged",
            UserError::PasswordUnchanged => "password_unchanged",
            UserError::SelfModification => "self_modification_forbidden",
            UserError::InvalidName(_) => "invalid_name",
            UserError::InvalidReason(_) => "invalid_reason",
        }
    }
}
