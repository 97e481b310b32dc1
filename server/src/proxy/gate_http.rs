//! Between axum and the gate: turns a request into an [`IncomingRequest`] (the target exactly as
//! received, the raw body bytes up to the limit, the trusted-proxy client IP) and a refusal into
//! the response the client may see: the generic 401 `{"error":"unauthorized"}`, 413, 429 with
//! `Retry-After`, or 503. The precise reason only goes to the audit trail.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use services::gate::{Admitted, GateRejection, IncomingRequest};

use crate::api::context::client_ip;
use crate::startup::AppState;

/// A request read in full, owning what [`IncomingRequest`] borrows.
#[derive(Debug)]
pub struct GateRequest {
    pub method: String,
    /// The target as the client sent it, including `/api/v1` and the query.
    pub path_and_query: String,
    /// Every header with a UTF-8 value, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub client_ip: IpAddr,
}

impl GateRequest {
    /// Reads the request; a body over the gate's limit is refused (413) and audited.
    pub async fn read(state: &AppState, request: Request) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let path_and_query = parts
            .extensions
            .get::<OriginalUri>()
            .map(|OriginalUri(uri)| uri)
            .unwrap_or(&parts.uri)
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let headers = parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        let mut read = Self {
            method: parts.method.as_str().to_owned(),
            path_and_query,
            headers,
            body: Bytes::new(),
            client_ip: client_ip(peer, &parts.headers, &state.trusted_proxies),
        };
        let gate = &state.platform.gate;
        let limit = gate.config().max_body_bytes;
        // Read up to the limit even when Content-Length already says more, so the client is
        // done writing (small remainders) and reads the 413 instead of a reset connection.
        let body = axum::body::to_bytes(body, limit).await.ok();
        match body {
            Some(body) => {
                read.body = body;
                Ok(read)
            }
            None => {
                // Unread, or cut off at the limit: either way too large (or broken) to verify.
                let rejection = GateRejection::BodyTooLarge { limit };
                let pairs = read.header_pairs();
                gate.audit_refusal(&read.incoming(&pairs), &rejection);
                Err(rejection_response(&rejection))
            }
        }
    }

    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    /// The gate's view; `pairs` comes from [`GateRequest::header_pairs`].
    pub fn incoming<'a>(&'a self, pairs: &'a [(&'a str, &'a str)]) -> IncomingRequest<'a> {
        IncomingRequest {
            method: &self.method,
            path_and_query: &self.path_and_query,
            headers: pairs,
            body: &self.body,
            client_ip: self.client_ip,
        }
    }
}

/// Reads the request and runs it through the gate.
pub async fn admit(state: &AppState, request: Request) -> Result<(Admitted, GateRequest), Response> {
    let read = GateRequest::read(state, request).await?;
    let pairs = read.header_pairs();
    let verdict = state.platform.gate.admit(read.incoming(&pairs)).await;
    drop(pairs);
    match verdict {
        Ok(admitted) => Ok((admitted, read)),
        Err(rejection) => Err(rejection_response(&rejection)),
    }
}

/// The generic 401 every authentication failure gets, whatever failed.
pub fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": "unauthorized" }))).into_response()
}

/// What the client sees of a refusal.
pub fn rejection_response(rejection: &GateRejection) -> Response {
    let (status, code) = match rejection.status() {
        413 => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        429 => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        503 => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => return unauthorized(),
    };
    let mut response = (status, Json(serde_json::json!({ "error": code }))).into_response();
    if let Some(secs) = rejection.retry_after_secs() {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
