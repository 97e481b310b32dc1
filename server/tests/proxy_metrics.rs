//! `/metrics` tells how much time the proxy adds: after one signed request relayed from a fake
//! provider, the added-latency histogram has counted exactly that request (and before it, none).

mod support;

use keyguard_sdk::{DeviceKey, DeviceStatus, ServerUrl, Signer};
use reqwest::Method;
use serde_json::json;
use support::upstream::{FakeUpstream, Reply};
use support::{Backend, TestApp};

const PATH: &str = "/api/v1/proxy/v1/chat/completions";
const REQUEST: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#;
const ANSWER: &str = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
const METRIC: &str = "keyguard_proxy_added_latency_seconds";

async fn metrics(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of an unlabelled sample, e.g. `keyguard_proxy_added_latency_seconds_count`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_request_is_counted_in_the_added_latency_histogram() {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: ANSWER.to_owned() }).await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.bootstrap_admin().await;
    let body = json!({
        "name": "metrics", "provider": "openai", "environment": "production",
        "providerKey": "sk-metrics-provider-secret-0123456789", "baseUrl": fake.base_url(),
    });
    let (status, created) = app.call(Method::POST, "/api/v1/keys", Some(&admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let project_key = created["rawKey"].as_str().unwrap().to_owned();
    let (status, issued) = app
        .call(
            Method::POST,
            "/api/v1/devices/enrollment-code",
            Some(&admin),
            Some(json!({ "apiKeyId": created["key"]["id"], "autoApprove": true })),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let key = DeviceKey::generate().unwrap();
    let server = ServerUrl::parse(&app.url("")).unwrap();
    let enrolled =
        keyguard_sdk::enroll(&server, &project_key, &key, issued["code"].as_str(), "metrics").await.unwrap();
    assert_eq!(enrolled.status, DeviceStatus::Active);

    let before = metrics(&app).await;
    assert!(before.contains(&format!("# TYPE {METRIC} histogram")), "{before}");
    assert_eq!(sample(&before, &format!("{METRIC}_count")), Some(0.0), "{before}");

    let signed = Signer::new(key, &project_key).unwrap().sign("POST", PATH, REQUEST).unwrap();
    let mut request = app.client.post(app.url(PATH)).body(REQUEST.to_vec());
    for (name, value) in signed.header_pairs() {
        request = request.header(name, value);
    }
    let response = request.header("content-type", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), ANSWER);
    assert_eq!(fake.received().len(), 1);

    let after = metrics(&app).await;
    assert_eq!(sample(&after, &format!("{METRIC}_count")), Some(1.0), "{after}");
    let sum = sample(&after, &format!("{METRIC}_sum")).expect("a sum");
    assert!(sum > 0.0, "{after}");
    assert_eq!(
        after.lines().filter(|l| l.starts_with(&format!("{METRIC}_bucket{{le=\"+Inf\"}} 1"))).count(),
        1,
        "{after}"
    );
}
