//! Device enrollment (`POST /api/v1/keyguard/enroll`): a device presents its project key and
//! its public key, optionally with an enrollment code, and becomes a `pending` or `active`
//! device of that project.
//!
//! - The keyId must be the one derived from the public key.
//! - Idempotent on (project, keyId): the device id is derived from the pair, so a second
//!   enrollment of the same key, even a concurrent one, answers the existing device unchanged.
//!   The client-supplied fingerprint identifies nothing.
//! - A code is redeemed through the ApiKey aggregate *before* the device is enrolled, with
//!   cqrs-es's optimistic concurrency making the redemption atomic; a conflict is retried once
//!   after reloading, so the loser of a race for the last use gets `enrollment_code_exhausted`.
//!   A bad code is an error, never a silent `pending`.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate as _, EventStore as _};
use domain::api_key::{ApiKey, ApiKeyCommand, ApiKeyStatus, EnrollmentCode};
use domain::device::{Device, DeviceCommand, DeviceStatus, EnrollDevice, InitialStatus};
use domain::metadata::Actor;
use domain::policy::{EffectivePolicy, PolicyScope};
use domain::protocol::{KeyId, ProjectKey, PublicKeySpki};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::ServiceError;
use crate::keys::project_key_hash;
use crate::platform::Platform;
use crate::read_models::api_keys::{self, ApiKeyView};
use crate::read_models::{devices, policies};

/// The SDK's `enroll()` payload, as the route's JSON body; anything else is refused.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollmentBody {
    pub public_key: String,
    pub key_id: String,
    pub device_fingerprint: String,
    pub label: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub enrollment_code: Option<String>,
}

impl EnrollmentBody {
    /// Parses the route's body; the error names the position and the field that is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The request, with the project key from the `x-keyguard-api-key` header.
    pub fn into_request(self, project_key: String) -> EnrollmentRequest {
        EnrollmentRequest {
            project_key,
            public_key: self.public_key,
            key_id: self.key_id,
            device_fingerprint: self.device_fingerprint,
            label: self.label,
            user_agent: self.user_agent,
            metadata: self.metadata,
            enrollment_code: self.enrollment_code,
        }
    }
}

/// The SDK's `enroll()` payload plus the header's project key.
pub struct EnrollmentRequest {
    pub project_key: String,
    pub public_key: String,
    pub key_id: String,
    pub device_fingerprint: String,
    pub label: String,
    pub user_agent: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub enrollment_code: Option<String>,
}

