//! The dashboard's server side: before a page renders or a server function runs, resolve who is
//! asking with the same code as the REST API, and hand it to the `app` crate as a request
//! extension. A page load whose access token has expired renews the session from the refresh
//! cookie, so an admin who left a tab open is not sent to the sign-in page every 15 minutes.

use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use domain::metadata::Actor;
use services::caller::Caller;

use app::backend::cookies;
use app::backend::{RequestScope, SignedInUser};

use crate::api::RequestContext;
use crate::api::auth::CurrentUser;
use crate::startup::AppState;

/// The prefix of the dashboard's server functions.
const SERVER_FN_PREFIX: &str = "/api/";

pub async fn scope(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let context = RequestContext::from_request_parts(&mut parts, &state).await.unwrap_or_else(|e| match e {});
    let caller = Caller {
        actor: Actor::system("dashboard"),
        ip: Some(context.ip),
        user_agent: context.user_agent.clone(),
        request_id: Some(context.request_id.clone()).filter(|r| !r.is_empty()),
    };
    let mut user = CurrentUser::from_request_parts(&mut parts, &state).await.ok();
    let mut set_cookies = Vec::new();
    // Only a page load renews: it is one request, where several server-function calls in
    // parallel would each present the same refresh token and look like a stolen one.
    let page_load = parts.method == Method::GET && !parts.uri.path().starts_with(SERVER_FN_PREFIX);
    if user.is_none() && page_load {
        let values = parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
        if let Some(refresh) = cookies::read(values, cookies::REFRESH_COOKIE) {
            match services::login::refresh(&state.platform, &refresh).await {
                Ok(tokens) => {
                    use secrecy::ExposeSecret as _;
                    let access = tokens.access.token.expose_secret().to_owned();
                    user = CurrentUser::from_token(&state, &access, context.clone()).await.ok();
                    set_cookies.extend(cookies::session(&tokens, state.secure_cookies));
                }
                Err(_) => set_cookies.extend(cookies::cleared(state.secure_cookies)),
            }
        }
    }
    let user = user.map(|u| SignedInUser { user: u.user, role: u.role });
    parts.extensions.insert(RequestScope { caller, user });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    for cookie in set_cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}
