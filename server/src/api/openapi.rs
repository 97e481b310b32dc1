//! The OpenAPI description of the REST API, generated from the handlers' annotations and served
//! at `GET /api/v1/openapi.json` (nothing fetched at build or run time).

use axum::Json;
use axum::routing::get;
use utoipa::OpenApi;

use crate::api::error::ErrorBody;
use crate::api::{audit, auth, devices, health, keys, policies, users};
use crate::startup::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "KeyGuard", description = "Signed access to LLM providers: provider keys stay on the server."),
    paths(
        health::health,
        health::ready,
        openapi_json,
        auth::login_handler,
        auth::refresh_handler,
        auth::logout_handler,
        auth::me,
        auth::setup_status,
        auth::setup,
        keys::list,
        keys::get_one,
        keys::create,
        keys::rotate_secret,
        keys::rotate_project_key,
        keys::revoke,
        users::list,
        users::get_one,
        users::create,
        users::change_role,
        users::disable,
        users::enable,
        users::reset_password,
        devices::list,
        devices::get_one,
        devices::approve,
        devices::suspend,
        devices::reactivate,
        devices::rename,
        devices::revoke,
        devices::events,
        devices::issue_code,
        devices::list_codes,
        devices::revoke_code,
        policies::list,
        policies::get_global,
        policies::set_global,
        policies::get_key,
        policies::set_key,
        policies::clear_key,
        policies::get_device,
        policies::set_device,
        policies::clear_device,
        policies::effective,
        audit::list,
        audit::get_one,
        crate::api::audit_export::export,
        crate::api::audit_export::stream,
        crate::api::audit_integrity::verify,
        crate::api::audit_integrity::public_key,
        crate::api::history::aggregate_history,
    ),
    components(schemas(ErrorBody, health::Health, health::Readiness)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "system", description = "Health and service description"),
        (name = "auth", description = "Dashboard sign-in and sessions"),
        (name = "keys", description = "Project keys and provider credentials"),
        (name = "users", description = "Dashboard accounts"),
        (name = "devices", description = "Enrolled devices and their history"),
        (name = "enrollment codes", description = "One-time codes that let new devices enroll"),
        (name = "policies", description = "Global, per-key and per-device policies"),
        (name = "audit", description = "The audit trail"),
    )
)]
pub struct ApiDoc;

/// Access tokens go in `Authorization: Bearer` (or the dashboard's HttpOnly cookie).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
