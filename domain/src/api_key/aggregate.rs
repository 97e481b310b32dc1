//! The API key's state and the rules of its commands.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    ApiKeyCommand, ApiKeyError, ApiKeyEvent, AzureDeployment, BaseUrl, CreateApiKey, EnrollmentCode,
    EnrollmentCodeHash, Environment, IssueEnrollmentCode, MAX_CODE_LIFETIME, MAX_CODE_USES,
    MAX_DESCRIPTION_CHARS, MAX_GRACE_PERIOD, MAX_NAME_CHARS, MAX_PREFIX_CHARS, MAX_REASON_CHARS,
    ProjectKeyHash, SealedSecret,
};
use super::{DEFAULT_CODE_LIFETIME, DEFAULT_CODE_USES};
use crate::metadata::Actor;
use crate::provider::Provider;
use crate::text::{optional_multi_line, single_line};

/// The ApiKey aggregate. Empty until created.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApiKey {
    state: Option<ApiKeyState>,
}

/// Whether a key can be used at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyStatus {
    Active,
    Expired,
    Revoked,
}

impl std::str::FromStr for ApiKeyStatus {
    type Err = String;

    /// `active`, `expired` or `revoked`; the error says which values are accepted.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "active" => Ok(Self::Active),
            "expired" => Ok(Self::Expired),
            "revoked" => Ok(Self::Revoked),
            other => Err(format!("`{other}` is not one of active, expired, revoked")),
        }
    }
}

/// Whether an enrollment code can be redeemed at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentCodeStatus {
    Active,
    Expired,
    Exhausted,
    Revoked,
}

