//! What has happened to an API key and its enrollment codes.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AzureDeployment, BaseUrl, EnrollmentCodeHash, Environment, ProjectKeyHash, SealedSecret};
use crate::metadata::Actor;
use crate::provider::Provider;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ApiKeyEvent {
    ApiKeyCreated {
        api_key_id: Uuid,
        name: String,
        provider: Provider,
        environment: Environment,
        project_key_hash: ProjectKeyHash,
        project_key_prefix: String,
        sealed_secret: SealedSecret,
        base_url: Option<BaseUrl>,
        azure: Option<AzureDeployment>,
        expires_at: Option<DateTime<Utc>>,
        description: Option<String>,
        by: Actor,
        at: DateTime<Utc>,
    },
    ProviderSecretRotated {
        sealed_secret: SealedSecret,
        by: Actor,
        at: DateTime<Utc>,
    },
    /// The key that was current becomes the previous one, valid until `grace_until` (if any);
    /// a previous key still in its grace period from an earlier rotation stops working.
    ProjectKeyRotated {
        previous_hash: ProjectKeyHash,
        previous_prefix: String,
        new_hash: ProjectKeyHash,
        new_prefix: String,
        grace_until: Option<DateTime<Utc>>,
        by: Actor,
        at: DateTime<Utc>,
    },
    /// Terminal. Lists the enrollment codes that were still usable and are revoked with it.
    ApiKeyRevoked {
        reason: String,
        revoked_enrollment_codes: Vec<Uuid>,
        by: Actor,
        at: DateTime<Utc>,
    },
    EnrollmentCodeIssued {
        code_id: Uuid,
        code_hash: EnrollmentCodeHash,
        expires_at: DateTime<Utc>,
        max_uses: u32,
        auto_approve: bool,
        description: Option<String>,
        by: Actor,
        at: DateTime<Utc>,
    },
    EnrollmentCodeRevoked {
        code_id: Uuid,
        by: Actor,
        at: DateTime<Utc>,
    },
    EnrollmentCodeRedeemed {
        code_id: Uuid,
        device_id: Uuid,
        uses_after: u32,
        auto_approve: bool,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            ApiKeyEvent::ApiKeyCreated { .. } => "ApiKeyCreated",
            ApiKeyEvent::ProviderSecretRotated { .. } => "ProviderSecretRotated",
            ApiKeyEvent::ProjectKeyRotated { .. } => "ProjectKeyRotated",
            ApiKeyEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            ApiKeyEvent::EnrollmentCodeIssued { .. } => "EnrollmentCodeIssued",
            ApiKeyEvent::EnrollmentCodeRevoked { .. } => "EnrollmentCodeRevoked",
            ApiKeyEvent::EnrollmentCodeRedeemed { .. } => "EnrollmentCodeRedeemed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
