//! The OpenAPI description of the REST API, generated from the handlers' annotations and served
//! at `GET /api/v1/openapi.json` (nothing fetched at build or run time).

use axum::Json;
use axum::routing::get;
use utoipa::OpenApi;

use crate::api::error::ErrorBody;
use crate::api::health;
use crate::startup::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "KeyGuard", description = "Signed access to LLM providers: provider keys stay on the server."),
    paths(health::health, health::ready, openapi_json),
    components(schemas(ErrorBody, health::Health, health::Readiness)),
    tags((name = "system", description = "Health and service description"))
)]
pub struct ApiDoc;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
