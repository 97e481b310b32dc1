//! The policy in force for one request: the three levels merged, defaults filled in.

use std::net::IpAddr;

use chrono::TimeDelta;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_TIMESTAMP_WINDOW_SECONDS, PolicySettings};
use crate::provider::Provider;

/// Every field decided. `None` on a limit or list means unlimited or unrestricted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectivePolicy {
    pub timestamp_window_seconds: u32,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_day: Option<u64>,
    pub ip_allow_list: Option<Vec<IpNet>>,
    pub allowed_providers: Option<Vec<Provider>>,
    pub allowed_models: Option<Vec<String>>,
    pub require_approval: bool,
}

impl Default for EffectivePolicy {
    fn default() -> Self {
        Self::resolve(None, None, None)
    }
}

impl EffectivePolicy {
    /// Merges the levels field by field: the device's setting if it names one, else the API
    /// key's, else the global one, else the default.
    pub fn resolve(
        global: Option<&PolicySettings>,
        api_key: Option<&PolicySettings>,
        device: Option<&PolicySettings>,
    ) -> Self {
        let merged = [global, api_key, device]
            .into_iter()
            .flatten()
            .fold(PolicySettings::default(), |acc, level| acc.overlaid_with(level));
        Self {
            timestamp_window_seconds: merged
                .timestamp_window_seconds
                .unwrap_or(DEFAULT_TIMESTAMP_WINDOW_SECONDS),
            requests_per_minute: merged.requests_per_minute,
            tokens_per_day: merged.tokens_per_day,
            ip_allow_list: merged.ip_allow_list,
            allowed_providers: merged.allowed_providers,
            allowed_models: merged.allowed_models,
            require_approval: merged.require_approval.unwrap_or(true),
        }
    }

    pub fn timestamp_window(&self) -> TimeDelta {
        TimeDelta::seconds(i64::from(self.timestamp_window_seconds))
    }

    /// An IPv4 address reaching us over IPv6 (`::ffff:a.b.c.d`) is judged as the IPv4 address,
    /// so a dual-stack listener cannot be used to step around an IPv4 allow-list.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ip_allow_list.as_ref().is_none_or(|nets| nets.iter().any(|net| net.contains(&ip)))
    }

    pub fn allows_provider(&self, provider: Provider) -> bool {
        self.allowed_providers.as_ref().is_none_or(|list| list.contains(&provider))
    }

    /// Exact, case-sensitive match: providers treat model names as case-sensitive identifiers.
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models.as_ref().is_none_or(|list| list.iter().any(|m| m == model))
    }
}
