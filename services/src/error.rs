//! What a use case can answer instead of a result, in terms the API and the dashboard translate:
//! every variant carries a stable `snake_case` code.

use cqrs_es::AggregateError;
use domain::ErrorCode;

use crate::projections::ProjectionError;
use crate::read_models::ReadModelError;
use crate::secrets::SecretsError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A domain rule refused the command; `code` is the domain's (e.g. `device_revoked`).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// One input field is wrong.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// Someone else changed the same thing at the same moment.
    #[error("someone else changed this at the same moment; reload and try again")]
    Concurrent,
    /// A dependency (database, NATS) does not answer.
    #[error("a dependency is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &'static str, problem: &(impl ErrorCode + std::fmt::Display)) -> Self {
        Self::Invalid { field, code: problem.code(), message: problem.to_string() }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound { code, message: message.into() }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused { code, .. } | Self::Invalid { code, .. } | Self::NotFound { code, .. } => code,
            Self::Concurrent => "concurrent_modification",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl<E: ErrorCode + std::error::Error> From<AggregateError<E>> for ServiceError {
    fn from(err: AggregateError<E>) -> Self {
        match err {
            AggregateError::UserError(e) => Self::Refused { code: e.code(), message: e.to_string() },
            AggregateError::AggregateConflict => Self::Concurrent,
            AggregateError::DatabaseConnectionError(e) => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ReadModelError> for ServiceError {
    fn from(err: ReadModelError) -> Self {
        match err {
            ReadModelError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                Self::Unavailable(err.to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ProjectionError> for ServiceError {
    fn from(err: ProjectionError) -> Self {
        Self::Internal(err.to_string())
    }
}

impl From<SecretsError> for ServiceError {
    fn from(err: SecretsError) -> Self {
        // Secret errors name ids only (never material), so the text is safe for the logs.
        Self::Internal(err.to_string())
    }
}
