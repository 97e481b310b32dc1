//! `POST /api/v1/keyguard/enroll`: a device enrolls its public key into the project its
//! `x-keyguard-api-key` names (see `services::enrollment` for the rules).
//!
//! An unknown, revoked or expired project key gets the generic 401; a wrong body, a keyId that
//! does not match the key, or a bad code gets a 400 naming the problem. Both are audited.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use domain::metadata::Actor;
use serde::Serialize;
use services::caller::Caller;
use services::enrollment::{self, EnrollmentBody, EnrollmentError};

use super::gate_http::unauthorized;
use crate::api::{ApiError, RequestContext};
use crate::startup::AppState;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Enrolled {
    id: String,
    /// Upper-case on this device-facing route, as the original server answers.
    status: String,
    created_at: String,
}

fn bad_request(code: &'static str, message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": code, "message": message }))).into_response()
}

pub async fn enroll(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gate = &state.platform.gate;
    let mut project_keys = headers.get_all("x-keyguard-api-key").iter();
    let project_key = match (project_keys.next().map(|v| v.to_str()), project_keys.next()) {
        (Some(Ok(key)), None) => key.to_owned(),
        _ => {
            gate.audit_enrollment_refusal(
                context.ip,
                "missing_header",
                "no single x-keyguard-api-key".into(),
                None,
                None,
            );
            return unauthorized();
        }
    };
    let parsed = match EnrollmentBody::parse(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            gate.audit_enrollment_refusal(context.ip, "invalid_body", e.to_string(), None, None);
            return bad_request("invalid_body", format!("the body is not a valid enrollment request: {e}"));
        }
    };
    let key_id = parsed.key_id.clone();
    let caller = Caller {
        actor: Actor::system("enrollment"),
        ip: Some(context.ip),
        user_agent: context.user_agent.clone(),
        request_id: Some(context.request_id.clone()).filter(|id| !id.is_empty()),
    };
    let request = parsed.into_request(project_key);
    match enrollment::enroll(&state.platform, &caller, request).await {
        Ok(device) => {
            let body = Enrolled {
                id: device.id.to_string(),
                status: device.status.as_str().to_ascii_uppercase(),
                created_at: device.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(EnrollmentError::Unauthorized { reason }) => {
            gate.audit_enrollment_refusal(
                context.ip,
                reason,
                "enrollment refused".into(),
                None,
                Some(&key_id),
            );
            unauthorized()
        }
        Err(EnrollmentError::Invalid { code, message }) => {
            gate.audit_enrollment_refusal(context.ip, code, message.clone(), None, Some(&key_id));
            bad_request(code, message)
        }
        Err(EnrollmentError::Service(e)) => ApiError::from(e).into_response(),
    }
}
