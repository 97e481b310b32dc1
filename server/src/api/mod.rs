//! The REST API under `/api/v1`, one module per feature area.

pub mod error;
mod health;

use axum::Router;

use crate::startup::AppState;
pub use error::ApiError;

/// All `/api/v1` routes. Unknown paths under the prefix answer a JSON 404, not the dashboard.
pub fn router() -> Router<AppState> {
    Router::new().merge(health::router()).fallback(|| async { ApiError::NotFound })
}
