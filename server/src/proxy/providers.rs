//! What differs between the four providers: where a request goes (base URL, Azure's deployment
//! path and `api-version`) and how the provider key travels (each provider's own header, never
//! the URL).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use domain::provider::Provider;
use services::gate::Upstream;

use crate::config::UpstreamConfig;

pub const OPENAI_DEFAULT_BASE: &str = "https://api.openai.com";
pub const ANTHROPIC_DEFAULT_BASE: &str = "https://api.anthropic.com";
pub const GOOGLE_DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";
/// Sent to Anthropic when the client did not choose a version itself.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Used for Azure when neither the key nor the client names an `api-version`.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// The headers a provider reads its key from; a client never gets to send one of them.
pub const PROVIDER_KEY_HEADERS: [&str; 3] = ["x-api-key", "api-key", "x-goog-api-key"];

/// Why a request cannot be addressed to its provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no base URL is configured for {0}: set the key's baseUrl or KEYGUARD_{upper}_BASE_URL", upper = .0.as_str().to_uppercase())]
    NoBaseUrl(Provider),
    #[error("the Azure key names no deployment")]
    NoAzureDeployment,
}

/// The provider's public endpoint, where it has one (an Azure resource is always the customer's).
pub fn default_base(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::OpenAi => Some(OPENAI_DEFAULT_BASE),
        Provider::Anthropic => Some(ANTHROPIC_DEFAULT_BASE),
        Provider::Google => Some(GOOGLE_DEFAULT_BASE),
        Provider::Azure => None,
    }
}

/// The upstream URL: the key's base URL, else the configured one, else the public default;
/// followed by `path` (as received, still percent-encoded, starting with `/`) and `query`.
/// Azure requests go to `{base}/openai/deployments/{deployment}{path}?…&api-version=…`.
///
/// Clients send the provider's own path, version included (`/api/v1/proxy/v1/chat/completions`
/// → `/v1/chat/completions`), while operators often copy a base URL that already ends in that
/// version (`https://api.openai.com/v1`, the OpenAI SDKs' default). The two are joined by
/// `join`, so such a base reaches `/v1/chat/completions`, not `/v1/v1/chat/completions`.
pub fn upstream_url(
    upstream: &Upstream,
    configured: &UpstreamConfig,
    path: &str,
    query: Option<&str>,
) -> Result<String, TargetError> {
    let provider = upstream.provider;
    let base = upstream
        .base_url
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .or_else(|| configured.base_url(provider))
        .or_else(|| default_base(provider))
        .ok_or(TargetError::NoBaseUrl(provider))?
        .trim_end_matches('/');
    let query = query.filter(|q| !q.is_empty());
    if provider != Provider::Azure {
        let url = join(base, path);
        return Ok(match query {
            Some(query) => format!("{url}?{query}"),
            None => url,
        });
    }
    let deployment = upstream
        .azure_deployment
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or(TargetError::NoAzureDeployment)?;
    // The key's api-version wins over the client's; without one, the client's, else a default.
    let client_version =
        query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("api-version="));
    let version = upstream
        .azure_api_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(encode)
        .or_else(|| client_version.map(str::to_owned))
        .unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_owned());
    let mut pairs: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty() && *pair != "api-version" && !pair.starts_with("api-version="))
        .collect();
    let version_pair = format!("api-version={version}");
    pairs.push(&version_pair);
    let url = join(base, &format!("/openai/deployments/{}{path}", encode(deployment)));
    Ok(format!("{url}?{}", pairs.join("&")))
}

