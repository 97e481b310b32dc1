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
    // With no user yet, the first page is the setup: rendered on the server, in the reader's language.
    let english = app.client.get(app.url("/setup")).send().await.unwrap();
    assert_eq!(english.status(), 200);
    let html = english.text().await.unwrap();
    assert!(html.contains(r#"lang="en""#) && html.contains(r#"dir="ltr""#), "{html}");
    assert!(html.contains("Create the first admin"), "{html}");
    assert!(html.contains("/pkg/keyguard.js"), "the page loads the hydration bundle: {html}");

    let arabic = app.client.get(app.url("/setup")).header("accept-language", "ar").send().await.unwrap();
    let html = arabic.text().await.unwrap();
    assert!(html.contains(r#"lang="ar""#) && html.contains(r#"dir="rtl""#), "{html}");
    assert!(html.contains("إنشاء المسؤول الأول"), "{html}");
}

async fn unknown_page_is_a_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

async fn ready_checks_the_store_and_reports_nats(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get_json("/api/v1/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "status": "ready", "database": "ok", "nats": "not_configured", "nonces": "memory" })
    );

    // The NATS connection is made in the background, so readiness may take a moment.
    let app = TestApp::spawn_with(backend, |c| c.nats_url = Some(support::nats_url())).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = app.get_json("/api/v1/ready").await;
        if status == 200 && body["nats"] == "ok" {
            assert_eq!(body["nonces"], "nats");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "NATS must be running for this test: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn without_nats_ready_says_the_database_checks_nonces(backend: Backend) {
    // Nothing listens on loopback port 9: the node starts, keeps retrying NATS, and meanwhile
    // checks nonces in its database, which its start-up put in place before serving.
    let app = TestApp::spawn_with(backend, |c| c.nats_url = Some("nats://127.0.0.1:9".into())).await;
    let (status, body) = app.get_json("/api/v1/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "status": "ready", "database": "ok", "nats": "down", "nonces": "database" })
    );
}

async fn openapi_describes_the_routes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, doc) = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
    for path in ["/api/v1/health", "/api/v1/ready", "/api/v1/openapi.json"] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented: {doc}");
    }
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
}

async fn metrics_count_requests_by_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..3 {
        app.client.get(app.url("/api/v1/health")).send().await.unwrap();
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("keyguard_http_requests_total{") && l.contains(r#"route="/api/v1/health""#))
        .unwrap_or_else(|| panic!("no request counter for /api/v1/health in:\n{text}"));
    assert!(line.contains(r#"status="200""#) && line.ends_with(" 3"), "{line}");
    assert!(text.contains("keyguard_http_request_duration_seconds_bucket"), "{text}");
}

on_both_backends!(
    ready_checks_the_store_and_reports_nats,
    without_nats_ready_says_the_database_checks_nonces,
    openapi_describes_the_routes,
    metrics_count_requests_by_route,
);

on_both_backends!(
    health_answers_ok,
    unknown_api_route_is_a_json_404,
    dashboard_renders_in_english_and_arabic,
    unknown_page_is_a_404,
);
