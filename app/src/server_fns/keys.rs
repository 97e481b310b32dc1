//! Project API keys: list, create (the project key is shown once), rotate the provider secret,
//! rotate the project key with a grace period, revoke.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use leptos::server_fn::codec::Json;

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub environment: String,
    pub project_key_prefix: String,
    /// `active`, `expired` or `revoked`, as of now.
    pub status: String,
    pub revoked_reason: Option<String>,
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub grace_until: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub request_count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub error_count: i64,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPage {
    pub items: Vec<KeyRow>,
    pub total: i64,
}

/// A key with its project key in clear: shown once, never stored in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key: KeyRow,
    pub project_key: String,
}

pub const KEY_PAGE: i64 = 50;

#[cfg(feature = "ssr")]
impl From<services::read_models::api_keys::ApiKeyView> for KeyRow {
    fn from(k: services::read_models::api_keys::ApiKeyView) -> Self {
        let status = match k.status_at(Utc::now()) {
            domain::api_key::ApiKeyStatus::Active => "active",
            domain::api_key::ApiKeyStatus::Expired => "expired",
            domain::api_key::ApiKeyStatus::Revoked => "revoked",
        };
        Self {
            id: k.id.to_string(),
            status: status.to_owned(),
            name: k.name,
            provider: k.provider,
            environment: k.environment,
            project_key_prefix: k.project_key_prefix,
            revoked_reason: k.revoked_reason,
            base_url: k.base_url,
            azure_deployment: k.azure_deployment,
            azure_api_version: k.azure_api_version,
            expires_at: k.expires_at,
            grace_until: k.grace_until,
            description: k.description,
            created_at: k.created_at,
            request_count: k.request_count,
            tokens_in: k.tokens_in,
            tokens_out: k.tokens_out,
            error_count: k.error_count,
            last_used_at: k.last_used_at,
        }
    }
}

/// Keys matching the filters (each may be empty), newest first.
#[server(endpoint = "keys/list")]
pub async fn list_keys(
    provider: String,
    status: String,
    search: String,
    offset: i64,
) -> Result<KeyPage, AppError> {
    use crate::backend::{authorize, fail};
    use domain::user::Permission;
    use services::read_models::PageRequest;
    use services::read_models::api_keys::ApiKeyFilter;

    fn parse<T: std::str::FromStr>(field: &str, raw: &str) -> Result<Option<T>, AppError>
    where
        T::Err: std::fmt::Display,
    {
        match raw.trim() {
            "" => Ok(None),
            raw => raw
                .parse()
                .map(Some)
                .map_err(|e: T::Err| fail(AppError::invalid_field(field, "invalid_input", e.to_string()))),
        }
    }

    let allowed = authorize(Permission::ReadConfiguration)?;
    let filter = ApiKeyFilter {
        status: parse("status", &status)?,
        provider: parse("provider", &provider)?,
        environment: None,
        search: Some(search).filter(|s| !s.trim().is_empty()),
        page: PageRequest::new(KEY_PAGE, offset.max(0)),
    };
    let page = services::keys::list(&allowed.platform, &filter).await?;
    Ok(KeyPage { total: page.total, items: page.items.into_iter().map(KeyRow::from).collect() })
}

/// All keys (first page), for pickers.
pub async fn all_keys() -> Result<KeyPage, AppError> {
    list_keys(String::new(), String::new(), String::new(), 0).await
}

/// What the create wizard collects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyInput {
    pub name: String,
    pub provider: String,
    pub environment: String,
    pub provider_key: String,
    pub base_url: String,
    pub azure_deployment: String,
    pub azure_api_version: String,
    /// Days until the key expires; empty for never.
    pub expires_in_days: String,
    pub description: String,
}

#[server(endpoint = "keys/create", input = Json)]
pub async fn create_key(input: KeyInput) -> Result<CreatedKey, AppError> {
    use crate::backend::{authorize, fail};
    use domain::user::Permission;
    use secrecy::ExposeSecret as _;
    use services::keys::{self, NewKey};

    let allowed = authorize(Permission::ManageKeys)?;
    let optional = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let expires_at = match input.expires_in_days.trim() {
        "" => None,
        days => {
            let days: i64 = days.parse().ok().filter(|d| (1..=3650).contains(d)).ok_or_else(|| {
                fail(AppError::invalid_field(
                    "expires_in_days",
                    "expiry_not_in_future",
                    "the expiry is a number of days from 1 to 3650",
                ))
            })?;
            Some(Utc::now() + chrono::TimeDelta::days(days))
        }
    };
    let new = NewKey {
        name: input.name.trim().to_owned(),
        provider: input.provider.trim().to_owned(),
        environment: input.environment.trim().to_owned(),
        provider_key: secrecy::SecretString::from(input.provider_key.trim().to_owned()),
        base_url: optional(input.base_url),
        azure_deployment: optional(input.azure_deployment),
        azure_api_version: optional(input.azure_api_version),
        expires_at,
        description: optional(input.description),
    };
    let issued = keys::create(&allowed.platform, &allowed.caller, new).await?;
    Ok(CreatedKey { key: issued.key.into(), project_key: issued.raw_key.expose_secret().to_owned() })
}

/// Replaces the provider credential behind a key.
#[server(endpoint = "keys/rotate_secret")]
pub async fn rotate_provider_secret(id: String, provider_key: String) -> Result<KeyRow, AppError> {
    use crate::backend::{authorize, parse_id};
    use domain::user::Permission;

    let allowed = authorize(Permission::ManageKeys)?;
    let id = parse_id("id", &id)?;
    let secret = secrecy::SecretString::from(provider_key.trim().to_owned());
    Ok(services::keys::rotate_provider_secret(&allowed.platform, &allowed.caller, id, secret).await?.into())
}

/// Issues a new project key; the old one keeps working for `grace_hours` (0: stops at once).
#[server(endpoint = "keys/rotate_project_key")]
pub async fn rotate_project_key(id: String, grace_hours: i64) -> Result<CreatedKey, AppError> {
    use crate::backend::{authorize, parse_id};
    use domain::user::Permission;
    use secrecy::ExposeSecret as _;

    let allowed = authorize(Permission::ManageKeys)?;
    let id = parse_id("id", &id)?;
    let grace = Some(chrono::TimeDelta::hours(grace_hours.max(0)));
    let issued = services::keys::rotate_project_key(&allowed.platform, &allowed.caller, id, grace).await?;
    Ok(CreatedKey { key: issued.key.into(), project_key: issued.raw_key.expose_secret().to_owned() })
}

/// Revokes a key for good (its devices stop working, its provider secret is destroyed).
#[server(endpoint = "keys/revoke")]
pub async fn revoke_key(id: String, reason: String) -> Result<KeyRow, AppError> {
    use crate::backend::{authorize, parse_id};
    use domain::user::Permission;

    let allowed = authorize(Permission::ManageKeys)?;
    let id = parse_id("id", &id)?;
    Ok(services::keys::revoke(&allowed.platform, &allowed.caller, id, reason.trim().to_owned()).await?.into())
}
