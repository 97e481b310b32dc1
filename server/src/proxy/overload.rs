//! Bounds the proxied requests in flight. Past the limit a request is refused at once with 503
//! `{"error":"unavailable"}` and `Retry-After: 1`, before its body is read or its signature
//! checked, so that an overloaded node sheds the excess cheaply instead of queueing it without
//! bound: queued requests hold their connections, bodies and upstream calls in memory and wait
//! ever longer, until their clients give up anyway.
//!
//! A request counts until its provider's response headers arrive (or it is refused): that is the
//! part whose number grows when the node falls behind. A streamed answer being relayed no longer
//! counts.

use axum::Json;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, ServiceBuilder};

type Refuse = fn(BoxError) -> std::future::Ready<Response>;

/// The layers, outermost first: the refusal's response, shedding, the limit.
type Limit =
    Stack<GlobalConcurrencyLimitLayer, Stack<LoadShedLayer, Stack<HandleErrorLayer<Refuse, ()>, Identity>>>;

/// The proxy route's layer: at most `max_in_flight` requests at once; the rest are refused.
pub fn limit(max_in_flight: usize) -> ServiceBuilder<Limit> {
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(refuse as Refuse))
        .load_shed()
        // One semaphore for every service the layer wraps (axum applies a route's layer to each
        // of its methods), not one each.
        .layer(GlobalConcurrencyLimitLayer::new(max_in_flight.max(1)))
}

/// Load shedding is the only error these layers raise.
fn refuse(_overloaded: BoxError) -> std::future::Ready<Response> {
    std::future::ready(overloaded())
}

/// What a refused request gets: the same 503 as a gate that cannot decide.
pub fn overloaded() -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "error": "unavailable" })))
        .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tokio::sync::Notify;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn past_the_limit_a_request_is_refused_at_once_and_a_freed_slot_serves_again() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let handler = {
            let (release, entered) = (release.clone(), entered.clone());
            move || async move {
                entered.notify_one();
                release.notified().await;
                "answered"
            }
        };
        let app = Router::new().route("/", get(handler).layer(limit(1)));
        let request = || Request::get("/").body(Body::empty()).unwrap();

        let first = tokio::spawn(app.clone().oneshot(request()));
        entered.notified().await;
        let refused = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(refused.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"unavailable"}"#);

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        let next = tokio::spawn(app.oneshot(request()));
        entered.notified().await;
        release.notify_one();
        assert_eq!(next.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
