//! What may be asked of an API key.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{EnrollmentCode, EnrollmentCodeHash, Environment, ProjectKeyHash, SealedSecret};
use crate::metadata::Actor;
use crate::provider::Provider;

/// Creation of a project key bound to one provider credential. The server generated the raw
/// project key, showed it once, and passes only its hash and a display prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateApiKey {
    pub api_key_id: Uuid,
    pub name: String,
    pub provider: Provider,
    pub environment: Environment,
    pub project_key_hash: ProjectKeyHash,
    /// The first characters of the raw key, for people to recognise it (at most 16).
    pub project_key_prefix: String,
    pub sealed_secret: SealedSecret,
    pub base_url: Option<String>,
    /// Required when, and only when, the provider is Azure (with `base_url`).
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Issuing an enrollment code. The server generated the code, shows it once, and passes its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueEnrollmentCode {
    pub code_id: Uuid,
    pub code_hash: EnrollmentCodeHash,
    /// Defaults to 15 minutes after `at`; at most 30 days after it.
    pub expires_at: Option<DateTime<Utc>>,
    /// Defaults to 1; at most 1000.
    pub max_uses: Option<u32>,
    /// Whether devices enrolling with this code start `active` instead of `pending`.
    pub auto_approve: bool,
    pub description: Option<String>,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

#[derive(Clone, PartialEq)]
pub enum ApiKeyCommand {
    Create(CreateApiKey),
    RotateProviderSecret {
        sealed_secret: SealedSecret,
        by: Actor,
        at: DateTime<Utc>,
    },
    /// The previous project key stays valid until `grace_until` (at most 30 days), or stops
    /// working at once when it is `None`.
    RotateProjectKey {
        new_hash: ProjectKeyHash,
        new_prefix: String,
        grace_until: Option<DateTime<Utc>>,
        by: Actor,
        at: DateTime<Utc>,
    },
    Revoke {
        reason: String,
        by: Actor,
        at: DateTime<Utc>,
    },
    IssueEnrollmentCode(IssueEnrollmentCode),
    RevokeEnrollmentCode {
        code_id: Uuid,
        by: Actor,
        at: DateTime<Utc>,
    },
    /// Holds the code itself (a secret): the aggregate hashes it to find the issued code.
    RedeemEnrollmentCode {
        code: EnrollmentCode,
        device_id: Uuid,
        at: DateTime<Utc>,
    },
}

/// Written out by hand so that no future field holding a secret is printed by accident.
impl fmt::Debug for ApiKeyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiKeyCommand::Create(c) => f.debug_tuple("Create").field(c).finish(),
            ApiKeyCommand::RotateProviderSecret { sealed_secret, by, at } => f
                .debug_struct("RotateProviderSecret")
                .field("sealed_secret", sealed_secret)
                .field("by", by)
                .field("at", at)
                .finish(),
            ApiKeyCommand::RotateProjectKey { new_hash, new_prefix, grace_until, by, at } => f
                .debug_struct("RotateProjectKey")
                .field("new_hash", new_hash)
                .field("new_prefix", new_prefix)
                .field("grace_until", grace_until)
                .field("by", by)
                .field("at", at)
                .finish(),
            ApiKeyCommand::Revoke { reason, by, at } => {
                f.debug_struct("Revoke").field("reason", reason).field("by", by).field("at", at).finish()
            }
            ApiKeyCommand::IssueEnrollmentCode(c) => f.debug_tuple("IssueEnrollmentCode").field(c).finish(),
            ApiKeyCommand::RevokeEnrollmentCode { code_id, by, at } => f
                .debug_struct("RevokeEnrollmentCode")
                .field("code_id", code_id)
                .field("by", by)
                .field("at", at)
                .finish(),
            ApiKeyCommand::RedeemEnrollmentCode { code: _, device_id, at } => f
                .debug_struct("RedeemEnrollmentCode")
                .field("code", &"<redacted>")
                .field("device_id", device_id)
                .field("at", at)
                .finish(),
        }
    }
}
