//! Why a device command was refused.

use std::fmt;

use super::DeviceStatus;
use crate::error::ErrorCode;
use crate::protocol::KeyError;
use crate::text::TextError;

/// A state-dependent device action, named in [`DeviceError::InvalidTransition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    Approve,
    Suspend,
    Reactivate,
    RotateKey,
}

impl fmt::Display for DeviceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceAction::Approve => "approve",
            DeviceAction::Suspend => "suspend",
            DeviceAction::Reactivate => "reactivate",
            DeviceAction::RotateKey => "rotate the key of",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("The device has not been enrolled.")]
    NotEnrolled,
    #[error("The device is already enrolled.")]
    AlreadyEnrolled,
    #[error("The device is revoked; a revoked device cannot be changed.")]
    Revoked,
    #[error("Cannot {action} a device that is {from}.")]
    InvalidTransition { action: DeviceAction, from: DeviceStatus },
    #[error("The keyId does not match the public key: {0}.")]
    KeyIdMismatch(KeyError),
    #[error("The label {0}.")]
    InvalidLabel(TextError),
    #[error("The label is already {0:?}.")]
    LabelUnchanged(String),
    #[error("The fingerprint {0}.")]
    InvalidFingerprint(TextError),
    #[error("The user agent {0}.")]
    InvalidUserAgent(TextError),
    #[error("The device metadata must be a JSON object.")]
    MetadataNotObject,
    #[error("The device metadata is {size} bytes; at most {max} bytes are accepted.")]
    MetadataTooLarge { size: usize, max: usize },
    #[error("The reason {0}.")]
    InvalidReason(TextError),
    #[error("The rotation proof must be a standard base64 (padded) IEEE P1363 ECDSA signature of 64 bytes.")]
    MalformedRotationProof,
    #[error("The rotation proof is not a valid signature by the device's current key.")]
    InvalidRotationProof,
    #[error("The new public key is the device's current key.")]
    KeyUnchanged,
    #[error("The new public key was used by this device before; a retired key cannot return.")]
    KeyPreviouslyUsed,
}

impl ErrorCode for DeviceError {
    fn code(&self) -> &'static str {
        match self {
            DeviceError::NotEnrolled => "device_not_found",
            DeviceError::AlreadyEnrolled => "device_already_enrolled",
            DeviceError::Revoked => "device_revoked",
            DeviceError::InvalidTransition { .. } => "invalid_transition",
            DeviceError::KeyIdMismatch(_) => "key_id_mismatch",
            DeviceError::InvalidLabel(_) => "invalid_label",
            DeviceError::LabelUnchanged(_) => "label_unchanged",
            DeviceError::InvalidFingerprint(_) => "invalid_fingerprint",
            DeviceError::InvalidUserAgent(_) => "invalid_user_agent",
            DeviceError::MetadataNotObject => "metadata_not_object",
            DeviceError::MetadataTooLarge { .. } => "metadata_too_large",
            DeviceError::InvalidReason(_) => "invalid_reason",
            DeviceError::MalformedRotationProof => "malformed_rotation_proof",
            DeviceError::InvalidRotationProof => "invalid_rotation_proof",
            DeviceError::KeyUnchanged => "key_unchanged",
            DeviceError::KeyPreviouslyUsed => "key_previously_used",
        }
    }
}
