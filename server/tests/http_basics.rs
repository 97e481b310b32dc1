//! The application answers over HTTP: health, JSON errors under the API prefix, and the
//! server-rendered dashboard in English and Arabic.

mod support;

use support::{Backend, TestApp};

async fn health_answers_ok(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.client.get(app.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"), "every response carries a request id");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
}

async fn unknown_api_route_is_a_json_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.client.get(app.url("/api/v1/no-such-thing")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn dashboard_renders_in_english_and_arabic(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let english = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(english.status(), 200);
    let html = english.text().await.unwrap();
    assert!(html.contains(r#"lang="en""#) && html.contains(r#"dir="ltr""#), "{html}");
    assert!(html.contains("Provider keys stay on the server"), "{html}");
    assert!(html.contains("/pkg/keyguard.js"), "the page loads the hydration bundle: {html}");

    let arabic = app.client.get(app.url("/")).header("accept-language", "ar").send().await.unwrap();
    let html = arabic.text().await.unwrap();
    assert!(html.contains(r#"lang="ar""#) && html.contains(r#"dir="rtl""#), "{html}");
    assert!(html.contains("تبقى مفاتيح المزوّدين على الخادم"), "{html}");
}

async fn unknown_page_is_a_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

on_both_backends!(
    health_answers_ok,
    unknown_api_route_is_a_json_404,
    dashboard_renders_in_english_and_arabic,
    unknown_page_is_a_404,
);
