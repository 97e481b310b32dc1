//! The one error type of the request path: each variant maps to a status code and a stable
//! `snake_case` code that clients (and the dashboard's translations) rely on.
//!
//! Internal causes are logged with the request's context and never returned: the body says what
//! the caller can act on, nothing about our storage or libraries.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cqrs_es::AggregateError;
use domain::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The input is malformed; `fields` names each bad field and why.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, fields: BTreeMap<String, String> },
    #[error("authentication is required")]
    Unauthorized,
    /// Authentication was attempted and failed, for a reason the client may know.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    #[error("your role does not allow this")]
    Forbidden,
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The request conflicts with the current state (including a concurrent change).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Well-formed, but the rules refuse it.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("too many requests; retry in {retry_after_secs} s")]
    TooManyRequests { code: &'static str, retry_after_secs: u64 },
    #[error("the service is not available right now")]
    Unavailable,
    /// An internal failure: logged with its cause, answered without it.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `device_revoked`.
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// Per-field problems of a bad request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl ApiError {
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound { code, message: message.into() }
    }

    pub fn bad_field(field: &str, problem: impl Into<String>) -> Self {
        let problem = problem.into();
        Self::BadRequest {
            code: "invalid_input",
            message: format!("{field}: {problem}"),
            fields: BTreeMap::from([(field.to_owned(), problem)]),
        }
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Unauthenticated { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// Maps a domain rule's refusal to a response, by the kind its stable code names.
    pub fn from_domain<E: ErrorCode + std::fmt::Display>(err: &E) -> Self {
        let code = err.code();
        let message = err.to_string();
        match classify(code) {
            Kind::NotFound => Self::NotFound { code, message },
            Kind::Invalid => Self::BadRequest { code, message, fields: BTreeMap::new() },
            Kind::Conflict => Self::Conflict { code, message },
            Kind::Refused => Self::Unprocessable { code, message },
        }
    }
}

enum Kind {
    NotFound,
    Invalid,
    Conflict,
    Refused,
}

/// Domain codes follow a naming scheme (`*_not_found`, `invalid_*`, `*_already_*`...); the
/// mapping reads it so that a new domain error gets the right status without touching this file.
fn classify(code: &str) -> Kind {
    const CONFLICT: [&str; 10] = [
        "taken",
        "setup_complete",
        "already",
        "revoked",
        "unchanged",
        "exhausted",
        "reused",
        "duplicate",
        "invalid_transition",
        "disabled",
    ];
    if code.ends_with("_not_found") {
        Kind::NotFound
    } else if code.starts_with("invalid_transition") || CONFLICT.iter().any(|w| code.contains(w)) {
        Kind::Conflict
    } else if code.starts_with("invalid_")
        || code.starts_with("malformed_")
        || code.ends_with("_required")
        || code.ends_with("_not_allowed")
        || code.ends_with("_too_large")
        || code.ends_with("_mismatch")
        || code.contains("not_in_future")
    {
        Kind::Invalid
    } else {
        Kind::Refused
    }
}

impl<E: ErrorCode + std::error::Error> From<AggregateError<E>> for ApiError {
    fn from(err: AggregateError<E>) -> Self {
        match err {
            AggregateError::UserError(domain) => Self::from_domain(&domain),
            AggregateError::AggregateConflict => Self::Conflict {
                code: "concurrent_modification",
                message: "someone else changed this at the same moment; reload and try again".into(),
            },
            AggregateError::DatabaseConnectionError(cause) => {
                tracing::error!(error = %cause, "event store unreachable");
                Self::Unavailable
            }
            other => Self::Internal(anyhow::anyhow!("event store: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = ?cause, "request failed");
        }
        let status = self.status();
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        let fields = match &self {
            Self::BadRequest { fields, .. } => fields.clone(),
            _ => BTreeMap::new(),
        };
        let body = ErrorBody { error: self.code().to_owned(), message: self.to_string(), fields };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<services::error::ServiceError> for ApiError {
    fn from(err: services::error::ServiceError) -> Self {
        use services::error::ServiceError as S;
        match err {
            S::Refused { code, message } => match classify(code) {
                Kind::NotFound => Self::NotFound { code, message },
                Kind::Invalid => Self::BadRequest { code, message, fields: BTreeMap::new() },
                Kind::Conflict => Self::Conflict { code, message },
                Kind::Refused => Self::Unprocessable { code, message },
            },
            S::Invalid { field, code, message } => Self::BadRequest {
                code,
                message: format!("{field}: {message}"),
                fields: BTreeMap::from([(field.to_owned(), message)]),
            },
            S::NotFound { code, message } => Self::NotFound { code, message },
            S::Concurrent => Self::Conflict {
                code: "concurrent_modification",
                message: "someone else changed this at the same moment; reload and try again".into(),
            },
            S::Unavailable(cause) => {
                tracing::error!(%cause, "dependency unavailable");
                Self::Unavailable
            }
            S::Internal(cause) => Self::Internal(anyhow::anyhow!(cause)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_codes_map_to_the_status_their_name_promises() {
        let cases = [
            ("device_not_found", StatusCode::NOT_FOUND),
            ("invalid_label", StatusCode::BAD_REQUEST),
            ("key_id_mismatch", StatusCode::BAD_REQUEST),
            ("metadata_too_large", StatusCode::BAD_REQUEST),
            ("azure_setting_required", StatusCode::BAD_REQUEST),
            ("expiry_not_in_future", StatusCode::BAD_REQUEST),
            ("invalid_transition", StatusCode::CONFLICT),
            ("device_already_enrolled", StatusCode::CONFLICT),
            ("device_revoked", StatusCode::CONFLICT),
            ("role_unchanged", StatusCode::CONFLICT),
            ("enrollment_code_exhausted", StatusCode::CONFLICT),
            ("user_disabled", StatusCode::CONFLICT),
            ("email_taken", StatusCode::CONFLICT),
            ("setup_complete", StatusCode::CONFLICT),
            ("enrollment_code_expired", StatusCode::UNPROCESSABLE_ENTITY),
            ("self_modification_forbidden", StatusCode::UNPROCESSABLE_ENTITY),
        ];
        for (code, status) in cases {
            let kind = match classify(code) {
                Kind::NotFound => StatusCode::NOT_FOUND,
                Kind::Invalid => StatusCode::BAD_REQUEST,
                Kind::Conflict => StatusCode::CONFLICT,
                Kind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
            };
            assert_eq!(kind, status, "{code}");
        }
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let response =
            ApiError::TooManyRequests { code: "rate_limited", retry_after_secs: 7 }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
