//! Which level a policy applies at, and the aggregate id it lives under.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum PolicyScope {
    Global,
    ApiKey(Uuid),
    Device(Uuid),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "A policy aggregate id is \"global\", \"api_key:<uuid>\" or \"device:<uuid>\" (lowercase, hyphenated)."
)]
pub struct PolicyScopeError;

impl ErrorCode for PolicyScopeError {
    fn code(&self) -> &'static str {
        "invalid_policy_scope"
    }
}

impl PolicyScope {
    /// The id of the Policy aggregate for this scope.
    pub fn aggregate_id(&self) -> String {
        match self {
            PolicyScope::Global => "global".to_owned(),
            PolicyScope::ApiKey(id) => format!("api_key:{}", id.as_hyphenated()),
            PolicyScope::Device(id) => format!("device:{}", id.as_hyphenated()),
        }
    }

    /// The inverse of [`PolicyScope::aggregate_id`]; accepts only its exact output.
    pub fn from_aggregate_id(s: &str) -> Result<Self, PolicyScopeError> {
        let uuid = |text: &str| {
            Uuid::try_parse(text)
                .ok()
                .filter(|id| id.as_hyphenated().to_string() == text)
                .ok_or(PolicyScopeError)
        };
        if s == "global" {
            Ok(PolicyScope::Global)
        } else if let Some(id) = s.strip_prefix("api_key:") {
            uuid(id).map(PolicyScope::ApiKey)
        } else if let Some(id) = s.strip_prefix("device:") {
            uuid(id).map(PolicyScope::Device)
        } else {
            Err(PolicyScopeError)
        }
    }
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.aggregate_id())
    }
}
