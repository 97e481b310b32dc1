//! Policies: reading, setting and clearing the global, per-key and per-device settings, and the
//! effective policy of a key or a device (the most specific level that names a field wins).
//!
//! Settings arrive as text (CIDRs, provider names) and are parsed here, so that the REST API and
//! the dashboard report a bad entry against the same field; every other rule is the domain's.

use chrono::Utc;
use domain::policy::{EffectivePolicy, PolicyCommand, PolicyScope, PolicySettings};
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::ServiceError;
use crate::platform::Platform;
use crate::read_models::policies::{self, PolicyView};
use crate::read_models::{api_keys, devices};

/// One level's settings as an operator writes them; `None` leaves a field to less specific levels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsInput {
    pub timestamp_window_seconds: Option<u32>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_day: Option<u64>,
    /// IPv4 or IPv6 networks in CIDR form; a bare address means that one address.
    pub ip_allow_list: Option<Vec<String>>,
    /// `openai`, `anthropic`, `google` or `azure`.
    pub allowed_providers: Option<Vec<String>>,
    pub allowed_models: Option<Vec<String>>,
    pub require_approval: Option<bool>,
}

/// The policy in force for a key or a device, and the levels it was merged from.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub api_key_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub policy: EffectivePolicy,
    pub global: Option<PolicyView>,
    pub api_key: Option<PolicyView>,
    pub device: Option<PolicyView>,
}

/// Every stored policy: global first, then per key, then per device.
pub async fn all(platform: &Platform) -> Result<Vec<PolicyView>, ServiceError> {
    Ok(policies::all(&platform.db).await?)
}

/// The settings stored for `scope`; `None` when none are (the level inherits everything). An
/// unknown key or device is an error, not an empty level.
pub async fn get(platform: &Platform, scope: PolicyScope) -> Result<Option<PolicyView>, ServiceError> {
    ensure_target_exists(platform, scope).await?;
    Ok(policies::get(&platform.db, scope).await?)
}

/// Replaces the settings of `scope`.
pub async fn set(
    platform: &Platform,
    caller: &Caller,
    scope: PolicyScope,
    input: SettingsInput,
) -> Result<PolicyView, ServiceError> {
    ensure_target_exists(platform, scope).await?;
    let settings = parse(input)?;
    let command = PolicyCommand::Set { scope, settings, by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.policies, &scope.aggregate_id(), command, caller).await.map_err(name_field)?;
    policies::get(&platform.db, scope).await?.ok_or_else(|| {
        ServiceError::Internal(format!("policy {scope} missing from its read model after set"))
    })
}

/// Removes a key or device override; the level then inherits everything again.
pub async fn clear(platform: &Platform, caller: &Caller, scope: PolicyScope) -> Result<(), ServiceError> {
    ensure_target_exists(platform, scope).await?;
    let command = PolicyCommand::Clear { by: caller.actor.clone(), at: Utc::now() };
    platform.execute(&platform.policies, &scope.aggregate_id(), command, caller).await.map_err(|err| {
        match err {
            // Nothing to clear is "there is no such override", like any other missing thing.
            ServiceError::Refused { code: code @ "policy_not_set", message } => {
                ServiceError::NotFound { code, message }
            }
            other => name_field(other),
        }
    })
}

