//! The proxy's gate: decides, from memory, whether a kg-v1 signed request may pass, and hands the
//! forwarder what it needs to call the provider. Nothing here forwards anything.

use std::net::IpAddr;
use std::sync::Arc;

use domain::protocol::KeyId;
use domain::provider::Provider;
use uuid::Uuid;
use zeroize::Zeroizing;

/// A request as received, before any check: what the verifier reads.
#[derive(Debug, Clone, Copy)]
pub struct IncomingRequest<'a> {
    /// Upper- or lower-case; the canonical string upper-cases it.
    pub method: &'a str,
    /// The request target exactly as received, including `/api/v1` and the query.
    pub path_and_query: &'a str,
    /// Every header as (name, value); names in any case. Non-UTF-8 values are left out.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The client address (socket peer, or trusted proxy's `X-Forwarded-For`).
    pub client_ip: IpAddr,
}

/// Where and how to reach the provider for an admitted request.
#[derive(Clone)]
pub struct Upstream {
    pub provider: Provider,
    /// The key's `baseUrl`, or `None` for the provider's default (or its configured override).
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    /// The decrypted provider key, shared with the cache and wiped when the last copy drops.
    pub secret: Arc<Zeroizing<String>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("azure_deployment", &self.azure_deployment)
            .field("azure_api_version", &self.azure_api_version)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub api_key_id: Uuid,
    pub device_id: Uuid,
    pub key_id: KeyId,
    pub upstream: Upstream,
    /// The model named in the JSON body, when there is one (for policy and usage).
    pub model: Option<String>,
}