/// Which of a key's project keys a presented hash matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectKeyMatch {
    Current,
    /// The key replaced by the last rotation, accepted until `valid_until` (exclusive).
    Previous {
        valid_until: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectKey {
    hash: ProjectKeyHash,
    prefix: String,
}

impl ProjectKey {
    pub fn hash(&self) -> &ProjectKeyHash {
        &self.hash
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousProjectKey {
    key: ProjectKey,
    valid_until: DateTime<Utc>,
}

impl PreviousProjectKey {
    pub fn key(&self) -> &ProjectKey {
        &self.key
    }
    pub fn valid_until(&self) -> DateTime<Utc> {
        self.valid_until
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    reason: String,
    by: Actor,
    at: DateTime<Utc>,
}

impl Revocation {
    pub fn reason(&self) -> &str {
        &self.reason
    }
    pub fn by(&self) -> &Actor {
        &self.by
    }
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// An issued enrollment code, known only by its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedEnrollmentCode {
    id: Uuid,
    hash: EnrollmentCodeHash,
    expires_at: DateTime<Utc>,
    max_uses: u32,
    uses: u32,
    auto_approve: bool,
    description: Option<String>,
    issued_by: Actor,
    issued_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    redeemed_by: Vec<Uuid>,
}

impl IssuedEnrollmentCode {
    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn hash(&self) -> &EnrollmentCodeHash {
        &self.hash
    }
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }
    pub fn max_uses(&self) -> u32 {
        self.max_uses
    }
    pub fn uses(&self) -> u32 {
        self.uses
    }
    /// Whether devices enrolling with this code start `active`.
    pub fn auto_approve(&self) -> bool {
        self.auto_approve
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn issued_by(&self) -> &Actor {
        &self.issued_by
    }
    pub fn issued_at(&self) -> DateTime<Utc> {
        self.issued_at
    }
    pub fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.revoked_at
    }
    /// The devices that redeemed the code, in order.
    pub fn redeemed_by(&self) -> &[Uuid] {
        &self.redeemed_by
    }

    /// Revoked wins over exhausted, which wins over expired: the most specific reason a person
    /// can act on. The code expires at `expires_at` exactly.
    pub fn status_at(&self, at: DateTime<Utc>) -> EnrollmentCodeStatus {
        if self.revoked_at.is_some() {
            EnrollmentCodeStatus::Revoked
        } else if self.uses >= self.max_uses {
            EnrollmentCodeStatus::Exhausted
        } else if at >= self.expires_at {
            EnrollmentCodeStatus::Expired
        } else {
            EnrollmentCodeStatus::Active
        }
    }
}

/// A created API key as its history describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyState {
    id: Uuid,
    name: String,
    provider: Provider,
    environment: Environment,
    project_key: ProjectKey,
    previous_project_key: Option<PreviousProjectKey>,
    /// Every project key hash this key ever had, current one included, so none can return.
    project_key_history: Vec<ProjectKeyHash>,
    sealed_secret: SealedSecret,
    base_url: Option<BaseUrl>,
    azure: Option<AzureDeployment>,
    expires_at: Option<DateTime<Utc>>,
    description: Option<String>,
    created_by: Actor,
    created_at: DateTime<Utc>,
    revocation: Option<Revocation>,
    enrollment_codes: BTreeMap<Uuid, IssuedEnrollmentCode>,
}

impl ApiKeyState {
    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn provider(&self) -> Provider {
        self.provider
    }
    pub fn environment(&self) -> Environment {
        self.environment
    }
    pub fn project_key(&self) -> &ProjectKey {
        &self.project_key
    }
    /// The project key replaced by the last rotation, while its grace period was granted.
    pub fn previous_project_key(&self) -> Option<&PreviousProjectKey> {
        self.previous_project_key.as_ref()
    }
    pub fn sealed_secret(&self) -> &SealedSecret {
        &self.sealed_secret
    }
    pub fn base_url(&self) -> Option<&BaseUrl> {
        self.base_url.as_ref()
    }
    pub fn azure(&self) -> Option<&AzureDeployment> {
        self.azure.as_ref()
    }
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn created_by(&self) -> &Actor {
        &self.created_by
    }
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    pub fn revocation(&self) -> Option<&Revocation> {
        self.revocation.as_ref()
    }

    /// Revoked, else expired from `expires_at` on (inclusive), else active.
    pub fn status_at(&self, at: DateTime<Utc>) -> ApiKeyStatus {
        if self.revocation.is_some() {
            ApiKeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| at >= e) {
            ApiKeyStatus::Expired
        } else {
            ApiKeyStatus::Active
        }
    }

    /// Which project key `hash` is, if it opens this API key at `at`: the key must be active,
    /// and a previous key only counts strictly before the end of its grace period.
    pub fn match_project_key(&self, hash: &ProjectKeyHash, at: DateTime<Utc>) -> Option<ProjectKeyMatch> {
        if self.status_at(at) != ApiKeyStatus::Active {
            return None;
        }
        if self.project_key.hash.ct_eq(hash) {
            return Some(ProjectKeyMatch::Current);
        }
        self.previous_project_key
            .as_ref()
            .filter(|p| p.key.hash.ct_eq(hash) && at < p.valid_until)
            .map(|p| ProjectKeyMatch::Previous { valid_until: p.valid_until })
    }

    pub fn is_project_key_valid(&self, hash: &ProjectKeyHash, at: DateTime<Utc>) -> bool {
        self.match_project_key(hash, at).is_some()
    }

    /// All issued codes, by id.
    pub fn enrollment_codes(&self) -> impl Iterator<Item = &IssuedEnrollmentCode> {
        self.enrollment_codes.values()
    }

    pub fn enrollment_code(&self, code_id: Uuid) -> Option<&IssuedEnrollmentCode> {
        self.enrollment_codes.get(&code_id)
    }

    pub fn find_enrollment_code(&self, hash: &EnrollmentCodeHash) -> Option<&IssuedEnrollmentCode> {
        // Every entry is compared, so the time taken does not depend on where a match is.
        self.enrollment_codes.values().fold(None, |found, c| if c.hash.ct_eq(hash) { Some(c) } else { found })
    }

    /// The issued code `code` redeems at `at`, or the precise reason it does not. The server
    /// calls this to choose the device's initial status from `auto_approve` before it sends
    /// [`ApiKeyCommand::RedeemEnrollmentCode`], which applies the same rules atomically.
    pub fn check_redeemable(
        &self,
        code: &EnrollmentCode,
        at: DateTime<Utc>,
    ) -> Result<&IssuedEnrollmentCode, ApiKeyError> {
        self.ensure_usable(at)?;
        let issued = self.find_enrollment_code(&code.hash()).ok_or(ApiKeyError::EnrollmentCodeInvalid)?;
        match issued.status_at(at) {
            EnrollmentCodeStatus::Active => Ok(issued),
            EnrollmentCodeStatus::Revoked => Err(ApiKeyError::EnrollmentCodeRevoked),
            EnrollmentCodeStatus::Exhausted => Err(ApiKeyError::EnrollmentCodeExhausted),
            EnrollmentCodeStatus::Expired => Err(ApiKeyError::EnrollmentCodeExpired),
        }
    }

    fn ensure_not_revoked(&self) -> Result<(), ApiKeyError> {
        match self.revocation {
            Some(_) => Err(ApiKeyError::Revoked),
            None => Ok(()),
        }
    }

    fn ensure_usable(&self, at: DateTime<Utc>) -> Result<(), ApiKeyError> {
        match self.status_at(at) {
            ApiKeyStatus::Active => Ok(()),
            ApiKeyStatus::Revoked => Err(ApiKeyError::Revoked),
            ApiKeyStatus::Expired => Err(ApiKeyError::Expired),
        }
    }
}

fn prefix(value: &str) -> Result<String, ApiKeyError> {
    let ok = (1..=MAX_PREFIX_CHARS).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(value.to_owned()) } else { Err(ApiKeyError::InvalidProjectKeyPrefix) }
}

fn create(cmd: CreateApiKey) -> Result<ApiKeyEvent, ApiKeyError> {
    let name = single_line(&cmd.name, MAX_NAME_CHARS).map_err(ApiKeyError::InvalidName)?;
    let project_key_prefix = prefix(&cmd.project_key_prefix)?;
    let base_url =
        cmd.base_url.as_deref().map(BaseUrl::parse).transpose().map_err(ApiKeyError::InvalidBaseUrl)?;
    let azure = match (cmd.provider, cmd.azure_deployment, cmd.azure_api_version) {
        (Provider::Azure, Some(deployment), Some(version)) => {
            if base_url.is_none() {
                return Err(ApiKeyError::AzureSettingRequired { field: "base_url" });
            }
            Some(AzureDeployment::new(&deployment, &version).map_err(ApiKeyError::InvalidAzureSettings)?)
        }
        (Provider::Azure, None, _) => {
            return Err(ApiKeyError::AzureSettingRequired { field: "azure_deployment" });
        }
        (Provider::Azure, _, None) => {
            return Err(ApiKeyError::AzureSettingRequired { field: "azure_api_version" });
        }
        (provider, Some(_), _) => {
            return Err(ApiKeyError::AzureSettingNotAllowed { field: "azure_deployment", provider });
        }
        (provider, _, Some(_)) => {
            return Err(ApiKeyError::AzureSettingNotAllowed { field: "azure_api_version", provider });
        }
        (_, None, None) => None,
    };
    if cmd.expires_at.is_some_and(|e| e <= cmd.at) {
        return Err(ApiKeyError::ExpiryNotInFuture);
    }
    let description = optional_multi_line(cmd.description.as_deref(), MAX_DESCRIPTION_CHARS)
        .map_err(ApiKeyError::InvalidDescription)?;
    Ok(ApiKeyEvent::ApiKeyCreated {
        api_key_id: cmd.api_key_id,
        name,
        provider: cmd.provider,
        environment: cmd.environment,
        project_key_hash: cmd.project_key_hash,
        project_key_prefix,
        sealed_secret: cmd.sealed_secret,
        base_url,
        azure,
        expires_at: cmd.expires_at,
        description,
        by: cmd.by,
        at: cmd.at,
    })
}

fn issue(key: &ApiKeyState, cmd: IssueEnrollmentCode) -> Result<ApiKeyEvent, ApiKeyError> {
    key.ensure_usable(cmd.at)?;
    if key.enrollment_codes.contains_key(&cmd.code_id) {
        return Err(ApiKeyError::EnrollmentCodeAlreadyExists);
    }
    if key.find_enrollment_code(&cmd.code_hash).is_some() {
        return Err(ApiKeyError::EnrollmentCodeDuplicate);
    }
    let expires_at = cmd.expires_at.unwrap_or(cmd.at + DEFAULT_CODE_LIFETIME);
    if expires_at <= cmd.at || expires_at > cmd.at + MAX_CODE_LIFETIME {
        return Err(ApiKeyError::InvalidEnrollmentCodeExpiry);
    }
    let max_uses = cmd.max_uses.unwrap_or(DEFAULT_CODE_USES);
    if !(1..=MAX_CODE_USES).contains(&max_uses) {
        return Err(ApiKeyError::InvalidMaxUses(max_uses));
    }
    let description = optional_multi_line(cmd.description.as_deref(), MAX_DESCRIPTION_CHARS)
        .map_err(ApiKeyError::InvalidDescription)?;
    Ok(ApiKeyEvent::EnrollmentCodeIssued {
        code_id: cmd.code_id,
        code_hash: cmd.code_hash,
        expires_at,
        max_uses,
        auto_approve: cmd.auto_approve,
        description,
        by: cmd.by,
        at: cmd.at,
    })
}

impl ApiKey {
    /// The key, once created.
    pub fn state(&self) -> Option<&ApiKeyState> {
        self.state.as_ref()
    }

    fn existing(&self) -> Result<&ApiKeyState, ApiKeyError> {
        self.state.as_ref().ok_or(ApiKeyError::NotFound)
    }

    fn decide(&self, command: ApiKeyCommand) -> Result<ApiKeyEvent, ApiKeyError> {
        match command {
            ApiKeyCommand::Create(cmd) => {
                if self.state.is_some() {
                    return Err(ApiKeyError::AlreadyExists);
                }
                create(cmd)
            }
            ApiKeyCommand::RotateProviderSecret { sealed_secret, by, at } => {
                let key = self.existing()?;
                key.ensure_not_revoked()?;
                if sealed_secret.reuses_nonce_of(&key.sealed_secret) {
                    return Err(ApiKeyError::SealedSecretNonceReused);
                }
                Ok(ApiKeyEvent::ProviderSecretRotated { sealed_secret, by, at })
            }
            ApiKeyCommand::RotateProjectKey { new_hash, new_prefix, grace_until, by, at } => {
                let key = self.existing()?;
                key.ensure_not_revoked()?;
                let new_prefix = prefix(&new_prefix)?;
                if key.project_key_history.iter().any(|h| h.ct_eq(&new_hash)) {
                    return Err(ApiKeyError::ProjectKeyReused);
                }
                if grace_until.is_some_and(|g| g <= at || g > at + MAX_GRACE_PERIOD) {
                    return Err(ApiKeyError::InvalidGracePeriod);
                }
                Ok(ApiKeyEvent::ProjectKeyRotated {
                    previous_hash: key.project_key.hash.clone(),
                    previous_prefix: key.project_key.prefix.clone(),
                    new_hash,
                    new_prefix,
                    grace_until,
                    by,
                    at,
                })
            }
            ApiKeyCommand::Revoke { reason, by, at } => {
                let key = self.existing()?;
                key.ensure_not_revoked()?;
                let reason = single_line(&reason, MAX_REASON_CHARS).map_err(ApiKeyError::InvalidReason)?;
                let revoked_enrollment_codes = key
                    .enrollment_codes
                    .values()
                    .filter(|c| c.status_at(at) == EnrollmentCodeStatus::Active)
                    .map(|c| c.id)
                    .collect();
                Ok(ApiKeyEvent::ApiKeyRevoked { reason, revoked_enrollment_codes, by, at })
            }
            ApiKeyCommand::IssueEnrollmentCode(cmd) => issue(self.existing()?, cmd),
            ApiKeyCommand::RevokeEnrollmentCode { code_id, by, at } => {
                let key = self.existing()?;
                key.ensure_not_revoked()?;
                let code = key.enrollment_code(code_id).ok_or(ApiKeyError::EnrollmentCodeNotFound)?;
                match code.status_at(at) {
                    EnrollmentCodeStatus::Active => {
                        Ok(ApiKeyEvent::EnrollmentCodeRevoked { code_id, by, at })
                    }
                    EnrollmentCodeStatus::Revoked => Err(ApiKeyError::EnrollmentCodeRevoked),
                    EnrollmentCodeStatus::Exhausted => Err(ApiKeyError::EnrollmentCodeExhausted),
                    EnrollmentCodeStatus::Expired => Err(ApiKeyError::EnrollmentCodeExpired),
                }
            }
            ApiKeyCommand::RedeemEnrollmentCode { code, device_id, at } => {
                let issued = self.existing()?.check_redeemable(&code, at)?;
                if issued.redeemed_by.contains(&device_id) {
                    return Err(ApiKeyError::EnrollmentCodeAlreadyRedeemed);
                }
                Ok(ApiKeyEvent::EnrollmentCodeRedeemed {
                    code_id: issued.id,
                    device_id,
                    uses_after: issued.uses + 1,
                    auto_approve: issued.auto_approve,
                    at,
                })
            }
        }
    }
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "api_key";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let ApiKeyEvent::ApiKeyCreated {
            api_key_id,
            name,
            provider,
            environment,
            project_key_hash,
            project_key_prefix,
            sealed_secret,
            base_url,
            azure,
            expires_at,
            description,
            by,
            at,
        } = event
        {
            self.state = Some(ApiKeyState {
                id: api_key_id,
                name,
                provider,
                environment,
                project_key_history: vec![project_key_hash.clone()],
                project_key: ProjectKey { hash: project_key_hash, prefix: project_key_prefix },
                previous_project_key: None,
                sealed_secret,
                base_url,
                azure,
                expires_at,
                description,
                created_by: by,
                created_at: at,
                revocation: None,
                enrollment_codes: BTreeMap::new(),
            });
            return;
        }
        // Only creation can start a history; see the Device aggregate for why a gap is ignored.
        let Some(key) = self.state.as_mut() else {
            return;
        };
        match event {
            ApiKeyEvent::ApiKeyCreated { .. } => {}
            ApiKeyEvent::ProviderSecretRotated { sealed_secret, .. } => {
                key.sealed_secret = sealed_secret;
            }
            ApiKeyEvent::ProjectKeyRotated {
                previous_hash,
                previous_prefix,
                new_hash,
                new_prefix,
                grace_until,
                ..
            } => {
                key.previous_project_key = grace_until.map(|valid_until| PreviousProjectKey {
                    key: ProjectKey { hash: previous_hash, prefix: previous_prefix },
                    valid_until,
                });
                key.project_key_history.push(new_hash.clone());
                key.project_key = ProjectKey { hash: new_hash, prefix: new_prefix };
            }
            ApiKeyEvent::ApiKeyRevoked { reason, revoked_enrollment_codes, by, at } => {
                for id in revoked_enrollment_codes {
                    if let Some(code) = key.enrollment_codes.get_mut(&id) {
                        code.revoked_at = Some(at);
                    }
                }
                key.revocation = Some(Revocation { reason, by, at });
            }
            ApiKeyEvent::EnrollmentCodeIssued {
                code_id,
                code_hash,
                expires_at,
                max_uses,
                auto_approve,
                description,
                by,
                at,
            } => {
                key.enrollment_codes.insert(
                    code_id,
                    IssuedEnrollmentCode {
                        id: code_id,
                        hash: code_hash,
                        expires_at,
                        max_uses,
                        uses: 0,
                        auto_approve,
                        description,
                        issued_by: by,
                        issued_at: at,
                        revoked_at: None,
                        redeemed_by: Vec::new(),
                    },
                );
            }
            ApiKeyEvent::EnrollmentCodeRevoked { code_id, at, .. } => {
                if let Some(code) = key.enrollment_codes.get_mut(&code_id) {
                    code.revoked_at = Some(at);
                }
            }
            ApiKeyEvent::EnrollmentCodeRedeemed { code_id, device_id, uses_after, .. } => {
                if let Some(code) = key.enrollment_codes.get_mut(&code_id) {
                    code.uses = uses_after;
                    code.redeemed_by.push(device_id);
                }
            }
        }
    }
}
