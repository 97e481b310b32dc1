//! `POST /api/v1/keyguard/verify-test`: lets a device check that its signing works. The request
//! goes through the whole gate (signature, nonce, policy, limits) and forwards nothing.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::gate_http;
use crate::startup::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    valid: bool,
    device_id: String,
    key_id: String,
}

pub async fn verify_test(State(state): State<AppState>, request: Request) -> Response {
    match gate_http::admit(&state, request).await {
        Ok((admitted, _)) => Json(Verified {
            valid: true,
            device_id: admitted.device_id.to_string(),
            key_id: admitted.key_id.to_string(),
        })
        .into_response(),
        Err(response) => response,
    }
}