/// Appends `path` to `base` (no trailing `/`), writing once the whole segments that end the
/// base's path and also begin `path`: `…/v1` + `/v1/models` is `…/v1/models`, and an Azure
/// base ending in `/openai` + `/openai/deployments/…` keeps one `/openai`. The longest such
/// overlap is taken; a segment the client repeats beyond it (`/v1/v1/…`) is kept.
fn join(base: &str, path: &str) -> String {
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base_path = base[authority_end..].find('/').map_or("", |i| &base[authority_end + i..]);
    let base_segments: Vec<&str> = base_path.split('/').skip(1).collect();
    let path_segments: Vec<&str> = path.split('/').skip(1).collect();
    let overlap = (1..=base_segments.len().min(path_segments.len()))
        .rev()
        .find(|&n| base_segments[base_segments.len() - n..] == path_segments[..n])
        .unwrap_or(0);
    if overlap == 0 {
        return format!("{base}{path}");
    }
    // Skip the overlapping segments of `path`, keeping the `/` that starts what follows them.
    let skipped: usize = path_segments[..overlap].iter().map(|s| s.len() + 1).sum();
    format!("{base}{}", &path[skipped..])
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a path segment or value).
fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Puts the provider key where the provider reads it, marked sensitive so that it is never
/// logged; adds Anthropic's version header unless the client sent one.
pub fn inject_key(provider: Provider, secret: &str, headers: &mut HeaderMap) -> Result<(), InvalidKey> {
    let (name, value) = match provider {
        Provider::OpenAi => (axum::http::header::AUTHORIZATION, format!("Bearer {secret}")),
        Provider::Anthropic => (HeaderName::from_static("x-api-key"), secret.to_owned()),
        Provider::Google => (HeaderName::from_static("x-goog-api-key"), secret.to_owned()),
        Provider::Azure => (HeaderName::from_static("api-key"), secret.to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| InvalidKey)?;
    value.set_sensitive(true);
    headers.insert(name, value);
    if provider == Provider::Anthropic && !headers.contains_key("anthropic-version") {
        headers.insert("anthropic-version", HeaderValue::from_static(ANTHROPIC_VERSION));
    }
    Ok(())
}

/// The stored provider key cannot be sent as a header (a control character in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the provider key is not a valid header value")]
pub struct InvalidKey;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use secrecy::zeroize::Zeroizing;

    use super::*;

    fn upstream(provider: Provider, base_url: Option<&str>) -> Upstream {
        Upstream {
            provider,
            base_url: base_url.map(str::to_owned),
            azure_deployment: None,
            azure_api_version: None,
            secret: Arc::new(Zeroizing::new("sk-secret".to_owned())),
        }
    }

    fn configured() -> UpstreamConfig {
        UpstreamConfig {
            openai_base_url: None,
            anthropic_base_url: Some("https://anthropic.internal".to_owned()),
            google_base_url: None,
            azure_base_url: Some("https://contoso.openai.azure.com".to_owned()),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_in_flight: 16,
        }
    }

    #[test]
    fn the_key_base_wins_then_the_configured_then_the_default() {
        let c = configured();
        let url = |u: &Upstream| upstream_url(u, &c, "/v1/messages", Some("beta=true")).unwrap();
        assert_eq!(
            url(&upstream(Provider::Anthropic, Some("http://127.0.0.1:9/"))),
            "http://127.0.0.1:9/v1/messages?beta=true"
        );
        assert_eq!(
            url(&upstream(Provider::Anthropic, None)),
            "https://anthropic.internal/v1/messages?beta=true"
        );
        assert_eq!(url(&upstream(Provider::OpenAi, None)), "https://api.openai.com/v1/messages?beta=true");
        assert_eq!(
            upstream_url(&upstream(Provider::Google, None), &c, "/v1beta/models/g:generateContent", None)
                .unwrap(),
            "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent"
        );
    }

    #[test]
    fn a_version_the_base_already_ends_in_is_written_once() {
        let c = configured();
        let url = |base: &str, path: &str| {
            upstream_url(&upstream(Provider::OpenAi, Some(base)), &c, path, Some("limit=5")).unwrap()
        };
        assert_eq!(
            url("https://api.openai.com/v1", "/v1/chat/completions"),
            "https://api.openai.com/v1/chat/completions?limit=5"
        );
        assert_eq!(
            url("https://api.openai.com/v1/", "/v1/models"),
            "https://api.openai.com/v1/models?limit=5"
        );
        // A client that leaves the version to the base gets it once too.
        assert_eq!(
            url("https://api.openai.com/v1", "/chat/completions"),
            "https://api.openai.com/v1/chat/completions?limit=5"
        );
        assert_eq!(url("https://gw.example/openai/v1", "/v1/x"), "https://gw.example/openai/v1/x?limit=5");
        assert_eq!(
            url("https://gw.example/openai/v1", "/openai/v1/x"),
            "https://gw.example/openai/v1/x?limit=5"
        );
        // Only whole segments overlap, and only where the base ends.
        assert_eq!(url("https://gw.example/v1", "/v10/x"), "https://gw.example/v1/v10/x?limit=5");
        assert_eq!(url("https://gw.example/v1/proxy", "/v1/x"), "https://gw.example/v1/proxy/v1/x?limit=5");
        assert_eq!(url("https://gw.example/v1", "/v1/v1/x"), "https://gw.example/v1/v1/x?limit=5");
        assert_eq!(url("http://127.0.0.1:9", "/v1/x"), "http://127.0.0.1:9/v1/x?limit=5");
        assert_eq!(url("http://127.0.0.1:9/v1", "/"), "http://127.0.0.1:9/v1/?limit=5");
        assert_eq!(url("http://127.0.0.1:9/v1", "/v1"), "http://127.0.0.1:9/v1?limit=5");
        assert_eq!(
            upstream_url(
                &upstream(Provider::Google, Some("https://generativelanguage.googleapis.com/v1beta")),
                &c,
                "/v1beta/models/g:streamGenerateContent",
                Some("alt=sse"),
            )
            .unwrap(),
            "https://generativelanguage.googleapis.com/v1beta/models/g:streamGenerateContent?alt=sse"
        );
        let mut azure = upstream(Provider::Azure, Some("https://contoso.openai.azure.com/openai"));
        azure.azure_deployment = Some("gpt4o".to_owned());
        assert_eq!(
            upstream_url(&azure, &c, "/chat/completions", None).unwrap(),
            "https://contoso.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn azure_uses_the_deployment_and_the_keys_api_version() {
        let mut u = upstream(Provider::Azure, None);
        assert_eq!(
            upstream_url(&u, &configured(), "/chat/completions", None),
            Err(TargetError::NoAzureDeployment)
        );
        u.azure_deployment = Some("gpt 4o".to_owned());
        assert_eq!(
            upstream_url(&u, &configured(), "/chat/completions", Some("a=1&api-version=old&b=2")).unwrap(),
            "https://contoso.openai.azure.com/openai/deployments/gpt%204o/chat/completions?a=1&b=2&api-version=old"
        );
        u.azure_api_version = Some("2024-06-01".to_owned());
        assert_eq!(
            upstream_url(&u, &configured(), "/chat/completions", Some("a=1&api-version=old")).unwrap(),
            "https://contoso.openai.azure.com/openai/deployments/gpt%204o/chat/completions?a=1&api-version=2024-06-01"
        );
        let mut c = configured();
        c.azure_base_url = None;
        assert_eq!(upstream_url(&u, &c, "/x", None), Err(TargetError::NoBaseUrl(Provider::Azure)));
        assert_eq!(
            upstream_url(&upstream(Provider::Azure, None), &c, "/x", None).unwrap_err().to_string(),
            "no base URL is configured for azure: set the key's baseUrl or KEYGUARD_AZURE_BASE_URL"
        );
    }

    #[test]
    fn each_provider_reads_its_own_header() {
        let cases = [
            (Provider::OpenAi, "authorization", "Bearer sk-secret"),
            (Provider::Anthropic, "x-api-key", "sk-secret"),
            (Provider::Google, "x-goog-api-key", "sk-secret"),
            (Provider::Azure, "api-key", "sk-secret"),
        ];
        for (provider, header, value) in cases {
            let mut headers = HeaderMap::new();
            inject_key(provider, "sk-secret", &mut headers).unwrap();
            assert_eq!(headers[header], value);
            assert!(headers[header].is_sensitive());
        }
        let mut headers = HeaderMap::new();
        inject_key(Provider::Anthropic, "k", &mut headers).unwrap();
        assert_eq!(headers["anthropic-version"], ANTHROPIC_VERSION);
        headers.insert("anthropic-version", HeaderValue::from_static("2099-01-01"));
        inject_key(Provider::Anthropic, "k", &mut headers).unwrap();
        assert_eq!(headers["anthropic-version"], "2099-01-01");
        assert_eq!(inject_key(Provider::OpenAi, "bad\nkey", &mut headers), Err(InvalidKey));
    }
}
