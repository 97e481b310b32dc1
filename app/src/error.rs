//! What a server function answers instead of a result. Every variant carries a stable code that
//! the pages translate (`errors.<code>` in the locales), so a message is never shown in English to
//! an Arabic reader.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Not signed in, or the session ended.
    #[error("sign in to continue")]
    Unauthorized,
    /// Signed in, but the role does not allow this.
    #[error("your role does not allow this")]
    Forbidden,
    /// The input or the current state refuses the request; `field` names the input at fault.
    #[error("{message}")]
    Refused { code: String, message: String, field: Option<String> },
    #[error("{message}")]
    NotFound { code: String, message: String },
    /// Too many attempts; try again after `retry_after_seconds`.
    #[error("too many attempts; retry in {retry_after_seconds} s")]
    Throttled { retry_after_seconds: u64 },
    #[error("the service is not available right now")]
    Unavailable,
    #[error("something went wrong on the server")]
    Internal,
    /// The call did not reach the server or its answer could not be read.
    #[error("{0}")]
    Transport(String),
}

impl AppError {
    /// The stable code the translations are keyed by.
    pub fn code(&self) -> &str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Refused { code, .. } | Self::NotFound { code, .. } => code,
            Self::Throttled { .. } => "login_throttled",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Transport(_) => "transport",
        }
    }

    pub fn refused(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Refused { code: code.into(), message: message.into(), field: None }
    }

    pub fn invalid_field(field: &str, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Refused { code: code.into(), message: message.into(), field: Some(field.to_owned()) }
    }

    /// The HTTP status a server function answers with when it fails this way.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::Refused { code, .. } if code == "concurrent_modification" => 409,
            Self::Refused { .. } => 400,
            Self::NotFound { .. } => 404,
            Self::Throttled { .. } => 429,
            Self::Unavailable => 503,
            Self::Internal | Self::Transport(_) => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        Self::Transport(value.to_string())
    }
}
