//! The device-facing side of KeyGuard: enrollment, the signature check route and the signed
//! proxy, all under `/api/v1`.

pub mod enroll;
pub mod forward;
pub mod gate_http;
mod metered;
pub mod overload;
pub mod providers;
pub mod verify_test;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{any, post};

use crate::startup::AppState;

/// The device-facing routes, to be nested under `/api/v1`; counted in `/metrics` like the rest.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/keyguard/enroll", post(enroll::enroll).layer(from_fn(crate::startup::run_to_completion)))
        // Any method reaches the gate, so that a request signed for another method is refused
        // (and audited) as a bad signature rather than a 405.
        .route("/keyguard/verify-test", any(verify_test::verify_test))
        // `/proxy/{provider}/{path}` too: the handler reads the first segment itself.
        .route("/proxy/{*path}", any(forward::proxy).layer(overload::limit(state.proxy.max_in_flight())))
        .route_layer(from_fn_with_state(state, crate::metrics::track))
}
