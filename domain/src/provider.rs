//! The LLM providers KeyGuard can front.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// An upstream LLM provider. Serialized in lowercase, as the original API and dashboard used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    OpenAi,
    Anthropic,
    Google,
    Azure,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::OpenAi, Provider::Anthropic, Provider::Google, Provider::Azure];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Google => "google",
            Provider::Azure => "azure",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a provider name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderParseError {
    #[error("The provider must not be empty; expected one of openai, anthropic, google, azure.")]
    Empty,
    #[error("Unknown provider {value:?}; expected one of openai, anthropic, google, azure.")]
    Unknown { value: String },
}

impl ErrorCode for ProviderParseError {
    fn code(&self) -> &'static str {
        "invalid_provider"
    }
}

/// Exact lowercase names only, the same set serde accepts, so a value has one spelling everywhere.
impl FromStr for Provider {
    type Err = ProviderParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ProviderParseError::Empty);
        }
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ProviderParseError::Unknown { value: s.chars().take(64).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_lowercase_names() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Provider>(&format!("\"{p}\"")).unwrap(), p);
        }
    }

    #[test]
    fn parse_errors_are_precise() {
        assert_eq!("".parse::<Provider>(), Err(ProviderParseError::Empty));
        assert_eq!("OpenAI".parse::<Provider>(), Err(ProviderParseError::Unknown { value: "OpenAI".into() }));
        assert_eq!(
            "other".parse::<Provider>().unwrap_err().to_string(),
            "Unknown provider \"other\"; expected one of openai, anthropic, google, azure."
        );
        assert!(serde_json::from_str::<Provider>("\"OPENAI\"").is_err());
    }
}
