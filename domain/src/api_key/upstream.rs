//! Where a key's requests go: an optional base URL and, for Azure OpenAI, the deployment.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::error::ErrorCode;

/// Longest accepted base URL, in bytes.
pub const MAX_BASE_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("The base URL is not an absolute URL.")]
    NotAbsolute,
    #[error("The base URL must use https (or http to a loopback address), not {scheme:?}.")]
    UnsupportedScheme { scheme: String },
    #[error("The base URL must not carry a user name or password.")]
    HasCredentials,
    #[error("The base URL must not have a query or a fragment.")]
    HasQueryOrFragment,
    #[error("The base URL is longer than {MAX_BASE_URL_LEN} bytes.")]
    TooLong,
}

impl ErrorCode for BaseUrlError {
    fn code(&self) -> &'static str {
        match self {
            BaseUrlError::NotAbsolute => "base_url_not_absolute",
            BaseUrlError::UnsupportedScheme { .. } => "base_url_unsupported_scheme",
            BaseUrlError::HasCredentials => "base_url_has_credentials",
            BaseUrlError::HasQueryOrFragment => "base_url_has_query",
            BaseUrlError::TooLong => "base_url_too_long",
        }
    }
}

/// The upstream a key's requests are sent to instead of the provider's default endpoint.
///
/// The provider secret travels with every request to it, so plain http is only allowed to a
/// loopback host (a local gateway or a test server); anything that leaves the machine is https.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(input: &str) -> Result<Self, BaseUrlError> {
        let input = input.trim();
        if input.len() > MAX_BASE_URL_LEN {
            return Err(BaseUrlError::TooLong);
        }
        let url = Url::parse(input).map_err(|_| BaseUrlError::NotAbsolute)?;
        let host = url.host().ok_or(BaseUrlError::NotAbsolute)?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            scheme => {
                return Err(BaseUrlError::UnsupportedScheme { scheme: scheme.to_owned() });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BaseUrlError::HasCredentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(BaseUrlError::HasQueryOrFragment);
        }
        Ok(Self(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = BaseUrlError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<BaseUrl> for String {
    fn from(u: BaseUrl) -> Self {
        u.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    #[error(
        "The Azure deployment name must be 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit."
    )]
    InvalidDeployment,
    #[error("The Azure API version must look like 2024-10-21 or 2025-01-01-preview, with a real date.")]
    InvalidApiVersion,
}

impl ErrorCode for AzureError {
    fn code(&self) -> &'static str {
        match self {
            AzureError::InvalidDeployment => "invalid_azure_deployment",
            AzureError::InvalidApiVersion => "invalid_azure_api_version",
        }
    }
}

/// The Azure OpenAI deployment and API version a key targets; both become parts of the upstream
/// URL, hence the strict character sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AzureParts", into = "AzureParts")]
pub struct AzureDeployment {
    deployment: String,
    api_version: String,
}

#[derive(Serialize, Deserialize)]
struct AzureParts {
    deployment: String,
    api_version: String,
}

impl AzureDeployment {
    pub fn new(deployment: &str, api_version: &str) -> Result<Self, AzureError> {
        let (deployment, api_version) = (deployment.trim(), api_version.trim());
        let deployment_ok = (1..=64).contains(&deployment.len())
            && deployment.starts_with(|c: char| c.is_ascii_alphanumeric())
            && deployment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !deployment_ok {
            return Err(AzureError::InvalidDeployment);
        }
        if !api_version.is_ascii() {
            return Err(AzureError::InvalidApiVersion);
        }
        let (date, suffix) = api_version.split_at(api_version.len().min(10));
        let date_ok = date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            })
            && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok();
        if !date_ok || !matches!(suffix, "" | "-preview") {
            return Err(AzureError::InvalidApiVersion);
        }
        Ok(Self { deployment: deployment.to_owned(), api_version: api_version.to_owned() })
    }

    pub fn deployment(&self) -> &str {
        &self.deployment
    }
    pub fn api_version(&self) -> &str {
        &self.api_version
    }
}

impl TryFrom<AzureParts> for AzureDeployment {
    type Error = AzureError;
    fn try_from(p: AzureParts) -> Result<Self, Self::Error> {
        Self::new(&p.deployment, &p.api_version)
    }
}

impl From<AzureDeployment> for AzureParts {
    fn from(a: AzureDeployment) -> Self {
        Self { deployment: a.deployment, api_version: a.api_version }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_accepts_https_and_loopback_http() {
        for ok in [
            "https://api.openai.com",
            "https://my-resource.openai.azure.com/",
            "https://gateway.example.com:8443/llm/v1",
            "http://localhost:8080",
            "http://127.0.0.1:9000/v1",
            "http://[::1]:9000",
        ] {
            assert!(BaseUrl::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(BaseUrl::parse(" https://api.openai.com ").unwrap().as_str(), "https://api.openai.com/");
    }

    #[test]
    fn base_url_refusals_are_precise() {
        assert_eq!(BaseUrl::parse("api.openai.com"), Err(BaseUrlError::NotAbsolute));
        assert_eq!(BaseUrl::parse("/v1"), Err(BaseUrlError::NotAbsolute));
        assert_eq!(BaseUrl::parse(""), Err(BaseUrlError::NotAbsolute));
        assert_eq!(
            BaseUrl::parse("http://api.openai.com"),
            Err(BaseUrlError::UnsupportedScheme { scheme: "http".into() })
        );
        assert_eq!(
            BaseUrl::parse("ftp://files.example.com"),
            Err(BaseUrlError::UnsupportedScheme { scheme: "ftp".into() })
        );
        assert_eq!(BaseUrl::parse("file:///etc/passwd"), Err(BaseUrlError::NotAbsolute));
        assert_eq!(BaseUrl::parse("https://user:pw@api.example.com"), Err(BaseUrlError::HasCredentials));
        assert_eq!(BaseUrl::parse("https://api.example.com/?key=1"), Err(BaseUrlError::HasQueryOrFragment));
        assert_eq!(BaseUrl::parse("https://api.example.com/#x"), Err(BaseUrlError::HasQueryOrFragment));
        let long = format!("https://example.com/{}", "a".repeat(MAX_BASE_URL_LEN));
        assert_eq!(BaseUrl::parse(&long), Err(BaseUrlError::TooLong));
        assert!(serde_json::from_str::<BaseUrl>("\"http://example.com\"").is_err());
    }

    #[test]
    fn azure_deployment_and_version_are_checked() {
        let a = AzureDeployment::new("gpt-4o-prod", "2024-10-21").unwrap();
        assert_eq!((a.deployment(), a.api_version()), ("gpt-4o-prod", "2024-10-21"));
        assert!(AzureDeployment::new("gpt4", "2025-01-01-preview").is_ok());
        for bad in ["", "-x", "a/b", "a b", "..", &"a".repeat(65)] {
            assert_eq!(
                AzureDeployment::new(bad, "2024-10-21"),
                Err(AzureError::InvalidDeployment),
                "{bad:?}"
            );
        }
        for bad in [
            "",
            "2024-13-01",
            "2024-02-30",
            "24-10-21",
            "2024-10-21-beta",
            "latest",
            "2024-10-2x",
            "2024-10-2é",
        ] {
            assert_eq!(AzureDeployment::new("gpt4", bad), Err(AzureError::InvalidApiVersion), "{bad:?}");
        }
    }
}
