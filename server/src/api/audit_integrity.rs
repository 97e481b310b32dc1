//! `/api/v1/audit/verify` and `/api/v1/audit/public-key`: proof that the event history was not
//! modified, and the key auditors check the signed checkpoints with.

use axum::Json;
use axum::extract::State;
use services::integrity::{PublicKey, VerifyReport};

use crate::api::ApiError;
use crate::api::auth::Authorized;
use crate::api::auth::perm::ReadAudit;
use crate::startup::AppState;

/// Recompute every event's hash chain and compare the store with the latest signed checkpoint.
/// Answers 200 whether or not the history holds: `ok` says which, `firstProblem` where.
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, description = "`{ok, events, chains, unchained, problems, firstProblem, checkpoint}`"),
        (status = 403, body = crate::api::error::ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    _user: Authorized<ReadAudit>,
) -> Result<Json<VerifyReport>, ApiError> {
    let report = state.platform.integrity.verify().await.map_err(ApiError::internal)?;
    if !report.ok {
        tracing::warn!(problems = report.problems, first = ?report.first_problem, "the event history does not verify");
    }
    Ok(Json(report))
}

/// The Ed25519 key that signs the checkpoints (raw base64 and PEM). Public by nature: anyone
/// holding an exported checkpoint can check it.
#[utoipa::path(
    get,
    path = "/api/v1/audit/public-key",
    tag = "audit",
    security(()),
    responses((status = 200, description = "`{algorithm, keyId, publicKey, pem}`"))
)]
pub async fn public_key(State(state): State<AppState>) -> Json<PublicKey> {
    Json(state.platform.integrity.public_key())
}
