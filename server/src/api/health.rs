//! Liveness and readiness: `GET /api/v1/health` answers while the process serves;
//! `GET /api/v1/ready` also checks the event store and, when configured, NATS, and says where
//! nonces are being checked.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use services::gate::NonceChecks;
use utoipa::ToSchema;

use crate::startup::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/api/v1/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when every dependency answers, `not_ready` otherwise.
    pub status: &'static str,
    /// `ok` or `down`.
    pub database: &'static str,
    /// `ok`, `down`, or `not_configured` (single node without NATS).
    pub nats: &'static str,
    /// Where signed requests' nonces are checked: `memory` (single node), `nats`,
    /// `nats_and_database` or `database` (while NATS is away from some node), or `unavailable`
    /// (NATS away and the database fallback not in place yet).
    pub nonces: &'static str,
}

/// Readiness: whether this node can serve traffic now.
#[utoipa::path(
    get,
    path = "/api/v1/ready",
    tag = "system",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let database = match state.db.ping().await {
        Ok(()) => "ok",
        Err(err) => {
            tracing::warn!(error = %err, "readiness: database down");
            "down"
        }
    };
    let nats = match &state.nats {
        None => "not_configured",
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => "ok",
            _ => "down",
        },
    };
    let nonces = state.platform.gate.nonce_checks().await;
    // Without NATS a node still serves once the database checks its nonces.
    let ready = database == "ok" && nonces != NonceChecks::Unavailable;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let readiness = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        database,
        nats,
        nonces: nonces.as_str(),
    };
    (status, Json(readiness))
}