impl std::fmt::Debug for EnrollmentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentRequest")
            .field("key_id", &self.key_id)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The device, as the route answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrolledDevice {
    pub id: Uuid,
    pub status: DeviceStatus,
    pub created_at: DateTime<Utc>,
    /// `false` when the key was already enrolled and the existing device is answered.
    pub newly_enrolled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// The project key is unknown, revoked or expired; `reason` is for the audit trail only.
    #[error("unauthorized ({reason})")]
    Unauthorized { reason: &'static str },
    /// The request or the code is wrong: a 400 with this code and message.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The device id for (project, keyId): the same pair always names the same aggregate, so two
/// enrollments of one key cannot create two devices.
pub fn device_id_for(api_key_id: Uuid, key_id: &KeyId) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"keyguard-device-v1|")
        .chain_update(api_key_id.as_bytes())
        .chain_update(key_id.as_str().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

pub async fn enroll(
    platform: &Platform,
    caller: &Caller,
    request: EnrollmentRequest,
) -> Result<EnrolledDevice, EnrollmentError> {
    let now = Utc::now();
    let key = project(platform, &request.project_key, now).await?;
    let (public_key, key_id) = device_key(&request)?;
    if let Some(existing) = existing_device(platform, key.id, &key_id).await? {
        return Ok(existing);
    }
    let device_id = device_id_for(key.id, &key_id);
    let device_caller = Caller { actor: Actor::Device { id: device_id }, ..caller.clone() };
    let mut command = EnrollDevice {
        device_id,
        api_key_id: key.id,
        key_id: key_id.clone(),
        public_key,
        label: request.label,
        fingerprint: request.device_fingerprint,
        user_agent: request.user_agent,
        metadata: request.metadata.unwrap_or_else(|| serde_json::json!({})),
        ip: caller.ip,
        initial_status: InitialStatus::Pending,
        enrollment_code_id: None,
        at: now,
    };
    // Refuse bad input before a code use is spent on it.
    dry_run(&command).await?;
    match request.enrollment_code {
        Some(text) => {
            let code = EnrollmentCode::parse(text.trim()).map_err(|_| EnrollmentError::Invalid {
                code: "enrollment_code_invalid",
                message: "the enrollment code is not valid for this API key".into(),
            })?;
            let (code_id, auto_approve) = redeem(platform, &device_caller, key.id, code, device_id).await?;
            command.enrollment_code_id = Some(code_id);
            command.initial_status =
                if auto_approve { InitialStatus::Active } else { InitialStatus::Pending };
        }
        None => {
            let policy = key_policy(platform, key.id).await?;
            if !policy.require_approval {
                command.initial_status = InitialStatus::Active;
            }
        }
    }
    let result = platform
        .execute(&platform.devices, &device_id.to_string(), DeviceCommand::Enroll(command), &device_caller)
        .await;
    let newly_enrolled = result.is_ok();
    match result {
        Ok(()) => {}
        Err(ServiceError::Refused { code, message }) if code != "device_already_enrolled" => {
            return Err(EnrollmentError::Invalid { code, message });
        }
        // A concurrent enrollment of the same key won (the domain's `device_already_enrolled`, a
        // version conflict, or the store's unique-key violation): answer its device.
        Err(e) => {
            platform.projections.catch_up().await.map_err(ServiceError::from)?;
            if existing_device(platform, key.id, &key_id).await?.is_none() {
                return Err(e.into());
            }
        }
    }
    let mut device = existing_device(platform, key.id, &key_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("device {device_id} is not in the read model")))?;
    device.newly_enrolled = newly_enrolled;
    Ok(device)
}

/// The device's public key and keyId, checked against each other: what the request says about
/// the device before anything is looked up.
pub fn device_key(request: &EnrollmentRequest) -> Result<(PublicKeySpki, KeyId), EnrollmentError> {
    let public_key = PublicKeySpki::parse(&request.public_key).map_err(|e| EnrollmentError::Invalid {
        code: "invalid_public_key",
        message: format!("publicKey must be a base64 DER SubjectPublicKeyInfo of a P-256 key: {e}"),
    })?;
    let key_id = KeyId::parse(&request.key_id).map_err(|e| EnrollmentError::Invalid {
        code: "invalid_key_id",
        message: format!("keyId must be 32 lowercase hex characters: {e}"),
    })?;
    public_key.check_key_id(&key_id).map_err(|_| EnrollmentError::Invalid {
        code: "key_id_mismatch",
        message: "keyId is not the one derived from publicKey (the first 16 bytes of SHA-256 over the \
                  base64 text of the public key, as 32 lowercase hex characters)"
            .into(),
    })?;
    Ok((public_key, key_id))
}

/// The active project key the header names.
async fn project(platform: &Platform, raw: &str, now: DateTime<Utc>) -> Result<ApiKeyView, EnrollmentError> {
    let parsed = ProjectKey::parse(raw)
        .map_err(|_| EnrollmentError::Unauthorized { reason: "malformed_project_key" })?;
    let hash = project_key_hash(parsed.expose_secret());
    let key = api_keys::find_by_project_key_hash(&platform.db, &hash)
        .await
        .map_err(ServiceError::from)?
        .ok_or(EnrollmentError::Unauthorized { reason: "unknown_project_key" })?;
    match key.status_at(now) {
        ApiKeyStatus::Active => {}
        ApiKeyStatus::Expired => return Err(EnrollmentError::Unauthorized { reason: "project_key_expired" }),
        ApiKeyStatus::Revoked => {
            return Err(EnrollmentError::Unauthorized { reason: "project_key_inactive" });
        }
    }
    if !key.accepts_hash_at(&hash, now) {
        return Err(EnrollmentError::Unauthorized { reason: "project_key_inactive" });
    }
    Ok(key)
}

async fn existing_device(
    platform: &Platform,
    api_key_id: Uuid,
    key_id: &KeyId,
) -> Result<Option<EnrolledDevice>, ServiceError> {
    let Some(view) = devices::find_by_key_id(&platform.db, api_key_id, key_id.as_str()).await? else {
        return Ok(None);
    };
    let status = match view.status.as_str() {
        "pending" => DeviceStatus::Pending,
        "active" => DeviceStatus::Active,
        "suspended" => DeviceStatus::Suspended,
        "revoked" => DeviceStatus::Revoked,
        other => return Err(ServiceError::Internal(format!("device {} has status {other:?}", view.id))),
    };
    Ok(Some(EnrolledDevice { id: view.id, status, created_at: view.enrolled_at, newly_enrolled: false }))
}

/// Runs the domain's enrollment checks on an empty device, without storing anything.
pub async fn dry_run(command: &EnrollDevice) -> Result<(), EnrollmentError> {
    let mut probe = Device::default();
    let sink = EventSink::default();
    probe
        .handle(DeviceCommand::Enroll(command.clone()), &(), &sink)
        .await
        .map_err(|e| EnrollmentError::Invalid { code: domain::ErrorCode::code(&e), message: e.to_string() })
}

/// Redeems the code for this device; returns the code's id and whether it auto-approves.
async fn redeem(
    platform: &Platform,
    caller: &Caller,
    api_key_id: Uuid,
    code: EnrollmentCode,
    device_id: Uuid,
) -> Result<(Uuid, bool), EnrollmentError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let at = Utc::now();
        // The issued code's id and auto-approve flag never change; read them from the state the
        // command will run against, and let the command itself decide atomically.
        let store = PersistedEventStore::<_, ApiKey>::new_event_store(platform.db.event_repository());
        let context = store.load_aggregate(&api_key_id.to_string()).await.map_err(ServiceError::from)?;
        let state = context
            .aggregate
            .state()
            .ok_or_else(|| ServiceError::Internal(format!("API key {api_key_id} has no history")))?;
        let issued = state.check_redeemable(&code, at).map_err(code_error)?;
        let (code_id, auto_approve) = (issued.id(), issued.auto_approve());
        let command = ApiKeyCommand::RedeemEnrollmentCode { code: code.clone(), device_id, at };
        match platform.execute(&platform.api_keys, &api_key_id.to_string(), command, caller).await {
            Ok(()) => return Ok((code_id, auto_approve)),
            Err(ServiceError::Concurrent) if attempts < 5 => continue,
            Err(ServiceError::Refused { code: "enrollment_code_already_redeemed", .. }) => {
                // This very device redeemed it in an earlier attempt that failed afterwards.
                return Ok((code_id, auto_approve));
            }
            Err(ServiceError::Refused { code, message }) => {
                return Err(EnrollmentError::Invalid { code, message });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn code_error(e: domain::api_key::ApiKeyError) -> EnrollmentError {
    use domain::ErrorCode as _;
    match e {
        domain::api_key::ApiKeyError::Revoked => {
            EnrollmentError::Unauthorized { reason: "project_key_inactive" }
        }
        domain::api_key::ApiKeyError::Expired => {
            EnrollmentError::Unauthorized { reason: "project_key_expired" }
        }
        other => EnrollmentError::Invalid { code: other.code(), message: other.to_string() },
    }
}

/// The key-level policy (global and key settings merged): whether new devices need approval.
async fn key_policy(platform: &Platform, api_key_id: Uuid) -> Result<EffectivePolicy, ServiceError> {
    let global = policies::get(&platform.db, PolicyScope::Global).await?.map(|v| v.settings);
    let key = policies::get(&platform.db, PolicyScope::ApiKey(api_key_id)).await?.map(|v| v.settings);
    Ok(EffectivePolicy::resolve(global.as_ref(), key.as_ref(), None))
}
