//! The REST API under `/api/v1`, one module per feature area.

pub mod audit;
pub mod audit_export;
pub mod audit_integrity;
pub mod auth;
pub mod context;
pub mod devices;
pub mod error;
pub mod health;
pub mod history;
pub mod json;
pub mod keys;
pub mod openapi;
pub mod pagination;
pub mod policies;
pub mod users;

use axum::Router;
use axum::middleware::from_fn_with_state;

use crate::startup::AppState;
pub use context::RequestContext;
pub use error::ApiError;

/// All `/api/v1` routes. Unknown paths under the prefix answer a JSON 404, not the dashboard.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(auth::router())
        .merge(audit::router())
        .merge(history::router())
        .merge(devices::router())
        .merge(keys::router())
        .merge(policies::router())
        .merge(users::router())
        // A route layer sees the matched route pattern, which is what the metrics label with.
        .route_layer(from_fn_with_state(state, crate::metrics::track))
        .fallback(|| async { ApiError::not_found("not_found", "no such route") })
}
