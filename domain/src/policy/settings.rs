//! One level's policy settings, and their validation.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{MAX_LIST_ENTRIES, MAX_MODEL_NAME_CHARS, MAX_TIMESTAMP_WINDOW_SECONDS, PolicyError, PolicyScope};
use crate::provider::Provider;

/// The settings of one level. `None` means "not set here": a less specific level, or the
/// default, decides. Unknown fields are refused so that a misspelt restriction (say
/// `ip_whitelist`) cannot be silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// How far a request's timestamp may be from the server's clock, in seconds (1..=900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_window_seconds: Option<u32>,
    /// Requests per minute (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Provider tokens per day (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// The networks requests may come from (IPv4 and IPv6 CIDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allow_list: Option<Vec<IpNet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_providers: Option<Vec<Provider>>,
    /// Exact model names, as sent in the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    /// Whether newly enrolled devices wait for approval. Not settable per device: it is decided
    /// before the device exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<bool>,
}

impl PolicySettings {
    pub fn is_empty(&self) -> bool {
        self == &PolicySettings::default()
    }

    /// `self` with every field that `specific` names replaced by its value.
    pub fn overlaid_with(&self, specific: &PolicySettings) -> PolicySettings {
        PolicySettings {
            timestamp_window_seconds: specific.timestamp_window_seconds.or(self.timestamp_window_seconds),
            requests_per_minute: specific.requests_per_minute.or(self.requests_per_minute),
            tokens_per_day: specific.tokens_per_day.or(self.tokens_per_day),
            ip_allow_list: specific.ip_allow_list.clone().or_else(|| self.ip_allow_list.clone()),
            allowed_providers: specific.allowed_providers.clone().or_else(|| self.allowed_providers.clone()),
            allowed_models: specific.allowed_models.clone().or_else(|| self.allowed_models.clone()),
            require_approval: specific.require_approval.or(self.require_approval),
        }
    }

    /// Checks every field for `scope` and returns the canonical form: networks with their host
    /// bits cleared, lists sorted and without duplicates, model names trimmed.
    pub fn validated(self, scope: PolicyScope) -> Result<PolicySettings, PolicyError> {
        if let Some(value) = self.timestamp_window_seconds
            && !(1..=MAX_TIMESTAMP_WINDOW_SECONDS).contains(&value)
        {
            return Err(PolicyError::InvalidTimestampWindow { value });
        }
        if self.requests_per_minute == Some(0) {
            return Err(PolicyError::InvalidRequestsPerMinute);
        }
        if self.tokens_per_day == Some(0) {
            return Err(PolicyError::InvalidTokensPerDay);
        }
        if matches!(scope, PolicyScope::Device(_)) && self.require_approval.is_some() {
            return Err(PolicyError::RequireApprovalOnDevice);
        }
        let ip_allow_list = self
            .ip_allow_list
            .map(|nets| {
                check_list_size(&nets).map_err(PolicyError::InvalidIpAllowList)?;
                Ok(canonical(nets.into_iter().map(|n| n.trunc()).collect()))
            })
            .transpose()?;
        let allowed_providers = self
            .allowed_providers
            .map(|providers| {
                check_list_size(&providers).map_err(PolicyError::InvalidAllowedProviders)?;
                Ok(canonical(providers))
            })
            .transpose()?;
        let allowed_models = self
            .allowed_models
            .map(|models| {
                check_list_size(&models).map_err(PolicyError::InvalidAllowedModels)?;
                let trimmed = models
                    .iter()
                    .enumerate()
                    .map(|(index, m)| {
                        let m = m.trim();
                        let ok = (1..=MAX_MODEL_NAME_CHARS).contains(&m.len())
                            && m.bytes().all(|b| b.is_ascii_graphic());
                        ok.then(|| m.to_owned()).ok_or(PolicyError::InvalidModelName { index })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(canonical(trimmed))
            })
            .transpose()?;
        Ok(PolicySettings { ip_allow_list, allowed_providers, allowed_models, ..self })
    }
}

/// Why a list was refused; wrapped by the error that names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("must not be empty; leave it unset to allow any")]
    Empty,
    #[error("must have at most {max} entries (got {len})")]
    TooMany { max: usize, len: usize },
}

fn check_list_size<T>(list: &[T]) -> Result<(), ListError> {
    match list.len() {
        0 => Err(ListError::Empty),
        len if len > MAX_LIST_ENTRIES => Err(ListError::TooMany { max: MAX_LIST_ENTRIES, len }),
        _ => Ok(()),
    }
}

fn canonical<T: Ord>(mut list: Vec<T>) -> Vec<T> {
    list.sort();
    list.dedup();
    list
}