/// The policy for a device (its key's and the global level beneath it), for a key, or the
/// global one when neither is named.
pub async fn effective(
    platform: &Platform,
    api_key_id: Option<Uuid>,
    device_id: Option<Uuid>,
) -> Result<Effective, ServiceError> {
    let api_key_id = match device_id {
        Some(device_id) => {
            let device =
                devices::get(&platform.db, device_id).await?.ok_or_else(|| device_not_found(device_id))?;
            if api_key_id.is_some_and(|k| k != device.api_key_id) {
                return Err(ServiceError::Invalid {
                    field: "deviceId",
                    code: "device_of_another_key",
                    message: format!("device {device_id} belongs to API key {}", device.api_key_id),
                });
            }
            Some(device.api_key_id)
        }
        None => {
            if let Some(id) = api_key_id {
                ensure_target_exists(platform, PolicyScope::ApiKey(id)).await?;
            }
            api_key_id
        }
    };
    let global = policies::get(&platform.db, PolicyScope::Global).await?;
    let api_key = match api_key_id {
        Some(id) => policies::get(&platform.db, PolicyScope::ApiKey(id)).await?,
        None => None,
    };
    let device = match device_id {
        Some(id) => policies::get(&platform.db, PolicyScope::Device(id)).await?,
        None => None,
    };
    let policy = EffectivePolicy::resolve(
        global.as_ref().map(|p| &p.settings),
        api_key.as_ref().map(|p| &p.settings),
        device.as_ref().map(|p| &p.settings),
    );
    Ok(Effective { api_key_id, device_id, policy, global, api_key, device })
}

/// Parses the text entries, naming the field and the entry that is wrong.
pub fn parse(input: SettingsInput) -> Result<PolicySettings, ServiceError> {
    let mut settings = PolicySettings {
        timestamp_window_seconds: input.timestamp_window_seconds,
        requests_per_minute: input.requests_per_minute,
        tokens_per_day: input.tokens_per_day,
        allowed_models: input.allowed_models,
        require_approval: input.require_approval,
        ..PolicySettings::default()
    };
    if let Some(entries) = input.ip_allow_list {
        let mut nets = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let text = entry.trim();
            let net = match text.parse() {
                Ok(net) => net,
                // A bare address is the network of just that address.
                Err(_) => {
                    text.parse::<std::net::IpAddr>().map(Into::into).map_err(|_| ServiceError::Invalid {
                        field: "ipAllowList",
                        code: "invalid_ip_allow_list",
                        message: format!(
                            "entry {index} ({text:?}) is not an IPv4 or IPv6 network in CIDR form"
                        ),
                    })?
                }
            };
            nets.push(net);
        }
        settings.ip_allow_list = Some(nets);
    }
    if let Some(entries) = input.allowed_providers {
        let providers = entries
            .iter()
            .enumerate()
            .map(|(index, p)| {
                p.trim().parse().map_err(|e| ServiceError::Invalid {
                    field: "allowedProviders",
                    code: "invalid_allowed_providers",
                    message: format!("entry {index}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        settings.allowed_providers = Some(providers);
    }
    Ok(settings)
}

/// Names the settings field a domain validation error is about.
fn name_field(err: ServiceError) -> ServiceError {
    match err {
        ServiceError::Refused { code, message } => {
            let field = match code {
                "invalid_timestamp_window_seconds" => "timestampWindowSeconds",
                "invalid_requests_per_minute" => "requestsPerMinute",
                "invalid_tokens_per_day" => "tokensPerDay",
                "invalid_ip_allow_list" => "ipAllowList",
                "invalid_allowed_providers" => "allowedProviders",
                "invalid_allowed_models" | "invalid_model_name" => "allowedModels",
                "require_approval_not_applicable" => "requireApproval",
                "empty_policy_override" => "settings",
                _ => return ServiceError::Refused { code, message },
            };
            ServiceError::Invalid { field, code, message }
        }
        other => other,
    }
}

/// A key or device policy is only about a key or device that exists.
async fn ensure_target_exists(platform: &Platform, scope: PolicyScope) -> Result<(), ServiceError> {
    match scope {
        PolicyScope::Global => Ok(()),
        PolicyScope::ApiKey(id) => api_keys::get(&platform.db, id)
            .await?
            .map(drop)
            .ok_or_else(|| ServiceError::not_found("api_key_not_found", format!("there is no API key {id}"))),
        PolicyScope::Device(id) => {
            devices::get(&platform.db, id).await?.map(drop).ok_or_else(|| device_not_found(id))
        }
    }
}

fn device_not_found(id: Uuid) -> ServiceError {
    ServiceError::not_found("device_not_found", format!("there is no device {id}"))
}
