//! The deployment environment an API key serves.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Where the key is used, as the original dashboard labelled keys (lowercase on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub const ALL: [Environment; 3] =
        [Environment::Development, Environment::Staging, Environment::Production];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentParseError {
    #[error("The environment must not be empty; expected one of development, staging, production.")]
    Empty,
    #[error("Unknown environment {value:?}; expected one of development, staging, production.")]
    Unknown { value: String },
}

impl ErrorCode for EnvironmentParseError {
    fn code(&self) -> &'static str {
        "invalid_environment"
    }
}

impl FromStr for Environment {
    type Err = EnvironmentParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(EnvironmentParseError::Empty);
        }
        Environment::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| EnvironmentParseError::Unknown { value: s.chars().take(64).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_lowercase_names_only() {
        for e in Environment::ALL {
            assert_eq!(e.as_str().parse::<Environment>(), Ok(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!("".parse::<Environment>(), Err(EnvironmentParseError::Empty));
        assert_eq!(
            "archived".parse::<Environment>(),
            Err(EnvironmentParseError::Unknown { value: "archived".into() })
        );
        assert!("PRODUCTION".parse::<Environment>().is_err());
    }
}
