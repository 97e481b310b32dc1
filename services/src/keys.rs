//! API keys: a KeyGuard project key bound to one provider credential. Creating, rotating and
//! revoking them, with the provider secret sealed before it reaches the event store.
//!
//! The raw project key (`kg_…`) is generated here, shown to the caller once, and kept only as a
//! SHA-256 hash; the provider secret exists in plaintext only in memory on its way into the
//! envelope.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use domain::api_key::{ApiKeyCommand, CreateApiKey, Environment, ProjectKeyHash};
use domain::provider::Provider;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::ServiceError;
use crate::platform::Platform;
use crate::read_models::Page;
use crate::read_models::api_keys::{self, ApiKeyFilter, ApiKeyView};

/// Characters of the raw key kept for people to recognise it (`kg_` and 9 more).
const PREFIX_CHARS: usize = 12;

/// What an operator provides to create a key. Field names match the REST body.
pub struct NewKey {
    pub name: String,
    pub provider: String,
    pub environment: String,
    pub provider_key: SecretString,
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

/// A key as stored, plus its new project key, which is never shown again.
pub struct IssuedKey {
    pub key: ApiKeyView,
    pub raw_key: SecretString,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey").field("key", &self.key.id).field("raw_key", &"[REDACTED]").finish()
    }
}

/// A fresh project key: `kg_` and 43 characters carrying 256 random bits.
fn generate_project_key() -> Result<SecretString, ServiceError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *bytes)
        .map_err(|_| ServiceError::Internal("the OS random generator failed".into()))?;
    Ok(SecretString::from(format!("kg_{}", URL_SAFE_NO_PAD.encode(*bytes))))
}

/// The lookup form of a project key: what the proxy hashes each request's key to.
pub fn project_key_hash(raw: &str) -> ProjectKeyHash {
    ProjectKeyHash::parse(&hex_digest(raw)).expect("a SHA-256 hex digest is a valid hash")
}

fn hex_digest(raw: &str) -> String {
    Sha256::digest(raw.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn prefix(raw: &SecretString) -> String {
    raw.expose_secret().chars().take(PREFIX_CHARS).collect()
}

pub async fn create(platform: &Platform, caller: &Caller, input: NewKey) -> Result<IssuedKey, ServiceError> {
    let provider: Provider = input.provider.parse().map_err(|e| ServiceError::invalid("provider", &e))?;
    let environment: Environment =
        input.environment.parse().map_err(|e| ServiceError::invalid("environment", &e))?;
    if input.provider_key.expose_secret().trim().is_empty() {
        return Err(ServiceError::Invalid {
            field: "providerKey",
            code: "provider_key_required",
            message: "the provider's API key is required (in the body or the x-api-key header)".into(),
        });
    }
    let id = Uuid::new_v4();
    let raw_key = generate_project_key()?;
    let data_key = platform.envelope.create_data_key().await?;
    let sealed_secret = platform.envelope.seal(data_key, &input.provider_key, &id.to_string()).await?;
    let command = ApiKeyCommand::Create(CreateApiKey {
        api_key_id: id,
        name: input.name,
        provider,
        environment,
        project_key_hash: project_key_hash(raw_key.expose_secret()),
        project_key_prefix: prefix(&raw_key),
        sealed_secret,
        base_url: input.base_url,
        azure_deployment: input.azure_deployment,
        azure_api_version: input.azure_api_version,
        expires_at: input.expires_at,
        description: input.description,
        by: caller.actor.clone(),
        at: Utc::now(),
    });
    if let Err(err) = platform.execute(&platform.api_keys, &id.to_string(), command, caller).await {
        // The key was refused: its data key protects nothing and must not linger.
        let _ = platform.envelope.destroy(data_key).await;
        return Err(err);
    }
    Ok(IssuedKey { key: require(platform, id).await?, raw_key })
}

/// Replaces the provider credential (e.g. after the provider rotated it).
pub async fn rotate_provider_secret(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    provider_key: SecretString,
) -> Result<ApiKeyView, ServiceError> {
    let current = api_keys::sealed_secret(&platform.db, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("api_key_not_found", format!("there is no API key {id}")))?;
    let sealed_secret = platform.envelope.seal(current.data_key_id(), &provider_key, &id.to_string()).await?;
    let command =
        ApiKeyCommand::RotateProviderSecret { sealed_secret, by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.api_keys, &id.to_string(), command, caller).await?;
    require(platform, id).await
}

/// Issues a new project key; the previous one keeps working for `grace` (at most 30 days).
pub async fn rotate_project_key(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    grace: Option<TimeDelta>,
) -> Result<IssuedKey, ServiceError> {
    let raw_key = generate_project_key()?;
    let at = Utc::now();
    let command = ApiKeyCommand::RotateProjectKey {
        new_hash: project_key_hash(raw_key.expose_secret()),
        new_prefix: prefix(&raw_key),
        grace_until: grace.filter(|g| *g > TimeDelta::zero()).map(|g| at + g),
        by: caller.actor.clone(),
        at,
    };
    platform.execute(&platform.api_keys, &id.to_string(), command, caller).await?;
    Ok(IssuedKey { key: require(platform, id).await?, raw_key })
}

/// Revokes the key for good and destroys its data key, so the provider secret can never be
/// decrypted again, not even from a backup of the store.
pub async fn revoke(
    platform: &Platform,
    caller: &Caller,
    id: Uuid,
    reason: String,
) -> Result<ApiKeyView, ServiceError> {
    let sealed = api_keys::sealed_secret(&platform.db, id).await?;
    let command = ApiKeyCommand::Revoke { reason, by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.api_keys, &id.to_string(), command, caller).await?;
    if let Some(sealed) = sealed {
        platform.envelope.destroy(sealed.data_key_id()).await?;
    }
    require(platform, id).await
}

pub async fn list(platform: &Platform, filter: &ApiKeyFilter) -> Result<Page<ApiKeyView>, ServiceError> {
    Ok(api_keys::list(&platform.db, filter).await?)
}

pub async fn get(platform: &Platform, id: Uuid) -> Result<ApiKeyView, ServiceError> {
    require(platform, id).await
}

async fn require(platform: &Platform, id: Uuid) -> Result<ApiKeyView, ServiceError> {
    api_keys::get(&platform.db, id)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| ServiceError::not_found("api_key_not_found", format!("there is no API key {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_keys_are_long_random_and_recognisable() {
        let a = generate_project_key().unwrap();
        let b = generate_project_key().unwrap();
        assert!(a.expose_secret().starts_with("kg_"));
        assert_eq!(a.expose_secret().len(), 3 + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(prefix(&a).len(), PREFIX_CHARS);
        assert!(domain::protocol::ProjectKey::parse(a.expose_secret()).is_ok(), "usable in kg-v1 headers");
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            project_key_hash("kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345").as_str(),
            hex_digest("kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345")
        );
        assert_eq!(hex_digest("").len(), 64);
    }
}
